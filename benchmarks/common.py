"""Helpers for the benchmark scripts: timing, machine description, and the RESULTS.md sections."""

from __future__ import annotations

import os
import platform
import re
import statistics
import subprocess
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
REPO = RESULTS.parent.parent
SHARED_GSM8K = REPO.parent / "shared" / "data" / "gsm8k"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def commit() -> str:
    """The checked-out commit, `+dirty` when the working tree has changes the run used."""

    def git(*args: str) -> str:
        result = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
        return result.stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    # The results files are not what a run used: a benchmark that writes them after each run would
    # otherwise call all its later runs dirty.
    results = (":(exclude)benchmarks/RESULTS.md", ":(exclude)benchmarks/results")
    return head + (
        "+dirty" if git("status", "--porcelain", "--untracked-files=no", "--", ".", *results) else ""
    )


def environment() -> dict[str, str]:
    """Date, commit and machine, for a results JSON."""
    return {
        "date": f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
        "commit": commit(),
        "machine": machine(),
    }


def best_of(func: Callable[[], object], repeat: int = 5, number: int = 1) -> float:
    """Best wall time of `repeat` runs of `number` calls (seconds per call): the least disturbed run."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            func()
        times.append((time.perf_counter() - start) / number)
    return min(times)


def median(values: list[float]) -> float:
    return statistics.median(values)


def write_section(name: str, body: str) -> None:
    """Replace (or append) the section `## name` of RESULTS.md with `body`, stamped with date and machine."""
    text = (
        RESULTS.read_text(encoding="utf-8")
        if RESULTS.exists()
        else "# Benchmark results\n\nWritten by the scripts in this directory; each section says how to reproduce it.\n"
    )
    stamp = f"_{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC · commit {commit()} · {machine()}_"
    section = f"## {name}\n\n{stamp}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(name)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(section + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    RESULTS.write_text(text.rstrip() + "\n", encoding="utf-8")
    print(section)
