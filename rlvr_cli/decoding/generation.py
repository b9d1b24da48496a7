"""Batched generation that holds the shared prompt prefix once, in the cache and in attention.

Every rlvr prompt starts with the same few-shot exemplars (8 shots: ~1,000 of ~1,100 tokens), and
GRPO repeats each prompt `num_generations` times. Plain `generate` runs the transformer over all
of it for every row and keeps its keys and values once per row, so each decoding step reads them
once per row. Here (`prefill_shared`):

    level 1   the prefix common to all rows runs once (batch 1) and is cached once;
    level 2   with repeated prompts (GRPO), the rest of each distinct prompt runs once per group
              and is cached once per group;
    rows      only each row's remaining tokens run per row.

Decoding attends to the levels through `rlvr_cli.decoding.cascade` (cascade attention: each part
separately, merged exactly by log-sum-exp). The token layout seen by `generate` stays

    [level 1][level 2, each group's padding after it][padding][rest of the row]

with the padding masked out and position ids taken from the attention mask, so every real token
keeps the position it has in the plain left-padded layout and greedy outputs are the same
(tests/test_generation.py checks this against plain `generate`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

# Below this many shared tokens the bookkeeping is not worth it.
MIN_SHARED_TOKENS = 16


def keeps_every_key(config: Any) -> bool:
    """Whether every attention layer's cache keeps every key (transformers' plain DynamicLayer).

    rlvr's shared-prefix caches hold a prefix's keys once and count positions by them. A layer with a
    sliding window (Mistral, Gemma 2 and 3, Qwen2 with use_sliding_window) or chunked attention keeps
    only the last keys and attends only to them: such a model's prompts are not shared."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    return all(type(layer) is DynamicLayer for layer in DynamicCache(config=config).layers)


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


@dataclass
class SharedPrefill:
    """The prompts laid out for decoding, the shared levels already run into `cache`."""

    ids: torch.Tensor  # [rows, width] `[level 1][level 2][padding][rest]`
    mask: torch.Tensor  # [rows, width]
    cache: Any  # a CascadeCache holding the levels, or an empty DynamicCache when nothing is shared
    cached: int  # columns already in the cache (levels 1 and 2); decoding starts with ids[:, cached:]

    @property
    def positions(self) -> torch.Tensor:
        return (self.mask.cumsum(-1) - 1).clamp(min=0)


def repeated_groups(rows: list[list[int]]) -> list[int] | None:
    """Row -> group index when the rows are runs of identical prompts (GRPO's layout), else None."""
    groups = [0]
    for previous, row in itertools.pairwise(rows):
        groups.append(groups[-1] + (row != previous))
    return groups if groups[-1] + 1 < len(rows) else None


def prefill_shared(model: Any, rows: list[list[int]], pad_id: int, width: int | None = None) -> SharedPrefill:
    """Run the prefix shared by all rows once (level 1) and, for runs of identical rows, each prompt's
    rest once per run (level 2); the last token of every row stays uncached, for decoding to start from."""
    from transformers import DynamicCache

    from rlvr_cli.decoding.cascade import CascadeCache, cascade_attention

    device = model.device if hasattr(model, "device") else next(model.parameters()).device
    width = max(width or 0, max(len(r) for r in rows))
    # Keep at least one token per row out of the cache: decoding needs an uncached token to start from.
    shared = min(common_prefix_length(rows), min(len(r) for r in rows) - 1)
    if shared < MIN_SHARED_TOKENS or not keeps_every_key(model.config):
        ids, mask = layout_rows(rows, 0, width, pad_id)
        return SharedPrefill(ids.to(device), mask.to(device), DynamicCache(config=model.config), 0)

    groups = repeated_groups(rows)
    group_rows: list[list[int]] = []
    if groups is not None:
        firsts = [i for i, g in enumerate(groups) if i == 0 or g != groups[i - 1]]
        group_rows = [rows[i][shared:-1] for i in firsts]
        if max(len(r) for r in group_rows) == 0:
            groups = None
    second = max((len(r) for r in group_rows), default=0) if groups is not None else 0
    ids, mask = layout_rows(rows, shared, width, pad_id, second=second)
    ids, mask = ids.to(device), mask.to(device)
    cache_kwarg = cache_kwarg_name(model)
    cache = CascadeCache(model.config)
    with torch.no_grad():
        level1 = DynamicCache(config=model.config)
        model(
            input_ids=ids[:1, :shared],
            attention_mask=mask[:1, :shared],
            position_ids=torch.arange(shared, device=device).unsqueeze(0),
            use_cache=True,
            logits_to_keep=1,
            **{cache_kwarg: level1},
        )
        cache.add_level(level1)
        if groups is not None:
            # Each distinct prompt's rest, right-padded, on top of level 1 (itself through cascade attention).
            group_cache = CascadeCache(model.config)
            group_cache.add_level(level1)
            group_ids = torch.full((len(group_rows), second), pad_id, dtype=torch.long, device=device)
            group_mask = torch.zeros((len(group_rows), shared + second), dtype=torch.long, device=device)
            group_mask[:, :shared] = 1
            for g, row in enumerate(group_rows):
                group_ids[g, : len(row)] = torch.tensor(row, dtype=torch.long)
                group_mask[g, shared : shared + len(row)] = 1
            with cascade_attention(model, group_cache):
                model(
                    input_ids=group_ids,
                    attention_mask=group_mask,
                    position_ids=torch.arange(shared, shared + second, device=device).expand(
                        len(group_rows), -1
                    ),
                    use_cache=True,
                    logits_to_keep=1,
                    **{cache_kwarg: group_cache},
                )
            cache.add_level(group_cache, groups=torch.tensor(groups, device=device))
    return SharedPrefill(ids, mask, cache, shared + second)


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

    The prompt part of each returned row is laid out as in `prefill_shared`: callers slice
    `[:, width:]` for the completions, as they would with left padding. `width` defaults to the
    longest row; `generate` to `model.generate` (a wrapper passes the method it wraps).
    """
    from rlvr_cli.decoding.cascade import CascadeCache, cascade_attention

    generate = generate or model.generate
    prefill = prefill_shared(model, rows, pad_id, width)
    if not isinstance(prefill.cache, CascadeCache):
        return generate(input_ids=prefill.ids, attention_mask=prefill.mask, **generate_kwargs)
    with cascade_attention(model, prefill.cache):
        return generate(
            input_ids=prefill.ids,
            attention_mask=prefill.mask,
            **{cache_kwarg_name(model): prefill.cache},
            **generate_kwargs,
        )


# GenerationConfig fields `sample_shared_prefix` implements; any other set field goes to `generate`.
SAMPLING_FIELDS = {
    "max_new_tokens",
    "do_sample",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "repetition_penalty",
    "pad_token_id",
    "bos_token_id",
    "eos_token_id",
    "cache_implementation",
    "disable_compile",
    "transformers_version",
    "_from_model_config",
}


def supports_sampling(config: Any) -> bool:
    """Whether `sample_shared_prefix` implements this GenerationConfig exactly (else use `generate`)."""
    extra = set(config.to_diff_dict()) - SAMPLING_FIELDS
    return (
        not extra
        and config.max_new_tokens is not None
        and (config.repetition_penalty in (None, 1.0))
        and config.cache_implementation in (None, "dynamic")
    )


def sample_tokens(probs: torch.Tensor) -> torch.Tensor:
    """One token per row from `probs` (rows of non-negative weights), by inverse CDF.

    Draws the same distribution as `torch.multinomial(probs, 1)`, which on a CPU spends ~11 ms per
    step on one exponential variate per vocabulary entry; this draws one uniform per row.
    """
    cdf = probs.float().cumsum(dim=-1)
    total = cdf[:, -1:]
    # u < total always: the product can round up to total, and no index has cumulative weight above
    # it (clamping to the last index would draw the last token even if its weight is zero).
    u = torch.minimum(
        torch.rand((probs.shape[0], 1), device=probs.device) * total, total.nextafter(total.new_zeros(()))
    )
    # right=True: the first index whose cumulative weight exceeds u, so zero-weight tokens are never
    # drawn. A row without any weight (never from softmax) gets the last index, not one past it.
    return torch.searchsorted(cdf, u, right=True).clamp_(max=probs.shape[-1] - 1).squeeze(1)


GENERATE_DEFAULT_TOP_K = 50  # transformers' GenerationConfig._get_default_generation_params


def sample_shared_prefix(
    model: Any,
    rows: list[list[int]],
    config: Any,
    *,
    width: int | None = None,
    stop: Any = None,
    static: bool | None = None,
) -> torch.Tensor:
    """What `generate(..., generation_config=config)` returns (temperature, top-k, top-p, min-p
    sampling or greedy), with the shared prefix held once and every row dropped from the batch the
    moment it ends, so the step costs the rows still running, not the longest row times all.

    `stop` is an `AnswerStop`: a row whose stop rule fires gets EOS as its next token, as the logits
    processor forces in `generate`. Rows are padded with `pad_token_id` after their EOS. `static` is
    `decode_rows`'.
    """
    from transformers.generation.logits_process import (
        LogitsProcessorList,
        MinPLogitsWarper,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    pad_id = config.pad_token_id
    eos = config.eos_token_id
    eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
    forced_eos = stop.eos_token_id if stop is not None else min(eos_ids)
    # The warpers `generate` applies for these settings, in its order. An unset top_k is 50 there
    # (transformers' global generation defaults fill it in); TRL always sets it (0: off).
    top_k = GENERATE_DEFAULT_TOP_K if config.top_k is None else config.top_k
    warpers = LogitsProcessorList()
    if config.do_sample:
        if config.temperature is not None and config.temperature != 1.0:
            warpers.append(TemperatureLogitsWarper(config.temperature))
        if top_k != 0:
            warpers.append(TopKLogitsWarper(top_k=top_k, min_tokens_to_keep=1))
        if config.top_p is not None and config.top_p < 1.0:
            warpers.append(TopPLogitsWarper(top_p=config.top_p, min_tokens_to_keep=1))
        if config.min_p is not None:
            warpers.append(MinPLogitsWarper(min_p=config.min_p, min_tokens_to_keep=1))

    states = [stop.rule() for _ in rows] if stop is not None else None
    completions: list[list[int]] = [[] for _ in rows]

    def choose(logits: torch.Tensor) -> torch.Tensor:
        scores = warpers(None, logits.float())
        return sample_tokens(scores.softmax(dim=-1)) if config.do_sample else scores.argmax(dim=-1)

    def take(row: int, token: int, step: int) -> bool:
        completions[row].append(token)
        if token in eos_ids:
            return True
        if states is not None and states[row].feed(stop.token_text(token)):
            if step + 1 < config.max_new_tokens:
                completions[row].append(forced_eos)  # what the forcing processor makes certain
            return True
        return False

    prefill = prefill_shared(model, rows, pad_id, width)
    decode_rows(model, prefill, config.max_new_tokens, choose, take, static=static)
    longest = max(len(c) for c in completions)
    out = torch.full(
        (len(rows), prefill.ids.shape[1] + longest), pad_id, dtype=torch.long, device=prefill.ids.device
    )
    out[:, : prefill.ids.shape[1]] = prefill.ids
    for i, completion in enumerate(completions):
        out[i, prefill.ids.shape[1] : prefill.ids.shape[1] + len(completion)] = torch.tensor(completion)
    return out


def decode_rows(
    model: Any,
    prefill: SharedPrefill,
    max_new_tokens: int,
    choose: Callable[[torch.Tensor], torch.Tensor],
    take: Callable[[int, int, int], bool],
    *,
    static: bool | None = None,
) -> None:
    """Decode from `prefill`, one token per running row per step: `choose(logits)` picks the tokens,
    `take(row, token, step)` records one and says whether its row has ended. An ended row leaves
    the batch at once (its cache rows dropped), so a step costs the rows still running.

    `static` (default: on a CUDA device) decodes from fixed buffers instead, each step one captured
    CUDA graph there (`rlvr_cli.decoding.graphs`): the same logits, step by step.
    """
    from rlvr_cli.decoding.cascade import cascade_attention
    from rlvr_cli.decoding.graphs import decode_static, use_graphs

    device = prefill.ids.device
    mask, cache, positions = prefill.mask, prefill.cache, prefill.positions
    cache_kwarg = cache_kwarg_name(model)
    active = list(range(prefill.ids.shape[0]))
    with torch.no_grad(), cascade_attention(model, cache):
        logits = model(
            input_ids=prefill.ids[:, prefill.cached :],
            attention_mask=mask,
            position_ids=positions[:, prefill.cached :],
            use_cache=True,
            logits_to_keep=1,
            **{cache_kwarg: cache},
        ).logits[:, -1]
        # Fixed buffers hold every key, so only a model whose every layer keeps every key decodes from them.
        if (use_graphs(device) if static is None else static) and keeps_every_key(model.config):
            decode_static(
                model, cache, mask, positions, logits, max_new_tokens, choose, take,
                cache_kwarg=cache_kwarg, graphs=device.type == "cuda",
            )  # fmt: skip
            return
        next_position = positions[:, -1] + 1
        for step in range(max_new_tokens):
            tokens = choose(logits)
            keep = [j for j, token in enumerate(tokens.tolist()) if not take(active[j], token, step)]
            if not keep or step == max_new_tokens - 1:
                return
            if len(keep) < len(active):
                index = torch.tensor(keep, device=device)
                cache.batch_select_indices(index)
                mask, tokens, next_position = mask[index], tokens[index], next_position[index]
                active = [active[j] for j in keep]
            mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=1)
            logits = model(
                input_ids=tokens[:, None],
                attention_mask=mask,
                position_ids=next_position[:, None],
                use_cache=True,
                logits_to_keep=1,
                **{cache_kwarg: cache},
            ).logits[:, -1]
            next_position = next_position + 1


def layout_rows(
    rows: list[list[int]], shared: int, width: int, pad_id: int, second: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """`[prefix][padding][rest]` token ids and attention mask (`shared` = 0 gives plain left padding).

    With `second` > 0 (level 2: runs of identical rows), the `second` columns after the prefix hold
    each row's tokens up to its last, right-padded, and the rest is the row's last token.
    """
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, :shared] = torch.tensor(row[:shared], dtype=torch.long)
        mask[i, :shared] = 1
        if second:
            middle = row[shared:-1]
            ids[i, shared : shared + len(middle)] = torch.tensor(middle, dtype=torch.long)
            mask[i, shared : shared + len(middle)] = 1
            rest = row[-1:]
        else:
            rest = row[shared:]
        ids[i, width - len(rest) :] = torch.tensor(rest, dtype=torch.long)
        mask[i, width - len(rest) :] = 1
    return ids, mask
