"""One stack: what `make install` (and so CI) installs, what the training image installs, and the
ranges `pip install rlvr` users get are the same tested versions.

`make check-lock` (part of `make lint`) re-resolves the locks, which also proves the image's lock
resolves for its platform; these tests compare the files with each other, with the Dockerfile, with
pyproject.toml and with this environment."""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from .conftest import REPO

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^ \\;]+)", re.MULTILINE)


def pins(path: Path) -> dict[str, Version]:
    return {canonicalize_name(name): Version(v) for name, v in PIN.findall(path.read_text())}


def public(v: Version) -> Version:
    """2.13.0+cpu -> 2.13.0: the CPU and CUDA builds of one release."""
    return Version(v.public)


DEV = pins(REPO / "requirements" / "dev.txt")
IMAGE = pins(REPO / "requirements" / "image.txt")


def test_the_locks_pin_every_package_with_hashes():
    for name in ("dev.txt", "image.txt", "smollm2.txt"):
        text = (REPO / "requirements" / name).read_text()
        blocks = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2])  # after the two header lines
        requirements = [b for b in blocks if b.strip() and not b.startswith("#")]
        assert requirements, name
        for block in requirements:
            assert PIN.match(block) and "--hash=sha256:" in block, f"{name}: {block.splitlines()[0]}"


def test_the_image_installs_every_shared_library_at_the_tested_version():
    shared = sorted(set(DEV) & set(IMAGE))
    # The libraries the tests exercise are all in both.
    for name in ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "mlflow", "pydantic"):
        assert name in shared, name
    assert len(shared) > 100
    differ = {n: (str(DEV[n]), str(IMAGE[n])) for n in shared if public(DEV[n]) != public(IMAGE[n])}
    assert not differ, f"requirements/image.txt and dev.txt disagree (run make lock): {differ}"


def test_torch_is_one_release_here_in_ci_and_in_the_image():
    assert str(DEV["torch"]).endswith("+cpu")  # no multi-GB CUDA build on CPU machines
    assert public(DEV["torch"]) == IMAGE["torch"]
    import torch

    installed = Version(torch.__version__)
    assert installed.release[:2] == IMAGE["torch"].release[:2], (
        f"this environment runs torch {installed}, the image {IMAGE['torch']}: run make install"
    )


def test_this_environment_is_the_lock():
    """`make install` installed requirements/dev.txt, so the tests run the locked versions."""
    wrong = {}
    for name, pinned in DEV.items():
        try:
            installed = Version(version(name))
        except PackageNotFoundError:
            wrong[name] = (str(pinned), None)
            continue
        if installed != pinned:
            wrong[name] = (str(pinned), str(installed))
    assert not wrong, f"installed versions differ from requirements/dev.txt (run make install): {wrong}"


def test_the_dockerfile_installs_the_image_lock_and_its_torch():
    dockerfile = (REPO / "container" / "Dockerfile").read_text()
    assert "COPY requirements/image.txt /tmp/image.txt" in dockerfile
    assert "pip install --require-hashes --requirement /tmp/image.txt" in dockerfile
    # Nothing else is installed with pip but rlvr itself, without its dependencies.
    installs = [i.strip(" \\") for i in re.findall(r"pip install [^\n&]*", dockerfile)]
    assert installs == [
        "pip install --require-hashes --requirement /tmp/image.txt",
        "pip install --no-deps --no-build-isolation .",
    ]
    minor = ".".join(map(str, IMAGE["torch"].release[:2]))
    assert f"torch.__version__.startswith('{minor}.')" in dockerfile
    assert "flash-attn" not in IMAGE  # no prebuilt flash-attn for this torch: SDPA instead


def test_the_image_ships_a_vllm_that_rlvr_would_generate_with():
    """The image's vLLM is a release the locked TRL supports, so `use_vllm: auto` takes it there."""
    from rlvr_cli.training.hardware import choose_generator

    assert "vllm" in IMAGE and "vllm" not in DEV  # CUDA only; tests of its arguments need no vLLM
    assert choose_generator("auto", True, False, str(IMAGE["vllm"]))[0]


def _direct_requirements() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    found = [Requirement(r) for r in project["dependencies"]]
    for extra in ("train", "gpu", "vllm", "math", "dev"):
        found += [Requirement(r) for r in project["optional-dependencies"][extra]]
    return found


@pytest.mark.parametrize("requirement", _direct_requirements(), ids=str)
def test_each_lower_bound_is_the_locked_version(requirement: Requirement):
    """pyproject.toml's ranges start at a version the suite ran: the lock's (raise the bound when
    the lock moves past it)."""
    name = canonicalize_name(requirement.name)
    locked = DEV.get(name) or IMAGE.get(name)
    assert locked is not None, f"{name} is in no lock"
    lower = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
    assert len(lower) == 1, f"{requirement}: one >= bound"
    bound = lower[0]
    assert public(locked).release[: len(bound.release)] == bound.release, (
        f"{requirement}: the lock has {locked}; set the lower bound to it"
    )
    assert public(locked) in requirement.specifier
