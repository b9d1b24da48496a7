"""Batched HF generation that computes a shared prompt prefix once.

Every rlvr prompt starts with the same few-shot exemplars (8 shots: ~1,000 of ~1,100 tokens), and
GRPO repeats each prompt `num_generations` times. Plain `generate` runs the transformer over all
of it for every row. Here the longest token prefix common to all rows is run once (batch 1), its
KV cache copied to every row, and only the rest of each prompt is run per row:

    plain:          [pad pad | exemplars ... question A]      every row: all tokens
                    [pad pad | exemplars ... question B]
    shared prefix:  [exemplars (cached once) | pad pad | question A]
                    [exemplars (cached once) | pad     | question B]

The padding sits between the prefix and the rest, masked out; position ids come from the
attention mask, so every real token keeps the position it has in the plain layout and greedy
outputs are the same (tests/test_generation.py checks this). On a CPU the prompt forward pass is
most of the cost of an 8-shot evaluation, so this is a large share of rlvr's speed there.
"""

from __future__ import annotations

from typing import Any

import torch

# Below this many shared tokens the bookkeeping is not worth it.
MIN_SHARED_TOKENS = 16


def common_prefix_length(rows: list[list[int]]) -> int:
    if not rows:
        return 0
    first = rows[0]
    length = min(len(r) for r in rows)
    for row in rows[1:]:
        i = 0
        while i < length and row[i] == first[i]:
            i += 1
        length = i
        if length == 0:
            break
    return length


def cache_kwarg_name(model: Any) -> str:
    """transformers renamed `past_key_values` to `cache` during 5.x; use whichever this version takes."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # PEFT wraps the model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def unpad_left(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[list[int]]:
    """Token lists of a left-padded batch, padding removed."""
    return [ids[mask.bool()].tolist() for ids, mask in zip(input_ids, attention_mask, strict=True)]


def generate_shared_prefix(
    model: Any,
    rows: list[list[int]],
    pad_id: int,
    *,
    width: int | None = None,
    generate: Any = None,
    **generate_kwargs: Any,
) -> torch.Tensor:
    """`model.generate` over token lists; returns sequences whose first `width` columns are the prompts.

    The prompt part of each returned row is laid out `[prefix][padding][rest]`: callers slice
    `[:, width:]` for the completions, as they would with left padding. `width` defaults to the
    longest row; `generate` to `model.generate` (a wrapper passes the method it wraps).
    """
    device = model.device if hasattr(model, "device") else next(model.parameters()).device
    width = max(width or 0, max(len(r) for r in rows))
    generate = generate or model.generate
    # Keep at least one token per row out of the cache: generate needs an uncached token to start from.
    shared = min(common_prefix_length(rows), min(len(r) for r in rows) - 1)
    if shared < MIN_SHARED_TOKENS:
        ids, mask = layout_rows(rows, 0, width, pad_id)
        return generate(input_ids=ids.to(device), attention_mask=mask.to(device), **generate_kwargs)

    from transformers import DynamicCache

    ids, mask = (t.to(device) for t in layout_rows(rows, shared, width, pad_id))

    cache = DynamicCache(config=model.config)
    cache_kwarg = cache_kwarg_name(model)
    with torch.no_grad():
        model(
            input_ids=ids[:1, :shared],
            attention_mask=mask[:1, :shared],
            position_ids=torch.arange(shared, device=device).unsqueeze(0),
            use_cache=True,
            **{cache_kwarg: cache},
        )
    cache.reorder_cache(torch.zeros(len(rows), dtype=torch.long, device=device))  # copy row 0 to every row
    return generate(input_ids=ids, attention_mask=mask, **{cache_kwarg: cache}, **generate_kwargs)


def layout_rows(
    rows: list[list[int]], shared: int, width: int, pad_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """`[prefix][padding][rest]` token ids and attention mask (`shared` = 0 gives plain left padding)."""
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        rest = row[shared:]
        ids[i, :shared] = torch.tensor(row[:shared], dtype=torch.long)
        mask[i, :shared] = 1
        ids[i, width - len(rest) :] = torch.tensor(rest, dtype=torch.long)
        mask[i, width - len(rest) :] = 1
    return ids, mask
