"""The callbacks `rlvr train` runs with: progress (drawn by the caller) and a line per log, the
metrics line SageMaker reads, the tracker, a graceful stop on SIGTERM or Ctrl-C, and seconds per step."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterator
from typing import Any

import torch
from transformers import TrainerCallback

from rlvr_cli.core import console
from rlvr_cli.core.metrics import metrics_line
from rlvr_cli.core.progress import Progress, silent
from rlvr_cli.tracking.trackers import Tracker

CUT_WARNING_RATIO = 0.9


class ProgressDisplay(TrainerCallback):
    """Steps done and the latest metrics to `progress` (the CLI draws the bar), and one line per log."""

    def __init__(self, progress: Progress | None = None) -> None:
        self.progress = progress or silent
        self.status = ""

    def on_train_begin(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        if state.is_world_process_zero:
            self.progress("", state.global_step, state.max_steps)

    def on_step_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        if state.is_world_process_zero:
            self.progress(self.status, state.global_step, state.max_steps)

    def on_log(self, args, state, control, logs=None, **kwargs):  # type: ignore[no-untyped-def]
        if not state.is_world_process_zero or not logs:
            return
        status = format_log(logs)
        if status:
            self.status = status
            self.progress(status, state.global_step, state.max_steps)
            console.err.print(f"step {state.global_step:>5}  {status}", highlight=False, soft_wrap=True)


def format_log(logs: dict[str, Any]) -> str:
    parts = []
    for key, label, fmt in (
        ("reward", "reward", "{:.3f}"),
        ("accuracy", "acc", "{:.2f}"),
        ("format_rate", "format", "{:.2f}"),
        ("completions/mean_length", "len", "{:.0f}"),
        ("completions/cut_at_max_ratio", "cut", "{:.2f}"),
        ("groups/prompts_generated", "prompts", "{:.0f}"),
        ("groups/dropped_ratio", "dropped", "{:.2f}"),
        ("kl", "kl", "{:.4f}"),
        ("loss", "loss", "{:.4f}"),
        ("eval_reward", "eval reward", "{:.3f}"),
        ("eval_accuracy", "eval acc", "{:.2f}"),
    ):
        value = logs.get(key)
        if isinstance(value, int | float):
            parts.append(f"{label} {fmt.format(value)}")
    return "  ".join(parts)


# Set by the SageMaker container's entry (or by a user who wants the lines elsewhere).
METRICS_LINES_ENV = "RLVR_METRICS_LINES"


class MetricsLine(TrainerCallback):
    """`rlvr-metrics {json}` per training log on stderr, for SageMaker's metric regexes: only inside
    a SageMaker job (or with RLVR_METRICS_LINES=1), never beside a person's progress display."""

    def __init__(self, stream: Any = None, enabled: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = os.environ.get(METRICS_LINES_ENV) == "1" if enabled is None else enabled

    def on_log(self, args, state, control, logs=None, **kwargs):  # type: ignore[no-untyped-def]
        if not self.enabled or not state.is_world_process_zero or not logs:
            return
        line = metrics_line(state.global_step, logs)
        if line:  # written whole and unwrapped, never through Rich
            self.stream.write(line + "\n")
            self.stream.flush()


class TrackingCallback(TrainerCallback):
    """Sends every log to the tracker, with a sample of completions, and warns about cut completions."""

    def __init__(self, tracker: Tracker, trainer_ref: dict[str, Any], max_completion_length: int):
        self.tracker = tracker
        self.trainer_ref = trainer_ref  # filled once the trainer exists; callbacks are built before it
        self.max_completion_length = max_completion_length
        self.warned = False

    def on_log(self, args, state, control, logs=None, **kwargs):  # type: ignore[no-untyped-def]
        if not state.is_world_process_zero or not logs:
            return
        numeric = {k: v for k, v in logs.items() if isinstance(v, int | float) and not isinstance(v, bool)}
        self.tracker.log_metrics(numeric, step=state.global_step)
        trainer = self.trainer_ref.get("trainer")
        if trainer is not None and trainer.completion_sample and "reward" in logs:
            self.tracker.log_table(
                trainer.completion_sample, f"completions/step_{state.global_step:06d}.json"
            )
        cut = logs.get("completions/cut_at_max_ratio")
        if isinstance(cut, float) and cut >= CUT_WARNING_RATIO and not self.warned:
            self.warned = True
            console.warn(
                f"{cut:.0%} of completions hit max_completion_length ({self.max_completion_length}): "
                "raise it, or check that the prompts make the model answer with '#### The final answer is N'"
            )


class StopOnSignal(TrainerCallback):
    """SIGTERM (SageMaker stop, spot interruption) or Ctrl-C: finish the step, checkpoint, stop.

    All processes agree before acting: a signal seen by one rank only would otherwise leave the
    others waiting in a collective forever.
    """

    def __init__(self) -> None:
        self.requested: str | None = None

    def request(self, reason: str) -> None:
        self.requested = self.requested or reason

    def on_step_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        flag = self.requested is not None
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            tensor = torch.tensor([1.0 if flag else 0.0], device=args.device)
            torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.MAX)
            flag = bool(tensor.item())
        if flag:
            self.requested = self.requested or "signal on another rank"
            control.should_save = True
            control.should_training_stop = True
        return control


@contextlib.contextmanager
def stop_signals(callback: StopOnSignal) -> Iterator[None]:
    """Route SIGTERM and the first Ctrl-C to a graceful stop; a second Ctrl-C aborts at once."""
    previous: dict[int, Any] = {}

    def handler(signum: int, frame: Any) -> None:
        if signum == signal.SIGINT and callback.requested:
            raise KeyboardInterrupt
        name = signal.Signals(signum).name
        callback.request(name)
        console.warn(
            f"{name}: stopping after this step and saving a checkpoint (Ctrl-C again aborts without saving)"
        )

    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
            previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class StepTimer(TrainerCallback):
    """Seconds per optimizer step, for the run manifest and benchmarks."""

    def __init__(self) -> None:
        self.last: float | None = None
        self.durations: list[float] = []

    def on_train_begin(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        self.last = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        now = time.perf_counter()
        if self.last is not None:
            self.durations.append(now - self.last)
        self.last = now
