"""TRL's GRPOConfig and peft's LoraConfig from a recipe: which recipe key fills which argument.

Most recipe keys are GRPOConfig arguments of the same name and meaning (`SAME_NAME`); a few are
renamed (`RENAMED`), fixed by rlvr (`FIXED`), or derived from the effective environment and the
task (`grpo_config`). tests/test_train.py checks that every name here is a GRPOConfig field and
every recipe key named here is a recipe key, so a TRL upgrade that renames one fails a test, not a
run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rlvr_cli.config.recipe import Recipe
from rlvr_cli.core.errors import UsageError, first_line

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
    "use_vllm",
)
# GRPOConfig argument <- recipe key.
RENAMED = {
    "warmup_steps": "warmup_ratio",  # transformers 5: a float below 1 is a ratio of all steps
}
# Set by rlvr whatever the recipe says.
FIXED: dict[str, Any] = {
    "logging_first_step": True,
    "disable_tqdm": True,  # rlvr shows its own progress (training.callbacks.ProgressDisplay)
    "remove_unused_columns": False,  # the rewards read final_answer and metadata
    "log_completions": False,  # rlvr logs a sample itself (training.callbacks.TrackingCallback)
}
# Computed below from the environment, the checkpoint directory and the task.
DERIVED = ("output_dir", "bf16", "tf32", "use_cpu", "report_to", "reward_weights", "generation_kwargs")


def grpo_config(recipe: Recipe, env: Any, checkpoint_dir: Path, stop_strings: list[str]) -> Any:
    from trl import GRPOConfig

    # rlvr logs to MLflow itself (rlvr_cli.tracking); other integrations go to transformers unchanged.
    report_to = [r for r in recipe.report_to if r != "mlflow"] or "none"
    kwargs: dict[str, Any] = {name: getattr(recipe, name) for name in SAME_NAME}
    kwargs.update({name: getattr(recipe, key) for name, key in RENAMED.items()})
    kwargs.update(FIXED)
    kwargs.update(
        output_dir=str(checkpoint_dir),
        bf16=env.bf16,
        tf32=env.tf32,
        use_cpu=env.device == "cpu",
        report_to=report_to,
        reward_weights=recipe.weights,
        generation_kwargs=generation_kwargs(recipe, stop_strings),
    )
    try:
        return GRPOConfig(**kwargs)
    except ValueError as exc:  # TRL's own consistency checks
        raise UsageError(f"recipe rejected by TRL: {first_line(exc, limit=None)}") from exc


def generation_kwargs(recipe: Recipe, stop_strings: list[str]) -> dict[str, Any] | None:
    kwargs = dict(recipe.generation_kwargs or {})
    if recipe.use_vllm and recipe.stop_at_answer:
        kwargs["stop"] = [*kwargs.get("stop", []), *stop_strings]
    return kwargs or None


def lora_config(recipe: Recipe) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=recipe.lora_r,
        lora_alpha=recipe.lora_alpha,
        lora_dropout=recipe.lora_dropout,
        target_modules=recipe.lora_target_modules,
        modules_to_save=recipe.lora_modules_to_save,
        task_type="CAUSAL_LM",
    )
