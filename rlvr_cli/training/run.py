"""`rlvr train`: GRPO with verifiable rewards on this machine, with TRL.

    rlvr train --config configs/smoke-cpu.yaml                 # CPU, offline, minutes
    rlvr train --config configs/qwen2.5-0.5b-grpo.yaml         # one GPU, QLoRA
    accelerate launch --num_processes 8 -m rlvr_cli train --config configs/qwen2.5-0.5b-grpo.yaml

The SageMaker container runs this same function (`rlvr_cli/container/entry.py`). `run_training`
reads top to bottom: preflight, environment, data, model, rewards, trainer, train, save.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from rlvr_cli import __version__
from rlvr_cli.config.recipe import LoadedRecipe, Recipe, recipe_to_yaml
from rlvr_cli.core import console
from rlvr_cli.core.errors import ExitCode, RlvrError, UsageError
from rlvr_cli.core.files import sha256_file, write_text
from rlvr_cli.training.output_dir import (
    RECIPE_FILE,
    check_output_dir,
    read_run,
    recipe_fingerprint,
    write_run,
)

REQUIRED_COLUMNS = ("prompt", "final_answer")
REQUIRED_KEEP = ("id", "question", "prompt", "final_answer")
METRICS_FILE = "metrics.jsonl"  # every logged step, one JSON object per line


def read_dataset(path: Path, what: str) -> list[dict[str, Any]]:
    """Rows of a prepared JSON-lines dataset, checked for the columns GRPO needs."""
    if not path.is_file():
        raise RlvrError(f"{path}: {what} set not found; run `rlvr prepare` first or pass --data DIR")
    rows = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise RlvrError(
                    f"{path}:{lineno}: malformed JSON line ({exc.msg}); re-run `rlvr prepare`"
                ) from None
    if not rows:
        raise RlvrError(f"{path}: the {what} set is empty; re-run `rlvr prepare`")
    missing = [c for c in REQUIRED_COLUMNS if c not in rows[0]]
    if missing:
        raise RlvrError(
            f"{path}: rows lack {', '.join(missing)}; GRPO needs 'prompt' and 'final_answer' columns (`rlvr prepare` writes them)"
        )
    # `metadata` (a JSON string) carries what a task's checker needs beyond the gold text.
    keep = (
        ("id", "question", "prompt", "final_answer", "metadata") if "metadata" in rows[0] else REQUIRED_KEEP
    )
    return [{k: r.get(k) for k in keep} for r in rows]


def resolve_task(recipe: Recipe, train_path: Path) -> Any:
    """The task to train: the recipe's `task`, else the one the prepared data names, else GSM8K."""
    from rlvr_cli.data.build import read_manifest
    from rlvr_cli.tasks import get_task

    prepared = (read_manifest(train_path.parent.parent) or {}).get("task") or {}
    name = recipe.task or prepared.get("name") or "gsm8k"
    if recipe.task and prepared.get("name") and prepared["name"] != recipe.task:
        raise UsageError(
            f"the recipe's task is {recipe.task} but {train_path} was prepared for {prepared['name']}; "
            f"prepare the data with --task {recipe.task}, or drop `task` from the recipe"
        )
    return get_task(name, recipe.task_options or prepared.get("options") or {})


def check_prompt_lengths(prompts: list[str], tokenizer: Any, recipe: Recipe, context: int | None) -> int:
    """Fail before training if a prompt plus a full completion would not fit: never truncate."""
    from rlvr_cli.data.build import longest_by_chars

    longest = max(
        len(ids) for ids in tokenizer(longest_by_chars(prompts), add_special_tokens=True)["input_ids"]
    )
    limits = {
        name: value
        for name, value in (("max_seq_length", recipe.max_seq_length), ("the model's context", context))
        if value
    }
    for name, limit in limits.items():
        if longest + recipe.max_completion_length > limit:
            raise UsageError(
                f"the longest prompt has {longest} tokens; with max_completion_length {recipe.max_completion_length} "
                f"that exceeds {name} ({limit}); prepare fewer --shots or lower max_completion_length"
            )
    return longest


def _lora_config(recipe: Recipe) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=recipe.lora_r,
        lora_alpha=recipe.lora_alpha,
        lora_dropout=recipe.lora_dropout,
        target_modules=recipe.lora_target_modules,
        modules_to_save=recipe.lora_modules_to_save,
        task_type="CAUSAL_LM",
    )


def _grpo_config(recipe: Recipe, env: Any, checkpoint_dir: Path, stop_strings: list[str]) -> Any:
    from trl import GRPOConfig

    # rlvr logs to MLflow itself (tracking.py); other integrations go to transformers unchanged.
    report_to = [r for r in recipe.report_to if r != "mlflow"] or "none"
    try:
        return GRPOConfig(
            output_dir=str(checkpoint_dir),
            seed=recipe.seed,
            num_train_epochs=recipe.num_train_epochs,
            max_steps=recipe.max_steps,
            per_device_train_batch_size=recipe.per_device_train_batch_size,
            per_device_eval_batch_size=recipe.per_device_eval_batch_size,
            gradient_accumulation_steps=recipe.gradient_accumulation_steps,
            gradient_checkpointing=recipe.gradient_checkpointing,
            gradient_checkpointing_kwargs=recipe.gradient_checkpointing_kwargs,
            learning_rate=recipe.learning_rate,
            lr_scheduler_type=recipe.lr_scheduler_type,
            warmup_steps=recipe.warmup_ratio,  # transformers 5: a float below 1 is a ratio of all steps
            weight_decay=recipe.weight_decay,
            max_grad_norm=recipe.max_grad_norm,
            bf16=env.bf16,
            tf32=env.tf32,
            use_cpu=env.device == "cpu",
            logging_steps=recipe.logging_steps,
            logging_first_step=True,
            eval_strategy=recipe.eval_strategy,
            eval_steps=recipe.eval_steps,
            save_strategy=recipe.save_strategy,
            save_steps=recipe.save_steps,
            save_total_limit=recipe.save_total_limit,
            report_to=report_to,
            disable_tqdm=True,  # rlvr shows its own progress (trainer.ProgressDisplay)
            remove_unused_columns=False,
            num_generations=recipe.num_generations,
            max_completion_length=recipe.max_completion_length,
            temperature=recipe.temperature,
            top_p=recipe.top_p,
            beta=recipe.beta,
            loss_type=recipe.loss_type,
            epsilon=recipe.epsilon,
            num_iterations=recipe.num_iterations,
            reward_weights=recipe.weights,
            mask_truncated_completions=recipe.mask_truncated_completions,
            use_vllm=recipe.use_vllm,
            generation_kwargs=_generation_kwargs(recipe, stop_strings),
            log_completions=False,
        )
    except ValueError as exc:  # TRL's own consistency checks
        raise UsageError(f"recipe rejected by TRL: {str(exc).splitlines()[0]}") from None


def _generation_kwargs(recipe: Recipe, stop_strings: list[str]) -> dict[str, Any] | None:
    kwargs = dict(recipe.generation_kwargs or {})
    if recipe.use_vllm and recipe.stop_at_answer:
        kwargs["stop"] = [*kwargs.get("stop", []), *stop_strings]
    return kwargs or None


def _load_model(resolved: Any, recipe: Recipe, env: Any) -> Any:
    import torch

    from rlvr_cli.models.loading import load_causal_lm

    kwargs: dict[str, Any] = {
        "dtype": getattr(torch, env.dtype),
        "attn_implementation": env.attn_implementation,
        "trust_remote_code": recipe.trust_remote_code,
    }
    if env.load_in_4bit:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16 if env.bf16 else torch.float32,
        )
        kwargs["device_map"] = {"": env.local_rank}  # one full copy per process (DDP), not sharded
    model = load_causal_lm(resolved, revision=recipe.model_revision, **kwargs)
    if env.load_in_4bit:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=recipe.gradient_checkpointing,
            gradient_checkpointing_kwargs=recipe.gradient_checkpointing_kwargs,
        )
    return model


def run_training(
    loaded: LoadedRecipe, *, resume: bool = False, force: bool = False, merge: bool = False
) -> dict[str, Any]:
    recipe = loaded.recipe
    output = Path(recipe.output_dir)
    checkpoint_dir = Path(recipe.checkpoint_dir or recipe.output_dir)

    # --- preflight: bad input fails here, before torch is imported -------------------------------
    train_path = Path(recipe.train_dataset_path)
    train_rows = read_dataset(train_path, "train")
    eval_rows = (
        read_dataset(Path(recipe.test_dataset_path), "evaluation") if recipe.eval_strategy != "no" else None
    )
    task = resolve_task(recipe, train_path)
    resume_from = check_output_dir(output, checkpoint_dir, recipe, resume=resume, force=force)
    previous = read_run(output) if resume else None

    # --- environment ---------------------------------------------------------------------------------
    console.info("loading torch, transformers and trl ...")
    from rlvr_cli.training.hardware import (
        check_generation_batch,
        git_commit,
        package_versions,
        resolve_environment,
    )

    env = resolve_environment(recipe)
    for line in env.fallbacks:
        console.warn(line)
    check_generation_batch(recipe, env.world_size)
    is_main = env.local_rank == 0 and int(os.environ.get("RANK", "0")) == 0

    import torch  # noqa: F401  (after the cheap checks above)
    from datasets import Dataset
    from transformers import PrinterCallback, set_seed

    quiet_libraries()

    set_seed(recipe.seed)

    # --- data ------------------------------------------------------------------------------------------
    train_dataset = Dataset.from_list(train_rows)
    eval_dataset = Dataset.from_list(eval_rows) if eval_rows else None

    # --- model and tokenizer -------------------------------------------------------------------------
    from rlvr_cli.models.loading import load_config, load_tokenizer, resolve_model

    resolved = resolve_model(recipe.model_name_or_path)
    tokenizer = load_tokenizer(
        recipe.tokenizer_name_or_path or recipe.model_name_or_path, recipe.model_revision, padding_side="left"
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    # Checked before the (slow) model load: the context length is in the config.
    config = load_config(resolved, revision=recipe.model_revision, trust_remote_code=recipe.trust_remote_code)
    context = getattr(config.get_text_config(), "max_position_embeddings", None)
    longest_prompt = check_prompt_lengths(
        [r["prompt"] for r in train_rows + (eval_rows or [])], tokenizer, recipe, context
    )
    model = _load_model(resolved, recipe, env)

    # --- rewards -----------------------------------------------------------------------------------------
    from rlvr_cli.tasks.gsm8k.rewards import get_reward_funcs

    try:
        reward_funcs = get_reward_funcs(recipe.reward_funcs, task)
    except ValueError as exc:  # a custom reward that cannot be imported here
        raise UsageError(f"reward_funcs: {exc}") from None

    # --- tracking ------------------------------------------------------------------------------------------
    from rlvr_cli.tracking.trackers import NullTracker, flatten, make_tracker

    previous_mlflow = (previous or {}).get("mlflow") or {}
    tracker = (
        make_tracker(
            recipe.report_to,
            tracking_uri=recipe.mlflow_tracking_uri or previous_mlflow.get("tracking_uri"),
            experiment=recipe.mlflow_experiment_name,
            run_name=recipe.run_name or output.name,
            run_id=previous_mlflow.get("run_id") if resume else None,
            tags={"rlvr.version": __version__, "rlvr.recipe": recipe_fingerprint(recipe)},
        )
        if is_main
        else NullTracker()
    )

    # --- trainer -------------------------------------------------------------------------------------------
    from rlvr_cli.training.stopping import AnswerStop
    from rlvr_cli.training.trainer import (
        MetricsLine,
        ProgressDisplay,
        RlvrGRPOTrainer,
        StepTimer,
        StopOnSignal,
        TrackingCallback,
        stop_signals,
    )

    trainer_ref: dict[str, Any] = {}
    stopper, timer = StopOnSignal(), StepTimer()
    tracking = TrackingCallback(tracker, trainer_ref, recipe.max_completion_length)
    trainer = RlvrGRPOTrainer(
        model=model,
        reward_funcs=reward_funcs,
        args=_grpo_config(recipe, env, checkpoint_dir, task.stop_strings),
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=_lora_config(recipe) if recipe.use_peft else None,
        callbacks=[ProgressDisplay(), MetricsLine(), tracking, stopper, timer],
        answer_stop=AnswerStop(tokenizer, tokenizer.eos_token_id, task.stop_rule)
        if recipe.stop_at_answer
        else None,
        share_prefix=recipe.share_prompt_prefix,
    )
    trainer.remove_callback(PrinterCallback)  # it prints log dicts on stdout, which is for data
    trainer_ref["trainer"] = trainer

    run = {
        "rlvr_version": __version__,
        "status": "running",
        "recipe": recipe.model_dump(mode="json"),
        "recipe_fingerprint": recipe_fingerprint(recipe),
        "task": task.describe(),
        "model": {"name": resolved.name, "kind": resolved.kind, "path": resolved.path},
        "data": _data_record(train_path),
        "environment": env.as_dict(),
        "versions": package_versions(),
        "git_commit": git_commit(),
        "longest_prompt_tokens": longest_prompt,
        "mlflow": {
            "tracking_uri": tracker.tracking_uri,
            "experiment": tracker.experiment,
            "run_id": tracker.run_id,
        },
        "resumed_from": str(resume_from) if resume_from else None,
        "checkpoint_dir": str(checkpoint_dir),
    }
    if is_main:
        output.mkdir(parents=True, exist_ok=True)
        write_run(output, run)
        tracker.log_params(flatten({"recipe": run["recipe"], "effective": env.as_dict()}))
    console.info(
        f"training {resolved.name} on {env.device} ({env.device_name}) x{env.world_size}: {len(train_rows)} prompts, "
        f"{recipe.num_generations} completions each, longest prompt {longest_prompt} tokens"
        + (f", resuming from {resume_from}" if resume_from else "")
    )

    # --- train ---------------------------------------------------------------------------------------------
    try:
        with stop_signals(stopper):
            trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    except KeyboardInterrupt:
        run["status"] = "aborted"
        if is_main:
            write_run(output, run)
        tracker.finish("KILLED")
        raise
    except Exception as exc:
        run.update(
            status="failed", error=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        )
        if is_main:
            write_run(output, run)
        tracker.finish("FAILED")
        raise

    # --- save --------------------------------------------------------------------------------------------
    state = trainer.state
    history = [dict(h) for h in state.log_history]
    final = next((h for h in reversed(history) if "reward" in h), {})
    run.update(
        global_step=state.global_step,
        seconds_per_step=(sum(timer.durations) / len(timer.durations)) if timer.durations else None,
        final_metrics={k: v for k, v in final.items() if isinstance(v, int | float)},
    )
    if stopper.requested:
        latest = f"{checkpoint_dir}/checkpoint-{state.global_step}"
        run.update(status="interrupted", interrupted_by=stopper.requested, checkpoint=latest)
        if is_main:
            write_run(output, run)
        tracker.finish("KILLED")
        console.warn(
            f"stopped at step {state.global_step} ({stopper.requested}); checkpoint saved to {latest}. "
            f"Continue with: rlvr train {_config_hint(loaded)}--resume"
        )
        return {**run, "exit_code": int(ExitCode.INTERRUPTED)}

    trainer.save_model(str(output))  # adapter (or full model) + tokenizer
    if is_main:
        write_text(output / RECIPE_FILE, recipe_to_yaml(recipe))
        write_text(output / METRICS_FILE, "".join(json.dumps(h) + "\n" for h in history))
        from rlvr_cli.tracking.plots import reward_curves

        plot = reward_curves(history, output / "reward_curves.png", f"GRPO on {resolved.name}: {task.title}")
        if merge:
            run["merged"] = str(merge_adapter(output, resolved, recipe))
        run.update(status="completed", reward_curves=str(plot) if plot else None)
        write_run(output, run)
        tracker.log_dict(run, "rlvr_run.json")
        tracker.log_artifact(output / RECIPE_FILE)
        if plot:
            tracker.log_artifact(plot)
        tracker.finish("FINISHED")
        console.info(f"[green]done[/green]: {state.global_step} steps; adapter in {output}")
        console.info(f"next: rlvr eval --checkpoint {output} --baseline")
    return {**run, "exit_code": 0}


def quiet_libraries() -> None:
    """Keep library chatter (per-file progress bars, deprecations of their own internals) off the terminal."""
    import warnings

    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    warnings.filterwarnings(
        "ignore", message=r".*is deprecated and will be removed in (v6|version)", category=FutureWarning
    )


def _data_record(train_path: Path) -> dict[str, Any]:
    from rlvr_cli.data.build import read_manifest

    data_dir = train_path.parent.parent
    manifest = read_manifest(data_dir) or {}
    return {
        "train_dataset_path": str(train_path),
        "train_sha256": sha256_file(train_path),
        "prepare_manifest": {
            k: manifest.get(k) for k in ("source", "task", "shots", "seed", "counts", "files")
        }
        if manifest
        else None,
    }


def _config_hint(loaded: LoadedRecipe) -> str:
    return f"--config {loaded.source} " if loaded.source != "<defaults>" else ""


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
