"""Groups that teach (recipe `dynamic_sampling`): zero-variance groups are replaced by fresh ones,
the batch keeps TRL's shape, GRPO's loss on it is TRL's loss on the groups kept, and ranks agree."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
import torch

from rlvr_cli.training.group_filter import fill, informative, next_round_size, pick_groups, take_rows

G = 2  # completions per group in the unit tests


def output(advantages: list[float], prompt_width: int, completion_width: int, tag: int) -> dict[str, Any]:
    """A TRL-shaped output whose rows carry `tag` (the round) and their row number in their ids."""
    n = len(advantages)
    rows = torch.arange(n)[:, None]
    prompt_mask = torch.ones(n, prompt_width, dtype=torch.long)
    prompt_mask[:, 0] = 0  # every row has one left pad: prompts are re-padded to the longest kept
    return {
        "prompt_ids": torch.where(prompt_mask.bool(), 1000 * tag + rows, -1),
        "prompt_mask": prompt_mask,
        "completion_ids": (1000 * tag + rows).expand(n, completion_width).clone(),
        "completion_mask": torch.ones(n, completion_width, dtype=torch.long),
        "advantages": torch.tensor(advantages),
        "num_items_in_batch": torch.tensor(999),
    }


def test_a_group_teaches_when_any_advantage_is_non_zero():
    assert informative(torch.tensor([0.0, 0.0, 0.5, -0.5, 0.0, 1e-6]), 2).tolist() == [False, True, True]


def test_the_next_round_replaces_the_missing_groups_at_the_rate_seen():
    assert next_round_size(missing=2, kept=0, generated=4, cap=4) == 4  # nothing taught yet: a full batch
    assert next_round_size(missing=2, kept=1, generated=4, cap=4) == 4  # 1 in 4 teach: 8, capped
    assert next_round_size(missing=1, kept=3, generated=4, cap=4) == 2  # ceil(1 * 4 / 3)
    assert next_round_size(missing=1, kept=4, generated=4, cap=4) == 1


def test_informative_groups_first_in_order_then_the_first_zero_variance_ones():
    masks = [torch.tensor([False, True, False]), torch.tensor([True, False])]
    assert [p.tolist() for p in pick_groups(masks, 2)] == [[1], [0]]
    assert [p.tolist() for p in pick_groups(masks, 3)] == [[0, 1], [0]]


def test_fill_replaces_zero_variance_groups_and_keeps_the_batch_shape():
    first = output([0, 0, 1, -1, 0, 0], prompt_width=3, completion_width=2, tag=1)  # group 1 teaches
    rounds = {0: output([0.5, -0.5, 0, 0], 5, 4, tag=2), 1: output([1, -1, 1, -1], 2, 3, tag=3)}
    asked: list[tuple[int, int]] = []

    def generate(groups: int, round_: int) -> dict[str, Any]:
        asked.append((groups, round_))
        return rounds[round_]

    batch, stats = fill(first, G, max_rounds=4, generate=generate, gather=lambda t: t, pad_token_id=-1)
    # 1 of 3 groups taught: 2 missing at a rate of 1/3 -> 6, capped at one batch (3); then 1 of 2
    # taught: 1 missing at 2/5 -> 3.
    assert asked == [(3, 0), (3, 1)]
    tags = batch["completion_ids"][:, 0].tolist()
    assert tags == [1002, 1003, 2000, 2001, 3000, 3001]  # the informative groups, in generated order
    assert batch["advantages"].tolist() == [1, -1, 0.5, -0.5, 1, -1]
    assert "num_items_in_batch" not in batch  # spans all ranks: the trainer recomputes it
    # Prompts padded on the left to the longest kept prompt (round 0's 4 tokens), no wider;
    # completions on the right to the widest completion kept.
    assert batch["prompt_ids"].shape == (6, 4) and batch["prompt_mask"].shape == (6, 4)
    assert batch["prompt_mask"][0].tolist() == [0, 0, 1, 1] and batch["prompt_ids"][0].tolist() == [
        -1,
        -1,
        1002,
        1002,
    ]
    assert batch["prompt_mask"][2].tolist() == [1, 1, 1, 1]
    assert batch["completion_mask"][0].tolist() == [1, 1, 0, 0] and batch["completion_ids"][
        0, 2:
    ].tolist() == [-1, -1]
    assert (stats.generated, stats.dropped, stats.filler, stats.rounds, stats.bound_hit) == (
        7,
        3,
        0,
        2,
        False,
    )
    # The names the tracker, metrics.jsonl and the progress line (callbacks.format_log) read.
    assert stats.metrics() == {
        "groups/prompts_generated": 7.0,
        "groups/dropped_ratio": pytest.approx(3 / 7),
        "groups/zero_std_kept": 0.0,
        "groups/extra_rounds": 2.0,
    }


def test_at_the_bound_zero_variance_groups_complete_the_batch():
    first = output([0, 0, 1, -1, 0, 0], 3, 2, tag=1)
    batch, stats = fill(
        first, G, max_rounds=1, generate=lambda n, r: output([0] * (n * G), 3, 2, tag=2), gather=lambda t: t,
        pad_token_id=-1,
    )  # fmt: skip
    assert stats.bound_hit and stats.rounds == 1
    assert batch["completion_ids"][:, 0].tolist() == [
        1000,
        1001,
        1002,
        1003,
        1004,
        1005,
    ]  # first batch as it was
    assert (stats.generated, stats.dropped, stats.filler) == (6, 3, 2)  # 5 equal, 2 kept


def test_a_batch_that_teaches_already_is_returned_without_generating():
    first = output([1, -1, 1, -1], 3, 2, tag=1)
    batch, stats = fill(
        first, G, 3, generate=lambda n, r: pytest.fail("generated"), gather=lambda t: t, pad_token_id=0
    )
    assert torch.equal(batch["completion_ids"], first["completion_ids"])
    assert stats.rounds == 0 and stats.dropped == 0


def test_rows_of_an_unknown_kind_are_refused():
    first = output([1, -1], 3, 2, tag=1)
    first["pixel_values"] = [object()]
    with pytest.raises(ValueError, match="pixel_values"):
        take_rows([first], [torch.tensor([0, 1])], 0)


def test_ranks_generate_together_and_end_with_the_same_number_of_groups():
    """Two ranks in threads with a real all-gather: rank 0 is full after its first batch, rank 1
    needs two more rounds; both must call generate (TRL's collectives) equally often."""
    ranks = 2
    barrier = threading.Barrier(ranks)
    slots: list[torch.Tensor | None] = [None] * ranks
    calls = {0: 0, 1: 0}
    results: dict[int, tuple[dict[str, Any], Any]] = {}

    def run(rank: int) -> None:
        def gather(t: torch.Tensor) -> torch.Tensor:
            barrier.wait()
            slots[rank] = t
            barrier.wait()
            out = torch.cat([s for s in slots if s is not None])
            barrier.wait()
            return out

        def generate(groups: int, round_: int) -> dict[str, Any]:
            calls[rank] += 1
            advantages = [0.0] * (groups * G) if rank == 0 or round_ == 0 else [1.0, -1.0] * groups
            return output(advantages, 3, 2, tag=10 * rank + round_ + 2)

        first = output([1, -1, 1, -1] if rank == 0 else [0, 0, 0, 0], 3, 2, tag=10 * rank + 1)
        results[rank] = fill(first, G, 3, generate=generate, gather=gather, pad_token_id=0)

    threads = [threading.Thread(target=run, args=(r,)) for r in range(ranks)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert calls == {0: 2, 1: 2}
    assert results[0][0]["advantages"].numel() == results[1][0]["advantages"].numel() == 4
    assert results[1][0]["advantages"].tolist() == [1, -1, 1, -1]
    assert results[0][1].generated == results[1][1].generated  # counted over both ranks


# --- the trainer: its checks and its bound, with TRL's own work left out ---------------------------


def test_the_trainer_says_once_when_dynamic_sampling_hits_its_bound(monkeypatch: pytest.MonkeyPatch):
    """Every completion earns the same reward: one extra round, then the bound, at each step. The
    batch keeps its shape, the groups are logged each step, and the warning is said once."""
    from collections import defaultdict
    from types import SimpleNamespace

    from trl import GRPOTrainer

    from rlvr_cli.core import console

    from .test_trl_hook import _bare_trainer

    said: list[str] = []
    monkeypatch.setattr(console, "warn", said.append)
    monkeypatch.setattr(
        GRPOTrainer,
        "_generate_and_score_completions",
        lambda self, rows: output([0.0] * len(rows), 3, 2, tag=1),
    )
    trainer = _bare_trainer(
        monkeypatch, [], {"dynamic_sampling_rounds": None},
        model=SimpleNamespace(training=True),
        state=SimpleNamespace(global_step=0),
        accelerator=SimpleNamespace(process_index=0, gather=lambda t: t, is_main_process=True),
        num_generations=G,
        args=SimpleNamespace(seed=0),
        train_dataset=[{"id": f"q{i}"} for i in range(4)],
        _tokenizer=SimpleNamespace(pad_token_id=0),
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
    )  # fmt: skip
    trainer.dynamic_sampling_rounds = 1  # after rlvr's __init__, whose check reads TRL's settings
    rows = [{"id": "a"}] * G + [{"id": "b"}] * G
    for step in (0, 1):
        trainer.state.global_step = step
        assert trainer._generate_and_score_completions(rows)["advantages"].numel() == 2 * G
    assert trainer.bound_hits == 2
    assert said == [
        "dynamic sampling: after 1 extra rounds at step 0, 2 groups whose completions all earned the same "
        "reward stay in the batch (raise dynamic_sampling_max_rounds to replace them; groups/zero_std_kept "
        "counts them)"
    ]
    logged = trainer._metrics["train"]
    assert logged["groups/prompts_generated"] == [4.0, 4.0]  # 2 groups, and 2 more in the extra round
    assert logged["groups/zero_std_kept"] == [2.0, 2.0] and logged["groups/extra_rounds"] == [1.0, 1.0]


@pytest.mark.parametrize(
    ("per_device", "steps", "scale", "message"),
    [
        (2, 2, "group", None),  # 4 rows a device: whole groups of 4
        # per_device_train_batch_size 1 and trl.generation_batch_size 8 on 4 GPUs: TRL resolves 2
        # steps per generation, 2 rows a device; the recipe's check cannot see the processes.
        (1, 2, "group", "a device generates 2 completions per batch, not a multiple of num_generations (4)"),
        (2, 2, "batch", "dynamic_sampling needs advantages computed within each group"),
    ],
)
def test_the_trainer_checks_dynamic_sampling_against_trls_resolved_batch(
    monkeypatch: pytest.MonkeyPatch, per_device: int, steps: int, scale: str, message: str | None
):
    from types import SimpleNamespace

    from trl import GRPOTrainer

    from rlvr_cli.core.errors import UsageError
    from rlvr_cli.training.trainer import RlvrGRPOTrainer

    def trl_init(self, *args, **kwargs):  # what TRL's __init__ resolves, and nothing else
        self.args = SimpleNamespace(per_device_train_batch_size=per_device, steps_per_generation=steps)
        self.num_generations, self.scale_rewards = 4, scale
        self.multi_objective_aggregation = "sum_then_normalize"

    monkeypatch.setattr(GRPOTrainer, "__init__", trl_init)
    if message is None:
        assert RlvrGRPOTrainer(dynamic_sampling_rounds=2).dynamic_sampling_rounds == 2
    else:
        with pytest.raises(UsageError) as caught:
            RlvrGRPOTrainer(dynamic_sampling_rounds=2)
        assert message in str(caught.value)


# --- the trainer: TRL's loss on the kept groups ---------------------------------------------------


def _trainer(tmp_path: Path, model_dir: Path, loss_type: str, rows: list[dict[str, Any]]):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig

    from rlvr_cli.training.trainer import RlvrGRPOTrainer

    def reward(completions, teach, **kwargs):  # within a teaching group, every other completion pays
        return [float(t and i % 2 == 0) for i, t in enumerate(teach)]

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    args = GRPOConfig(
        output_dir=str(tmp_path / "ckpt"), use_cpu=True, bf16=False, report_to="none", seed=3,
        per_device_train_batch_size=8, gradient_accumulation_steps=1, num_generations=4,
        max_completion_length=8, beta=0.0, loss_type=loss_type, remove_unused_columns=False,
    )  # fmt: skip
    trainer = RlvrGRPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(model_dir),
        reward_funcs=[reward],
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        dynamic_sampling_rounds=6,
    )
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1

    def canned_generate(prompts: list[str]):
        """Completions fixed by the prompt and the row, of different lengths: generation is not
        what is compared here, the batch assembled around it is."""
        prompt_ids = [tokenizer(p)["input_ids"] for p in prompts]
        completion_ids = [
            tokenizer(f" {len(p) % 7} and {i % 3}" + " more" * (p.count("word") + i % 2))["input_ids"]
            + [tokenizer.eos_token_id]
            for i, p in enumerate(prompts)
        ]
        completions = tokenizer.batch_decode(completion_ids, skip_special_tokens=True)
        return prompt_ids, completion_ids, None, completions, None, {}, None, None

    trainer._generate = canned_generate
    return trainer, tokenizer


@pytest.mark.parametrize("loss_type", ["dapo", "grpo"])
def test_the_loss_on_the_filled_batch_is_trls_loss_on_the_groups_kept(
    tmp_path: Path, tiny_model_dir: Path, loss_type: str
):
    from trl import GRPOTrainer

    rows = [
        {"prompt": f"Question {i}:" + " word" * (i % 5), "teach": i % 3 != 0} for i in range(12)
    ]  # prompts of different lengths; a third never teach
    trainer, tokenizer = _trainer(tmp_path, tiny_model_dir, loss_type, rows)
    by_prompt = {r["prompt"]: r for r in rows}
    first = [rows[0]] * 4 + [rows[3]] * 4  # both groups have equal rewards: both replaced
    torch.manual_seed(0)
    batch = trainer._generate_and_score_completions(first)

    prompts = [
        tokenizer.decode(ids[mask.bool()])
        for ids, mask in zip(batch["prompt_ids"], batch["prompt_mask"], strict=True)
    ]
    kept = [by_prompt[p] for p in prompts]
    assert all(r["teach"] for r in kept) and batch["advantages"].abs().sum() > 0
    assert batch["prompt_ids"].shape[0] == 8  # TRL's shape: 2 groups of 4

    reference = GRPOTrainer._generate_and_score_completions(trainer, kept)  # TRL alone, same groups
    assert torch.equal(batch["advantages"], reference["advantages"])
    assert int(batch["num_items_in_batch"]) == int(reference["num_items_in_batch"])
    # The loss and its gradient (on-policy with grpo's per-sequence mean the loss itself is 0).
    params = [p for p in trainer.model.parameters() if p.requires_grad]
    ours = trainer.compute_loss(trainer.model, batch)
    ours_grad = torch.autograd.grad(ours, params, allow_unused=True)
    theirs = trainer.compute_loss(trainer.model, reference)
    theirs_grad = torch.autograd.grad(theirs, params, allow_unused=True)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5, abs=1e-7)
    pairs = [(a, b) for a, b in zip(ours_grad, theirs_grad, strict=True) if a is not None]
    assert pairs and any(a.abs().sum() > 0 for a, _ in pairs)
    for a, b in pairs:
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)


def test_a_resumed_run_draws_the_same_prompts():
    from datasets import Dataset

    from rlvr_cli.training.group_filter import draw_groups, draw_seed

    rows = Dataset.from_list([{"id": f"q{i}", "prompt": f"Q{i}"} for i in range(50)])
    first = draw_groups(rows, 3, 4, draw_seed(42, step=7, round_=1, rank=0))
    assert first == draw_groups(rows, 3, 4, draw_seed(42, step=7, round_=1, rank=0))  # after a restart
    assert first != draw_groups(rows, 3, 4, draw_seed(42, step=7, round_=2, rank=0))  # the next round
    assert first != draw_groups(rows, 3, 4, draw_seed(42, step=7, round_=1, rank=1))  # another device
    assert len(first) == 12 and all(first[i] == first[i - i % 4] for i in range(12))  # groups of 4
    assert len({r["id"] for r in first}) == 3  # three different prompts


def test_every_round_step_and_device_draws_with_its_own_seed():
    """Rounds of dynamic sampling (1, 2, ...) and of the difficulty filter (-1, -2, ...), steps and
    ranks: no two draw the same prompts by sharing a seed, and every seed is one torch accepts."""
    from rlvr_cli.training.group_filter import draw_seed

    keys = [(s, t, r, k) for s in (0, 42) for t in range(6) for r in range(-3, 4) for k in range(4)]
    seeds = [draw_seed(s, step=t, round_=r, rank=k) for s, t, r, k in keys]
    assert len(set(seeds)) == len(keys)
    assert all(0 <= seed < 2**63 for seed in seeds)
    assert draw_seed(2**62, step=10**6, round_=3, rank=7) < 2**63  # a large recipe seed stays in range


def test_a_train_set_with_as_many_prompts_as_groups_draws_each_once_and_a_smaller_one_repeats():
    from datasets import Dataset

    from rlvr_cli.training.group_filter import draw_groups

    rows = Dataset.from_list([{"id": f"q{i}"} for i in range(4)])
    for seed in range(5):
        drawn = draw_groups(rows, 4, 2, seed)
        assert sorted(r["id"] for r in drawn[::2]) == ["q0", "q1", "q2", "q3"]  # a permutation
    smaller = Dataset.from_list([{"id": "q0"}, {"id": "q1"}])
    drawn = draw_groups(smaller, 5, 3, seed=1)
    assert len(drawn) == 15 and {r["id"] for r in drawn} <= {"q0", "q1"}
    torch.manual_seed(123)  # the draw is the seed's alone, whatever torch's global generator holds
    assert draw_groups(smaller, 5, 3, seed=1) == drawn
    assert all(drawn[i] == drawn[i - i % 3] for i in range(15))


# --- difficulty_filter -----------------------------------------------------------------------------


def test_a_prompt_with_equal_rewards_k_times_in_a_row_sits_out_then_returns():
    from rlvr_cli.training.set_aside import SetAside

    aside = SetAside(streak=2, steps=10)
    a, b = {"id": "a"}, {"id": "b"}
    aside.record([a, b], [False, False], step=0)
    aside.record([a, b], [False, True], step=1)  # b taught: its streak starts over
    assert aside.is_aside(a, step=1) and not aside.is_aside(b, step=1)
    aside.record([b], [False], step=2)
    assert not aside.is_aside(b, step=2)  # one equal group since it last taught
    assert aside.is_aside(a, step=10) and not aside.is_aside(a, step=11)  # back after 10 steps
    aside.record([a], [False], step=11)
    assert not aside.is_aside(a, step=11)  # back with a clean record


def test_set_aside_prompts_are_swapped_for_fresh_ones_in_the_batch():
    from rlvr_cli.training.set_aside import SetAside

    aside = SetAside(streak=1, steps=5)
    aside.record([{"id": "easy"}, {"id": "hard"}], [False, False], step=0)
    rows = [{"id": "easy"}] * 2 + [{"id": "ok"}] * 2 + [{"id": "hard"}] * 2
    draws = iter([[{"id": "hard"}] * 2 + [{"id": "new1"}] * 2, [{"id": "new2"}] * 2])
    asked: list[tuple[int, int]] = []
    replaced, swapped = aside.replace(
        rows, 2, step=1, draw=lambda n, attempt: asked.append((n, attempt)) or next(draws)
    )
    # "easy" got "hard" (aside too, so drawn again: "new2"), "hard" got "new1"; "ok" stays.
    assert [r["id"] for r in replaced] == ["new2", "new2", "ok", "ok", "new1", "new1"]
    assert swapped == 2
    # One fresh group per set-aside group, and each retry is a new draw (the trainer seeds it by the try).
    assert asked == [(2, 0), (1, 1)]


def test_a_prompt_that_teaches_at_once_is_never_set_aside_and_the_rows_after_it_still_count():
    from rlvr_cli.training.set_aside import SetAside

    aside = SetAside(streak=1, steps=3)
    aside.record([{"id": "new"}, {"id": "easy"}], [True, False], step=4)  # "new" has no record yet
    assert not aside.is_aside({"id": "new"}, step=4)
    assert aside.is_aside({"id": "easy"}, step=4) and aside.aside_until == {"easy": 7}


def test_rlvr_train_with_dynamic_sampling_logs_the_groups_and_says_when_the_bound_is_hit(
    cli, tmp_path: Path, prepared: Path, tiny_model_dir: Path
):
    from .test_train import write_recipe

    out = tmp_path / "out"
    recipe = write_recipe(
        tmp_path / "r.yaml", tiny_model_dir, prepared, out, max_steps=2, report_to="none",
        save_strategy="no", reward_funcs=["correctness"], max_completion_length=4,
        dynamic_sampling=True, dynamic_sampling_max_rounds=1, difficulty_filter=1,
    )  # fmt: skip
    result = cli("train", "--config", recipe)
    assert result.code == 0, result.err
    # A random model answers nothing: every group has equal rewards, one extra round, then the bound.
    # Said once, at the first step that hit it, with the way out.
    said = " ".join(result.err.split())
    assert said.count("dynamic sampling:") == 1
    assert (
        "dynamic sampling: after 1 extra rounds at step 0, 1 groups whose completions all earned the "
        "same reward stay in the batch (raise dynamic_sampling_max_rounds to replace them; "
        "groups/zero_std_kept counts them)"
    ) in said
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [h for h in logged if "groups/prompts_generated" in h]
    assert len(steps) == 2
    for h in steps:
        assert h["groups/extra_rounds"] == 1
        assert h["groups/prompts_generated"] == 2  # 1 group per batch, plus 1 in the extra round
        assert h["groups/dropped_ratio"] == pytest.approx(0.5)
        assert h["groups/zero_std_kept"] == 1
    # difficulty_filter 1: every prompt of step 1 earned equal rewards once, so it sits out.
    assert steps[0]["groups/set_aside"] == 0 and steps[1]["groups/set_aside"] >= 1


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"per_device_train_batch_size": 6}, "dynamic_sampling keeps whole groups on each device"),
        ({"trl": {"scale_rewards": "batch"}}, "dynamic_sampling needs advantages computed within each group"),
    ],
)
def test_a_recipe_dynamic_sampling_cannot_serve_is_refused_before_training(
    cli, tmp_path: Path, prepared: Path, tiny_model_dir: Path, extra: dict[str, Any], message: str
):
    from .test_train import write_recipe

    recipe = write_recipe(
        tmp_path / "r.yaml", tiny_model_dir, prepared, tmp_path / "out", dynamic_sampling=True, **extra
    )
    result = cli("train", "--config", recipe)
    assert result.code == 2
    assert message in result.err and "Traceback" not in result.err
    assert not (tmp_path / "out").exists()
