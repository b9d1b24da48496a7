"""TRL's GRPOTrainer with rlvr's additions (the callbacks it runs with: `rlvr_cli.training.callbacks`).

The subclass overrides four methods, each calling the original where rlvr's version does not apply:
- `_generate_single_turn`: HF generation stops after the answer line (`rlvr_cli.decoding.stopping`)
  and runs the prompt prefix shared by the batch once (`rlvr_cli.training.trl_generate`).
- `_get_per_token_logps_and_entropies`: the policy and reference forward passes run each shared
  prompt once instead of once per completion (`rlvr_cli.training.prefix_logps`).
- `_calculate_rewards`: logs accuracy, format rate and the share of completions cut at
  max_completion_length, and keeps a small sample of completions for the tracker.
- `_generate_and_score_completions`: with the recipe's `dynamic_sampling`, replaces the groups
  whose completions all earned the same reward (`rlvr_cli.training.group_filter`); with its
  `difficulty_filter`, swaps out prompts set aside for always earning equal rewards
  (`rlvr_cli.training.set_aside`).

tests/test_trl_hook.py names each of them: a TRL release that renames one fails the suite instead
of silently switching rlvr's behaviour off.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from trl import GRPOTrainer

from rlvr_cli.config.recipe import dynamic_sampling_problem
from rlvr_cli.core import console
from rlvr_cli.core.errors import UsageError
from rlvr_cli.decoding.generation import keeps_every_key
from rlvr_cli.decoding.stopping import AnswerStop
from rlvr_cli.tasks.base import completion_text
from rlvr_cli.training.group_filter import draw_groups, draw_seed, fill, informative
from rlvr_cli.training.prefix_logps import shared_prefix_logps
from rlvr_cli.training.set_aside import SetAside
from rlvr_cli.training.trl_generate import generate_with

SAMPLE_SIZE = 8  # completions kept per step for the tracker's table
# The task's rewards (by the recipe's names) whose hit rate is logged as its own metric.
RATE_METRICS = {"correctness": "accuracy", "format": "format_rate"}


class RlvrGRPOTrainer(GRPOTrainer):
    def __init__(
        self,
        *args: Any,
        answer_stop: AnswerStop | None = None,
        share_prefix: bool = True,
        cuda_graphs: bool = True,
        reward_names: list[str] | None = None,
        dynamic_sampling_rounds: int | None = None,
        set_aside: SetAside | None = None,
        **kwargs: Any,
    ):
        self.answer_stop = answer_stop
        # None: TRL's batches as generated; else the most extra generation rounds per batch.
        self.dynamic_sampling_rounds = dynamic_sampling_rounds
        self.bound_hits = 0
        self.set_aside = set_aside  # the recipe's difficulty_filter, or None
        self.share_prefix = share_prefix
        self.cuda_graphs = cuda_graphs
        # reward column -> metric, from the recipe's names (`correctness`), not the functions' own
        self.rate_metrics = {
            i: RATE_METRICS[name] for i, name in enumerate(reward_names or []) if name in RATE_METRICS
        }
        self.completion_sample: list[dict[str, Any]] = []
        super().__init__(*args, **kwargs)
        if dynamic_sampling_rounds is not None:
            problem = dynamic_sampling_problem(
                self.args.per_device_train_batch_size * self.args.steps_per_generation,
                self.num_generations,
                self.scale_rewards,
                self.multi_objective_aggregation,
            )
            if problem:
                raise UsageError(problem)

    def _generate_and_score_completions(self, inputs):  # type: ignore[no-untyped-def]
        training = self.model.training
        original = super()._generate_and_score_completions
        step, rank, group = self.state.global_step, self.accelerator.process_index, self.num_generations

        def draw(groups: int, round_: int) -> list[dict[str, Any]]:
            return draw_groups(
                self.train_dataset, groups, group, draw_seed(self.args.seed, step, round_, rank)
            )

        def scored(rows: list[dict[str, Any]]) -> dict[str, Any]:
            output = original(rows)
            if self.set_aside is not None:
                self.set_aside.record(rows[::group], informative(output["advantages"], group).tolist(), step)
            return output

        if training and self.set_aside is not None:
            inputs, swapped = self.set_aside.replace(inputs, group, step, lambda n, r: draw(n, -1 - r))
            self._metrics["train"]["groups/set_aside_swapped"].append(swapped)
            self._metrics["train"]["groups/set_aside"].append(len(self.set_aside.aside_until))
        output = scored(inputs) if training else original(inputs)
        if self.dynamic_sampling_rounds is None or not training:
            return output
        batch, stats = fill(
            output,
            group,
            self.dynamic_sampling_rounds,
            generate=lambda groups, round_: scored(draw(groups, round_)),
            gather=self.accelerator.gather,
            pad_token_id=self._tokenizer.pad_token_id,
        )
        mask = batch["completion_mask"]
        if "tool_mask" in batch:
            mask = mask * batch["tool_mask"]
        batch["num_items_in_batch"] = self.accelerator.gather(mask.sum()).sum()
        for name, value in stats.metrics().items():
            self._metrics["train"][name].append(value)
        if stats.bound_hit:
            self.bound_hits += 1
            if self.bound_hits == 1 and self.accelerator.is_main_process:
                console.warn(
                    f"dynamic sampling: after {stats.rounds} extra rounds at step {step}, {stats.filler} "
                    "groups whose completions all earned the same reward stay in the batch "
                    "(raise dynamic_sampling_max_rounds to replace them; groups/zero_std_kept counts them)"
                )
        return batch

    def _generate_single_turn(self, *args: Any, **kwargs: Any) -> Any:
        # vLLM stops on strings (generation_kwargs) and caches prefixes itself.
        if (
            self.use_vllm
            or self.use_transformers_continuous_batching
            or (self.answer_stop is None and not self.share_prefix)
        ):
            return super()._generate_single_turn(*args, **kwargs)
        with generate_with(
            self.accelerator.unwrap_model(self.model_wrapped),
            self.answer_stop,
            self.share_prefix,
            cuda_graphs=self.cuda_graphs,
        ):
            return super()._generate_single_turn(*args, **kwargs)

    def _get_per_token_logps_and_entropies(  # type: ignore[no-untyped-def]
        self,
        model,
        input_ids,
        attention_mask,
        logits_to_keep,
        batch_size=None,
        compute_entropy=False,
        **kwargs,
    ):
        multimodal_or_moe = any(v is not None and v is not False for v in kwargs.values())
        checkpointed = torch.is_grad_enabled() and self.args.gradient_checkpointing
        if (
            not self.share_prefix
            or multimodal_or_moe
            or checkpointed
            or self.accelerator.num_processes > 1
            or self.is_deepspeed_enabled
            or self.is_fsdp_enabled
            or not keeps_every_key(model.config)
        ):
            return super()._get_per_token_logps_and_entropies(
                model, input_ids, attention_mask, logits_to_keep, batch_size, compute_entropy, **kwargs
            )
        with self.accelerator.autocast():
            logps, entropies = shared_prefix_logps(
                model, input_ids, attention_mask, logits_to_keep, compute_entropy=compute_entropy
            )
        return logps, entropies, None

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):  # type: ignore[no-untyped-def]
        rewards = super()._calculate_rewards(
            inputs, prompts, completions, completion_ids_list
        )  # (all processes, F)
        mode = "train" if self.model.training else "eval"
        names = self.reward_func_names
        for index, metric in self.rate_metrics.items():
            column = rewards[:, index]
            hit = torch.where(torch.isnan(column), column, (column > 0).float())
            self._metrics[mode][metric].append(torch.nanmean(hit).item())
        lengths = torch.tensor([len(ids) for ids in completion_ids_list], device=rewards.device)
        at_max = (lengths >= self.max_completion_length).float()
        self._metrics[mode]["completions/cut_at_max_ratio"].append(
            self.accelerator.gather(at_max).mean().item()
        )

        start = self.accelerator.process_index * len(prompts)
        local = rewards[start : start + len(prompts)].tolist()
        sample = []
        for i in range(min(SAMPLE_SIZE, len(completions))):
            row: dict[str, Any] = {
                "step": self.state.global_step,
                "question": inputs[i].get("question", "")[-500:],
                "final_answer": inputs[i].get("final_answer"),
                "completion": completion_text(completions[i]),
            }
            row.update(
                {name: (None if math.isnan(v) else v) for name, v in zip(names, local[i], strict=True)}
            )
            sample.append(row)
        self.completion_sample = sample
        return rewards
