"""The recipe schema: one pydantic model tree, a flat TRL-style part and a nested `remote:` section.

A recipe is flat like the reference's (TRL-style) YAML, so a user who has that file can run it
unchanged, plus a nested `remote:` section for SageMaker. Every model forbids unknown keys: a typo
is an error that names the closest valid key, never a silently ignored setting. Loading a file with
overrides is `rlvr_cli.config.loading`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from rlvr_cli.config.patterns import MLFLOW_ARN
from rlvr_cli.config.remote import RemoteConfig, Strict
from rlvr_cli.tasks.rewards import BUILTIN_REWARDS, check_reward_names


def dynamic_sampling_problem(
    rows_per_device: int, group_size: int, scale_rewards: Any, aggregation: Any
) -> str | None:
    """Why the recipe's dynamic_sampling cannot serve these TRL settings, or None."""
    if rows_per_device % group_size:
        return (
            f"dynamic_sampling keeps whole groups on each device, but a device generates {rows_per_device} "
            f"completions per batch, not a multiple of num_generations ({group_size}): make "
            "per_device_train_batch_size x steps_per_generation a multiple of it"
        )
    if scale_rewards == "batch" or aggregation != "sum_then_normalize":
        return (
            "dynamic_sampling needs advantages computed within each group: drop trl.scale_rewards: batch "
            "and trl.multi_objective_aggregation: normalize_then_sum, or set dynamic_sampling: false"
        )
    return None


class Recipe(Strict):
    """A GRPO training recipe. Defaults are the reference recipe (Qwen2.5-0.5B, QLoRA, GSM8K 8-shot)."""

    # --- model -----------------------------------------------------------------------------------
    model_name_or_path: str = Field(
        "Qwen/Qwen2.5-0.5B", description="Hub id, local directory, or an offline model name (`smollm2-135m`)"
    )
    model_revision: str = Field("main", description="Hub revision (branch, tag or commit)")
    tokenizer_name_or_path: str | None = Field(None, description="tokenizer if not the model's own")
    torch_dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "bfloat16", description="dtype of the base weights (4-bit compute dtype when load_in_4bit)"
    )
    attn_implementation: Literal["eager", "sdpa", "flash_attention_2", "flash_attention_3"] = Field(
        "sdpa",
        description="sdpa runs torch's flash kernels on CUDA; flash_attention_2/3 need flash-attn "
        "(not in the image) and fall back to sdpa with a warning without it or CUDA",
    )
    bf16: bool = Field(True, description="bf16 mixed precision (GPU); ignored with a warning on CPU")
    tf32: bool | None = Field(True, description="allow TF32 matmuls on Ampere+ GPUs")
    load_in_4bit: bool = Field(
        True, description="QLoRA: 4-bit NF4 base with double quantisation (needs CUDA)"
    )
    trust_remote_code: bool = Field(False, description="allow model code from the Hub")
    # --- LoRA --------------------------------------------------------------------------------------
    use_peft: bool = Field(True, description="train LoRA adapters (false: full fine-tuning)")
    lora_r: int = Field(16, ge=1, description="LoRA rank")
    lora_alpha: int = Field(16, ge=1, description="LoRA alpha")
    # 0 by default: GRPO's ratio and KL compare log-probs of the same tokens across passes, which
    # dropout makes noisy; and on all-linear targets it keeps a dropped copy of every LoRA input for
    # the backward (benchmarks/RESULTS.md: +3.7 GB and twice the policy forward's time on CPU).
    lora_dropout: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="LoRA dropout (0: GRPO compares log-probs across passes; dropout adds noise and memory)",
    )
    lora_target_modules: list[str] | Literal["all-linear"] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj", "gate_proj"],
        description="modules that get adapters",
    )
    lora_modules_to_save: list[str] | None = Field(
        default_factory=lambda: ["lm_head", "embed_tokens"],
        description="modules trained in full and saved with the adapter",
    )
    # --- optimisation ------------------------------------------------------------------------------
    num_train_epochs: float = Field(2, gt=0, description="passes over the train set")
    max_steps: int = Field(-1, description="stop after this many optimizer steps (-1: use num_train_epochs)")
    per_device_train_batch_size: int = Field(16, ge=1, description="completions per device per micro-batch")
    per_device_eval_batch_size: int = Field(16, ge=1, description="completions per device per eval batch")
    gradient_accumulation_steps: int = Field(2, ge=1, description="micro-batches per optimizer step")
    gradient_checkpointing: bool = Field(True, description="trade compute for activation memory")
    gradient_checkpointing_kwargs: dict[str, Any] | None = Field(
        default_factory=lambda: {"use_reentrant": True}, description="passed to torch.utils.checkpoint"
    )
    learning_rate: float = Field(1.84e-4, gt=0, allow_inf_nan=False, description="peak learning rate")
    lr_scheduler_type: str = Field("cosine", description="transformers scheduler name")
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="share of steps spent warming up")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    max_grad_norm: float = Field(1.0, gt=0, description="gradient clipping")
    seed: int = Field(
        42, ge=0, le=2**32 - 1, description="seed for sampling, LoRA init and data order"
    )  # the range numpy's and transformers' seeding accepts
    # --- GRPO --------------------------------------------------------------------------------------
    num_generations: int = Field(
        8, ge=2, description="completions per prompt; GRPO compares them within the group"
    )
    max_completion_length: int = Field(512, ge=1, description="most new tokens per completion")
    temperature: float = Field(1.0, gt=0, description="sampling temperature for training completions")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling")
    beta: float = Field(0.04, ge=0, description="KL penalty against the base model (0: no reference model)")
    loss_type: str = Field(
        "dapo",
        description="GRPO loss formulation: any TRL supports (grpo, dr_grpo, dapo, bnpo, cispo, sapo, ...); "
        "dapo averages over tokens of the whole batch",
    )
    epsilon: float = Field(0.2, gt=0, description="PPO-style clip range")
    num_iterations: int = Field(1, ge=1, description="optimisation passes per generated batch")
    task: str | None = Field(
        None,
        description="verifiable task: gsm8k, reasoning-gym, math, custom, or one a package registers; "
        "default: the task the prepared data was made for (manifest.json), else gsm8k",
    )
    task_options: dict[str, Any] = Field(
        default_factory=dict,
        description="the task's options (e.g. `{compare: exact}` for custom); default: as prepared",
    )
    reward_funcs: list[str] = Field(
        default_factory=lambda: ["format", "correctness"],
        description=f"rewards by name ({', '.join(BUILTIN_REWARDS)}) or custom ones as package.module:function",
    )
    reward_weights: list[float] | None = Field(None, description="one weight per reward (default: all 1.0)")
    stop_at_answer: bool = Field(
        True,
        description="end each completion after its answer line (`#### ...\\n`) or an invented `Question:`",
    )
    share_prompt_prefix: bool = Field(
        True,
        description="run each shared prompt part (the exemplars, each question) once per batch instead "
        "of once per completion: in HF generation and in the policy and reference forward passes",
    )
    cuda_graphs: bool = Field(
        True,
        description="on a CUDA GPU, rlvr's generator decodes from fixed buffers, each step replayed as "
        "one captured CUDA graph instead of hundreds of kernel launches; false: the eager loop",
    )
    dynamic_sampling: bool = Field(
        False,
        description="train only on groups whose completions' rewards differ (DAPO's dynamic sampling): "
        "groups that all earned the same reward are replaced by groups of fresh prompts",
    )
    dynamic_sampling_max_rounds: int = Field(
        3,
        ge=1,
        description="with dynamic_sampling: most extra generation rounds per batch; after them, groups "
        "with equal rewards complete the batch (logged)",
    )
    difficulty_filter: int = Field(
        0,
        ge=0,
        description="set a prompt aside after this many groups in a row whose completions all earned the "
        "same reward (all right or all wrong); batches then draw fresh prompts instead (0: off)",
    )
    difficulty_filter_steps: int = Field(
        50, ge=1, description="with difficulty_filter: optimizer steps a set-aside prompt sits out"
    )
    mask_truncated_completions: bool = Field(
        False, description="exclude completions cut at max_completion_length from the loss"
    )
    use_vllm: bool | Literal["auto"] = Field(
        "auto",
        description="generate with vLLM, colocated with training (TRL's vllm_mode colocate, importance-sampling "
        "correction on); auto: where a CUDA GPU and a vLLM that TRL supports are installed (the training "
        "image ships one), else rlvr's own generator",
    )
    generation_kwargs: dict[str, Any] | None = Field(
        None,
        description="extra generation settings for TRL (transformers GenerationConfig, or vLLM SamplingParams)",
    )
    trl: dict[str, Any] = Field(
        default_factory=dict,
        description="any other field of TRL's GRPOConfig, passed on as it is (e.g. importance_sampling_level: "
        "sequence, epsilon_high: 0.28); checked against the installed TRL's fields",
    )
    max_seq_length: int | None = Field(
        2048,
        ge=16,
        description="limit on prompt + completion tokens, checked before training (never truncates)",
    )
    packing: bool | None = Field(
        None, description="accepted for compatibility with SFT recipes; GRPO does not pack"
    )
    # --- data, output, checkpoints -----------------------------------------------------------------
    train_dataset_path: str = Field(
        "data/train/dataset.json", min_length=1, description="prepared train set (JSON lines)"
    )
    test_dataset_path: str | None = Field(
        "data/val/dataset.json", description="set evaluated during training when eval_strategy is not 'no'"
    )
    output_dir: str = Field(
        "outputs/qwen2.5-0.5b-grpo", min_length=1, description="adapter, tokenizer, run manifest, reward plot"
    )
    checkpoint_dir: str | None = Field(
        None, description="checkpoints (checkpoint-N/); default: output_dir. SageMaker: /opt/ml/checkpoints"
    )
    logging_steps: int = Field(5, ge=1, description="log metrics every N steps")
    eval_strategy: Literal["no", "steps", "epoch"] = Field(
        "no", description="evaluate on test_dataset_path during training"
    )
    eval_steps: int | None = Field(None, ge=1, description="with eval_strategy: steps")
    save_strategy: Literal["no", "steps", "epoch"] = Field("steps", description="checkpoint schedule")
    save_steps: int = Field(50, ge=1, description="with save_strategy: steps")
    save_total_limit: int | None = Field(2, ge=1, description="checkpoints kept")
    # --- tracking ----------------------------------------------------------------------------------
    report_to: list[str] = Field(
        default_factory=lambda: ["mlflow"], description="'mlflow', 'none', or other transformers integrations"
    )
    mlflow_tracking_uri: str | None = Field(
        None, description="default: $MLFLOW_TRACKING_URI, else sqlite:///mlruns/mlflow.db in the working dir"
    )
    mlflow_experiment_name: str = Field("rlvr", description="MLflow experiment")
    run_name: str | None = Field(None, description="MLflow run name; default derived from the output dir")
    # --- SageMaker ---------------------------------------------------------------------------------
    remote: RemoteConfig = Field(default_factory=RemoteConfig, description="SageMaker job settings")

    @field_validator("report_to", mode="before")
    @classmethod
    def _report_to(cls, v: Any) -> Any:
        if v is None:
            return []
        if isinstance(v, str):
            v = [v]
        if isinstance(v, list) and any(x in ("none", "None") for x in v):
            return []
        return v

    @field_validator("use_vllm", mode="before")
    @classmethod
    def _use_vllm(cls, v: Any) -> Any:
        # One message for a wrong value, not one per member of the union.
        if isinstance(v, bool) or v == "auto":
            return v
        raise ValueError(f"expected true, false or auto, got {v!r}")

    @field_validator("lora_target_modules", "lora_modules_to_save", mode="before")
    @classmethod
    def _module_list(cls, v: Any, info: ValidationInfo) -> Any:
        if isinstance(v, str) and v != "all-linear":
            return [x.strip() for x in v.split(",") if x.strip()]
        targets = info.field_name == "lora_target_modules"
        if isinstance(v, (str, list)) or (v is None and not targets):
            return v
        # One message for a wrong kind of value, not one per member of lora_target_modules' union.
        choices = " or all-linear" if targets else ""
        raise ValueError(f"expected module names (a list, or a comma-separated string){choices}, got {v!r}")

    @field_validator("loss_type")
    @classmethod
    def _loss_type(cls, v: str) -> str:
        from rlvr_cli.config.trl import loss_types

        if v not in loss_types():
            raise ValueError(f"{v!r} is not a loss TRL supports: {', '.join(loss_types())}")
        return v

    @field_validator("lr_scheduler_type")
    @classmethod
    def _lr_scheduler(cls, v: str) -> str:
        import difflib

        from rlvr_cli.config.trl import lr_scheduler_types

        if v not in lr_scheduler_types():
            close = difflib.get_close_matches(v, lr_scheduler_types(), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ValueError(
                f"{v!r} is not a transformers scheduler; {hint}valid: {', '.join(lr_scheduler_types())}"
            )
        return v

    @field_validator("reward_funcs")
    @classmethod
    def _rewards(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError(f"at least one reward is needed; valid rewards: {', '.join(BUILTIN_REWARDS)}")
        # Names only: a custom reward's module may exist only where training runs (the image), so
        # it is imported by `rlvr train`, not by validation (`train --remote` must not need it).
        check_reward_names(v)
        return v

    @field_validator("mlflow_tracking_uri")
    @classmethod
    def _tracking(cls, v: str | None) -> str | None:
        if v and v.startswith("arn:") and not MLFLOW_ARN.match(v):
            raise ValueError(
                "an ARN tracking URI must look like arn:aws:sagemaker:REGION:ACCOUNT:mlflow-tracking-server/NAME"
            )
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Recipe:
        if self.reward_weights is not None and len(self.reward_weights) != len(self.reward_funcs):
            raise ValueError(
                f"reward_weights has {len(self.reward_weights)} values but reward_funcs has {len(self.reward_funcs)}: give one weight per reward"
            )
        if self.load_in_4bit and not self.use_peft:
            raise ValueError(
                "load_in_4bit (QLoRA) trains adapters on a frozen 4-bit base: set use_peft: true"
            )
        if self.eval_strategy == "steps" and not self.eval_steps:
            raise ValueError("eval_strategy 'steps' needs eval_steps")
        if self.eval_strategy != "no" and not self.test_dataset_path:
            raise ValueError("eval_strategy needs test_dataset_path")
        if self.dynamic_sampling:
            self._check_dynamic_sampling()
        return self

    def _check_dynamic_sampling(self) -> None:
        # The trainer checks again with TRL's resolved values (generation_batch_size, processes).
        steps = self.trl.get("steps_per_generation")
        if steps is None and "generation_batch_size" not in self.trl:
            steps = self.gradient_accumulation_steps
        problem = dynamic_sampling_problem(
            self.per_device_train_batch_size * steps if isinstance(steps, int) else self.num_generations,
            self.num_generations,
            self.trl.get("scale_rewards", "group"),
            self.trl.get("multi_objective_aggregation", "sum_then_normalize"),
        )
        if problem:
            raise ValueError(problem)

    @property
    def weights(self) -> list[float]:
        return self.reward_weights or [1.0] * len(self.reward_funcs)

    def notices(self, given: set[str]) -> list[str]:
        """One line for each key that is accepted but means something else (or nothing) for GRPO."""
        out = []
        if "packing" in given:
            out.append(
                "packing: ignored: GRPO generates its own completions per prompt, there is nothing to pack"
            )
        if "max_seq_length" in given and self.max_seq_length:
            out.append(
                f"max_seq_length: {self.max_seq_length} is checked against prompt + max_completion_length tokens "
                "before training; prompts are never truncated"
            )
        return out


# --- loading -----------------------------------------------------------------------------------------
