"""One rank per GPU on this host, started by torchrun, with the promises a SageMaker job needs.

    python -m torch.distributed.run --nnodes N --node-rank R --nproc-per-node P \
        --master-addr HOST --master-port PORT --shutdown-timeout GRACE --max-restarts 0 \
        --log-dir SCRATCH/logs --no-python COMMAND...

torchrun gives each rank RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, GROUP_RANK, MASTER_ADDR and
MASTER_PORT (static rendezvous on the first host). This module adds what torchrun leaves to its caller:

- SIGTERM / SIGINT reach this process (SageMaker signals the container's main process only) and are
  forwarded to torchrun, started in its own session so that a terminal's Ctrl-C reaches it once.
  torchrun forwards them to every rank and SIGKILLs a rank only `--shutdown-timeout` seconds later
  (torch >= 2.10; older releases killed after a fixed 30 s, too short for a large checkpoint);
- a rank's failure is read from the error file torchrun gives it (`TORCHELASTIC_ERROR_FILE`,
  written by `write_rank_failure` in torchelastic's format): the first failure by time, so a rank
  that lost its peer in a collective does not hide the rank that failed first;
- each rank leaves its exit code in `EXIT_DIR_ENV` (`write_rank_exit`): after a stop, a rank with
  none was killed by torchrun at the deadline, and the outcome says its checkpoint may be incomplete.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlvr_cli.core.errors import ExitCode

EXIT_DIR_ENV = "RLVR_RANK_EXIT_DIR"  # where each rank writes rank-N.exit (its exit code)
# After torchrun's own deadline, how long this process waits for torchrun itself before killing it.
LAUNCHER_MARGIN_S = 30.0


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

    @property
    def ranks(self) -> list[int]:
        """The global ranks on this host."""
        first = self.node_rank * self.procs_per_node
        return list(range(first, first + self.procs_per_node))

    def torchrun_args(self) -> list[str]:
        return [
            f"--nnodes={self.nnodes}",
            f"--node-rank={self.node_rank}",
            f"--nproc-per-node={self.procs_per_node}",
            f"--master-addr={self.master_addr}",
            f"--master-port={self.master_port}",
        ]


@dataclass
class Outcome:
    code: int  # 0 done, 130 stopped by a signal (checkpoint saved), else the failing rank's code
    failure: str | None = None  # the first failing rank's one-line error, for /opt/ml/output/failure


def launch(
    command: list[str],
    env: dict[str, str],
    layout: Layout,
    *,
    grace_s: float,
    log: Callable[[str], None] | None = None,
) -> Outcome:
    """Run `command` once per local rank under torchrun and wait for all; see the module docstring."""
    with tempfile.TemporaryDirectory(prefix="rlvr-ranks-") as scratch:
        return _Run(command, env, layout, grace_s, Path(scratch), log or _stderr).run()


def write_rank_failure(message: str) -> None:
    """A rank's one-line error, where torchrun and `launch` read it (torchelastic's error-file format,
    plus the time to the microsecond: torchelastic's own timestamp is in whole seconds)."""
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if not path:
        return
    now = time.time()
    data = {
        "message": {
            "message": message,
            "extraInfo": {"timestamp": str(int(now)), "rlvr_time": now, "rank": os.environ.get("RANK")},
        }
    }
    with contextlib.suppress(OSError):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(data), encoding="utf-8")


def write_rank_exit(code: int) -> None:
    """A rank's exit code, written as it exits: `launch` tells a rank that stopped from one killed."""
    directory, rank = os.environ.get(EXIT_DIR_ENV), os.environ.get("RANK")
    if directory and rank is not None:
        with contextlib.suppress(OSError):
            (Path(directory) / f"rank-{rank}.exit").write_text(str(code), encoding="utf-8")


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class _Run:
    def __init__(
        self, command: list[str], env: dict[str, str], layout: Layout, grace_s: float, scratch: Path, log: Any
    ):
        self.command, self.layout, self.grace_s, self.log = command, layout, grace_s, log
        self.exit_dir, self.log_dir = scratch / "exits", scratch / "logs"
        self.exit_dir.mkdir()
        self.env = {**env, EXIT_DIR_ENV: str(self.exit_dir)}
        if "OMP_NUM_THREADS" not in self.env:  # ranks must not each use every core
            self.env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // layout.procs_per_node))
        self.process: subprocess.Popen | None = None
        self.stop_signal: int | None = None
        self.announce = False  # a stop to report from the main loop (never print in a signal handler)
        self.deadline: float | None = None  # when torchrun itself is killed if it has not exited

    def run(self) -> Outcome:
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            torchrun = [
                sys.executable,
                "-m",
                "torch.distributed.run",
                *self.layout.torchrun_args(),
                f"--shutdown-timeout={round(self.grace_s)}",
                "--max-restarts=0",
                f"--log-dir={self.log_dir}",
                "--no-python",
                *self.command,
            ]
            self.process = subprocess.Popen(torchrun, env=self.env, start_new_session=True)
            if self.stop_signal is not None:  # stopped while starting
                self.process.send_signal(self.stop_signal)
            while True:
                if self.announce:
                    self.announce = False
                    name = signal.Signals(self.stop_signal or signal.SIGTERM).name
                    self.log(
                        f"{name}: forwarded to {self.layout.procs_per_node} ranks; they finish the step "
                        f"and save a checkpoint (up to {self.grace_s:.0f} s)"
                    )
                try:
                    returncode = self.process.wait(timeout=0.5)
                    break
                except subprocess.TimeoutExpired:
                    if self.deadline is not None and time.monotonic() > self.deadline:
                        self.log("torchrun did not exit after its shutdown timeout; killing it")
                        self.process.kill()
            return self._outcome(returncode)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.stop_signal is None:
            self.deadline = time.monotonic() + self.grace_s + LAUNCHER_MARGIN_S
            self.announce = True
        self.stop_signal = signum
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signum)

    def _exits(self) -> dict[int, int]:
        exits = {}
        for rank in self.layout.ranks:
            with contextlib.suppress(OSError, ValueError):
                exits[rank] = int((self.exit_dir / f"rank-{rank}.exit").read_text(encoding="utf-8"))
        return exits

    def _first_failure(self) -> tuple[int | None, str] | None:
        """The earliest error a rank wrote to its torchelastic error file: (rank, message)."""
        found = []
        for path in self.log_dir.rglob("error.json"):
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                message = json.loads(path.read_text(encoding="utf-8"))["message"]
                info = message["extraInfo"]
                rank = info.get("rank")
                found.append((float(info.get("rlvr_time", info["timestamp"])), rank, str(message["message"])))
        if not found:
            return None
        _, rank, message = min(found, key=lambda f: f[0])
        return (int(rank) if rank is not None else None, message)

    def _outcome(self, returncode: int) -> Outcome:
        exits = self._exits()
        first = self._first_failure()
        if first is not None:
            rank, message = first
            code = exits.get(rank, 1) if rank is not None else 1
            return Outcome(
                code if code > 0 else 1, f"rank {rank}: {message}" if rank is not None else message
            )
        missing = [rank for rank in self.layout.ranks if rank not in exits]
        if missing and self.stop_signal is not None:
            name = signal.Signals(self.stop_signal).name
            return Outcome(
                128 + signal.SIGKILL,
                f"ranks {', '.join(map(str, missing))} did not stop within {self.grace_s:.0f} s after {name} "
                "and were killed; the checkpoint of this stop may be incomplete (the next run resumes from "
                "the last complete one)",
            )
        if not exits and returncode != 0:
            return Outcome(
                returncode, f"torchrun exited with code {returncode} before any rank ran; see the job's logs"
            )
        if missing:
            return Outcome(
                128 + signal.SIGKILL,
                f"ranks {', '.join(map(str, missing))} ended without an exit code (killed: out of memory?); "
                "see the job's logs",
            )
        if all(code == 0 for code in exits.values()):
            return Outcome(0)  # done, even if a stop came as the last step ended
        failed = [(rank, code) for rank, code in exits.items() if code not in _STOPPED]
        if not failed:
            return Outcome(int(ExitCode.INTERRUPTED))  # stopped; checkpoint saved
        rank, code = min(failed)
        return Outcome(
            code, f"rank {rank} exited with code {code} without an error message; see the job's logs"
        )


_STOPPED = {0, int(ExitCode.INTERRUPTED)}
