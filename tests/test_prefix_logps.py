"""The shared-prompt forward pass gives TRL's log-probs and gradients, with each prompt run once."""

from __future__ import annotations

import contextlib
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from rlvr_cli.training.prefix_logps import shared_prefix_logps

from .conftest import load_model


@pytest.fixture(params=[1.0, 0.7], ids=["temperature-1.0", "temperature-0.7"])
def policy(tiny_model_dir: Path, request):
    """The tiny Llama with TRL's fused LM head (at the sampling temperature, which divides the logits)
    and a LoRA adapter, as GRPOTrainer sets it up."""
    from peft import LoraConfig, get_peft_model
    from trl.trainer.utils import add_fused_lm_head

    torch.manual_seed(0)
    model, _ = load_model(tiny_model_dir)
    add_fused_lm_head(model, temperature=request.param, outputs=("log_probs", "entropy"))
    model = get_peft_model(
        model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    model.train()
    return model


def _batch(pad: int = 0, layout: str = "two-groups"):
    """TRL's layout: left-padded prompts | right-padded completions. Two groups of three rows.

    The prompts share a 20-token prefix (the 'exemplars') and differ in length (left padding).
    `one-group`: the six rows share one prompt (one prompt per device batch); `nothing-shared`: two
    prompts with no common prefix worth running once; `prefix`: one prompt is the start of the other
    (each still has a token of its own to run).
    """
    generator = torch.Generator().manual_seed(1)
    exemplars = torch.randint(5, 500, (20,), generator=generator).tolist()
    prompt_a = [*exemplars, 11, 12, 13, 14, 15]
    prompt_b = [*exemplars, 21, 22]
    if layout == "nothing-shared":
        prompt_b = [7, *exemplars[1:], 21, 22]
    if layout == "prefix":
        prompt_b = prompt_a[:-3]
    prompts = [prompt_a, prompt_b, prompt_a, prompt_b, prompt_a, prompt_b]  # interleaved, as a shuffle would
    if layout == "one-group":
        prompts = [prompt_a] * 6
    lengths = [6, 3, 1, 6, 4, 5]
    width_p, width_c = max(map(len, prompts)), max(lengths)
    ids = torch.full((6, width_p + width_c), pad)
    mask = torch.zeros_like(ids)
    for i, (prompt, n) in enumerate(zip(prompts, lengths, strict=True)):
        ids[i, width_p - len(prompt) : width_p] = torch.tensor(prompt)
        mask[i, width_p - len(prompt) : width_p] = 1
        ids[i, width_p : width_p + n] = torch.randint(5, 500, (n,), generator=generator)
        mask[i, width_p : width_p + n] = 1
    return ids, mask, width_c


def _trl_logps(model, ids, mask, keep):
    """TRL's own GRPOTrainer._get_per_token_logps_and_entropies, called unbound: of the trainer it
    needs only its accelerator's autocast (and, for TRL's profiling wrapper, whether it is the main
    process)."""
    from trl import GRPOTrainer

    trainer = SimpleNamespace(
        accelerator=SimpleNamespace(autocast=contextlib.nullcontext, is_main_process=True)
    )
    logps, entropies, _ = GRPOTrainer._get_per_token_logps_and_entropies(
        trainer, model, ids, mask, keep, compute_entropy=True
    )
    return logps, entropies


@pytest.mark.parametrize("layout", ["two-groups", "one-group", "nothing-shared", "prefix"])
def test_log_probs_and_entropies_equal_trls(policy, layout: str):
    ids, mask, keep = _batch(layout=layout)
    with torch.no_grad():
        expected, expected_entropy = _trl_logps(policy, ids, mask, keep)
        got, entropy = shared_prefix_logps(policy, ids, mask, keep, compute_entropy=True)
    completion_mask = mask[:, -keep:].bool()
    assert got.shape == expected.shape
    torch.testing.assert_close(got[completion_mask], expected[completion_mask], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(
        entropy[completion_mask], expected_entropy[completion_mask], atol=1e-5, rtol=1e-4
    )
    assert torch.all(got[~completion_mask] == 0)  # padding scores nothing, as in TRL


def test_gradients_equal_trls(policy):
    ids, mask, keep = _batch()
    completion_mask = mask[:, -keep:]
    weights = torch.linspace(-1.0, 1.0, ids.size(0))[:, None]  # per-row advantages, signs mixed

    def grads(compute):
        policy.zero_grad()
        logps = compute()
        (weights * logps * completion_mask).sum().backward()
        return {n: p.grad.clone() for n, p in policy.named_parameters() if p.requires_grad}

    expected = grads(lambda: _trl_logps(policy, ids, mask, keep)[0])
    got = grads(lambda: shared_prefix_logps(policy, ids, mask, keep)[0])
    assert expected.keys() == got.keys() and expected
    for name in expected:
        assert expected[name].abs().sum() > 0, name
        torch.testing.assert_close(got[name], expected[name], atol=1e-5, rtol=1e-3, msg=name)


def test_the_reference_pass_through_disabled_adapters_equals_trls(policy):
    ids, mask, keep = _batch()
    completion_mask = mask[:, -keep:].bool()
    with torch.no_grad(), policy.disable_adapter():
        expected, _ = _trl_logps(policy, ids, mask, keep)
        got, _ = shared_prefix_logps(policy, ids, mask, keep)
    torch.testing.assert_close(got[completion_mask], expected[completion_mask], atol=1e-5, rtol=1e-4)


def test_each_prompt_token_is_run_once(policy):
    """Tokens through the transformer: the shared prefix once, each question once, then the completions."""
    ids, mask, keep = _batch()
    seen: list[int] = []
    base = policy.get_base_model().model
    hook = base.embed_tokens.register_forward_hook(lambda module, args, out: seen.append(args[0].numel()))
    try:
        with torch.no_grad():
            shared_prefix_logps(policy, ids, mask, keep)
    finally:
        hook.remove()
    # 20 shared tokens; prompt A's rest 5-1, B's 2-1 (their last token goes with the completions);
    # then each group's completions (A: 6, 1, 4 tokens; B: 3, 6, 5) in chunks padded to their longest,
    # with the prompt's last token: A [6, 4] and [1], B [6, 5] and [3], not 3 rows x (1 + keep) each.
    assert seen == [20, 4, 2 * (1 + 6), 1 * (1 + 1), 1, 2 * (1 + 6), 1 * (1 + 3)]
    assert sum(seen) < mask.numel() / 2


def test_length_chunks_bound_the_padding():
    from rlvr_cli.training.prefix_logps import length_chunks

    lengths = [256, 40, 250, 90, 200, 60, 230, 120]
    chunks = length_chunks(list(range(8)), lengths)
    assert sorted(r for c in chunks for r in c) == list(range(8))
    for chunk in chunks:
        padded = max(lengths[r] for r in chunk) * len(chunk)
        assert padded <= 1.25 * sum(lengths[r] for r in chunk)
    # Far fewer tokens than one batch padded to 256, in a few forwards, not one per row.
    assert sum(max(lengths[r] for r in c) * len(c) for c in chunks) < 0.75 * 8 * 256
    assert len(chunks) < 8
    assert length_chunks([3, 4], [10, 10]) == [[3, 4]]
    # Padding of exactly MAX_PADDING is allowed: 5 x 2 = 1.25 x (5 + 3).
    assert length_chunks([0, 1], [5, 3]) == [[0, 1]]
    # A chunk's tokens add up over all its rows: a third 10 still fits (30 <= 1.25 x 30).
    assert length_chunks([0, 1, 2], [10, 10, 10]) == [[0, 1, 2]]


def test_a_fork_of_a_cache_with_nothing_in_it_is_empty(tiny_model_dir: Path):
    """A one-token prompt with nothing shared leaves its cache's layers without keys: the fork for a
    chunk skips them."""
    from transformers import AutoConfig, DynamicCache

    from rlvr_cli.training.prefix_logps import _fork

    config = AutoConfig.from_pretrained(tiny_model_dir)
    empty = DynamicCache(config=config)
    assert empty.layers and empty.layers[0].keys is None
    assert _fork(empty, config).get_seq_length() == 0


def test_policy_pass_keeps_the_kv_heads_unrepeated(policy, monkeypatch):
    """On a CPU the policy pass hands SDPA the model's 2 kv heads (not 4 repeated copies) with the
    mask, and leaves the model's attention setting as it found it."""
    import torch.nn.functional as F

    calls = []
    real = F.scaled_dot_product_attention

    def spy(query, key, value, *args, **kwargs):
        calls.append((query.shape[1], key.shape[1], kwargs.get("enable_gqa", False)))
        return real(query, key, value, *args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    ids, mask, keep = _batch()
    before = policy.config._attn_implementation
    shared_prefix_logps(policy, ids, mask, keep)
    assert calls and set(calls) == {(4, 2, True)}
    assert policy.config._attn_implementation == before == "sdpa"
