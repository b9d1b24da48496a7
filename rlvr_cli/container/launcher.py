"""One process per GPU on this host, started, signalled and reaped by rlvr itself.

Why not `torchrun` / `accelerate launch`: on SIGTERM torchelastic's agent signals the workers and
SIGKILLs any still alive after a fixed 30 s (`PContext.close(death_sig, timeout=30)`; only newer
torch reads TORCH_ELASTIC_SHUTDOWN_TIMEOUT). SageMaker gives a stopped or interrupted job up to
120 s, and a rank finishing its step and writing a large checkpoint needs that time. So the ranks
are plain subprocesses here, with the environment torchrun would give them (RANK, LOCAL_RANK,
WORLD_SIZE, LOCAL_WORLD_SIZE, GROUP_RANK, MASTER_ADDR, MASTER_PORT), and:

- SIGTERM / SIGINT are forwarded to every rank (each in its own session, so a terminal's Ctrl-C
  reaches a rank once, through here); the ranks get `grace_s` to save before SIGKILL;
- when a rank fails, the outcome names it and carries the one-line error it wrote to its failure
  file (`FAILURE_FILE_ENV`), with its exit code; the other ranks are then stopped.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlvr_cli.core.errors import ExitCode

FAILURE_FILE_ENV = "RLVR_RANK_FAILURE_FILE"  # where a rank writes its one-line error before exiting
FAILURE_GRACE_S = 15.0  # after one rank failed, the others get this long to exit before SIGKILL
_STOP_CODES = {0, int(ExitCode.INTERRUPTED), -signal.SIGTERM, -signal.SIGINT}


@dataclass(frozen=True)
class Layout:
    """Where this host's ranks sit in the job."""

    procs_per_node: int
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = 29500

    @property
    def world_size(self) -> int:
        return self.procs_per_node * self.nnodes

    def rank_env(self, local_rank: int) -> dict[str, str]:
        return {
            "RANK": str(self.node_rank * self.procs_per_node + local_rank),
            "LOCAL_RANK": str(local_rank),
            "WORLD_SIZE": str(self.world_size),
            "LOCAL_WORLD_SIZE": str(self.procs_per_node),
            "GROUP_RANK": str(self.node_rank),
            "MASTER_ADDR": self.master_addr,
            "MASTER_PORT": str(self.master_port),
        }


@dataclass
class Outcome:
    code: int  # 0 done, 130 stopped by a signal (checkpoint saved), else the failing rank's code
    failure: str | None = None  # the failing rank's one-line error, for /opt/ml/output/failure
    exits: dict[int, int] = field(default_factory=dict)  # global rank -> exit status (negative: signal)


def launch(
    command: list[str],
    env: dict[str, str],
    layout: Layout,
    *,
    grace_s: float,
    log: Callable[[str], None] | None = None,
) -> Outcome:
    """Run `command` once per local rank and wait for all of them; see the module docstring."""
    with tempfile.TemporaryDirectory(prefix="rlvr-ranks-") as scratch:
        return _Run(command, env, layout, grace_s, Path(scratch), log or _stderr).run()


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class _Run:
    def __init__(
        self, command: list[str], env: dict[str, str], layout: Layout, grace_s: float, scratch: Path, log: Any
    ):
        self.command, self.env, self.layout, self.grace_s = command, env, layout, grace_s
        self.scratch, self.log = scratch, log
        self.announce = False  # a stop to report from the main loop (never print in a signal handler)
        self.procs: dict[int, subprocess.Popen] = {}  # global rank -> process
        self.exits: queue.Queue[tuple[int, int]] = queue.Queue()
        self.stop_signal: int | None = None
        self.deadline: float | None = None  # when the ranks still alive get SIGKILL
        self.failure: tuple[int, int, str] | None = None  # rank, code, message
        self.killed = False

    def run(self) -> Outcome:
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            try:
                for local_rank in range(self.layout.procs_per_node):
                    if self.stop_signal is not None:
                        break  # stopped while starting: the ranks not started yet have nothing to save
                    self._start(local_rank)
            except BaseException:  # a rank could not be started: leave no orphans behind
                self._signal_all(signal.SIGKILL)
                raise
            return self._wait()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _start(self, local_rank: int) -> None:
        env = {**self.env, **self.layout.rank_env(local_rank)}
        rank = int(env["RANK"])
        env[FAILURE_FILE_ENV] = str(self.scratch / f"rank-{rank}.failure")
        if "OMP_NUM_THREADS" not in env:  # as torchrun: ranks must not each use every core
            env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // self.layout.procs_per_node))
        process = subprocess.Popen(self.command, env=env, start_new_session=True)
        self.procs[rank] = process
        threading.Thread(target=lambda: self.exits.put((rank, process.wait())), daemon=True).start()

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.stop_signal is None:
            self.deadline = time.monotonic() + self.grace_s
            self.announce = True
        self.stop_signal = signum
        self._signal_all(signum)

    def _signal_all(self, signum: int) -> None:
        for process in self.procs.values():
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signum)

    def _wait(self) -> Outcome:
        running = set(self.procs)
        exits: dict[int, int] = {}
        while running:
            if self.announce:
                self.announce = False
                self.log(
                    f"{signal.Signals(self.stop_signal or signal.SIGTERM).name}: forwarded to {len(self.procs)} ranks; "
                    f"they finish the step and save a checkpoint (up to {self.grace_s:.0f} s)"
                )
            try:
                rank, code = self.exits.get(timeout=0.5)
            except queue.Empty:
                if self.deadline is not None and time.monotonic() > self.deadline and not self.killed:
                    self._kill(sorted(running))
                continue
            running.discard(rank)
            exits[rank] = code
            if self._is_failure(code) and self.failure is None:
                self.failure = (rank, code, self._message(rank, code))
                if running:  # the others would wait for it in a collective until NCCL's timeout
                    self.log(f"rank {rank} failed; stopping the other ranks")
                    self.deadline = time.monotonic() + min(self.grace_s, FAILURE_GRACE_S)
                    self._signal_all(signal.SIGTERM)
        return self._outcome(exits)

    def _is_failure(self, code: int) -> bool:
        if code == 0 or code == int(ExitCode.INTERRUPTED):
            return False
        if self.killed:
            return False  # SIGKILLed by us: already recorded
        return not (self.stop_signal is not None and code in _STOP_CODES)

    def _kill(self, ranks: list[int]) -> None:
        self.killed = True
        waited = (
            f"{self.grace_s:.0f} s after {signal.Signals(self.stop_signal).name}" if self.stop_signal else ""
        )
        if self.failure is None:
            message = (
                f"ranks {', '.join(map(str, ranks))} did not stop within {waited} and were killed; "
                "the checkpoint of this stop may be incomplete (the next run resumes from the last complete one)"
            )
            self.failure = (ranks[0], 128 + signal.SIGKILL, message)
        self.log(f"killing ranks {', '.join(map(str, ranks))}")
        self._signal_all(signal.SIGKILL)

    def _message(self, rank: int, code: int) -> str:
        written = self.scratch / f"rank-{rank}.failure"
        with contextlib.suppress(OSError):
            text = written.read_text(encoding="utf-8").strip()
            if text:
                return f"rank {rank}: {text}"
        if code < 0:
            name = signal.Signals(-code).name
            hint = " (out of memory?)" if -code == signal.SIGKILL else ""
            return f"rank {rank} was killed by {name}{hint}; see the job's logs"
        return f"rank {rank} exited with code {code} without an error message; see the job's logs"

    def _outcome(self, exits: dict[int, int]) -> Outcome:
        if self.failure is not None:
            _, code, message = self.failure
            return Outcome(code if code > 0 else 128 - code, message, exits)
        if exits and all(code == 0 for code in exits.values()):
            return Outcome(0, None, exits)  # done, even if a stop came as the last step ended
        return Outcome(int(ExitCode.INTERRUPTED), None, exits)  # stopped; checkpoint saved
