"""`rlvr train` makes glibc give large freed tensors back (rlvr_cli.training.hardware.return_freed_memory).

The effect on a real GRPO step (peak RSS 9.7 -> 7.4 GB at the same speed) is measured by
benchmarks/bench_train.py, not here: it depends on the allocation history of a whole step."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .conftest import REPO

PROGRAM = "from rlvr_cli.training.hardware import return_freed_memory; print(return_freed_memory())"


def applied(**env: str) -> bool:
    import os

    result = subprocess.run(
        [sys.executable, "-c", PROGRAM],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={
            **{k: v for k, v in os.environ.items() if k not in ("RLVR_ALLOCATOR", "MALLOC_MMAP_THRESHOLD_")},
            **env,
        },
        check=True,
    )
    return result.stdout.strip() == "True"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_applied_unless_the_user_chose_the_allocator_settings():
    assert applied()
    assert not applied(RLVR_ALLOCATOR="default")  # the benchmarks' reference configuration
    assert not applied(MALLOC_MMAP_THRESHOLD_="4194304")  # the user's own glibc tuning wins
