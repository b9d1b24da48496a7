"""Per-token log-probabilities of GRPO completions, with each shared prompt run once.

GRPO scores `num_generations` completions of the *same* prompt, and every rlvr prompt starts with
the same few-shot exemplars. TRL's forward passes (the policy with gradients, the reference model
for the KL term) run the transformer over `[prompt | completion]` for every row, so each prompt
token is computed `num_generations` times per pass, and with 2-8 shot prompts the prompt is most
of the tokens. Here the rows are grouped by prompt and the work is laid out as a tree:

    prefix common to every row (the exemplars)      run once, batch 1
      └─ rest of prompt A (its question)            run once per prompt, batch 1
           └─ completions A1..A8                    run once per row, on the cached prompt,
                                                     in chunks of similar length (`length_chunks`)

Keys and values of the shared parts go into a KV cache that is repeated for the rows below; the
repeat is an ordinary autograd op, so gradients from every completion flow back into the shared
prompt activations exactly as they would through separate copies. Each row's positions are those
of its unpadded tokens, as in generation; RoPE attention depends on relative positions only, so the
log-probs equal TRL's own (tests/test_prefix_logps.py compares values and gradients).

Only used where that holds and is safe: one process (DDP/DeepSpeed expect one forward per
backward), text-only inputs, and no gradient checkpointing while gradients are on (transformers
drops the cache inside checkpointed layers). Everything else falls back to TRL's method.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from rlvr_cli.decoding.generation import MIN_SHARED_TOKENS, cache_kwarg_name, common_prefix_length, unpad_left

IGNORE = -100


def _fork(cache: Any, config: Any) -> Any:
    """A new cache that starts from `cache`'s keys and values; updating it leaves `cache` as it was."""
    from transformers import DynamicCache

    fork = DynamicCache(config=config)
    if cache is not None:
        for i, layer in enumerate(cache.layers):
            if layer.keys is not None and layer.keys.numel():
                fork.update(layer.keys, layer.values, i)
    return fork


# A chunk of completions is padded to its longest; start a new chunk rather than pad by more than this.
MAX_PADDING = 0.25


def length_chunks(rows: list[int], lengths: list[int]) -> list[list[int]]:
    """`rows` grouped, longest first, into chunks whose padding (to the chunk's longest completion)
    stays under MAX_PADDING of their tokens. GRPO completions of one prompt range from a few dozen
    tokens to max_completion_length, and a forward and backward over one batch padded to the
    longest spends much of its time on padding."""
    order = sorted(range(len(rows)), key=lambda i: -lengths[i])
    chunks: list[list[int]] = []
    tokens = 0
    for i in order:
        if chunks:
            longest = lengths[chunks[-1][0]]
            size = len(chunks[-1]) + 1
            if longest * size <= (1 + MAX_PADDING) * (tokens + lengths[i]):
                chunks[-1].append(i)
                tokens += lengths[i]
                continue
        chunks.append([i])
        tokens = lengths[i]
    return [[rows[i] for i in chunk] for chunk in chunks]


def shared_prefix_logps(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    logits_to_keep: int,
    *,
    compute_entropy: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs (and entropies) of the last `logits_to_keep` tokens of each row, shape (rows, logits_to_keep).

    `input_ids` is TRL's `[left-padded prompt | right-padded completion]`; `model` has TRL's fused
    LM head (`model(..., labels=..., fused_lm_head=True)` returns `log_probs` and `entropy`).
    On a CPU with SDPA, attention keeps the kv heads unrepeated (`rlvr_cli.decoding.attention`).
    """
    from rlvr_cli.decoding.attention import GQA_SDPA, attention_implementation

    with attention_implementation(model, GQA_SDPA, only_from="sdpa"):
        return _shared_prefix_logps(model, input_ids, attention_mask, logits_to_keep, compute_entropy)


def _shared_prefix_logps(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    logits_to_keep: int,
    compute_entropy: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    device = input_ids.device
    completion_ids = input_ids[:, -logits_to_keep:]
    completion_mask = attention_mask[:, -logits_to_keep:]
    prompts = unpad_left(input_ids[:, :-logits_to_keep], attention_mask[:, :-logits_to_keep])
    groups: dict[tuple[int, ...], list[int]] = {}
    for row, prompt in enumerate(prompts):
        groups.setdefault(tuple(prompt), []).append(row)

    config = model.config
    cache_kwarg = cache_kwarg_name(model)
    # The last prompt token is fed with the completions: its output predicts the first completion token.
    shared = min(common_prefix_length(prompts), min(len(p) for p in prompts) - 1)
    root = None
    if len(groups) > 1 and shared >= MIN_SHARED_TOKENS:
        root = _fork(None, config)
        model(
            input_ids=torch.tensor([prompts[0][:shared]], device=device),
            use_cache=True,
            logits_to_keep=1,
            **{cache_kwarg: root},
        )
    else:
        shared = 0

    order: list[int] = []
    logps: list[torch.Tensor] = []
    entropies: list[torch.Tensor] = []
    for prompt, rows in groups.items():
        cache = _fork(root, config)
        rest = prompt[shared:-1]
        if rest:
            model(
                input_ids=torch.tensor([rest], device=device),
                use_cache=True,
                logits_to_keep=1,
                **{cache_kwarg: cache},
            )
        lengths = completion_mask[torch.tensor(rows, device=device)].sum(dim=1).tolist()
        length_of = dict(zip(rows, lengths, strict=True))
        for chunk in length_chunks(rows, lengths):
            # Each chunk runs only up to its longest completion: padding costs a forward and backward too.
            width = max(1, max(length_of[r] for r in chunk))
            chunk_cache = _fork(cache, config)  # the forward appends to it; the prompt's stays as it is
            chunk_cache.batch_repeat_interleave(len(chunk))
            index = torch.tensor(chunk, device=device)
            completions = completion_ids[index, :width]
            first = torch.full((len(chunk), 1), prompt[-1], dtype=completions.dtype, device=device)
            labels = torch.cat(
                [
                    torch.full_like(first, IGNORE),
                    completions.masked_fill(completion_mask[index, :width] == 0, IGNORE),
                ],
                dim=1,
            )
            # No attention mask: completions are right-padded, and under the causal mask a real token
            # never sees the padding after it.
            out = model(
                input_ids=torch.cat([first, completions], dim=1),
                labels=labels,
                fused_lm_head=True,
                **{cache_kwarg: chunk_cache},
            )
            order.extend(chunk)
            # Back to TRL's width: padding positions get 0 (its completion mask drops them).
            logps.append(F.pad(out.log_probs[:, -width:], (0, logits_to_keep - width)))
            if compute_entropy:
                entropies.append(F.pad(out.entropy[:, -width:], (0, logits_to_keep - width)))

    restore = torch.empty(len(order), dtype=torch.long, device=device)
    restore[torch.tensor(order, device=device)] = torch.arange(len(order), device=device)
    all_logps = torch.cat(logps)[restore]
    all_entropies = torch.cat(entropies)[restore] if compute_entropy else None
    return all_logps, all_entropies
