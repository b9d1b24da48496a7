"""`rlvr train`: GRPO with verifiable rewards on this machine, with TRL.

    rlvr train --config configs/smoke-cpu.yaml                 # CPU, offline, minutes
    rlvr train --config configs/qwen2.5-0.5b-grpo.yaml         # one GPU, QLoRA
    accelerate launch --num_processes 8 -m rlvr_cli train --config configs/qwen2.5-0.5b-grpo.yaml

The SageMaker container runs this same function (`rlvr_cli/container/entry.py`). `run_training`
is a sequence of named steps: `preflight` (bad input fails here, before torch is imported),
`prepare_environment`, `load_model`, `load_rewards`, `start_tracker`, `build_trainer`, then
training and `save_outputs` inside `recorded`, which keeps the run record (`rlvr_run.json`)
true: any exception after the start, while training or while saving, plotting or merging,
leaves the record "failed" with the error, never "running". It returns a `TrainResult`; the
progress it reports on stderr (loading, steps, warnings) is all it prints.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlvr_cli import __version__
from rlvr_cli.config.fingerprint import recipe_fingerprint
from rlvr_cli.config.loading import LoadedRecipe
from rlvr_cli.config.recipe import Recipe
from rlvr_cli.core import console
from rlvr_cli.core.errors import ExitCode, UsageError
from rlvr_cli.core.files import sha256_file
from rlvr_cli.core.progress import Progress
from rlvr_cli.data.layout import PreparedDir, read_rows
from rlvr_cli.models.loading import resolve_model
from rlvr_cli.models.offline import offline_name
from rlvr_cli.models.record import RunRecord
from rlvr_cli.tasks.base import Task
from rlvr_cli.training.finish import interrupted, save_outputs
from rlvr_cli.training.output_dir import check_output_dir

# Columns training keeps from a prepared row; `metadata` (a JSON string) carries what a task's
# checker needs beyond the gold text.
TRAIN_COLUMNS = ("id", "question", "prompt", "final_answer")


@dataclass
class TrainResult:
    """What `rlvr train` did: the run record as written, and how the command ends."""

    record: RunRecord
    output: Path
    exit_code: int = 0
    main_process: bool = True  # only the main process writes files and reports the outcome

    def to_dict(self) -> dict[str, Any]:
        """What `rlvr train --json` prints: the run record (every key, null when it does not apply) and
        the exit code."""
        return {**self.record.to_dict(complete=True), "exit_code": self.exit_code}

    def outcome(self) -> str | None:
        """One line on how the run ended, for the CLI and the container's log (None: nothing to say)."""
        record = self.record
        if record.status == "interrupted":
            return (
                f"stopped at step {record.global_step} ({record.interrupted_by}); "
                f"checkpoint saved to {record.checkpoint}"
            )
        if record.status == "completed" and self.main_process:
            return f"done: {record.global_step} steps; adapter in {self.output}"
        return None


@dataclass
class Inputs:
    """Everything checked before torch is imported."""

    train_path: Path
    train_rows: list[dict[str, Any]]
    eval_rows: list[dict[str, Any]] | None
    task: Task
    resume_from: Path | None
    previous: RunRecord | None  # the record of the run being resumed


@dataclass
class Loaded:
    resolved: Any  # rlvr_cli.models.loading.ResolvedModel
    tokenizer: Any
    model: Any
    longest_prompt: int


@dataclass
class BuiltTrainer:
    trainer: Any  # rlvr_cli.training.trainer.RlvrGRPOTrainer
    stopper: Any  # callbacks.StopOnSignal: set by SIGTERM or Ctrl-C
    timer: Any  # callbacks.StepTimer: seconds per step


# --- preflight ------------------------------------------------------------------------------------


def training_rows(path: Path, what: str) -> list[dict[str, Any]]:
    """A prepared split's rows, with the columns training uses."""
    rows = read_rows(path, what)
    keep = (*TRAIN_COLUMNS, "metadata") if any("metadata" in r for r in rows) else TRAIN_COLUMNS
    return [{k: r.get(k) for k in keep} for r in rows]


def resolve_task(recipe: Recipe, train_path: Path) -> Task:
    """The task to train (`rlvr_cli.data.task_choice`: the same rule as the SageMaker job and eval)."""
    from rlvr_cli.data.task_choice import choose_task
    from rlvr_cli.tasks import get_task

    manifest = PreparedDir.of_split_file(train_path).manifest()
    choice = choose_task(
        manifest.task if manifest else None,
        recipe.task,
        recipe.task_options,
        data=str(train_path.parent.parent),
    )
    if choice.note:
        console.notice(choice.note)
    return get_task(choice.name, choice.options)


def preflight(recipe: Recipe, output: Path, checkpoint_dir: Path, *, resume: bool, force: bool) -> Inputs:
    train_path = Path(recipe.train_dataset_path)
    train_rows = training_rows(train_path, "train")
    eval_rows = (
        training_rows(Path(recipe.test_dataset_path), "evaluation") if recipe.eval_strategy != "no" else None
    )
    task = resolve_task(recipe, train_path)
    if not offline_name(recipe.model_name_or_path):
        resolve_model(recipe.model_name_or_path)  # a local model that is not there, before torch loads
    resume_from = check_output_dir(output, checkpoint_dir, recipe, resume=resume, force=force)
    previous = RunRecord.read(output) if resume else None
    return Inputs(train_path, train_rows, eval_rows, task, resume_from, previous)


# --- environment, model, rewards, tracker, trainer ----------------------------------------------------


def prepare_environment(recipe: Recipe) -> tuple[Any, bool]:
    """The effective device and precision (with a warning per fallback), torch seeded; whether this
    process is the main one (it alone writes files and tracks)."""
    console.info("loading torch, transformers and trl ...")
    from rlvr_cli.training.hardware import check_generation_batch, resolve_environment, return_freed_memory

    return_freed_memory()
    env = resolve_environment(recipe)
    for line in env.fallbacks:
        console.warn(line)
    check_generation_batch(recipe, env.world_size)
    is_main = env.local_rank == 0 and int(os.environ.get("RANK", "0")) == 0

    from transformers import set_seed

    from rlvr_cli.models.loading import quiet_libraries

    quiet_libraries()
    set_seed(recipe.seed)
    return env, is_main


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


def load_model(recipe: Recipe, env: Any, inputs: Inputs) -> Loaded:
    """Tokenizer, prompt lengths checked against the limits (before the slow model load: the context
    length is in the config), then the policy model (4-bit and prepared for k-bit training with QLoRA)."""
    import torch

    from rlvr_cli.decoding.generation import keeps_every_key
    from rlvr_cli.models.loading import load_causal_lm, load_config, load_tokenizer, resolve_model

    resolved = resolve_model(recipe.model_name_or_path)
    tokenizer = load_tokenizer(
        recipe.tokenizer_name_or_path or recipe.model_name_or_path, recipe.model_revision, padding_side="left"
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    config = load_config(resolved, revision=recipe.model_revision, trust_remote_code=recipe.trust_remote_code)
    context = getattr(config.get_text_config(), "max_position_embeddings", None)
    prompts = [r["prompt"] for r in inputs.train_rows + (inputs.eval_rows or [])]
    longest_prompt = check_prompt_lengths(prompts, tokenizer, recipe, context)

    if recipe.share_prompt_prefix and not keeps_every_key(config):
        console.notice(
            f"{resolved.name} has sliding-window or chunked attention layers, whose caches keep only the last "
            "keys: its prompts are not shared (share_prompt_prefix has no effect)"
        )

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
    return Loaded(resolved, tokenizer, model, longest_prompt)


def load_rewards(recipe: Recipe, task: Task) -> list[Any]:
    from rlvr_cli.tasks.rewards import get_reward_funcs

    try:
        return get_reward_funcs(recipe.reward_funcs, task)
    except ValueError as exc:  # a custom reward that cannot be imported here
        raise UsageError(f"reward_funcs: {exc}") from exc


def start_tracker(
    recipe: Recipe, output: Path, previous: RunRecord | None, resume: bool, is_main: bool
) -> Any:
    """MLflow (or nothing) on the main process; a resumed run continues its MLflow run."""
    from rlvr_cli.tracking.trackers import NullTracker, make_tracker

    if not is_main:
        return NullTracker()
    previous_mlflow = (previous.mlflow if previous else None) or {}
    return make_tracker(
        recipe.report_to,
        tracking_uri=recipe.mlflow_tracking_uri or previous_mlflow.get("tracking_uri"),
        experiment=recipe.mlflow_experiment_name,
        run_name=recipe.run_name or output.name,
        run_id=previous_mlflow.get("run_id") if resume else None,
        tags={"rlvr.version": __version__, "rlvr.recipe": recipe_fingerprint(recipe)},
    )


def build_trainer(
    recipe: Recipe,
    env: Any,
    inputs: Inputs,
    loaded: Loaded,
    reward_funcs: list[Any],
    tracker: Any,
    checkpoint_dir: Path,
    progress: Progress | None = None,
) -> BuiltTrainer:
    from datasets import Dataset
    from transformers import PrinterCallback

    from rlvr_cli.decoding.stopping import AnswerStop
    from rlvr_cli.training.callbacks import (
        MetricsLine,
        ProgressDisplay,
        StepTimer,
        StopOnSignal,
        TrackingCallback,
    )
    from rlvr_cli.training.grpo_args import grpo_config, lora_config
    from rlvr_cli.training.set_aside import SetAside
    from rlvr_cli.training.trainer import RlvrGRPOTrainer

    tokenizer, task = loaded.tokenizer, inputs.task
    trainer_ref: dict[str, Any] = {}
    stopper, timer = StopOnSignal(), StepTimer()
    tracking = TrackingCallback(tracker, trainer_ref, recipe.max_completion_length)
    trainer = RlvrGRPOTrainer(
        model=loaded.model,
        reward_funcs=reward_funcs,
        args=grpo_config(recipe, env, checkpoint_dir, task.stop_strings),
        train_dataset=Dataset.from_list(inputs.train_rows),
        eval_dataset=Dataset.from_list(inputs.eval_rows) if inputs.eval_rows else None,
        processing_class=tokenizer,
        peft_config=lora_config(recipe) if recipe.use_peft else None,
        callbacks=[ProgressDisplay(progress), MetricsLine(), tracking, stopper, timer],
        answer_stop=AnswerStop(tokenizer, tokenizer.eos_token_id, task.stop_rule)
        if recipe.stop_at_answer
        else None,
        share_prefix=recipe.share_prompt_prefix,
        cuda_graphs=recipe.cuda_graphs,
        reward_names=list(recipe.reward_funcs),
        dynamic_sampling_rounds=recipe.dynamic_sampling_max_rounds if recipe.dynamic_sampling else None,
        set_aside=SetAside(recipe.difficulty_filter, recipe.difficulty_filter_steps)
        if recipe.difficulty_filter
        else None,
    )
    trainer.remove_callback(PrinterCallback)  # it prints log dicts on stdout, which is for data
    trainer_ref["trainer"] = trainer
    return BuiltTrainer(trainer, stopper, timer)


# --- the run record ---------------------------------------------------------------------------------


def new_record(
    recipe: Recipe, env: Any, inputs: Inputs, loaded: Loaded, tracker: Any, checkpoint_dir: Path
) -> RunRecord:
    from rlvr_cli.training.hardware import git_commit, package_versions

    resolved = loaded.resolved
    return RunRecord(
        rlvr_version=__version__,
        status="running",
        recipe=recipe.model_dump(mode="json"),
        recipe_fingerprint=recipe_fingerprint(recipe),
        task=inputs.task.describe(),
        model={"name": resolved.name, "kind": resolved.kind, "path": resolved.path},
        data=data_record(inputs.train_path),
        environment=env.as_dict(),
        versions=package_versions(),
        git_commit=git_commit(),
        longest_prompt_tokens=loaded.longest_prompt,
        mlflow={
            "tracking_uri": tracker.tracking_uri,
            "experiment": tracker.experiment,
            "run_id": tracker.run_id,
        },
        resumed_from=str(inputs.resume_from) if inputs.resume_from else None,
        checkpoint_dir=str(checkpoint_dir),
    )


def data_record(train_path: Path) -> dict[str, Any]:
    manifest = PreparedDir.of_split_file(train_path).manifest()
    return {
        "train_dataset_path": str(train_path),
        "train_sha256": sha256_file(train_path),
        "prepare_manifest": {
            k: getattr(manifest, k) for k in ("source", "task", "shots", "seed", "counts", "files")
        }
        if manifest
        else None,
    }


@contextlib.contextmanager
def recorded(record: RunRecord, output: Path | None, tracker: Any) -> Iterator[None]:
    """Keep the run record true to the end: an exception inside marks the run "failed" (a second
    Ctrl-C: "aborted"), rewrites the record (`output` None: not the main process, nothing written)
    and ends the tracker's run, then goes on up."""
    try:
        yield
    except KeyboardInterrupt:
        record.status = "aborted"
        if output is not None:
            record.write(output)
        tracker.finish("KILLED")
        raise
    except Exception as exc:
        record.fail(exc)
        if output is not None:
            record.write(output)
        tracker.finish("FAILED")
        raise


# --- the run ----------------------------------------------------------------------------------------


def run_training(
    loaded_recipe: LoadedRecipe,
    *,
    resume: bool = False,
    force: bool = False,
    merge: bool = False,
    progress: Progress | None = None,
) -> TrainResult:
    recipe = loaded_recipe.recipe
    output = Path(recipe.output_dir)
    checkpoint_dir = Path(recipe.checkpoint_dir or recipe.output_dir)

    inputs = preflight(recipe, output, checkpoint_dir, resume=resume, force=force)
    reward_funcs = load_rewards(recipe, inputs.task)  # a reward that cannot be had: before any model loads
    env, is_main = prepare_environment(recipe)
    loaded = load_model(recipe, env, inputs)
    tracker = start_tracker(recipe, output, inputs.previous, resume, is_main)
    built = build_trainer(recipe, env, inputs, loaded, reward_funcs, tracker, checkpoint_dir, progress)
    record = new_record(recipe, env, inputs, loaded, tracker, checkpoint_dir)
    written_to = output if is_main else None

    with recorded(record, written_to, tracker):
        if is_main:
            output.mkdir(parents=True, exist_ok=True)
            record.write(output)
            from rlvr_cli.tracking.trackers import flatten

            tracker.log_params(flatten({"recipe": record.recipe, "effective": env.as_dict()}))
        console.info(
            f"training {loaded.resolved.name} on {env.device} ({env.device_name}) x{env.world_size}: "
            f"{len(inputs.train_rows)} prompts, {recipe.num_generations} completions each, longest prompt "
            f"{loaded.longest_prompt} tokens"
            + (f", resuming from {inputs.resume_from}" if inputs.resume_from else "")
        )
        console.info(f"generator: {env.generator}")
        history = train(built, inputs.resume_from)
        record.ended(built.trainer.state.global_step, built.timer.durations, history)

        if built.stopper.requested:
            interrupted(
                record,
                built.stopper.requested,
                built.trainer.state.global_step,
                written_to,
                tracker,
                checkpoint_dir,
            )
            return TrainResult(record, output, int(ExitCode.INTERRUPTED), is_main)
        built.trainer.save_model(str(output))  # adapter (or full model) + tokenizer
        if is_main:
            save_outputs(record, recipe, output, history, loaded.resolved, inputs.task, tracker, merge=merge)
    return TrainResult(record, output, 0, is_main)


def train(built: BuiltTrainer, resume_from: Path | None) -> list[dict[str, Any]]:
    """Run TRL's training loop (SIGTERM and the first Ctrl-C stop it after a step); its log history."""
    from rlvr_cli.training.callbacks import stop_signals

    with stop_signals(built.stopper):
        built.trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    return [dict(h) for h in built.trainer.state.log_history]
