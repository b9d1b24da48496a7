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
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, width - len(row) :] = torch.tensor(row)
            mask[i, width - len(row) :] = 1
        return generate(input_ids=ids.to(device), attention_mask=mask.to(device), **generate_kwargs)

    from transformers import DynamicCache

    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        rest = row[shared:]
        ids[i, :shared] = torch.tensor(row[:shared])
        mask[i, :shared] = 1
        ids[i, width - len(rest) :] = torch.tensor(rest)
        mask[i, width - len(rest) :] = 1
    ids, mask = ids.to(device), mask.to(device)

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


def _layout(rows: list[list[int]], shared: int, width: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
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


def greedy_generate(
    model: Any,
    rows: list[list[int]],
    *,
    max_new_tokens: int,
    eos_token_id: int,
    pad_id: int,
    token_text: Any = None,
    suppress_tokens: list[int] | None = None,
    stop_rule: Any = None,
) -> list[tuple[list[int], bool]]:
    """Greedy decoding for evaluation: shared prefix run once, finished rows dropped from the batch.

    Returns, per row, the completion's token ids (EOS excluded) and whether it ended (EOS, or the
    answer line done when `token_text` is given) rather than hitting `max_new_tokens`.

    `generate` keeps every row in the batch until the longest one ends; with a few-shot model a
    single rambling completion then sets the cost of all. Here a row leaves the batch, and its KV
    cache is dropped, the moment it ends, so the work is the sum of the completions' lengths, not
    their maximum times the batch size. Same tokens as `generate` with `AnswerStop` (tested).
    """
    from transformers import DynamicCache

    from rlvr_cli.tasks.base import StopRule

    stop_rule = stop_rule or StopRule  # the task's: ends a row after its answer line

    device = model.device if hasattr(model, "device") else next(model.parameters()).device
    width = max(len(r) for r in rows)
    shared = min(common_prefix_length(rows), min(len(r) for r in rows) - 1)
    shared = shared if shared >= MIN_SHARED_TOKENS else 0
    ids, mask = (t.to(device) for t in _layout(rows, shared, width, pad_id))
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    cache_kwarg = cache_kwarg_name(model)
    cache = DynamicCache(config=model.config)
    with torch.no_grad():
        if shared:
            model(
                input_ids=ids[:1, :shared],
                attention_mask=mask[:1, :shared],
                position_ids=positions[:1, :shared],
                use_cache=True,
                logits_to_keep=1,
                **{cache_kwarg: cache},
            )
            cache.reorder_cache(torch.zeros(len(rows), dtype=torch.long, device=device))
        out = model(
            input_ids=ids[:, shared:],
            attention_mask=mask,
            position_ids=positions[:, shared:],
            use_cache=True,
            logits_to_keep=1,
            **{cache_kwarg: cache},
        )
        logits = out.logits[:, -1]
        active = list(range(len(rows)))
        next_position = positions[:, -1] + 1
        completions: list[list[int]] = [[] for _ in rows]
        ended = [False] * len(rows)
        states = [stop_rule() for _ in rows]
        suppressed = torch.tensor(suppress_tokens, device=device) if suppress_tokens else None
        for step in range(max_new_tokens):
            if suppressed is not None:
                logits[:, suppressed] = torch.finfo(logits.dtype).min
            tokens = logits.argmax(-1)
            keep = []
            for j, token in enumerate(tokens.tolist()):
                row = active[j]
                if token == eos_token_id:
                    ended[row] = True
                    continue
                completions[row].append(token)
                if token_text is not None and states[row].feed(token_text(token)):
                    ended[row] = True
                    continue
                keep.append(j)
            if not keep or step == max_new_tokens - 1:
                break
            if len(keep) < len(active):
                index = torch.tensor(keep, device=device)
                cache.batch_select_indices(index)
                mask, tokens, next_position = mask[index], tokens[index], next_position[index]
                active = [active[j] for j in keep]
            mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=1)
            out = model(
                input_ids=tokens[:, None],
                attention_mask=mask,
                position_ids=next_position[:, None],
                use_cache=True,
                logits_to_keep=1,
                **{cache_kwarg: cache},
            )
            next_position = next_position + 1
            logits = out.logits[:, -1]
    return list(zip(completions, ended, strict=True))
