"""Generation ends at the answer line, and sharing the prompt prefix changes no output."""

from __future__ import annotations

import copy
import itertools
from pathlib import Path

import pytest
import torch

from rlvr_cli.decoding.generation import common_prefix_length, generate_shared_prefix
from rlvr_cli.decoding.stopping import AnswerStop
from rlvr_cli.training.trl_generate import generate_with

from .conftest import load_model


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path):
    return load_model(tiny_model_dir)


def feed(stop: AnswerStop, tokenizer, text: str) -> list[bool]:
    """Feed `text` token by token through the processor; return, per step, whether EOS is forced next."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    prompt = torch.tensor([[1, 2, 3]])
    vocab = len(tokenizer)
    stop.reset()
    stop(prompt, torch.zeros(1, vocab))  # first step: nothing generated yet
    forced = []
    sequence = prompt
    for token in ids:
        sequence = torch.cat([sequence, torch.tensor([[token]])], dim=1)
        scores = stop(sequence, torch.zeros(1, vocab))
        forced.append(bool(scores[0].argmax() == stop.eos_token_id and scores[0].min() < -1e30))
    return forced


def test_stops_right_after_the_answer_line(tiny):
    _, tokenizer = tiny
    stop = AnswerStop(tokenizer, tokenizer.eos_token_id)
    forced = feed(stop, tokenizer, " 3 + 4 = 7\n#### The final answer is 7\n\nQuestion: more")
    text_ids = tokenizer(" 3 + 4 = 7\n#### The final answer is 7\n", add_special_tokens=False)["input_ids"]
    assert forced.index(True) == len(text_ids) - 1  # EOS is forced right after the answer line's newline


def test_stops_when_a_question_is_invented_without_an_answer(tiny):
    _, tokenizer = tiny
    stop = AnswerStop(tokenizer, tokenizer.eos_token_id)
    forced = feed(stop, tokenizer, " I do not know.\n\nQuestion: What is 2 + 2?")
    # EOS is forced right after the invented line's `Question:`, not a token (or a line) later.
    upto = tokenizer(" I do not know.\n\nQuestion:", add_special_tokens=False)["input_ids"]
    assert forced.index(True) == len(upto) - 1


def test_does_not_stop_inside_the_reasoning(tiny):
    _, tokenizer = tiny
    stop = AnswerStop(tokenizer, tokenizer.eos_token_id)
    assert not any(feed(stop, tokenizer, " 3 + 4 = 7\nso the total is 7 apples\nand #### is next"))


def test_common_prefix_length():
    assert common_prefix_length([[1, 2, 3, 4], [1, 2, 5], [1, 2, 3]]) == 2
    assert common_prefix_length([[1], [2]]) == 0
    # The first two rows share a token, the third none: 0, not the 1 found so far.
    assert common_prefix_length([[5, 1], [5, 2], [6, 1]]) == 0


def test_repeated_groups_finds_any_run_of_identical_prompts():
    from rlvr_cli.decoding.generation import repeated_groups

    # One repeated pair is enough (the last batch of `rlvr eval --samples 2 --batch-size 3`).
    assert repeated_groups([[1], [1], [2]]) == [0, 0, 1]
    assert repeated_groups([[1], [2], [2], [3]]) == [0, 1, 1, 2]
    assert repeated_groups([[1], [2], [1]]) is None  # no run: not GRPO's layout


def test_the_cache_argument_is_named_as_the_model_takes_it(tiny):
    """transformers 5.25 names it `cache` (`past_key_values` is a deprecated alias, to go in 5.40); a
    model whose forward still takes `past_key_values` (remote code) gets that name; PEFT's wrapper,
    whose forward takes **kwargs, is looked through."""
    from peft import LoraConfig, get_peft_model

    from rlvr_cli.decoding.generation import cache_kwarg_name

    model, _ = tiny

    class Remote(torch.nn.Module):
        def forward(self, input_ids=None, attention_mask=None, past_key_values=None, **kwargs): ...

    assert cache_kwarg_name(model) == "cache"
    assert cache_kwarg_name(Remote()) == "past_key_values"
    wrapped = get_peft_model(copy.deepcopy(model), LoraConfig(r=2, target_modules=["q_proj"]))
    assert cache_kwarg_name(wrapped) == "cache"


def test_shared_prefix_generation_equals_plain_generation(tiny):
    model, tokenizer = tiny
    exemplars = "Question: Tom has 2 apples and buys 3 more.\nSolution: Let's think step by step. 2 + 3 = 5\n#### The final answer is 5\n\n"
    prompts = [
        exemplars + f"Question: What is {i} + {i * 3}?\nSolution: Let's think step by step."
        for i in range(1, 5)
    ]
    prompts.append(
        exemplars + "Question: A much longer question about a farmer with many cows and goats?\nSolution:"
    )
    plain_inputs = tokenizer(prompts, return_tensors="pt", padding=True)
    plain = model.generate(
        **plain_inputs, max_new_tokens=12, do_sample=False, pad_token_id=tokenizer.pad_token_id
    )
    rows = [tokenizer(p)["input_ids"] for p in prompts]
    shared = generate_shared_prefix(
        model,
        rows,
        tokenizer.pad_token_id,
        max_new_tokens=12,
        do_sample=False,
        pad_token_id=tokenizer.pad_token_id,
    )
    width = plain_inputs["input_ids"].shape[1]
    assert shared.shape[1] == plain.shape[1]
    assert shared[:, width:].tolist() == plain[:, width:].tolist()


class EndAfter:
    """A stop rule that ends its row after `n` tokens, whatever they are."""

    def __init__(self, n: int):
        self.n, self.seen = n, 0

    def feed(self, piece: str) -> bool:
        self.seen += 1
        return self.seen >= self.n


def staggered(rows: int):
    """A stop-rule factory for a batch of `rows`: row i ends after i + 1 tokens. Rules are made in
    row order, once per generate call (hence the modulo)."""
    count = itertools.count()
    return lambda: EndAfter(next(count) % rows + 1)


EXEMPLARS = (
    "Question: Tom has 2 apples and buys 3 more.\nSolution: Let's think step by step. 2 + 3 = 5\n"
    "#### The final answer is 5\n\n"
)
PROMPTS = [
    EXEMPLARS + f"Question: What is {i} + {i * 7}?\nSolution: Let's think step by step." for i in range(1, 6)
]
STEPS = 8


def full_batch(model, tokenizer):
    """Plain HF greedy generation of PROMPTS, nothing stopped: the reference."""
    inputs = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    out = model.generate(**inputs, max_new_tokens=STEPS, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    completions = out[:, inputs["input_ids"].shape[1] :].tolist()
    # The random model never ends a row by itself, so every early end below is the stop rule's.
    assert all(len(row) == STEPS and tokenizer.eos_token_id not in row for row in completions)
    return inputs, completions


@pytest.mark.parametrize("share_prefix", [False, True], ids=["plain", "shared-prefix"])
def test_answer_stop_forces_eos_and_finished_rows_stay_finished(tiny, share_prefix):
    """TRL's generation (patched generate): row i ends after i + 1 tokens with a forced EOS, then only
    padding; the rows still running produce what they would have produced in the full batch."""
    from transformers import GenerationConfig

    model, tokenizer = tiny
    inputs, reference = full_batch(model, tokenizer)
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    stop = AnswerStop(tokenizer, eos, rule=staggered(len(PROMPTS)))
    config = GenerationConfig(max_new_tokens=STEPS, do_sample=False, pad_token_id=pad, eos_token_id=eos)
    with generate_with(model, stop, share_prefix=share_prefix):
        out = model.generate(**inputs, generation_config=config)
    assert "generate" not in vars(model)  # the class method is back
    completions = out[:, inputs["input_ids"].shape[1] :].tolist()
    for i, (row, expected) in enumerate(zip(completions, reference, strict=True)):
        assert row[: i + 1] == expected[: i + 1], i
        assert row[i + 1] == eos, i  # forced right after the row's (i + 1)-th token
        assert all(token == pad for token in row[i + 2 :]), i  # a finished row stays finished


def test_greedy_generate_drops_finished_rows_without_changing_the_others(tiny, monkeypatch):
    """Evaluation's loop: each row leaves the batch (its KV cache rows dropped) when its rule ends it;
    the rows left keep producing exactly the full batch's tokens."""
    from transformers import DynamicCache

    from rlvr_cli.decoding.stopping import TokenText
    from rlvr_cli.evaluation.generators import greedy_generate

    model, tokenizer = tiny
    _, reference = full_batch(model, tokenizer)
    dropped: list[list[int]] = []
    real = DynamicCache.batch_select_indices

    def spy(self, indices):
        dropped.append(indices.tolist())
        return real(self, indices)

    monkeypatch.setattr(DynamicCache, "batch_select_indices", spy)
    results = greedy_generate(
        model,
        [tokenizer(p)["input_ids"] for p in PROMPTS],
        max_new_tokens=STEPS,
        eos_token_id=tokenizer.eos_token_id,
        pad_id=tokenizer.pad_token_id,
        token_text=TokenText(tokenizer),
        stop_rule=staggered(len(PROMPTS)),
    )
    for i, ((ids, ended), expected) in enumerate(zip(results, reference, strict=True)):
        assert (ids, ended) == (expected[: i + 1], True), i
    # One row left the batch after each step but the last: the cache shrank to the rows still running.
    assert dropped == [[1, 2, 3, 4], [1, 2, 3], [1, 2], [1]]


def test_greedy_generate_matches_generate_with_the_answer_stop(answering_model_dir: Path):
    """A model that writes an answer line and then a question: both loops stop right after the
    answer line, on the same tokens."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlvr_cli.decoding.stopping import TokenText
    from rlvr_cli.evaluation.generators import greedy_generate

    from .conftest import answering_prompts

    tokenizer = AutoTokenizer.from_pretrained(answering_model_dir, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(answering_model_dir, dtype=torch.float32).eval()
    prompts = answering_prompts()[-5:]
    stop = AnswerStop(tokenizer, tokenizer.eos_token_id)
    inputs = tokenizer(prompts, return_tensors="pt", padding=True)
    max_new = 30
    with generate_with(model, stop, share_prefix=False):
        reference = model.generate(
            **inputs, max_new_tokens=max_new, do_sample=False, pad_token_id=tokenizer.pad_token_id
        )
    width = inputs["input_ids"].shape[1]
    results = greedy_generate(
        model,
        [tokenizer(p)["input_ids"] for p in prompts],
        max_new_tokens=max_new,
        eos_token_id=tokenizer.eos_token_id,
        pad_id=tokenizer.pad_token_id,
        token_text=TokenText(tokenizer),
    )
    for row, (ids, ended) in zip(reference[:, width:].tolist(), results, strict=True):
        expected = row[: row.index(tokenizer.eos_token_id)] if tokenizer.eos_token_id in row else row
        assert ids == expected
        assert ended and len(ids) < max_new
        assert tokenizer.decode(ids) == " 5 - 2 = 3\n#### The final answer is 3\n"  # the stop fired there


def test_sample_tokens_draws_the_given_distribution():
    from rlvr_cli.decoding.generation import sample_tokens

    torch.manual_seed(0)
    probs = torch.tensor([[0.1, 0.0, 0.6, 0.3, 0.0]]).expand(40000, -1)
    counts = torch.bincount(sample_tokens(probs), minlength=5).float() / 40000
    assert counts[1] == 0 and counts[4] == 0  # zero-weight tokens are never drawn, even the last one
    torch.testing.assert_close(counts, probs[0], atol=0.01, rtol=0)
    # Unnormalised weights draw the same distribution.
    counts = torch.bincount(sample_tokens(probs * 7), minlength=5).float() / 40000
    torch.testing.assert_close(counts, probs[0], atol=0.01, rtol=0)


def test_trl_generation_runs_rlvr_loop_with_finished_rows_leaving(tiny, monkeypatch):
    """TRL's generate call (sampling settings in a GenerationConfig) runs rlvr's loop: top-k 1
    sampling gives greedy's tokens exactly (the warpers are generate's), rows leave the batch as
    their stop rule ends them, and the output is laid out as generate's."""
    from transformers import DynamicCache, GenerationConfig

    import rlvr_cli.training.trl_generate as trl_generate

    model, tokenizer = tiny
    inputs, reference = full_batch(model, tokenizer)
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    calls, dropped = [], []
    real_loop, real_select = trl_generate.sample_shared_prefix, DynamicCache.batch_select_indices
    monkeypatch.setattr(
        trl_generate, "sample_shared_prefix", lambda *a, **k: calls.append(1) or real_loop(*a, **k)
    )
    monkeypatch.setattr(
        DynamicCache,
        "batch_select_indices",
        lambda self, i: dropped.append(i.tolist()) or real_select(self, i),
    )
    stop = AnswerStop(tokenizer, eos, rule=staggered(len(PROMPTS)))
    config = GenerationConfig(
        max_new_tokens=STEPS, do_sample=True, top_k=1, temperature=0.7, pad_token_id=pad, eos_token_id=eos
    )
    with generate_with(model, stop, share_prefix=True):
        out = model.generate(**inputs, generation_config=config)
    assert calls == [1]
    completions = out[:, inputs["input_ids"].shape[1] :].tolist()
    for i, (row, expected) in enumerate(zip(completions, reference, strict=True)):
        assert row[: i + 2] == [*expected[: i + 1], eos], i
        assert all(token == pad for token in row[i + 2 :]), i
    assert dropped == [[1, 2, 3, 4], [1, 2, 3], [1, 2], [1]]


def first_token_distributions(tiny, monkeypatch, settings: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The probabilities rlvr's loop draws each row's first token from (normalised), and those
    `generate` draws from (its processed scores), for sampling `settings`."""
    from transformers import GenerationConfig

    import rlvr_cli.decoding.generation as generation

    model, tokenizer = tiny
    inputs, _ = full_batch(model, tokenizer)
    config = GenerationConfig(
        max_new_tokens=1,
        do_sample=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **settings,
    )
    reference = (
        model.generate(**inputs, generation_config=config, output_scores=True, return_dict_in_generate=True)
        .scores[0]
        .float()
        .softmax(dim=-1)
    )
    drawn_from = []
    sample = generation.sample_tokens
    monkeypatch.setattr(
        generation, "sample_tokens", lambda probs: drawn_from.append(probs.clone()) or sample(probs)
    )
    with generate_with(model, None, share_prefix=True):
        model.generate(**inputs, generation_config=config)
    assert len(drawn_from) == 1
    return drawn_from[0] / drawn_from[0].sum(dim=-1, keepdim=True), reference


@pytest.mark.parametrize(
    "settings",
    [
        {"temperature": 0.7, "top_p": 0.9, "min_p": 0.05, "top_k": 0},  # as TRL sets them: top-k off
        {"temperature": 1.3, "top_k": 20},
        {"temperature": 0.5, "top_p": 0.95},  # top_k unset: generate's default 50
        {"temperature": 0.6, "min_p": 0.2, "top_k": 0},
    ],
    ids=["trl-style", "temperature-top_k", "default-top_k", "min_p"],
)
def test_rlvr_loop_samples_from_the_distribution_generate_samples_from(tiny, monkeypatch, settings):
    """Temperature, top-k, top-p and min-p: the probabilities rlvr's loop draws each first token from
    are those `generate` draws from (its processed scores), row by row."""
    ours, reference = first_token_distributions(tiny, monkeypatch, settings)
    assert ((ours > 0) == (reference > 0)).all()  # the same tokens kept by the warpers
    torch.testing.assert_close(ours, reference, atol=1e-4, rtol=1e-3)
    assert 1 < int((reference[0] > 0).sum()) < reference.shape[1]  # the warpers did cut the vocabulary


def test_unsupported_settings_go_to_generate(tiny, monkeypatch):
    from transformers import GenerationConfig

    import rlvr_cli.training.trl_generate as trl_generate

    model, tokenizer = tiny
    inputs = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    monkeypatch.setattr(trl_generate, "sample_shared_prefix", lambda *a, **k: pytest.fail("rlvr's loop used"))
    config = GenerationConfig(
        max_new_tokens=3, do_sample=False, repetition_penalty=1.3, pad_token_id=tokenizer.pad_token_id
    )
    with generate_with(model, None, share_prefix=True):
        out = model.generate(**inputs, generation_config=config)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 3


@pytest.mark.parametrize("shared", [True, False], ids=["shared-prefix", "nothing-shared"])
def test_a_batch_padded_wider_than_its_prompts_keeps_the_completions_at_its_width(tiny, shared):
    """TRL slices completions at its prompt batch's width, which may exceed the longest prompt (padding
    to a multiple): the prompts end at that column and the completions and log-probs are plain
    `generate`'s on the same padded batch, with or without a prefix worth sharing."""
    model, tokenizer = tiny
    prompts = (
        PROMPTS[:3] if shared else [f"Question: What is {i} + {i * 7}?\nSolution:" for i in (1, 20, 300)]
    )
    rows = [tokenizer(p)["input_ids"] for p in prompts]
    width = max(map(len, rows)) + 3
    options = dict(
        max_new_tokens=4, do_sample=False, pad_token_id=tokenizer.pad_token_id,
        output_logits=True, return_dict_in_generate=True,
    )  # fmt: skip
    padded = tokenizer(prompts, return_tensors="pt", padding="max_length", max_length=width)
    plain = model.generate(**padded, **options)
    ours = generate_shared_prefix(model, rows, tokenizer.pad_token_id, width=width, **options)
    assert ours.sequences.shape == plain.sequences.shape == (3, width + 4)
    assert ours.sequences[:, width:].tolist() == plain.sequences[:, width:].tolist()
    for a, b in zip(ours.logits, plain.logits, strict=True):
        torch.testing.assert_close(a.log_softmax(-1), b.log_softmax(-1), atol=1e-4, rtol=1e-4)


def test_only_settings_the_loop_implements_exactly_go_to_it():
    from transformers import GenerationConfig

    from rlvr_cli.decoding.generation import supports_sampling

    base = dict(max_new_tokens=8, do_sample=True, temperature=0.7, top_p=0.9, min_p=0.05, top_k=0)
    assert supports_sampling(GenerationConfig(**base))
    assert supports_sampling(GenerationConfig(**base, cache_implementation="dynamic"))
    assert not supports_sampling(GenerationConfig(**base, cache_implementation="static"))
    assert not supports_sampling(GenerationConfig(**base, no_repeat_ngram_size=3))  # a field it ignores
    assert not supports_sampling(GenerationConfig(**base, repetition_penalty=1.2))
    # TRL's GRPOTrainer always sets repetition_penalty (1.0: none): still rlvr's loop.
    assert supports_sampling(GenerationConfig(**base, repetition_penalty=1.0))
    assert not supports_sampling(GenerationConfig(**base, repetition_penalty=2.0))
    assert not supports_sampling(GenerationConfig(do_sample=True))  # no length: generate's own rules


def test_sample_tokens_never_draws_a_zero_weight_token_at_the_edges(monkeypatch: pytest.MonkeyPatch):
    """The uniform draw at its extremes: u = 0 must not pick the zero-weight tokens before the first
    positive one, and a row whose only weight is on the last token always gets that token."""
    from rlvr_cli.decoding.generation import sample_tokens

    probs = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.0, 2.0]])
    monkeypatch.setattr(torch, "rand", lambda shape, device=None: torch.zeros(shape))
    assert sample_tokens(probs).tolist() == [2, 3]
    monkeypatch.setattr(torch, "rand", lambda shape, device=None: torch.full(shape, 1 - 2**-24))
    assert sample_tokens(probs).tolist() == [3, 3]
    # rand * total rounded up to total: still the last token with weight, never a zero-weight one after it.
    monkeypatch.setattr(torch, "rand", lambda shape, device=None: torch.ones(shape))
    assert sample_tokens(
        torch.tensor([[0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 0.0, 2.0], [0.2, 0.3, 0.5, 0.0]])
    ).tolist() == [1, 3, 2]


@pytest.mark.parametrize(
    "settings",
    [
        {"temperature": 2.0, "top_k": 0},  # only the temperature warper: it must not be skipped
        {"temperature": 0.01, "top_p": 0.5, "top_k": 0},  # confident: top-p keeps one token
        {"temperature": 0.01, "min_p": 0.5, "top_k": 0},  # confident: min-p keeps one token
    ],
    ids=["temperature-only", "top_p-one-token", "min_p-one-token"],
)
def test_rlvr_loop_keeps_what_generate_keeps_at_the_extremes(tiny, monkeypatch, settings):
    ours, reference = first_token_distributions(tiny, monkeypatch, settings)
    kept = reference > 0
    assert (ours[kept] > 0).all() and (ours[~kept] == 0).all()
    # In log space: a near-uniform distribution over 49k tokens has every probability under 1e-4.
    torch.testing.assert_close(ours[kept].log(), reference[kept].log(), atol=1e-4, rtol=0)
    kept = kept.sum(dim=-1)
    assert (
        (kept == 1).all()
        if "top_p" in settings or "min_p" in settings
        else (kept == reference.shape[1]).all()
    )


def test_rlvr_loop_ends_rows_exactly_where_generate_does(tiny):
    """At the length limit and with several EOS ids: a row whose stop fires with room left gets the
    stop's EOS (not the smallest of the config's), one whose stop fires on the last allowed token
    gets none, and a row that writes one of the config's EOS ids ends there; the batch is as wide
    as `generate`'s, with the prompts padded to `width`."""
    from transformers import GenerationConfig

    from rlvr_cli.decoding.generation import sample_shared_prefix

    model, tokenizer = tiny
    rows = [tokenizer(p)["input_ids"] for p in PROMPTS]
    width = max(map(len, rows)) + 3
    padded = tokenizer(PROMPTS, return_tensors="pt", padding="max_length", max_length=width)
    written = model.generate(**padded, max_new_tokens=1, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    natural = int(written[0, -1])  # the random model's greedy first token, the same for every row
    stop_eos = len(tokenizer) - 1

    def both(other_eos: int) -> tuple[list, list]:
        config = GenerationConfig(
            max_new_tokens=3, do_sample=True, top_k=1, pad_token_id=tokenizer.pad_token_id,
            eos_token_id=[stop_eos, other_eos],
        )  # fmt: skip
        stops = [AnswerStop(tokenizer, stop_eos, rule=staggered(len(PROMPTS))) for _ in range(2)]
        plain = model.generate(**padded, generation_config=config, logits_processor=[stops[0]])
        ours = sample_shared_prefix(model, rows, config, width=width, stop=stops[1])
        assert ours.shape == plain.shape
        return ours[:, width:].tolist(), plain[:, width:].tolist()  # the prompts' layouts differ

    ours, plain = both(stop_eos - 1)  # an EOS id smaller than the stop's, never written
    assert ours == plain
    assert len(ours[0]) == 3
    assert ours[0][1] == stop_eos and ours[1][2] == stop_eos  # forced, with room left
    assert stop_eos not in ours[2]  # its stop fired on the third and last token
    ours, plain = both(natural)
    assert ours == plain == [[natural]] * len(PROMPTS)  # every row wrote an EOS id and ended


def test_without_a_shared_prefix_the_loop_decodes_plain_left_padding(tiny):
    """Prompts sharing fewer than MIN_SHARED_TOKENS: the prefill is plain left padding with nothing
    cached, and rlvr's loop (decode_rows, as eval and the sampling loop run it) gets plain
    `generate`'s logits at every step."""
    from rlvr_cli.decoding.cascade import CascadeCache
    from rlvr_cli.decoding.generation import decode_rows, prefill_shared

    model, tokenizer = tiny
    prompts = [f"Question: What is {i} + {i * 7}?\nSolution:" for i in (1, 20, 300)]
    rows = [tokenizer(p)["input_ids"] for p in prompts]
    width = max(map(len, rows)) + 3  # padding in every row
    padded = tokenizer(prompts, return_tensors="pt", padding="max_length", max_length=width)
    prefill = prefill_shared(model, rows, tokenizer.pad_token_id, width)
    assert not isinstance(prefill.cache, CascadeCache) and prefill.cached == 0
    assert prefill.ids.tolist() == padded["input_ids"].tolist()
    assert prefill.mask.tolist() == padded["attention_mask"].tolist()
    steps = 3
    plain = model.generate(
        **padded, max_new_tokens=steps, do_sample=False, pad_token_id=tokenizer.pad_token_id,
        output_logits=True, return_dict_in_generate=True,
    )  # fmt: skip
    seen: list[torch.Tensor] = []

    def choose(logits: torch.Tensor) -> torch.Tensor:
        seen.append(logits)
        return logits.argmax(dim=-1)

    decode_rows(model, prefill, steps, choose, lambda row, token, step: False)
    assert len(seen) == steps
    for ours, theirs in zip(seen, plain.logits, strict=True):
        torch.testing.assert_close(ours.log_softmax(-1), theirs.log_softmax(-1), atol=1e-4, rtol=1e-4)
