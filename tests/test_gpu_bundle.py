"""The GPU check's bundle for a machine without network (benchmarks/gpu_bundle.py, `make gpu-bundle`):
what it carries must be complete, since nothing can be fetched there, and small enough to travel."""

from __future__ import annotations

import zipfile
from pathlib import Path

from benchmarks import gpu_bundle


def make_wheel(path: Path, name: str, requires: list[str], files: dict[str, bytes] | None = None) -> Path:
    wheel = path / f"{name}-1.0-py3-none-any.whl"
    info = f"{name}-1.0.dist-info"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n" + "".join(
        f"Requires-Dist: {r}\n" for r in requires
    )
    files = {**(files or {}), f"{info}/METADATA": meta.encode()}
    record = "".join(f"{f},sha256=x,{len(data)}\n" for f, data in files.items()) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(wheel, "w") as z:
        for f, data in files.items():
            z.writestr(f, data)
        z.writestr(f"{info}/RECORD", record)
    return wheel


def test_the_bundle_is_what_the_roots_need_on_that_python_except_what_the_image_has(tmp_path: Path):
    needs = {
        "trl": [
            "accelerate>=1",
            "numpy",
            "datasets",
            "tomli; python_version < '3.11'",
            "pytest; extra == 'dev'",
        ],
        "accelerate": ["torch>=2.6", "psutil", "huggingface_hub>=0.21"],
        "huggingface-hub": [
            "httpx2<3",
            "hf-xet; platform_machine == 'x86_64'",
            "pywin32; sys_platform == 'win32'",
        ],
        "datasets": ["Dill<0.4.2", "pyarrow>=24"],
    }
    fetched: list[set[str]] = []

    def fetch(names: set[str], dest: Path) -> None:
        fetched.append(set(names))
        for name in names:
            make_wheel(dest, name.replace("-", "_"), needs.get(name, []))

    gpu_bundle.collect(tmp_path, "3.12", fetch)
    carried = set().union(*fetched)
    assert carried == {
        *gpu_bundle.ROOTS,
        "huggingface-hub",
        "httpx2",
        "dill",
    }  # names as the lock spells them
    assert len(fetched) == 3 and sum(map(len, fetched)) == len(carried)  # each fetched once, a round a level
    # A need that holds on another Python is taken when the bundle is for it.
    fetched.clear()
    (tmp_path / "py310").mkdir()
    gpu_bundle.collect(tmp_path / "py310", "3.10", fetch)
    assert set().union(*fetched) == carried | {"tomli"}


def test_bitsandbytes_keeps_the_cuda_release_asked_for_and_its_record_says_so(tmp_path: Path):
    libs = ["cpu", "cuda118", "cuda128", "cuda130", "cuda132", "rocm70"]
    files = {f"bitsandbytes/libbitsandbytes_{lib}.so": lib.encode() * 100 for lib in libs}
    wheel = make_wheel(tmp_path, "bitsandbytes", ["torch"], {**files, "bitsandbytes/__init__.py": b"x = 1\n"})
    gpu_bundle.keep_cuda(wheel, "13")
    with zipfile.ZipFile(wheel) as z:
        kept = sorted(n for n in z.namelist() if n.startswith("bitsandbytes/"))
        record = z.read("bitsandbytes-1.0.dist-info/RECORD").decode().splitlines()
        assert z.read("bitsandbytes/libbitsandbytes_cuda130.so") == b"cuda130" * 100
    assert kept == [
        "bitsandbytes/__init__.py",
        "bitsandbytes/libbitsandbytes_cpu.so",
        "bitsandbytes/libbitsandbytes_cuda130.so",
        "bitsandbytes/libbitsandbytes_cuda132.so",
    ]
    assert sorted(line.split(",")[0] for line in record if line.startswith("bitsandbytes/")) == kept


def test_the_bundles_roots_are_pinned_with_hashes_in_the_image_lock():
    blocks = gpu_bundle.locked()
    image = (gpu_bundle.LOCK).read_text()
    for name in gpu_bundle.ROOTS:
        version = blocks[name][0].split("==")[1].split()[0]
        assert f"\n{name}=={version} " in image
        assert (
            all(line.strip().startswith("--hash=sha256:") for line in blocks[name][1:])
            and len(blocks[name]) > 1
        )
