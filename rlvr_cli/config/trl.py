"""The recipe's `trl:` section: any field of TRL's GRPOConfig that rlvr does not set itself.

    trl:
      importance_sampling_level: sequence     # GSPO
      epsilon_high: 0.28                      # DAPO's clip-higher

rlvr sets part of GRPOConfig from its own recipe keys (`SAME_NAME`, `RENAMED`), fixes a few
(`FIXED`) and derives others from the environment and the task (`DERIVED`); those are refused in
`trl:` with a pointer to the recipe key. Every other field of the installed TRL's GRPOConfig may be
given there, checked against `trl_fields.json` (its field names and the JSON kinds each accepts,
written from TRL by scripts/trl_fields.py; tests/test_trl_section.py compares it with the installed
TRL), so checking a recipe needs no TRL import. training/grpo_args.py passes the section on last.
"""

from __future__ import annotations

import difflib
import functools
import json
from pathlib import Path
from typing import Any

TABLE = Path(__file__).resolve().parent / "trl_fields.json"

# GRPOConfig arguments that take the recipe key of the same name as it is.
SAME_NAME = (
    "seed",
    "num_train_epochs",
    "max_steps",
    "per_device_train_batch_size",
    "per_device_eval_batch_size",
    "gradient_accumulation_steps",
    "gradient_checkpointing",
    "gradient_checkpointing_kwargs",
    "learning_rate",
    "lr_scheduler_type",
    "weight_decay",
    "max_grad_norm",
    "logging_steps",
    "eval_strategy",
    "eval_steps",
    "save_strategy",
    "save_steps",
    "save_total_limit",
    "num_generations",
    "max_completion_length",
    "temperature",
    "top_p",
    "beta",
    "loss_type",
    "epsilon",
    "num_iterations",
    "mask_truncated_completions",
    "generation_kwargs",
    "bf16",
    "tf32",
    "report_to",
    "reward_weights",
)
# GRPOConfig argument <- recipe key.
RENAMED = {
    "warmup_steps": "warmup_ratio",  # transformers 5: a float below 1 is a ratio of all steps
    "output_dir": "checkpoint_dir",  # checkpoints go there; the model to the recipe's output_dir
}
# Set by rlvr whatever the recipe says, and why.
FIXED: dict[str, Any] = {
    "logging_first_step": True,
    "disable_tqdm": True,  # rlvr shows its own progress (training.callbacks.ProgressDisplay)
    "remove_unused_columns": False,  # the rewards read final_answer and metadata
    "log_completions": False,  # rlvr logs a sample itself (training.callbacks.TrackingCallback)
}
# Derived from the effective environment: the device rlvr found, the generator it chose.
DERIVED = ("use_cpu", "use_vllm")
# Recipe keys among them: rlvr resolves the recipe's value ("auto") before TRL sees it.
RESOLVED = ("use_vllm",)


@functools.cache
def table() -> dict[str, Any]:
    return json.loads(TABLE.read_text(encoding="utf-8"))


def loss_types() -> list[str]:
    """The loss formulations the installed TRL supports (GRPOConfig.loss_type)."""
    return list(table()["loss_types"])


def lr_scheduler_types() -> list[str]:
    """The learning-rate schedules the installed transformers knows (lr_scheduler_type)."""
    return list(table()["lr_scheduler_types"])


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    for kind, types in (("bool", bool), ("int", int), ("float", float), ("str", str), ("list", list)):
        if isinstance(value, types):
            return kind
    return "dict" if isinstance(value, dict) else type(value).__name__


def check_section(section: Any) -> list[tuple[str | None, str]]:
    """Problems with a `trl:` section, as (key or None, message); none for a valid one."""
    if section is None:
        return []
    if not isinstance(section, dict):
        return [(None, f"a mapping of GRPOConfig fields, got {_kind(section)}")]
    fields: dict[str, list[str]] = table()["fields"]
    problems: list[tuple[str | None, str]] = []
    for key, value in section.items():
        key = str(key)
        if key in SAME_NAME or key in RESOLVED:
            problems.append((key, f"rlvr sets it from the recipe key `{key}`: set that instead"))
        elif key in RENAMED:
            problems.append((key, f"rlvr sets it from the recipe key `{RENAMED[key]}`: set that instead"))
        elif key in FIXED or key in DERIVED:
            problems.append((key, "rlvr sets it itself (training/grpo_args.py); it cannot be changed"))
        elif key not in fields:
            match = difflib.get_close_matches(key, list(fields), n=1, cutoff=0.6)
            hint = f"; did you mean '{match[0]}'?" if match else ""
            problems.append((key, f"not a field of TRL {table()['trl_version']}'s GRPOConfig{hint}"))
        else:
            accepted = fields[key]
            kind = _kind(value)
            if kind not in accepted and not (kind == "int" and "float" in accepted):
                problems.append((key, f"expects {' or '.join(accepted) or 'a Python object'}, got {kind}"))
    return problems
