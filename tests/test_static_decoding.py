"""Decoding from fixed buffers (rlvr_cli.decoding.graphs), the loop a CUDA GPU replays as graphs: on a
CPU it runs eagerly, and must give plain `generate`'s logits and tokens step by step, through rows
ending, batches shrinking and both shared levels of the prompt."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from rlvr_cli.decoding import graphs
from rlvr_cli.decoding.generation import decode_rows, prefill_shared

from .conftest import load_model
from .test_cascade import DIM, EXEMPLARS, KV_HEADS, N_REP, QUESTIONS, Module, reference_attention


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path):
    return load_model(tiny_model_dir)


@pytest.fixture
def static_steps(monkeypatch):
    """How many decoding steps ran through the static cache (proof that it, not the eager loop, ran)."""
    seen: list[int] = []
    real = graphs.static_attention_forward

    def spy(module, *args, **kwargs):
        if module.layer_idx == 0:
            seen.append(1)
        return real(module, *args, **kwargs)

    monkeypatch.setitem(graphs.AttentionInterface._global_mapping, graphs.NAME, spy)
    return seen


def test_batch_sizes_are_the_rows_then_powers_of_two_below():
    assert graphs.buckets(6) == [6, 4, 2, 1]
    assert graphs.buckets(8) == [8, 4, 2, 1]
    assert graphs.buckets(9) == [9, 8, 4, 2, 1]
    assert graphs.buckets(2) == [2, 1]
    assert graphs.buckets(1) == [1]


@pytest.mark.parametrize("scale", [None, 0.3])
def test_attention_over_the_buffers_equals_sdpa_over_the_full_cache(scale):
    """A shared level held once, a level per group of rows, and each row's own columns in a buffer of
    which only some are written (the bias masks the rest and each row's padding): the attention is
    SDPA's over the whole cache laid out per row, at the module's scaling or, given none, 1/sqrt(dim)."""
    from rlvr_cli.decoding.cascade import Level

    torch.manual_seed(0)
    rows, own, first, second = 4, 6, 5, 3
    level1 = [torch.randn(1, KV_HEADS, first, DIM) for _ in range(2)]
    level2 = [torch.randn(2, KV_HEADS, second, DIM) for _ in range(2)]
    groups = torch.tensor([0, 1, 1, 0])
    keys, values = torch.randn(rows, KV_HEADS, own, DIM), torch.randn(rows, KV_HEADS, own, DIM)
    visible = torch.rand(rows, first + second + own) > 0.4
    visible[:, :first] = True  # level 1 is every row's
    visible[:, -1] = True  # the token being decoded sees itself
    bias = torch.zeros(rows, 1, 1, visible.shape[1]).masked_fill_(~visible[:, None, None], float("-inf"))
    cache = graphs.StaticCache(torch.zeros(1, dtype=torch.long))
    levels = [Level.of(*level1, None), Level.of(*level2, groups)]
    cache.layers.append(graphs.StaticLayer(levels, keys, values, cache))
    query = torch.randn(rows, KV_HEADS * N_REP, 1, DIM)
    token = graphs._ACTIVE.set(cache)
    try:
        out = graphs.static_attention_forward(Module(), query, keys, values, bias, scaling=scale)[0]
    finally:
        graphs._ACTIVE.reset(token)
    per_row = [
        torch.cat([level1[i].expand(rows, -1, -1, -1), level2[i][groups], (keys, values)[i]], dim=2)
        for i in range(2)
    ]
    expected = reference_attention(query, *per_row, visible[:, None, None], scale=scale)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def decode_like_plain_generate(model, tokenizer, prompts, ends, steps, warns=False, **decode_options):
    """Decode `prompts` through `decode_rows`, ending row r after ends[r] tokens; check the logits
    `choose` saw and the tokens against plain `generate`'s, and return the rows running at each step.
    Unless `warns`, a warning fails it (e.g. a capture tried where no CUDA device is)."""
    plain_inputs = tokenizer(prompts, return_tensors="pt", padding=True)
    plain = model.generate(
        **plain_inputs, max_new_tokens=steps, do_sample=False, pad_token_id=tokenizer.pad_token_id,
        output_logits=True, return_dict_in_generate=True,
    )  # fmt: skip
    tokens: list[list[int]] = [[] for _ in prompts]
    running: list[list[int]] = []
    seen: list[torch.Tensor] = []

    def choose(logits: torch.Tensor) -> torch.Tensor:
        running.append([r for r in range(len(prompts)) if len(tokens[r]) < ends[r]])
        seen.append(logits.clone())
        return logits.argmax(dim=-1)

    def take(row: int, token: int, step: int) -> bool:
        tokens[row].append(token)
        return len(tokens[row]) == ends[row]

    prefill = prefill_shared(model, [tokenizer(p)["input_ids"] for p in prompts], tokenizer.pad_token_id)
    with warnings.catch_warnings():
        if not warns:
            warnings.simplefilter("error")
        decode_rows(model, prefill, steps, choose, take, **decode_options)
    for step, (rows, ours) in enumerate(zip(running, seen, strict=True)):
        theirs = plain.logits[step][rows]
        torch.testing.assert_close(ours.log_softmax(-1), theirs.log_softmax(-1), atol=1e-4, rtol=1e-4)
    width = plain_inputs["input_ids"].shape[1]
    assert tokens == [row[:end] for row, end in zip(plain.sequences[:, width:].tolist(), ends, strict=True)]
    return running


def test_grpo_rows_ending_at_different_steps_decode_as_plain_generate(tiny, static_steps, monkeypatch):
    """GRPO's layout (each prompt twice: two shared levels). Rows end after 1, 2 or all 5 tokens, so
    the batch of 6 shrinks to 4 slots (3 running + a copy), then 2: every step, each running row's
    logits are plain `generate`'s, and so are its tokens."""
    model, tokenizer = tiny
    prompts = [EXEMPLARS + q for q in QUESTIONS for _ in range(2)]
    sizes: list[int] = []
    real_keep = graphs.StaticDecoder.keep

    def keep(decoder, slots):
        real_keep(decoder, slots)
        sizes.append(decoder.slots)

    monkeypatch.setattr(graphs.StaticDecoder, "keep", keep)
    running = decode_like_plain_generate(model, tokenizer, prompts, [1, 5, 1, 2, 1, 5], 5, static=True)
    assert running == [[0, 1, 2, 3, 4, 5], [1, 3, 5], [1, 5], [1, 5], [1, 5]]
    assert sizes == [4, 2]
    assert len(static_steps) == 4  # the first token comes from the prefill, the other 4 from the buffers


def test_prompts_sharing_nothing_decode_as_plain_generate(tiny, static_steps):
    """Too short a common prefix for the cascade: the whole left-padded prompt is the rows' own part."""
    model, tokenizer = tiny
    prompts = ["Question: What is 1 + 7?\nSolution:", "Sum 3, 4 and 5.", "Hi"]
    running = decode_like_plain_generate(model, tokenizer, prompts, [4, 2, 4], 4, static=True)
    assert running == [[0, 1, 2], [0, 1, 2], [0, 2], [0, 2]]
    assert len(static_steps) == 3


def test_more_rows_than_prompt_tokens_down_to_one_row_ending_early(tiny, static_steps):
    """Eight one-word prompts (more rows than columns), one row left running alone in a batch of one,
    and every row ended before max_new_tokens: decoding stops there."""
    model, tokenizer = tiny
    prompts = ["Hi", "Yes", "No", "Hi", "Sum", "Go", "Hi", "Ok"]
    assert max(len(tokenizer(p)["input_ids"]) for p in prompts) < len(prompts)
    ends = [1, 1, 2, 1, 1, 4, 1, 2]
    running = decode_like_plain_generate(model, tokenizer, prompts, ends, 7, static=True)
    assert running == [list(range(8)), [2, 5, 7], [5], [5]]
    assert len(static_steps) == 3


def test_the_default_follows_the_device(tiny, static_steps, monkeypatch):
    """Unasked, `decode_rows` decodes from the buffers wherever `use_graphs` says the device replays
    them (a CUDA GPU), and eagerly elsewhere."""
    model, tokenizer = tiny
    monkeypatch.setattr(graphs, "use_graphs", lambda device: True)
    decode_like_plain_generate(model, tokenizer, [EXEMPLARS + q for q in QUESTIONS], [3, 3, 3], 3)
    assert len(static_steps) == 2


def test_a_model_with_a_sliding_window_decodes_eagerly(tiny, static_steps):
    """The buffers hold every key: a sliding-window layer's cache does not, so such a model keeps the
    eager loop even when the buffers are asked for, and decodes as `generate`."""
    from .test_cascade import _sliding_model

    _, tokenizer = tiny
    model = _sliding_model(tokenizer, window=8)
    decode_like_plain_generate(
        model, tokenizer, [EXEMPLARS + q for q in QUESTIONS], [3, 2, 3], 3, static=True
    )
    assert static_steps == []


def test_the_eager_loop_stays_on_a_cpu(tiny, static_steps):
    model, tokenizer = tiny
    decode_like_plain_generate(model, tokenizer, [EXEMPLARS + q for q in QUESTIONS], [3, 3, 3], 3)
    assert static_steps == []


def test_a_step_that_cannot_be_captured_decodes_eagerly_with_a_warning(tiny, monkeypatch):
    """Where capturing fails (e.g. a kernel that synchronises with the host), decoding goes on from the
    same buffers without graphs: the same logits, and the user is told once."""
    model, tokenizer = tiny

    class Refusing:
        def __init__(self, *args, **kwargs):
            raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(graphs.torch.cuda, "Stream", Refusing)
    real_init = graphs.StaticDecoder.__init__

    def init(self, *args, **kwargs):
        real_init(self, *args, **{**kwargs, "graphs": True})

    monkeypatch.setattr(graphs.StaticDecoder, "__init__", init)
    with pytest.warns(UserWarning, match="decoding without CUDA graphs: capturing a step failed") as caught:
        decode_like_plain_generate(
            model, tokenizer, [EXEMPLARS + q for q in QUESTIONS for _ in range(2)], [4, 1, 4, 2, 4, 4], 4,
            warns=True, static=True,
        )  # fmt: skip
    assert len(caught) == 1


@pytest.mark.parametrize(("setting", "static"), [({}, None), ({"cuda_graphs": False}, False)])
def test_the_recipe_key_reaches_the_decode_loop_of_a_training_run(
    cli,
    tmp_path: Path,
    prepared: Path,
    tiny_model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    setting,
    static,
):
    """`cuda_graphs` (default: on where the device is CUDA) reaches each of TRL's generation calls
    in a real `rlvr train` run; `false` keeps the eager loop on a GPU too."""
    from rlvr_cli.decoding import generation

    from .test_train import write_recipe

    seen: list[bool | None] = []
    real = generation.decode_rows

    def spy(*args, static=None, **kwargs):
        seen.append(static)
        return real(*args, static=static, **kwargs)

    monkeypatch.setattr(generation, "decode_rows", spy)
    recipe = write_recipe(
        tmp_path / "r.yaml", tiny_model_dir, prepared, tmp_path / "out",
        max_steps=1, report_to="none", save_strategy="no", **setting,
    )  # fmt: skip
    result = cli("train", "--config", recipe)
    assert result.code == 0, result.err
    assert seen and set(seen) == {static}


def test_grpo_sampling_draws_the_same_completions_from_the_buffers(tiny, static_steps):
    """TRL's sampling settings through rlvr's loop, the answer stop ending rows at different steps: from
    the fixed buffers the same seed draws the same completions as the eager loop (the sampler sees the
    running rows' logits only, in the same order, whatever slots they hold)."""
    from transformers import GenerationConfig

    from rlvr_cli.decoding.generation import sample_shared_prefix
    from rlvr_cli.decoding.stopping import AnswerStop

    from .test_generation import staggered

    model, tokenizer = tiny
    prompts = [EXEMPLARS + q for q in QUESTIONS for _ in range(4)]
    rows = [tokenizer(p)["input_ids"] for p in prompts]
    config = GenerationConfig(
        max_new_tokens=6, do_sample=True, temperature=0.9, top_k=0, top_p=0.95,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip

    def sample(static: bool) -> list[list[int]]:
        torch.manual_seed(7)
        stop = AnswerStop(tokenizer, tokenizer.eos_token_id, rule=staggered(len(rows)))
        return sample_shared_prefix(model, rows, config, stop=stop, static=static).tolist()

    eager = sample(False)
    assert static_steps == []
    buffered = sample(True)
    assert static_steps  # the buffers' path ran
    assert buffered == eager
    assert len({tuple(r) for r in eager}) > 3  # the draws differ between rows: a real sample
