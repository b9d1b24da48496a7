"""rlvr's hook into TRL: the GRPOTrainer methods it overrides exist with the parameters rlvr relies
on, and a real `rlvr train` run goes through rlvr's generation and log-prob code.

If a TRL release renamed or reshaped one of these methods, rlvr's override would silently never
run (prompt sharing, the answer stop and the metrics would switch off) and training would still
"work": these tests turn that into a failure that names the method.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

# Each method RlvrGRPOTrainer overrides, and the leading parameters of TRL's own that rlvr passes
# on or reads by name (rlvr_cli/training/trainer.py).
OVERRIDES = {
    "_generate_single_turn": ["self", "prompt_ids", "images", "multimodal_fields", "num_generations"],
    "_get_per_token_logps_and_entropies": [
        "self", "model", "input_ids", "attention_mask", "logits_to_keep", "batch_size", "compute_entropy",
    ],
    "_calculate_rewards": ["self", "inputs", "prompts", "completions", "completion_ids_list"],
    "_generate_and_score_completions": ["self", "inputs"],
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(OVERRIDES))
def test_each_overridden_trl_method_exists_with_the_parameters_rlvr_uses(name: str):
    from trl import GRPOTrainer

    trl_method = getattr(GRPOTrainer, name, None)
    assert trl_method is not None, (
        f"trl.GRPOTrainer has no {name} any more: RlvrGRPOTrainer.{name} would never be called; "
        "port the override to the installed TRL"
    )
    params = list(inspect.signature(trl_method).parameters)
    expected = OVERRIDES[name]
    assert params[: len(expected)] == expected, (
        f"trl.GRPOTrainer.{name} takes {params}, rlvr's override expects {expected} first"
    )


def test_every_override_is_listed_here():
    """A new override must be named above, so that a TRL rename of it fails this file too."""
    from trl import GRPOTrainer

    from rlvr_cli.training.trainer import RlvrGRPOTrainer

    overridden = {
        name
        for name, value in vars(RlvrGRPOTrainer).items()
        if callable(value) and name != "__init__" and hasattr(GRPOTrainer, name)
    }
    own = (
        {name for name, value in vars(RlvrGRPOTrainer).items() if callable(value)} - overridden - {"__init__"}
    )
    assert overridden == set(OVERRIDES), overridden ^ set(OVERRIDES)
    assert not own, f"methods TRL does not have (a renamed hook?): {own}"


def test_a_training_run_generates_and_scores_through_rlvr(
    cli, tmp_path: Path, prepared: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    """Spies on rlvr's sampling loop (shared prompt), the answer stop, the shared-prompt log-probs
    and the metrics; transformers' own `generate` must not run at all."""
    import transformers

    from rlvr_cli.decoding.stopping import TokenText
    from rlvr_cli.training import trainer, trl_generate

    from .test_train import write_recipe

    calls: dict[str, int] = {"loop": 0, "stop": 0, "logps": 0, "generate": 0, "rewards": 0}

    def spy(key, fn):
        def wrapped(*args, **kwargs):
            calls[key] += 1
            return fn(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(trl_generate, "sample_shared_prefix", spy("loop", trl_generate.sample_shared_prefix))
    # The answer stop's token side: each sampled token's text, fed to the task's stop rule.
    monkeypatch.setattr(TokenText, "__call__", spy("stop", TokenText.__call__))
    monkeypatch.setattr(trainer, "shared_prefix_logps", spy("logps", trainer.shared_prefix_logps))
    monkeypatch.setattr(
        transformers.GenerationMixin, "generate", spy("generate", transformers.GenerationMixin.generate)
    )
    calculate = trainer.RlvrGRPOTrainer._calculate_rewards
    monkeypatch.setattr(trainer.RlvrGRPOTrainer, "_calculate_rewards", spy("rewards", calculate))
    from rlvr_cli.training import hardware

    calls["allocator"] = 0  # the glibc setting that gives freed activations back (test_memory.py)
    monkeypatch.setattr(hardware, "return_freed_memory", spy("allocator", hardware.return_freed_memory))

    recipe = write_recipe(
        tmp_path / "r.yaml", tiny_model_dir, prepared, tmp_path / "out",
        max_steps=1, report_to="none", save_strategy="no",
    )  # fmt: skip
    result = cli("train", "--config", recipe)
    assert result.code == 0, result.err
    assert calls["loop"] >= 1, "generation did not go through rlvr's sampling loop"
    assert calls["stop"] >= 1, "the answer stop never ran"
    assert calls["logps"] >= 1, "the log-probs did not go through rlvr's shared-prompt passes"
    assert calls["rewards"] >= 1, "rlvr's reward metrics never ran"
    assert calls["generate"] == 0, "transformers' generate ran: rlvr's generation fell back"
    assert calls["allocator"] == 1, "rlvr train did not set the allocator up"


def test_the_rate_metrics_are_the_hit_rates_of_the_recipes_rewards(
    cli, tmp_path: Path, prepared: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    """`accuracy` and `format_rate` are the shares of completions the task's `correctness` and
    `format` rewards pay, each from its own column; `completions/cut_at_max_ratio` the share cut."""
    import json

    from rlvr_cli.tasks.gsm8k import rewards

    # Rewards a random model cannot earn, given by position so the expected rates differ.
    def format_reward(completions, **kwargs):
        return [0.5 if i % 2 == 0 else 0.0 for i in range(len(completions))]  # half

    def correctness_reward(completions, **kwargs):
        return [1.0 if i % 4 == 0 else 0.0 for i in range(len(completions))]  # a quarter

    monkeypatch.setitem(rewards.REWARDS, "format", format_reward)
    monkeypatch.setitem(rewards.REWARDS, "correctness", correctness_reward)
    from .test_train import write_recipe

    out = tmp_path / "out"
    recipe = write_recipe(
        tmp_path / "r.yaml", tiny_model_dir, prepared, out, max_steps=1, report_to="none",
        save_strategy="no", reward_funcs=["correctness", "format"], max_completion_length=6,
    )  # fmt: skip
    result = cli("train", "--config", recipe)
    assert result.code == 0, result.err
    (logged,) = [
        h for h in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "accuracy" in h
    ]
    assert logged["accuracy"] == pytest.approx(0.25)
    assert logged["format_rate"] == pytest.approx(0.5)
    assert logged["completions/cut_at_max_ratio"] == pytest.approx(1.0)  # a random model never stops in 6
