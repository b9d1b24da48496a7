"""The machine-readable metrics line the trainer prints, and the regexes SageMaker reads it with.

    rlvr-metrics {"step": 5, "reward": 0.41, "accuracy": 0.25, "kl": 0.0012, ...}

One JSON object on one line of stderr per training log (never an evaluation's), written straight
to the stream: Rich would wrap it at 80 columns when stderr is not a terminal (CloudWatch is not),
and a wrapped line no longer matches. `METRIC_DEFINITIONS` go into CreateTrainingJob; they live
here, beside the format they parse. No heavy imports: the control plane imports this module.
"""

from __future__ import annotations

import json
import math
from typing import Any

PREFIX = "rlvr-metrics "
_NUMBER = r"(-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)"
# SageMaker metric name -> key in the line (TRL's log names).
METRICS = {
    "reward": "reward",
    "reward_std": "reward_std",
    "accuracy": "accuracy",
    "format_rate": "format_rate",
    "completion_length": "completions/mean_length",
    "cut_at_max_ratio": "completions/cut_at_max_ratio",
    "kl": "kl",
    "loss": "loss",
    "learning_rate": "learning_rate",
}
# The key in quotes: "reward" must not match "rewards/format_reward/mean" or "eval_reward".
METRIC_DEFINITIONS = [
    {"Name": name, "Regex": f'{PREFIX}.*"{key}": {_NUMBER}'} for name, key in METRICS.items()
]


def metrics_line(step: int, logs: dict[str, Any]) -> str | None:
    """The line for one training log; None for evaluation logs and the end-of-training summary."""
    if any(key.startswith("eval_") for key in logs) or "reward" not in logs:
        return None
    values = {
        key: value
        for key, value in logs.items()
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    }
    return PREFIX + json.dumps({"step": step, **values})
