"""A training run's output directory: whether a new run may use it, and its checkpoints.

OUTPUT/rlvr_run.json        the run record (`rlvr_cli.models.record`)
OUTPUT/recipe.yaml          the resolved recipe
OUTPUT/checkpoint-N/        checkpoints (or in `checkpoint_dir`), the last kept for --resume
OUTPUT/adapter_*, tokenizer*, metrics.jsonl, reward_curves.png, merged/   once completed
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from rlvr_cli.config.fingerprint import recipe_changes
from rlvr_cli.config.recipe import Recipe
from rlvr_cli.core.errors import RlvrError
from rlvr_cli.models.record import RunRecord

RECIPE_FILE = "recipe.yaml"
METRICS_FILE = "metrics.jsonl"  # every logged step, one JSON object per line
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def checkpoints(directory: Path) -> list[Path]:
    """`checkpoint-N` directories that hold a complete checkpoint, oldest first."""
    if not directory.is_dir():
        return []
    found = []
    for child in directory.iterdir():
        match = _CHECKPOINT.match(child.name)
        if match and child.is_dir() and (child / "trainer_state.json").is_file():
            found.append((int(match.group(1)), child))
    return [p for _, p in sorted(found)]


def check_output_dir(
    output: Path, checkpoint_dir: Path, recipe: Recipe, *, resume: bool, force: bool
) -> Path | None:
    """Decide whether this run may use `output`; return the checkpoint to resume from, if any."""
    for directory, what in ((output, "--output"), (checkpoint_dir, "checkpoint_dir")):
        if directory.exists() and not directory.is_dir():
            raise RlvrError(f"{directory}: a file, not a directory; give {what} a directory (new or a run's)")
    existing = RunRecord.read(output)
    found = checkpoints(checkpoint_dir)
    if resume:
        if not found:
            raise RlvrError(
                f"{checkpoint_dir}: no checkpoint to resume from; start without --resume "
                "(checkpoints are saved every save_steps, and on SIGTERM or Ctrl-C)"
            )
        if existing and existing.recipe:
            changed = recipe_changes(existing.recipe, recipe)
            if changed and not force:
                raise RlvrError(
                    f"{output}: the recipe differs from the run being resumed in {', '.join(changed)}; "
                    "resume with the same recipe, or pass --force to resume anyway"
                )
        return found[-1]
    busy = existing is not None or found or (output.is_dir() and any(output.iterdir()))
    if busy and not force:
        hint = "; to continue it pass --resume" if found else ""
        raise RlvrError(
            f"{output}: already holds another run{hint}; pass --force to replace it, or --output another directory"
        )
    if force:
        for checkpoint in found:  # stale checkpoints would be picked up by a later --resume
            shutil.rmtree(checkpoint)
    return None
