"""A recipe's fingerprint: what makes two recipes train the same thing.

The fingerprint is in every run record (`rlvr_run.json`), in MLflow's `rlvr.recipe` tag and in a
SageMaker job's `rlvr:recipe` tag. It leaves out the keys that may change between an interrupted
run and its resumption (`RESUMABLE_KEYS`) and where the data lives (`LOCATION_KEYS`: the run
record keeps the data's checksums), so a SageMaker job's tag equals the fingerprint of the recipe
its container resolves, with /opt/ml paths. No pydantic import: the control plane uses it.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rlvr_cli.config.recipe import Recipe

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
LOCATION_KEYS = {"train_dataset_path", "test_dataset_path"}


def recipe_fingerprint(recipe: Recipe) -> str:
    ignored = RESUMABLE_KEYS | LOCATION_KEYS
    data = {k: v for k, v in recipe.model_dump(mode="json").items() if k not in ignored}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def recipe_changes(old: dict[str, Any], new: Recipe) -> list[str]:
    """The keys in which `new` trains something else than the recipe `old` (a run record's)."""
    current = new.model_dump(mode="json")
    return sorted(
        k for k in set(old) | set(current) if k not in RESUMABLE_KEYS and old.get(k) != current.get(k)
    )
