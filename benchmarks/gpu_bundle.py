"""What the GPU check needs on a GPU machine without network, in one folder: `.whl/` (git-ignored).

    make gpu-bundle                                   # here, with the package index and ../shared
    bash benchmarks/gpu_device.sh OUT_DIR             # there, in the repo root, with .whl/ beside it

For a machine that has a PyTorch CUDA image and nothing else can reach it (a lent H100/H200): the
wheels of rlvr's training stack at the image lock's versions (requirements/image.txt, checked against
its hashes), for Linux x86_64 and that machine's Python; the tokenizer the check's stand-in model uses
(SmolLM2's, from the offline model); and GSM8K's two files. What the image already has is not
carried: torch and the compiled packages listed in IMAGE (pure-Python packages are carried at the
lock's versions, so that transformers, TRL and PEFT are the tested ones whatever the image ships).
bitsandbytes keeps the CUDA 13 libraries only (`--cuda`), the rest of its 43 MB wheel being other
CUDA and ROCm builds: the folder must travel in 64 MiB with the repo.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from email.parser import Parser
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parent.parent
LOCK = REPO / "requirements" / "image.txt"
ROOTS = ("trl", "transformers", "peft", "accelerate", "datasets", "bitsandbytes", "pydantic", "typer", "rich")
# Compiled packages a PyTorch CUDA image ships, with what they need (the H100/H200 machines this was
# made for have them all): the image's stay.
IMAGE = {
    "torch", "triton", "numpy", "pandas", "pyarrow", "xxhash", "regex", "tokenizers", "safetensors",
    "psutil", "markupsafe", "pyyaml", "hf-xet", "pillow", "matplotlib", "scipy", "sympy", "aiohttp",
    "frozenlist", "multidict", "yarl", "propcache", "charset-normalizer",
}  # fmt: skip
LIMIT_MIB = 56  # the repo (about 3 MiB) travels in the same 64 MiB


def locked() -> dict[str, list[str]]:
    """Package -> its lines in the image lock (`name==version` and the hashes)."""
    blocks: dict[str, list[str]] = {}
    name = None
    for line in LOCK.read_text().splitlines():
        if match := re.match(r"^([A-Za-z0-9._-]+)==\S+", line):
            name = canonicalize_name(match.group(1))
            blocks[name] = [line]
        elif name and line.startswith("    --hash"):
            blocks[name].append(line)
        else:
            name = None
    return blocks


def download(names: set[str], blocks: dict[str, list[str]], dest: Path, python: str) -> None:
    if missing := sorted(names - blocks.keys()):
        sys.exit(
            f"error: {', '.join(missing)} not in {LOCK.name}: add it to requirements/image.in, then make lock"
        )
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as req:
        req.write("\n".join(line for n in sorted(names) for line in blocks[n]) + "\n")
        req.flush()
        platforms = [f"manylinux_2_{n}_x86_64" for n in (17, 24, 27, 28, 31, 34)]
        command = [
            sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
            "--require-hashes", "--python-version", python, "--implementation", "cp",
            *(f"--platform={p}" for p in ["manylinux2014_x86_64", "manylinux1_x86_64", *platforms]),
            "-d", str(dest), "-r", req.name,
        ]  # fmt: skip
        subprocess.run(command, check=True)


def collect(dest: Path, python: str, fetch: Callable[[set[str], Path], None]) -> None:
    """The wheels of ROOTS and what they need, fetched into `dest`, stopping at what the image has."""
    wanted, seen = {canonicalize_name(r) for r in ROOTS}, set()
    while todo := wanted - seen:
        fetch(todo, dest)
        seen |= todo
        for wheel in dest.glob("*.whl"):
            if wheel_name(wheel) in todo:
                wanted |= requirements_of(wheel, python) - IMAGE


def wheel_name(path: Path) -> str:
    return canonicalize_name(path.name.split("-")[0])


def requirements_of(wheel: Path, python: str) -> set[str]:
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        message = Parser().parsestr(z.read(meta).decode())
    env = {**default_environment(), "python_version": python, "python_full_version": f"{python}.0"}
    env.update(sys_platform="linux", platform_system="Linux", platform_machine="x86_64", extra="")
    names = set()
    for text in message.get_all("Requires-Dist") or []:
        req = Requirement(text)
        if req.marker is None or req.marker.evaluate(env):
            names.add(canonicalize_name(req.name))
    return names


def keep_cuda(wheel: Path, cuda: str) -> None:
    """Drop bitsandbytes' libraries for other CUDA and ROCm releases (and their RECORD lines)."""
    keep = re.compile(rf"libbitsandbytes_(cpu|cuda{cuda}\d)\.so$")

    def dropped(path: str) -> bool:
        return bool(re.search(r"libbitsandbytes_\w+\.so$", path)) and not keep.search(path)

    slim = wheel.with_suffix(".slim")
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(slim, "w", zipfile.ZIP_DEFLATED) as out:
        for item in src.infolist():
            if dropped(item.filename):
                continue
            data = src.read(item)
            if item.filename.endswith(".dist-info/RECORD"):
                lines = data.decode().splitlines()
                data = "".join(f"{x}\n" for x in lines if not dropped(x.split(",")[0])).encode()
            out.writestr(item, data)
    slim.replace(wheel)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / ".whl", help="the folder to fill (replaced)")
    parser.add_argument("--python", default="3.12", help="the GPU machine's Python (major.minor)")
    parser.add_argument("--cuda", default="13", help="the CUDA major release of the machine's torch")
    parser.add_argument("--gsm8k", type=Path, default=REPO.parent / "shared" / "data" / "gsm8k")
    parser.add_argument("--json", action="store_true", help="print what was bundled as JSON on stdout")
    args = parser.parse_args()
    blocks = locked()
    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)

    collect(args.out, args.python, lambda names, dest: download(names, blocks, dest, args.python))
    for wheel in args.out.glob("bitsandbytes-*.whl"):
        keep_cuda(wheel, args.cuda)

    from rlvr_cli.models.offline import materialize_offline

    model = Path(materialize_offline("smollm2-135m"))
    tokenizer = args.out / "tokenizer"
    tokenizer.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"):
        if (model / name).exists():
            shutil.copy(model / name, tokenizer / name)
    (args.out / "gsm8k").mkdir()
    for name in ("train.jsonl", "test.jsonl"):
        shutil.copy(args.gsm8k / name, args.out / "gsm8k" / name)

    wheels = sorted(args.out.glob("*.whl"))
    size = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    summary = {
        "folder": str(args.out),
        "python": args.python,
        "cuda": args.cuda,
        "wheels": [w.name for w in wheels],
        "mib": round(size / 2**20, 1),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    print(f"{len(wheels)} wheels, tokenizer, GSM8K: {summary['mib']} MiB in {args.out}", file=sys.stderr)
    if size > LIMIT_MIB * 2**20:
        sys.exit(f"error: {summary['mib']} MiB is over {LIMIT_MIB} MiB; the repo and this travel in 64 MiB")


if __name__ == "__main__":
    main()
