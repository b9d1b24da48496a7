"""A training run's directory: what it holds, whether a new run may use it, and its manifest.

`OUTPUT/rlvr_run.json` is written when a run starts (status "running") and rewritten when it ends
("completed", "interrupted" or "failed"). It records the resolved recipe, effective device and
precision, package versions, the data's checksums and the MLflow run, so any adapter can be traced
back to exactly what produced it.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from rlvr_cli.config.recipe import Recipe
from rlvr_cli.core.errors import RlvrError
from rlvr_cli.core.files import write_json

RUN_FILE = "rlvr_run.json"
RECIPE_FILE = "recipe.yaml"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
# Keys that may change between an interrupted run and its resumption without making it another run.
RESUMABLE_KEYS = {
    "max_steps",
    "num_train_epochs",
    "save_strategy",
    "save_steps",
    "save_total_limit",
    "logging_steps",
    "report_to",
    "mlflow_tracking_uri",
    "mlflow_experiment_name",
    "run_name",
    "remote",
    "output_dir",
    "checkpoint_dir",
    "eval_strategy",
    "eval_steps",
    "per_device_eval_batch_size",
}


# Where the data lives is not what a recipe trains (rlvr_run.json records the data's checksums).
# Leaving the paths out of the fingerprint makes a SageMaker job's rlvr:recipe tag equal the
# fingerprint of the recipe its container resolves, with /opt/ml paths.
LOCATION_KEYS = {"train_dataset_path", "test_dataset_path"}


def recipe_fingerprint(recipe: Recipe) -> str:
    ignored = RESUMABLE_KEYS | LOCATION_KEYS
    data = {k: v for k, v in recipe.model_dump(mode="json").items() if k not in ignored}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def recipe_changes(old: dict[str, Any], new: Recipe) -> list[str]:
    current = new.model_dump(mode="json")
    return sorted(
        k for k in set(old) | set(current) if k not in RESUMABLE_KEYS and old.get(k) != current.get(k)
    )


def read_run(directory: Path) -> dict[str, Any] | None:
    path = directory / RUN_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None


def write_run(directory: Path, run: dict[str, Any]) -> None:
    write_json(directory / RUN_FILE, run)


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
    existing = read_run(output)
    found = checkpoints(checkpoint_dir)
    if resume:
        if not found:
            raise RlvrError(
                f"{checkpoint_dir}: no checkpoint to resume from; start without --resume "
                "(checkpoints are saved every save_steps, and on SIGTERM or Ctrl-C)"
            )
        if existing and isinstance(existing.get("recipe"), dict):
            changed = recipe_changes(existing["recipe"], recipe)
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
        import shutil

        for checkpoint in found:  # stale checkpoints would be picked up by a later --resume
            shutil.rmtree(checkpoint)
    return None
