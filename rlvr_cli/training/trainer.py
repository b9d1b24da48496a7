"""TRL's GRPOTrainer with rlvr's additions, and the callbacks `rlvr train` runs with.

The subclass overrides three methods, each calling the original where rlvr's version does not apply:
- `_generate_single_turn`: HF generation stops after the answer line (`rlvr_cli.training.stopping`) and
  runs the prompt prefix shared by the batch once (`rlvr_cli.training.generation`).
- `_get_per_token_logps_and_entropies`: the policy and reference forward passes run each shared
  prompt once instead of once per completion (`rlvr_cli.training.prefix_logps`).
- `_calculate_rewards`: logs accuracy, format rate and the share of completions cut at
  max_completion_length, and keeps a small sample of completions for the tracker.

A fourth, `_save_checkpoint`, only reads `RLVR_TEST_SAVE_DELAY_S` (tests only): every checkpoint
save takes that many seconds longer, standing in for a large model written to slow storage; the
container tests check that a stop on several ranks waits for such a save.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import time
from collections.abc import Iterator
from typing import Any

import torch
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from transformers import TrainerCallback
from trl import GRPOTrainer

from rlvr_cli.cloud.sagemaker.metrics import metrics_line
from rlvr_cli.core import console
from rlvr_cli.tasks.gsm8k.rewards import correctness_reward, format_reward
from rlvr_cli.tracking.trackers import Tracker
from rlvr_cli.training.prefix_logps import shared_prefix_logps
from rlvr_cli.training.stopping import AnswerStop, generate_with

SAMPLE_SIZE = 8  # completions kept per step for the tracker's table
CUT_WARNING_RATIO = 0.9


class RlvrGRPOTrainer(GRPOTrainer):
    def __init__(
        self, *args: Any, answer_stop: AnswerStop | None = None, share_prefix: bool = True, **kwargs: Any
    ):
        self.answer_stop = answer_stop
        self.share_prefix = share_prefix
        self.completion_sample: list[dict[str, Any]] = []
        super().__init__(*args, **kwargs)

    def _generate_single_turn(self, *args: Any, **kwargs: Any) -> Any:
        # vLLM stops on strings (generation_kwargs) and caches prefixes itself.
        if (
            self.use_vllm
            or self.use_transformers_continuous_batching
            or (self.answer_stop is None and not self.share_prefix)
        ):
            return super()._generate_single_turn(*args, **kwargs)
        with generate_with(
            self.accelerator.unwrap_model(self.model_wrapped), self.answer_stop, self.share_prefix
        ):
            return super()._generate_single_turn(*args, **kwargs)

    def _get_per_token_logps_and_entropies(  # type: ignore[no-untyped-def]
        self,
        model,
        input_ids,
        attention_mask,
        logits_to_keep,
        batch_size=None,
        compute_entropy=False,
        **kwargs,
    ):
        multimodal_or_moe = any(v is not None and v is not False for v in kwargs.values())
        checkpointed = torch.is_grad_enabled() and self.args.gradient_checkpointing
        if (
            not self.share_prefix
            or multimodal_or_moe
            or checkpointed
            or self.accelerator.num_processes > 1
            or self.is_deepspeed_enabled
            or self.is_fsdp_enabled
        ):
            return super()._get_per_token_logps_and_entropies(
                model, input_ids, attention_mask, logits_to_keep, batch_size, compute_entropy, **kwargs
            )
        with self.accelerator.autocast():
            logps, entropies = shared_prefix_logps(
                model, input_ids, attention_mask, logits_to_keep, compute_entropy=compute_entropy
            )
        return logps, entropies, None

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):  # type: ignore[no-untyped-def]
        rewards = super()._calculate_rewards(
            inputs, prompts, completions, completion_ids_list
        )  # (all processes, F)
        mode = "train" if self.model.training else "eval"
        names = self.reward_func_names
        for func, metric in ((correctness_reward, "accuracy"), (format_reward, "format_rate")):
            if func.__name__ in names:
                column = rewards[:, names.index(func.__name__)]
                hit = torch.where(torch.isnan(column), column, (column > 0).float())
                self._metrics[mode][metric].append(torch.nanmean(hit).item())
        lengths = torch.tensor([len(ids) for ids in completion_ids_list], device=rewards.device)
        at_max = (lengths >= self.max_completion_length).float()
        self._metrics[mode]["completions/cut_at_max_ratio"].append(
            self.accelerator.gather(at_max).mean().item()
        )

        start = self.accelerator.process_index * len(prompts)
        local = rewards[start : start + len(prompts)].tolist()
        sample = []
        for i in range(min(SAMPLE_SIZE, len(completions))):
            row: dict[str, Any] = {
                "step": self.state.global_step,
                "question": inputs[i].get("question", "")[-500:],
                "final_answer": inputs[i].get("final_answer"),
                "completion": _text(completions[i]),
            }
            row.update(
                {name: (None if math.isnan(v) else v) for name, v in zip(names, local[i], strict=True)}
            )
            sample.append(row)
        self.completion_sample = sample
        return rewards

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        delay = float(os.environ.get("RLVR_TEST_SAVE_DELAY_S") or 0)
        if delay:  # before the save, so that a rank killed meanwhile leaves no complete checkpoint
            time.sleep(delay)
        super()._save_checkpoint(model, trial)


def _text(completion: Any) -> str:
    from rlvr_cli.tasks.gsm8k.answers import completion_text

    return completion_text(completion)


# --- callbacks ---------------------------------------------------------------------------------------


class ProgressDisplay(TrainerCallback):
    """A Rich progress bar on stderr (steps, reward, time left) and one line per log."""

    def __init__(self) -> None:
        self.progress: Progress | None = None
        self.task: Any = None

    def on_train_begin(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        if not state.is_world_process_zero:
            return
        self.progress = Progress(
            TextColumn("[bold]train[/bold]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            TextColumn("left"),
            TimeRemainingColumn(),
            console=console.err,
        )
        self.progress.start()
        self.task = self.progress.add_task(
            "train", total=state.max_steps, completed=state.global_step, status=""
        )

    def on_step_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        if self.progress is not None:
            self.progress.update(self.task, completed=state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):  # type: ignore[no-untyped-def]
        if self.progress is None or not logs:
            return
        status = format_log(logs)
        if status:
            self.progress.update(self.task, status=status)
            self.progress.console.print(
                f"step {state.global_step:>5}  {status}", highlight=False, soft_wrap=True
            )

    def on_train_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def format_log(logs: dict[str, Any]) -> str:
    parts = []
    for key, label, fmt in (
        ("reward", "reward", "{:.3f}"),
        ("accuracy", "acc", "{:.2f}"),
        ("format_rate", "format", "{:.2f}"),
        ("completions/mean_length", "len", "{:.0f}"),
        ("completions/cut_at_max_ratio", "cut", "{:.2f}"),
        ("kl", "kl", "{:.4f}"),
        ("loss", "loss", "{:.4f}"),
        ("eval_reward", "eval reward", "{:.3f}"),
        ("eval_accuracy", "eval acc", "{:.2f}"),
    ):
        value = logs.get(key)
        if isinstance(value, int | float):
            parts.append(f"{label} {fmt.format(value)}")
    return "  ".join(parts)


class MetricsLine(TrainerCallback):
    """`rlvr-metrics {json}` per training log on stderr, where logs are read by machines rather than
    people (stderr not a terminal: CloudWatch, a pipe, a file); SageMaker's metric regexes read it."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr

    def on_log(self, args, state, control, logs=None, **kwargs):  # type: ignore[no-untyped-def]
        if not state.is_world_process_zero or not logs or self.stream.isatty():
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
        self.history: list[dict[str, Any]] = []

    def on_log(self, args, state, control, logs=None, **kwargs):  # type: ignore[no-untyped-def]
        if not state.is_world_process_zero or not logs:
            return
        numeric = {k: v for k, v in logs.items() if isinstance(v, int | float) and not isinstance(v, bool)}
        self.history.append({"step": state.global_step, **numeric})
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
        self.stopped_at: int | None = None

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
            self.stopped_at = state.global_step
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
