"""TRL's GRPOConfig and peft's LoraConfig from a recipe.

Which recipe key fills which GRPOConfig argument is in `rlvr_cli.config.trl` (`SAME_NAME`,
`RENAMED`, `FIXED`, `DERIVED`), beside the check of the recipe's `trl:` section, whose fields go in
last. tests/test_train.py checks that every name there is a GRPOConfig field and every recipe key
named there is a recipe key, so a TRL upgrade that renames one fails a test, not a run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rlvr_cli.config.recipe import Recipe
from rlvr_cli.config.trl import FIXED, RENAMED, SAME_NAME
from rlvr_cli.core.errors import UsageError, first_line


def grpo_config(recipe: Recipe, env: Any, checkpoint_dir: Path, stop_strings: list[str]) -> Any:
    from trl import GRPOConfig

    # rlvr logs to MLflow itself (rlvr_cli.tracking); other integrations go to transformers unchanged.
    report_to = [r for r in recipe.report_to if r != "mlflow"] or "none"
    kwargs: dict[str, Any] = {name: getattr(recipe, name) for name in SAME_NAME}
    kwargs.update({name: getattr(recipe, key) for name, key in RENAMED.items()})
    kwargs.update(FIXED)
    # Recipe keys whose GRPOConfig value rlvr resolves: the effective environment, the task, weights.
    kwargs.update(
        output_dir=str(checkpoint_dir),
        bf16=env.bf16,
        tf32=env.tf32,
        use_cpu=env.device == "cpu",
        use_vllm=env.use_vllm,
        report_to=report_to,
        reward_weights=recipe.weights,
        generation_kwargs=generation_kwargs(recipe, env.use_vllm, stop_strings),
    )
    if env.use_vllm:
        # vLLM in the training processes, and TRL's correction for the gap between vLLM's sampling
        # log-probs and the trainer's (both TRL's defaults today, stated so an upgrade cannot move
        # them); `trl: {vllm_mode: server}` points at a separate server instead.
        kwargs.update(vllm_mode="colocate", vllm_importance_sampling_correction=True)
    kwargs.update(recipe.trl)  # checked at load time: fields rlvr does not set (config/trl.py)
    try:
        return GRPOConfig(**kwargs)
    except ValueError as exc:  # TRL's own consistency checks
        raise UsageError(f"recipe rejected by TRL: {first_line(exc, limit=None)}") from exc


def generation_kwargs(recipe: Recipe, use_vllm: bool, stop_strings: list[str]) -> dict[str, Any] | None:
    kwargs = dict(recipe.generation_kwargs or {})
    if use_vllm and recipe.stop_at_answer:
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
