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


def _bare_trainer(
    monkeypatch: pytest.MonkeyPatch, reward_names: list[str], rlvr: dict | None = None, **trl_state
):
    """RlvrGRPOTrainer with rlvr's own __init__ (its keyword arguments: `rlvr`) and TRL's left out:
    the attributes TRL's would set are given (`trl_state`); the methods under test run rlvr's code."""
    from trl import GRPOTrainer

    from rlvr_cli.training.trainer import RlvrGRPOTrainer

    monkeypatch.setattr(GRPOTrainer, "__init__", lambda self, *args, **kwargs: None)
    trainer = RlvrGRPOTrainer(reward_names=reward_names, **(rlvr or {}))
    for name, value in trl_state.items():
        setattr(trainer, name, value)
    return trainer


def test_the_step_metrics_and_the_completion_sample_from_the_rewards(monkeypatch: pytest.MonkeyPatch):
    """From TRL's reward matrix (every process's rows): `accuracy` and `format_rate` are the shares of
    rows their reward pays (> 0), rows a reward skipped (NaN) left out; `completions/cut_at_max_ratio`
    the share of every process's completions that reached max_completion_length. The sample for the
    tracker is this process's first 8 rows: the question's last 500 characters, the final answer, the
    completion's text, and each reward by name (a skipped one as None)."""
    from collections import defaultdict
    from types import SimpleNamespace

    import torch
    from trl import GRPOTrainer

    n = 9  # rows on this process (rank 1 of 2); the sample keeps 8
    # Columns: correctness, format, a third reward with no rate metric. Rank 0's rows first.
    correctness = (
        [1.0, 0.0, float("nan"), 0.5, 0.0, -1.0, 0.0, 0.0, 0.0] + [2.0, 0.0, -1.0, float("nan")] + [0.0] * 5
    )
    formatting = [0.5, 0.0] * 9
    other = [float(i) for i in range(2 * n)]
    rewards = torch.tensor([correctness, formatting, other]).T
    monkeypatch.setattr(GRPOTrainer, "_calculate_rewards", lambda self, *args: rewards)
    other_rank_at_max = torch.tensor([1.0] * 3 + [0.0] * 6)
    trainer = _bare_trainer(
        monkeypatch,
        ["correctness", "format", "length"],
        model=SimpleNamespace(training=True),
        reward_func_names=["correctness_reward", "format_reward", "length_reward"],
        max_completion_length=4,
        accelerator=SimpleNamespace(process_index=1, gather=lambda t: torch.cat([other_rank_at_max, t])),
        state=SimpleNamespace(global_step=7),
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
    )
    inputs = [{"question": f"Q{i} " + "x" * 600 + f" end{i}", "final_answer": str(i)} for i in range(n)]
    inputs[1] = {}  # a row without a question or a final answer
    completions = [f"completion {i}" for i in range(n)]
    completions[2] = [{"role": "assistant", "content": "a chat completion"}]
    lengths = [4, 2, 5, 4, 1, 1, 1, 1, 3]  # 3 of them reached max_completion_length 4
    returned = trainer._calculate_rewards(inputs, ["p"] * n, completions, [[0] * k for k in lengths])

    assert returned is rewards
    metrics = trainer._metrics["train"]
    # correctness pays 1.0, 0.5, 2.0 of its 16 scored rows (-1 does not pay); format half of 18.
    assert metrics["accuracy"] == [pytest.approx(3 / 16)]
    assert metrics["format_rate"] == [pytest.approx(0.5)]
    assert metrics["completions/cut_at_max_ratio"] == [pytest.approx((3 + 3) / 18)]
    assert set(metrics) == {"accuracy", "format_rate", "completions/cut_at_max_ratio"}
    assert not trainer._metrics["eval"]

    sample = trainer.completion_sample
    assert len(sample) == 8
    assert sample[0] == {
        "step": 7, "question": ("Q0 " + "x" * 600 + " end0")[-500:], "final_answer": "0",
        "completion": "completion 0", "correctness_reward": 2.0, "format_reward": 0.0, "length_reward": 9.0,
    }  # fmt: skip
    assert sample[1] == {
        "step": 7, "question": "", "final_answer": None, "completion": "completion 1",
        "correctness_reward": 0.0, "format_reward": 0.5, "length_reward": 10.0,
    }  # fmt: skip
    assert sample[2]["completion"] == "a chat completion"
    assert sample[3]["correctness_reward"] is None  # NaN: the reward did not apply to this row
    assert [row["length_reward"] for row in sample] == [float(9 + i) for i in range(8)]

    # In evaluation the same metrics go to the eval side.
    trainer.model.training = False
    trainer._calculate_rewards(inputs, ["p"] * n, completions, [[0] * k for k in lengths])
    assert trainer._metrics["eval"]["accuracy"] == [pytest.approx(3 / 16)]
    assert len(trainer._metrics["train"]["accuracy"]) == 1


@pytest.mark.parametrize(
    ("case", "rlvr_pass"),
    [
        ({}, True),
        ({"kwargs": {"pixel_values": None, "image_grid_thw": False}}, True),  # TRL passes unset ones
        ({"share_prefix": False}, False),
        ({"kwargs": {"pixel_values": "images"}}, False),  # multimodal
        ({"kwargs": {"mm_token_type_ids": True}}, False),
        ({"gradient_checkpointing": True}, False),  # the policy pass: checkpointed layers drop the cache
        ({"gradient_checkpointing": True, "no_grad": True}, True),  # the reference pass: no checkpointing
        ({"num_processes": 2}, False),  # DDP expects one forward per backward
        ({"is_deepspeed_enabled": True}, False),
        ({"is_fsdp_enabled": True}, False),
        ({"sliding_window": 8}, False),  # its cache keeps only the last keys: no shared prompt
    ],
    ids=lambda v: str(v) if isinstance(v, bool) else ",".join(v) or "default",
)
def test_log_probs_run_each_shared_prompt_once_only_where_that_is_safe(
    monkeypatch: pytest.MonkeyPatch, case: dict, rlvr_pass: bool
):
    """rlvr's shared-prompt pass gives the log-probs and entropies (TRL's triple, no third value) on
    one process with text-only inputs; under DDP, DeepSpeed, FSDP, gradient checkpointing of the
    policy pass multimodal inputs or a sliding-window model, TRL's own pass runs, with the arguments as given."""
    import contextlib
    from types import SimpleNamespace

    import torch
    from transformers import LlamaConfig, MistralConfig
    from trl import GRPOTrainer

    from rlvr_cli.training import trainer as trainer_module

    calls: list[tuple] = []
    monkeypatch.setattr(
        GRPOTrainer,
        "_get_per_token_logps_and_entropies",
        lambda self, *args, **kwargs: (
            calls.append(("trl", args, kwargs)) or ("trl logps", "trl entropies", None)
        ),
    )
    monkeypatch.setattr(
        trainer_module,
        "shared_prefix_logps",
        lambda *args, **kwargs: calls.append(("rlvr", args, kwargs)) or ("logps", "entropies"),
    )
    trainer = _bare_trainer(
        monkeypatch,
        [],
        rlvr={"share_prefix": case.get("share_prefix", True)},
        args=SimpleNamespace(gradient_checkpointing=case.get("gradient_checkpointing", False)),
        accelerator=SimpleNamespace(
            num_processes=case.get("num_processes", 1), autocast=contextlib.nullcontext
        ),
        is_deepspeed_enabled=case.get("is_deepspeed_enabled", False),
        is_fsdp_enabled=case.get("is_fsdp_enabled", False),
    )
    kwargs = case.get("kwargs", {})
    config = (
        MistralConfig(sliding_window=case["sliding_window"], num_hidden_layers=2)
        if "sliding_window" in case
        else LlamaConfig(num_hidden_layers=2)
    )
    model = SimpleNamespace(config=config)
    with torch.no_grad() if case.get("no_grad") else contextlib.nullcontext():
        out = trainer._get_per_token_logps_and_entropies(
            model, "ids", "mask", 5, batch_size=3, compute_entropy=True, **kwargs
        )
    if rlvr_pass:
        assert out == ("logps", "entropies", None)
        assert calls == [("rlvr", (model, "ids", "mask", 5), {"compute_entropy": True})]
    else:
        assert out == ("trl logps", "trl entropies", None)
        assert calls == [("trl", (model, "ids", "mask", 5, 3, True), kwargs)]


@pytest.mark.parametrize(
    ("setup", "rlvr_generation"),
    [
        ({"answer_stop": "stop", "share_prefix": True}, True),
        ({"answer_stop": "stop", "share_prefix": False}, True),
        ({"answer_stop": None, "share_prefix": True}, True),
        ({"answer_stop": None, "share_prefix": False}, False),
        ({"answer_stop": "stop", "share_prefix": True, "use_vllm": True}, False),  # vLLM stops on strings
        ({"answer_stop": "stop", "share_prefix": True, "use_transformers_continuous_batching": True}, False),
    ],
    ids=["stop+share", "stop", "share", "neither", "vllm", "continuous-batching"],
)
def test_trls_generation_call_goes_through_rlvrs_generate_where_it_applies(
    monkeypatch: pytest.MonkeyPatch, setup: dict, rlvr_generation: bool
):
    """While TRL's `_generate_single_turn` runs, the model's `generate` is rlvr's (answer stop, shared
    prompt) unless vLLM or continuous batching generates, or neither change is asked for; afterwards
    the model's own method is back."""
    from types import SimpleNamespace

    from trl import GRPOTrainer

    from rlvr_cli.training import trainer as trainer_module

    class Model:
        def generate(self, *args, **kwargs):
            return "plain"

    model = Model()
    patched: list[tuple] = []
    real = trainer_module.generate_with
    monkeypatch.setattr(
        trainer_module,
        "generate_with",
        lambda *args, **kwargs: patched.append((*args, kwargs)) or real(*args, **kwargs),
    )
    monkeypatch.setattr(
        GRPOTrainer,
        "_generate_single_turn",
        lambda self, *args, **kwargs: ("generate" in vars(model), args, kwargs),
    )
    trainer = _bare_trainer(
        monkeypatch,
        [],
        rlvr={
            "answer_stop": setup["answer_stop"],
            "share_prefix": setup["share_prefix"],
            "cuda_graphs": False,
        },
        use_vllm=setup.get("use_vllm", False),
        use_transformers_continuous_batching=setup.get("use_transformers_continuous_batching", False),
        accelerator=SimpleNamespace(unwrap_model=lambda wrapped: wrapped["model"]),
        model_wrapped={"model": model},
    )
    wrapped, args, kwargs = trainer._generate_single_turn("prompt ids", None, num_generations=4)
    assert (args, kwargs) == (("prompt ids", None), {"num_generations": 4})
    assert wrapped is rlvr_generation
    expected = (model, setup["answer_stop"], setup["share_prefix"], {"cuda_graphs": False})
    assert patched == ([expected] if rlvr_generation else [])
    assert "generate" not in vars(model)


def test_a_set_aside_prompt_is_swapped_before_trl_generates_and_the_step_logs_it(
    monkeypatch: pytest.MonkeyPatch,
):
    """difficulty_filter in the trainer: a batch's set-aside prompt gets a fresh prompt from the train
    set (drawn with the step's seed, as a resumed run draws it) before TRL generates; the step logs
    how many were swapped and how many sit out; each scored group updates the record (here the
    group of "ok" earns equal rewards: with streak 1 it now sits out too). In evaluation nothing is
    swapped or recorded."""
    from collections import defaultdict
    from types import SimpleNamespace

    import torch
    from trl import GRPOTrainer

    from rlvr_cli.training.group_filter import draw_groups, draw_seed
    from rlvr_cli.training.set_aside import SetAside

    scored: list[list[str]] = []

    def trl_scores(self, rows):  # TRL's generation and scoring: "ok" earns equal rewards, others differ
        scored.append([r["id"] for r in rows])
        return {
            "advantages": torch.tensor(
                [0.0 if r["id"].startswith("ok") else (-1.0) ** i for i, r in enumerate(rows)]
            )
        }

    monkeypatch.setattr(GRPOTrainer, "_generate_and_score_completions", trl_scores)
    dataset = [{"id": f"fresh{i}"} for i in range(5)]
    aside = SetAside(streak=1, steps=10)
    aside.record([{"id": "easy"}], [False], step=0)
    trainer = _bare_trainer(
        monkeypatch,
        [],
        rlvr={"set_aside": aside},
        model=SimpleNamespace(training=True),
        state=SimpleNamespace(global_step=3),
        accelerator=SimpleNamespace(process_index=1),
        num_generations=2,
        args=SimpleNamespace(seed=42),
        train_dataset=dataset,
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
    )
    trainer._generate_and_score_completions([{"id": "easy"}] * 2 + [{"id": "ok"}] * 2)
    fresh = draw_groups(dataset, 1, 2, draw_seed(42, step=3, round_=-1, rank=1))
    assert scored == [[fresh[0]["id"]] * 2 + ["ok", "ok"]]
    assert trainer._metrics["train"]["groups/set_aside_swapped"] == [1]
    assert trainer._metrics["train"]["groups/set_aside"] == [1]  # "easy"; "ok" was recorded after
    assert set(aside.aside_until) == {"easy", "ok"} and aside.aside_until["ok"] == 13

    trainer.model.training = False
    trainer._generate_and_score_completions([{"id": "easy"}] * 2 + [{"id": "ok2"}] * 2)
    assert scored[-1] == ["easy", "easy", "ok2", "ok2"]
    assert "ok2" not in aside.aside_until and not trainer._metrics["eval"]
