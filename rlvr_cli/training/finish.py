"""How a training run ends on disk: an interrupted run's record, or a completed run's files (the
resolved recipe, metrics, reward curves, the merged model with `--merge`) and its record."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rlvr_cli.config.loading import recipe_to_yaml
from rlvr_cli.config.recipe import Recipe
from rlvr_cli.core import console
from rlvr_cli.core.files import write_text
from rlvr_cli.models.record import RunRecord
from rlvr_cli.tasks.base import Task
from rlvr_cli.training.output_dir import METRICS_FILE, RECIPE_FILE


def interrupted(
    record: RunRecord, signal: str | None, step: int, output: Path | None, tracker: Any, checkpoint_dir: Path
) -> None:
    """Stopped by a signal after a step: the record names the signal and the checkpoint it saved."""
    record.status = "interrupted"
    record.interrupted_by = signal
    record.checkpoint = f"{checkpoint_dir}/checkpoint-{step}"
    if output is not None:
        record.write(output)
    tracker.finish("KILLED")


def save_outputs(
    record: RunRecord,
    recipe: Recipe,
    output: Path,
    history: list[dict[str, Any]],
    resolved: Any,
    task: Task,
    tracker: Any,
    *,
    merge: bool,
) -> None:
    """The main process's files (recipe, metrics, plot, merged model), then the record as completed."""
    from rlvr_cli.tracking.plots import reward_curves

    write_text(output / RECIPE_FILE, recipe_to_yaml(recipe))
    write_text(output / METRICS_FILE, "".join(json.dumps(h) + "\n" for h in history))
    plot = reward_curves(history, output / "reward_curves.png", f"GRPO on {resolved.name}: {task.title}")
    if merge:
        record.merged = str(merge_adapter(output, resolved, recipe))
    record.status = "completed"
    record.reward_curves = str(plot) if plot else None
    record.write(output)
    tracker.log_dict(record.to_dict(), "rlvr_run.json")
    tracker.log_artifact(output / RECIPE_FILE)
    if plot:
        tracker.log_artifact(plot)
    tracker.finish("FINISHED")


def merge_adapter(output: Path, resolved: Any, recipe: Recipe) -> Path:
    """Write OUTPUT/merged: the base model in full precision with the adapter merged in."""
    import torch
    from peft import PeftModel

    from rlvr_cli.models.loading import load_causal_lm, load_tokenizer

    target = output / "merged"
    console.info(f"merging the adapter into {resolved.name} -> {target}")
    dtype = (
        torch.bfloat16 if recipe.torch_dtype == "bfloat16" and torch.cuda.is_available() else torch.float32
    )
    base = load_causal_lm(resolved, revision=recipe.model_revision, dtype=dtype)
    merged = PeftModel.from_pretrained(base, str(output)).merge_and_unload()
    merged.save_pretrained(str(target), safe_serialization=True)
    load_tokenizer(str(output)).save_pretrained(str(target))
    return target
