"""Cascade attention (rlvr_cli.decoding.cascade): the shared prompt held once gives the same attention,
the same greedy tokens and the same log-probs as the ordinary per-row cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from rlvr_cli.decoding import cascade
from rlvr_cli.decoding.cascade import CascadeCache, Level, cascade_attention, cascade_attention_forward
from rlvr_cli.decoding.generation import generate_shared_prefix, prefill_shared

from .conftest import load_model

KV_HEADS, N_REP, DIM = 2, 3, 8


class Module(torch.nn.Module):
    layer_idx = 0


class Config:
    def get_text_config(self, decoder: bool = True):
        return type("Text", (), {"num_hidden_layers": 1})()


def reference_attention(query, keys, values, visible, scale=None):
    """SDPA over the whole cache, laid out per row as an ordinary cache holds it."""
    keys = keys.repeat_interleave(N_REP, dim=1)
    values = values.repeat_interleave(N_REP, dim=1)
    return F.scaled_dot_product_attention(query, keys, values, attn_mask=visible, scale=scale).transpose(1, 2)


def cascade_forward(cache, query, keys, values, mask, scale=None):
    token = cascade._ACTIVE.set(cache)
    try:
        return cascade_attention_forward(Module(), query, keys, values, mask, scaling=scale)[0]
    finally:
        cascade._ACTIVE.reset(token)


def assert_cascade_equals_sdpa(cache, query, parts_k, parts_v, mask, visible, scale=None):
    """Cascade attention over `cache`'s levels plus the rows' own keys (the last of `parts_*`),
    given `mask`, equals SDPA over all the parts laid out per row with `visible`."""
    out = cascade_forward(cache, query, parts_k[-1], parts_v[-1], mask, scale)
    expected = reference_attention(
        query, torch.cat(parts_k, dim=2), torch.cat(parts_v, dim=2), visible, scale=scale
    )
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("active", [False, True], ids=["no-cache", "no-levels"])
def test_attention_is_sdpa_where_the_cascade_holds_nothing(active):
    """Outside `cascade_attention`, or in a layer that holds no shared level, the function is
    transformers' SDPA: the mask, the scaling and the other arguments it was given reach it."""

    class Plain(Module):
        num_key_value_groups = N_REP

    torch.manual_seed(0)
    rows, q, k = 2, 3, 5
    query = torch.randn(rows, KV_HEADS * N_REP, q, DIM)
    keys, values = torch.randn(rows, KV_HEADS, k, DIM), torch.randn(rows, KV_HEADS, k, DIM)
    visible = torch.rand(rows, 1, q, k) > 0.4
    visible[..., 0] = True
    token = cascade._ACTIVE.set(CascadeCache(Config()) if active else None)
    try:
        masked, _ = cascade_attention_forward(Plain(), query, keys, values, visible, scaling=0.2)
        # No mask and is_causal=False: every query sees every key (SDPA's default would be causal).
        full, _ = cascade_attention_forward(Plain(), query, keys, values, None, is_causal=False)
    finally:
        cascade._ACTIVE.reset(token)
    torch.testing.assert_close(masked, reference_attention(query, keys, values, visible, scale=0.2))
    torch.testing.assert_close(full, reference_attention(query, keys, values, None))


@pytest.mark.parametrize(
    "groups", [[0, 0, 1, 1], [1, 0, 1, 0], None], ids=["runs", "interleaved", "one-level"]
)
@pytest.mark.parametrize("q", [1, 3], ids=["decode", "prefill"])
@pytest.mark.parametrize("additive", [False, True], ids=["bool-mask", "additive-mask"])
def test_attention_equals_sdpa_over_the_full_cache(groups, q, additive):
    torch.manual_seed(0)
    rows, l1, l2, own = 4, 5, 4, 6
    k1, v1 = torch.randn(1, KV_HEADS, l1, DIM), torch.randn(1, KV_HEADS, l1, DIM)
    k2, v2 = torch.randn(2, KV_HEADS, l2, DIM), torch.randn(2, KV_HEADS, l2, DIM)
    k3, v3 = torch.randn(rows, KV_HEADS, own, DIM), torch.randn(rows, KV_HEADS, own, DIM)
    query = torch.randn(rows, KV_HEADS * N_REP, q, DIM)

    cache = CascadeCache(Config())
    layer = cache.layers[0]
    layer.levels.append(Level.of(k1, v1, None))
    parts_k, parts_v = [k1.expand(rows, -1, -1, -1)], [v1.expand(rows, -1, -1, -1)]
    total = l1 + own
    # Padding: group 1's prefix is one token shorter; row 2's own part starts with two pads.
    visible = torch.ones(rows, 1, q, l1 + (l2 if groups else 0) + own, dtype=torch.bool)
    if groups:
        index = torch.tensor(groups)
        layer.levels.append(Level.of(k2, v2, index))
        assert layer.levels[-1].block == (
            2 if groups == [0, 0, 1, 1] else None
        )  # one product per group, or a gather
        parts_k.append(k2[index]), parts_v.append(v2[index])
        visible[index == 1, :, :, l1 + l2 - 1] = False
        total += l2
    parts_k.append(k3), parts_v.append(v3)
    visible[2, :, :, total - own : total - own + 2] = False
    causal = torch.ones(q, q, dtype=torch.bool).tril()
    visible[..., total - q :] &= causal
    # transformers passes a float mask where the attention takes one: 0 where visible, a large negative elsewhere.
    mask = (
        torch.zeros(visible.shape).masked_fill(~visible, torch.finfo(torch.float32).min)
        if additive
        else visible
    )

    # The model's own scaling where it gives one (Granite, Gemma 2 27B), else 1/sqrt(head_dim).
    assert_cascade_equals_sdpa(cache, query, parts_k, parts_v, mask, visible, scale=0.2 if additive else None)


@pytest.mark.parametrize("q", [2, 3])
@pytest.mark.parametrize(
    ("rows", "groups"),
    [(4, [0, 0, 1, 1]), (2, [0, 0]), (2, [0, 1]), (4, None)],
    ids=["two-levels", "two-rows-one-group", "two-rows-two-groups", "one-level"],
)
def test_attention_without_a_mask_is_causal_over_the_rows_own_tokens(rows, groups, q):
    """No padding anywhere: transformers passes no mask, and the rows' own tokens still see only
    the ones before them (each query the levels, then its own part up to itself)."""
    torch.manual_seed(0)
    l1, l2, own = 5, 4, 6
    cache = CascadeCache(Config())
    layer = cache.layers[0]
    k1, v1 = torch.randn(1, KV_HEADS, l1, DIM), torch.randn(1, KV_HEADS, l1, DIM)
    layer.levels.append(Level.of(k1, v1, None))
    parts_k, parts_v = [k1.expand(rows, -1, -1, -1)], [v1.expand(rows, -1, -1, -1)]
    if groups:
        index = torch.tensor(groups)
        n = max(groups) + 1
        k2, v2 = torch.randn(n, KV_HEADS, l2, DIM), torch.randn(n, KV_HEADS, l2, DIM)
        layer.levels.append(Level.of(k2, v2, index))
        parts_k.append(k2[index]), parts_v.append(v2[index])
    k3, v3 = torch.randn(rows, KV_HEADS, own, DIM), torch.randn(rows, KV_HEADS, own, DIM)
    parts_k.append(k3), parts_v.append(v3)
    query = torch.randn(rows, KV_HEADS * N_REP, q, DIM)
    total = l1 + (l2 if groups else 0) + own
    visible = torch.ones(rows, 1, q, total, dtype=torch.bool)
    visible[..., total - own :] = torch.ones(q, own, dtype=torch.bool).tril(own - q)

    assert_cascade_equals_sdpa(cache, query, parts_k, parts_v, None, visible)


def test_gqa_sdpa_equals_sdpa_on_its_cpu_path_and_hands_the_rest_to_transformers():
    """`gqa_sdpa_forward` (the policy pass's attention on a CPU) keeps the kv heads unrepeated and
    gives SDPA's output: with a mask and a scaling, causal without a mask where the module is (and
    by default), not where it is not; an explicit `is_causal` goes to transformers' SDPA whole."""
    from rlvr_cli.decoding.attention import gqa_sdpa_forward

    class Causal(torch.nn.Module):
        num_key_value_groups = N_REP  # what transformers' SDPA reads to repeat the kv heads

    class NotCausal(Causal):
        is_causal = False

    torch.manual_seed(0)
    rows, q = 2, 2  # two query tokens: the fewest for which causality matters
    query = torch.randn(rows, KV_HEADS * N_REP, q, DIM)
    keys, values = torch.randn(rows, KV_HEADS, q, DIM), torch.randn(rows, KV_HEADS, q, DIM)
    # A mask that hides a key from each row, and not the causal pattern: a mask dropped shows.
    visible = torch.ones(rows, 1, q, q, dtype=torch.bool)
    visible[0, :, 1, 1] = False
    visible[1, :, 1, 0] = False
    causal = torch.ones(q, q, dtype=torch.bool).tril()

    def check(module, mask, expected_visible, scale=None, **kwargs):
        out, _ = gqa_sdpa_forward(module(), query, keys, values, mask, scaling=scale, **kwargs)
        torch.testing.assert_close(
            out, reference_attention(query, keys, values, expected_visible, scale=scale)
        )

    check(Causal, visible, visible, scale=0.2)
    check(Causal, None, causal)
    check(NotCausal, None, None)
    check(Causal, visible, visible, scale=0.2, is_causal=False)
    check(Causal, None, None, is_causal=False)


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path):
    return load_model(tiny_model_dir)


EXEMPLARS = (
    "Question: Tom has 2 apples and buys 3 more.\nSolution: Let's think step by step. 2 + 3 = 5\n"
    "#### The final answer is 5\n\n"
)
QUESTIONS = [
    "Question: What is 1 + 7?\nSolution:",
    "Question: A farmer has 12 cows and sells a third of them. How many are left?\nSolution:",
    "Question: Sum 3, 4 and 5.\nSolution:",
]


@pytest.fixture
def count_levels(monkeypatch):
    """How many shared levels each cascade attention call saw (proof that the cascade ran)."""
    seen: list[int] = []
    real = cascade.cascade_attention_forward

    def spy(module, *args, **kwargs):
        cache = cascade._ACTIVE.get()
        seen.append(len(cache.layers[module.layer_idx].levels) if cache is not None else 0)
        return real(module, *args, **kwargs)

    monkeypatch.setitem(cascade.AttentionInterface._global_mapping, cascade.NAME, spy)
    return seen


@pytest.mark.parametrize("repeats", [1, 3], ids=["one-level", "two-levels"])
def test_generation_equals_plain_generate_with_scores(tiny, count_levels, repeats):
    """Greedy tokens identical to plain `generate`, and every step's log-probs within float tolerance.
    `repeats` > 1 is GRPO's layout (each prompt `num_generations` times): exemplars shared by all,
    each prompt shared by its completions."""
    model, tokenizer = tiny
    prompts = [EXEMPLARS + q for q in QUESTIONS for _ in range(repeats)]
    plain_inputs = tokenizer(prompts, return_tensors="pt", padding=True)
    options = dict(
        max_new_tokens=10,
        do_sample=False,
        pad_token_id=tokenizer.pad_token_id,
        output_logits=True,
        return_dict_in_generate=True,
    )
    plain = model.generate(**plain_inputs, **options)
    assert not count_levels
    shared = generate_shared_prefix(
        model, [tokenizer(p)["input_ids"] for p in prompts], tokenizer.pad_token_id, **options
    )
    width = plain_inputs["input_ids"].shape[1]
    assert shared.sequences[:, width:].tolist() == plain.sequences[:, width:].tolist()
    for ours, theirs in zip(shared.logits, plain.logits, strict=True):
        torch.testing.assert_close(ours.log_softmax(-1), theirs.log_softmax(-1), atol=1e-4, rtol=1e-4)
    # Decoding saw every level (with two, the per-prompt level was itself built on top of level 1).
    assert count_levels[-1] == max(count_levels) == (2 if repeats > 1 else 1)


def test_two_levels_hold_each_prompt_once(tiny):
    model, tokenizer = tiny
    prompts = [EXEMPLARS + q for q in QUESTIONS for _ in range(4)]
    rows = [tokenizer(p)["input_ids"] for p in prompts]
    prefill = prefill_shared(model, rows, tokenizer.pad_token_id)
    first, second = prefill.cache.layers[0].levels
    k1, k2 = first.keys, second.keys
    exemplar_tokens = len(tokenizer(EXEMPLARS)["input_ids"])
    assert k1.shape[0] == 1 and first.groups is None and k1.shape[2] >= exemplar_tokens - 1
    assert k2.shape[0] == len(QUESTIONS) and second.groups.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert second.block == 4
    # Nothing per row is cached yet: decoding starts from each row's last prompt token.
    assert prefill.cache.layers[0].keys is None
    assert prefill.cached == k1.shape[2] + k2.shape[2] == prefill.ids.shape[1] - 1


def test_one_prompt_repeated_keeps_its_last_token_for_decoding(tiny):
    """Every row the same prompt (GRPO with one prompt per generation batch; `rlvr eval --samples K`
    with a batch of K): all but its last token are level 1, nothing is left for a level 2, and
    decoding from the last token gives plain `generate`'s tokens and log-probs."""
    model, tokenizer = tiny
    prompt = EXEMPLARS + QUESTIONS[0]
    row = tokenizer(prompt)["input_ids"]
    prefill = prefill_shared(model, [row] * 3, tokenizer.pad_token_id)
    assert prefill.ids.tolist() == [row] * 3 and bool(prefill.mask.all())
    assert prefill.cached == len(row) - 1
    assert all(len(layer.levels) == 1 for layer in prefill.cache.layers)
    options = dict(
        max_new_tokens=3, do_sample=False, pad_token_id=tokenizer.pad_token_id,
        output_logits=True, return_dict_in_generate=True,
    )  # fmt: skip
    plain = model.generate(**tokenizer([prompt] * 3, return_tensors="pt"), **options)
    shared = generate_shared_prefix(model, [row] * 3, tokenizer.pad_token_id, **options)
    assert shared.sequences.tolist() == plain.sequences.tolist()
    for ours, theirs in zip(shared.logits, plain.logits, strict=True):
        torch.testing.assert_close(ours.log_softmax(-1), theirs.log_softmax(-1), atol=1e-4, rtol=1e-4)


def test_training_forwards_keep_sdpa(tiny):
    """The cascade is switched on only inside `cascade_attention`."""
    model, tokenizer = tiny
    before = model.config._attn_implementation
    rows = [tokenizer(EXEMPLARS + q)["input_ids"] for q in QUESTIONS]
    prefill = prefill_shared(model, rows, tokenizer.pad_token_id)
    with cascade_attention(model, prefill.cache):
        assert model.config._attn_implementation == cascade.NAME
    assert model.config._attn_implementation == before


def test_offline_model_gives_the_same_greedy_tokens(smol_dir: Path):
    """SmolLM2-135M on real 2-shot GSM8K prompts: eval's loop (one level, rows leaving the batch) and
    GRPO's generation (two levels) produce exactly plain `generate`'s tokens."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlvr_cli.data.build import prepare
    from rlvr_cli.evaluation.generators import greedy_generate
    from rlvr_cli.tasks.gsm8k.sources import load_source

    from .conftest import FIXTURE_GSM8K

    tokenizer = AutoTokenizer.from_pretrained(smol_dir, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(smol_dir, dtype=torch.float32).eval()
    prompts = [
        row["prompt"]
        for row in prepare(load_source(str(FIXTURE_GSM8K)), shots=2, val_fraction=0.1, seed=1).rows["test"][
            :3
        ]
    ]
    steps, eos, pad = 24, tokenizer.eos_token_id, tokenizer.pad_token_id
    inputs = tokenizer(prompts, return_tensors="pt", padding=True)
    plain = model.generate(**inputs, max_new_tokens=steps, do_sample=False, pad_token_id=pad)
    expected = [
        row[: row.index(eos)] if eos in row else row
        for row in plain[:, inputs["input_ids"].shape[1] :].tolist()
    ]

    rows = [tokenizer(p)["input_ids"] for p in prompts]
    assert [
        ids for ids, _ in greedy_generate(model, rows, max_new_tokens=steps, eos_token_id=eos, pad_id=pad)
    ] == expected

    grpo_rows = [row for row in rows for _ in range(2)]
    shared = generate_shared_prefix(
        model, grpo_rows, pad, max_new_tokens=steps, do_sample=False, pad_token_id=pad
    )
    got = shared[:, max(len(r) for r in rows) :].tolist()
    assert [row[: len(expected[i // 2])] for i, row in enumerate(got)] == [
        e for e in expected for _ in range(2)
    ]


def test_grpo_rows_leaving_the_batch_keep_their_prompts_logits(tiny):
    """GRPO's layout (each prompt twice, two levels) with rows ending at different steps, as the answer
    stop ends them: after each drop, every row still running reads its own prompt's cached level and
    gets, step by step, the log-probs it gets in the full batch of plain `generate`."""
    from rlvr_cli.decoding.generation import decode_rows

    model, tokenizer = tiny
    prompts = [EXEMPLARS + q for q in QUESTIONS for _ in range(2)]
    steps = 4
    plain_inputs = tokenizer(prompts, return_tensors="pt", padding=True)
    plain = model.generate(
        **plain_inputs, max_new_tokens=steps, do_sample=False, pad_token_id=tokenizer.pad_token_id,
        output_logits=True, return_dict_in_generate=True,
    )  # fmt: skip
    # Rows 0, 2, 4 end after one token (one row per prompt left: groups [0, 1, 2]), row 3 after two
    # (groups [0, 2]: no longer equal runs), rows 1 and 5 run to the end.
    ends = [1, steps, 1, 2, 1, steps]
    tokens: list[list[int]] = [[] for _ in prompts]
    running: list[list[int]] = []
    seen: list[torch.Tensor] = []

    def choose(logits: torch.Tensor) -> torch.Tensor:
        running.append([r for r in range(len(prompts)) if len(tokens[r]) < ends[r]])
        seen.append(logits)
        return logits.argmax(dim=-1)

    def take(row: int, token: int, step: int) -> bool:
        tokens[row].append(token)
        return len(tokens[row]) == ends[row]

    prefill = prefill_shared(model, [tokenizer(p)["input_ids"] for p in prompts], tokenizer.pad_token_id)
    assert prefill.cache.layers[0].levels[1].groups.tolist() == [0, 0, 1, 1, 2, 2]
    decode_rows(model, prefill, steps, choose, take)
    assert running == [[0, 1, 2, 3, 4, 5], [1, 3, 5], [1, 5], [1, 5]]
    for step, (rows, ours) in enumerate(zip(running, seen, strict=True)):
        theirs = plain.logits[step][rows]
        torch.testing.assert_close(ours.log_softmax(-1), theirs.log_softmax(-1), atol=1e-4, rtol=1e-4)
    width = plain_inputs["input_ids"].shape[1]
    assert tokens == [row[:end] for row, end in zip(plain.sequences[:, width:].tolist(), ends, strict=True)]


def test_prompts_without_padding_equal_plain_generate(tiny, count_levels):
    """Questions of equal length, each twice: no column is padding, so transformers passes decoding
    no attention mask at all; the two levels still give plain `generate`'s log-probs."""
    model, tokenizer = tiny
    questions = [f"Question: What is {a} + {b}?\nSolution:" for a, b in [(1, 7), (2, 5), (3, 4)]]
    prompts = [EXEMPLARS + q for q in questions for _ in range(2)]
    rows = [tokenizer(p)["input_ids"] for p in prompts]
    assert len({len(r) for r in rows}) == 1
    options = dict(
        max_new_tokens=4, do_sample=False, pad_token_id=tokenizer.pad_token_id,
        output_logits=True, return_dict_in_generate=True,
    )  # fmt: skip
    plain = model.generate(**tokenizer(prompts, return_tensors="pt"), **options)
    shared = generate_shared_prefix(model, rows, tokenizer.pad_token_id, **options)
    assert shared.sequences.tolist() == plain.sequences.tolist()
    for ours, theirs in zip(shared.logits, plain.logits, strict=True):
        torch.testing.assert_close(ours.log_softmax(-1), theirs.log_softmax(-1), atol=1e-4, rtol=1e-4)
    assert count_levels[-1] == 2


def test_gqa_sdpa_applies_the_dropout_it_is_given():
    """A training forward of a model with attention dropout: both paths drop what they are told."""
    from rlvr_cli.decoding.attention import gqa_sdpa_forward

    class Causal(torch.nn.Module):
        num_key_value_groups = N_REP

    torch.manual_seed(0)
    query = torch.randn(2, KV_HEADS * N_REP, 3, DIM)
    keys, values = torch.randn(2, KV_HEADS, 3, DIM), torch.randn(2, KV_HEADS, 3, DIM)
    for kwargs in ({}, {"is_causal": False}):  # the CPU path; the hand-over to transformers' SDPA
        plain, _ = gqa_sdpa_forward(Causal(), query, keys, values, None, dropout=0.0, **kwargs)
        dropped, _ = gqa_sdpa_forward(Causal(), query, keys, values, None, dropout=0.9, **kwargs)
        assert not torch.allclose(dropped, plain), kwargs


def _one_level_cache(rows: int, l1: int, dtype=torch.float32):
    cache = CascadeCache(Config())
    k1, v1 = torch.randn(1, KV_HEADS, l1, DIM, dtype=dtype), torch.randn(1, KV_HEADS, l1, DIM, dtype=dtype)
    cache.layers[0].levels.append(Level.of(k1, v1, None))
    return cache, k1.expand(rows, -1, -1, -1), v1.expand(rows, -1, -1, -1)


def test_a_query_far_below_the_batchs_best_score_keeps_its_attention():
    """Each query's parts are shifted by its own best score: a row whose scores lie hundreds below
    another row's (a head with huge logits beside ordinary ones) still gets SDPA's output."""
    torch.manual_seed(0)
    rows, own = 3, 6
    cache, k1, v1 = _one_level_cache(rows, 5)
    k3, v3 = torch.randn(rows, KV_HEADS, own, DIM), torch.randn(rows, KV_HEADS, own, DIM)
    query = torch.randn(rows, KV_HEADS * N_REP, 1, DIM)
    query[0] *= 200.0
    out = cascade_forward(cache, query, k3, v3, None)
    expected = reference_attention(query, torch.cat([k1, k3], 2), torch.cat([v1, v3], 2), None)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[1:], expected[1:], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[:1], expected[:1], atol=1e-3, rtol=1e-3)


def test_attention_returns_the_querys_dtype():
    """bf16 in, bf16 out (the parts are merged in float32): the model's bf16 o_proj takes it."""
    torch.manual_seed(0)
    rows, own = 2, 3
    cache, _, _ = _one_level_cache(rows, 5, torch.bfloat16)
    query = torch.randn(rows, KV_HEADS * N_REP, 1, DIM, dtype=torch.bfloat16)
    k3 = torch.randn(rows, KV_HEADS, own, DIM, dtype=torch.bfloat16)
    v3 = torch.randn(rows, KV_HEADS, own, DIM, dtype=torch.bfloat16)
    assert cascade_forward(cache, query, k3, v3, None).dtype == torch.bfloat16


def test_a_composite_config_gives_a_layer_per_layer_of_its_text_decoder():
    """AutoModelForCausalLM on a Gemma 3 or Llava checkpoint: the layers are its text config's."""
    from transformers import LlamaConfig, LlavaConfig

    text = LlamaConfig(num_hidden_layers=3, hidden_size=32, intermediate_size=64, num_attention_heads=4)
    assert len(CascadeCache(LlavaConfig(text_config=text.to_dict())).layers) == 3


def _sliding_model(tokenizer, window: int):
    from transformers import MistralConfig, MistralForCausalLM

    config = MistralConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, sliding_window=window, max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    return MistralForCausalLM(config).eval()


def test_a_model_with_a_sliding_window_shares_no_prompt_and_decodes_as_generate(tiny):
    """A sliding-window layer keeps only the last keys: a prompt longer than the window held once
    in a shared level would be attended whole. Such a model's prompts are not shared; GRPO's layout
    and eval's loop (rows leaving the batch) give plain `generate`'s tokens and log-probs."""
    from transformers import Gemma2Config, Qwen2Config

    from rlvr_cli.decoding.generation import keeps_every_key
    from rlvr_cli.evaluation.generators import greedy_generate

    base, tokenizer = tiny
    model = _sliding_model(tokenizer, window=8)
    assert keeps_every_key(base.config) and not keeps_every_key(model.config)
    assert not keeps_every_key(Gemma2Config(num_hidden_layers=2))  # a sliding layer, then a full one
    assert keeps_every_key(Qwen2Config(num_hidden_layers=2))  # use_sliding_window is off by default
    prompts = [EXEMPLARS + q for q in QUESTIONS[:2] for _ in range(2)]
    rows = [tokenizer(p)["input_ids"] for p in prompts]
    prefill = prefill_shared(model, rows, tokenizer.pad_token_id)
    assert prefill.cached == 0 and not isinstance(prefill.cache, CascadeCache)
    options = dict(
        max_new_tokens=6, do_sample=False, pad_token_id=tokenizer.pad_token_id,
        output_logits=True, return_dict_in_generate=True,
    )  # fmt: skip
    inputs = tokenizer(prompts, return_tensors="pt", padding=True)
    plain = model.generate(**inputs, **options)
    shared = generate_shared_prefix(model, rows, tokenizer.pad_token_id, **options)
    width = inputs["input_ids"].shape[1]
    assert shared.sequences[:, width:].tolist() == plain.sequences[:, width:].tolist()
    for ours, theirs in zip(shared.logits, plain.logits, strict=True):
        torch.testing.assert_close(ours.log_softmax(-1), theirs.log_softmax(-1), atol=1e-4, rtol=1e-4)
    # Row 0 ends at its third token: it leaves the batch, the others go on.
    expected = plain.sequences[:, width:].tolist()
    stop = expected[0][2]
    got = greedy_generate(model, rows, max_new_tokens=6, eos_token_id=stop, pad_id=tokenizer.pad_token_id)
    assert [ids for ids, _ in got] == [row[: row.index(stop)] if stop in row else row for row in expected]
