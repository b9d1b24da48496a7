"""What a mutant's test session runs under `make mutation` (mutmut), used by tests/conftest.py.

mutmut runs, for each mutant, the selected tests that reach the mutated function (it records
which), in one pytest session that stops at the first failure. Unchecked, a surviving mutant (most
are equivalent: no test can catch them) costs every such test, training runs and moto round trips
included, and a mutant that makes a test loop costs mutmut's CPU limit, (tests' time + constant) x
multiplier x 2: a minute for a module whose tests take ten seconds. Here a session runs:

- first the tests that detected other mutants of the same function earlier in the run (read from
  the kill record, most detections first), then its module's own test files (HOME_TESTS, in that
  order, fastest first in each), then the other tests reaching the mutant, fastest first;
- only the tests that fit in the module's budget of recorded time (MODULE_SECONDS, else
  TEST_SECONDS; their fixtures included, measured in mutmut's stats run: DURATIONS; the first test
  always runs): a survivor costs at most that, and a mutant that only a test left out would catch
  counts as survived (a lower bound); only those tests are collected;
- within a wall-clock limit of its own (LOOP_FACTOR x the kept tests' recorded seconds +
  LOOP_SECONDS): past it the running test fails with MutantLoops, and the mutant counts as detected.

Each detection is appended to mutation-kills.tsv in mutants/ (the mutant, the test that failed, the
recorded seconds run before it, and whether it was a loop) for scripts/mutation_report.py.
"""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

# The test files written for each mutated module.
HOME_TESTS = {
    "rlvr_cli.tasks.gsm8k.answers": ("tests/test_rewards.py",),
    "rlvr_cli.tasks.gsm8k.rewards": ("tests/test_rewards.py",),
    "rlvr_cli.tasks.rewards": ("tests/test_rewards.py",),
    "rlvr_cli.tasks.base": ("tests/test_tasks.py",),
    "rlvr_cli.tasks.custom": ("tests/test_tasks.py",),
    "rlvr_cli.tasks.math": ("tests/test_tasks.py",),
    "rlvr_cli.tasks.reasoning_gym": ("tests/test_tasks.py",),
    "rlvr_cli.evaluation.scoring": ("tests/test_scoring.py",),
    "rlvr_cli.data.build": ("tests/test_prepare.py",),
    "rlvr_cli.decoding.stopping": ("tests/test_generation.py",),
    # The shared-prefix prefill is generation's; its two-level form is tested with the cascade.
    "rlvr_cli.decoding.generation": ("tests/test_generation.py", "tests/test_cascade.py"),
    "rlvr_cli.decoding.cascade": ("tests/test_cascade.py",),
    "rlvr_cli.decoding.graphs": ("tests/test_static_decoding.py",),
    "rlvr_cli.decoding.attention": ("tests/test_cascade.py",),
    "rlvr_cli.training.prefix_logps": ("tests/test_prefix_logps.py",),
    # The trainer's dynamic-sampling branch is tested with the group filter.
    "rlvr_cli.training.trainer": ("tests/test_trl_hook.py", "tests/test_group_filter.py"),
    "rlvr_cli.training.group_filter": ("tests/test_group_filter.py",),
    "rlvr_cli.training.set_aside": ("tests/test_group_filter.py",),
    "rlvr_cli.cloud.sagemaker.request_checks": ("tests/test_remote_request.py",),
    "rlvr_cli.cloud.sagemaker.service_model": ("tests/test_service_model.py", "tests/test_remote_request.py"),
    "rlvr_cli.cloud.sagemaker.s3objects": ("tests/test_s3objects.py", "tests/test_artifacts.py"),
    "rlvr_cli.cloud.sagemaker.artifacts": ("tests/test_artifacts.py",),
    "rlvr_cli.container.entry": ("tests/test_entry.py",),
}
# Seconds of recorded test time a mutant's session may spend (see select), chosen over the complete
# runs in benchmarks/MUTATION.md ("The runs of the day"): the S3 modules' and the trainer's tests are
# slow (moto round trips, a trainer built per test) and the sampling loop's detections come late;
# with less, a function whose first detections fall past the budget has no test known to go first
# for its later mutants, and detections fall faster than the minutes.
TEST_SECONDS = 1.0
MODULE_SECONDS = {
    "rlvr_cli.decoding.generation": 3.5,
    "rlvr_cli.training.trainer": 3.0,
    "rlvr_cli.cloud.sagemaker.s3objects": 4.0,
    "rlvr_cli.cloud.sagemaker.artifacts": 4.0,
}
LOOP_FACTOR = 4.0
LOOP_SECONDS = 10.0
KILLS = Path("mutation-kills.tsv")  # mutmut runs the tests in mutants/
DURATIONS = Path("mutation-durations.json")


class MutantLoops(Exception):
    """The tests ran far past their usual time: the mutant made them loop (or crawl)."""


def mutant_under_test() -> str | None:
    """The mutant this session tests, or None outside mutation testing."""
    mutant = os.environ.get("MUTANT_UNDER_TEST", "")
    return mutant if "__mutmut_" in mutant else None


def stats_run() -> bool:
    """True in mutmut's run of every selected test that records which functions each one reaches."""
    return os.environ.get("MUTANT_UNDER_TEST") == "stats"


def module_of(mutant: str) -> str:
    """`rlvr_cli.decoding.generation.x_sample_tokens__mutmut_15` -> `rlvr_cli.decoding.generation`."""
    return mutant.split(".x", 1)[0]


def function_of(mutant: str) -> str:
    """`...generation.x_sample_tokens__mutmut_15` -> `...generation.x_sample_tokens`."""
    return mutant.rsplit("__mutmut_", 1)[0]


def budget(mutant: str) -> float:
    return MODULE_SECONDS.get(module_of(mutant), TEST_SECONDS)


def select(
    mutant: str, nodeids: Sequence[str], durations: dict[str, float], caught: Counter[str] | None = None
) -> tuple[list[str], float]:
    """The tests to run against `mutant`, in order, and the seconds they were recorded to take.

    First the tests that detected other mutants of the same function earlier in this run (`caught`,
    most detections first: mutmut runs a function's mutants one after another, and most of a
    function's detections are by one test), then the module's own files, then the others, fastest
    first; each kept only if it fits in what is left of the module's budget (the first always runs)."""
    home = HOME_TESTS.get(module_of(mutant), ())
    caught = caught or Counter()

    def rank(nodeid: str) -> tuple[int, int, float]:
        file = nodeid.split("::", 1)[0]
        place = home.index(file) if file in home else len(home)
        return -caught[nodeid], place, durations.get(nodeid, 0.0)

    kept: list[str] = []
    spent = 0.0
    for nodeid in sorted(nodeids, key=rank):
        seconds = durations.get(nodeid, 0.0)
        if kept and spent + seconds > budget(mutant):
            continue  # a faster one further on may still fit
        kept.append(nodeid)
        spent += seconds
    return kept, spent


def recorded_durations() -> dict[str, float]:
    """Each test's seconds as its stats run measured them (mutmut's tracing on), {} before it ran:
    setup, call and teardown as DURATIONS has them, else the call alone as mutmut records it."""
    if DURATIONS.is_file():  # every test of the stats run, kept across runs (read in each session)
        return json.loads(DURATIONS.read_text(encoding="utf-8"))
    stats = Path("mutmut-stats.json")
    return (
        json.loads(stats.read_text(encoding="utf-8")).get("duration_by_test", {}) if stats.is_file() else {}
    )


class StatsRun:
    """During mutmut's stats run (MUTANT_UNDER_TEST=stats): each test's setup + call + teardown,
    added to DURATIONS at the end (mutmut reruns only the tests that changed)."""

    def __init__(self) -> None:
        self.path = DURATIONS.resolve()  # now, in mutants/: each test runs in a directory of its own
        self.seconds: dict[str, float] = {}

    def add(self, nodeid: str, seconds: float) -> None:
        self.seconds[nodeid] = self.seconds.get(nodeid, 0.0) + seconds

    def save(self) -> None:
        known = json.loads(self.path.read_text(encoding="utf-8")) if self.path.is_file() else {}
        self.path.write_text(json.dumps({**known, **self.seconds}, indent=0), encoding="utf-8")


def limit_wall_clock(seconds: float) -> None:
    """Fail the running test with MutantLoops once `seconds` have passed."""

    def loops(signum: int, frame: object) -> None:
        raise MutantLoops(f"the tests ran past {seconds:.0f} s, {LOOP_FACTOR:g}x their usual time and more")

    signal.signal(signal.SIGALRM, loops)
    signal.setitimer(signal.ITIMER_REAL, seconds)


class Session:
    """One mutant's session: the seconds recorded for the tests it ran, and its detection record."""

    def __init__(self, mutant: str, durations: dict[str, float], kept: Sequence[str] = ()) -> None:
        self.mutant = mutant
        self.durations = durations
        self.kept = list(kept)  # the tests selected to run, in order
        self.names: dict[str, set[str]] = {}  # file -> the names in it the tests are under
        for nodeid in self.kept:
            file, _, name = nodeid.partition("::")
            self.names.setdefault(file, set()).add(name.split("::", 1)[0].split("[", 1)[0])
        self.spent = 0.0
        self.recorded = False
        self.kills = KILLS.resolve()  # now, in mutants/: each test runs in a directory of its own

    def finished(self, nodeid: str, failed: bool, longrepr: str) -> None:
        if failed and not self.recorded:
            loop = "MutantLoops" in longrepr
            with self.kills.open("a", encoding="utf-8") as kills:  # one short line: appends stay whole
                kills.write(f"{self.mutant}\t{nodeid}\t{self.spent:.3f}\t{'loop' if loop else 'fail'}\n")
            self.recorded = True
        self.spent += self.durations.get(nodeid, 0.0)


def read_kills(path: Path = KILLS) -> dict[str, tuple[str, float, bool]]:
    """mutant -> (the test that detected it, recorded seconds run before that test, a loop?)."""
    kills: dict[str, tuple[str, float, bool]] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            fields = line.split("\t")
            if len(fields) == 4 and fields[3] in ("fail", "loop"):  # not a line another session is writing
                mutant, nodeid, before, kind = fields
                kills[mutant] = (nodeid, float(before), kind == "loop")
    return kills


def caught_so_far(mutant: str, path: Path = KILLS) -> Counter[str]:
    """How many of the other mutants of `mutant`'s function each test has detected in this run."""
    prefix = function_of(mutant) + "__mutmut_"
    caught: Counter[str] = Counter()
    if path.is_file():
        with path.open(encoding="utf-8") as kills:
            for line in kills:
                if line.startswith(prefix):
                    fields = line.split("\t")
                    if len(fields) == 4 and fields[3].strip() in ("fail", "loop"):
                        caught[fields[1]] += 1
    return caught
