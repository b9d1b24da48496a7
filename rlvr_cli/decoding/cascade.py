"""Cascade (shared-prefix) attention for decoding: a prompt prefix's keys and values held once.

Every rlvr prompt starts with the same few-shot exemplars, and GRPO samples `num_generations`
completions of each prompt. A plain KV cache holds the exemplars once per row, so every decoding
step reads them once per row: 16 eval rows at 8 shots read ~1,000 cached tokens 16 times per
generated token. Here the cache keeps up to two shared levels and the rows' own tokens apart:

    level 1   the prefix common to every row          keys [1, heads, L1, dim]
    level 2   a prefix per group of rows (optional)   keys [groups, heads, L2, dim] + row -> group
    rows      each row's own tokens                   keys [rows, heads, S, dim]  (a DynamicLayer)

A query attends to each part separately and the parts are merged exactly by their log-sum-exp
(softmax over a concatenation = the softmax-weighted mix of the per-part softmaxes), as in
Hydragen and FlashInfer's cascade attention. Level 1 is one matrix product for the whole batch
(all rows' queries against the single copy of the prefix), which is what saves the memory reads.

The cache reports the full length (levels + rows), so `generate`, the 2-D attention mask and the
position ids see the ordinary layout `[level 1][level 2][row tokens]`; the attention function reads
the row part's mask columns (and level 2's, which hold each row's group padding). It is registered
in transformers' attention interface as `rlvr_cascade` and switched on only inside `cascade_attention`,
so the model code is unchanged and training forwards keep SDPA.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any, NamedTuple

import torch
from transformers import AttentionInterface, DynamicCache
from transformers.cache_utils import Cache, DynamicLayer
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from rlvr_cli.decoding.attention import attention_implementation

NAME = "rlvr_cascade"

_ACTIVE: contextvars.ContextVar[CascadeCache | None] = contextvars.ContextVar("rlvr_cascade", default=None)


class Level(NamedTuple):
    """One shared level of one layer: float32 keys and values, held once (or once per group)."""

    keys: torch.Tensor  # [1 or groups, kv_heads, length, dim]
    values: torch.Tensor
    groups: torch.Tensor | None  # row -> group index; None: one copy for every row
    block: int | None  # rows per group when groups are consecutive runs of equal size (GRPO's layout)

    @classmethod
    def of(cls, keys: torch.Tensor, values: torch.Tensor, groups: torch.Tensor | None) -> Level:
        block = None
        if groups is not None:
            # Decided once here, not in every layer's attention (on a GPU, each check would sync).
            rows, n_groups = len(groups), keys.shape[0]
            size = rows // n_groups if rows % n_groups == 0 else 0
            if size and groups.tolist() == [g for g in range(n_groups) for _ in range(size)]:
                block = size
        return cls(keys.float(), values.float(), groups, block)


class CascadeLayer(DynamicLayer):
    """One decoder layer's cache: shared levels (read-only) plus the rows' own keys and values."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.levels: list[Level] = []

    def shared_length(self) -> int:
        return sum(level.keys.shape[-2] for level in self.levels)

    def get_seq_length(self) -> int:
        return self.shared_length() + super().get_seq_length()

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        super().batch_select_indices(indices)
        self.levels = [
            level if level.groups is None else Level.of(level.keys, level.values, level.groups[indices])
            for level in self.levels
        ]

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self.batch_select_indices(beam_idx)


class CascadeCache(DynamicCache):
    """A `DynamicCache` whose layers hold shared prefix levels once (see the module docstring)."""

    def __init__(self, config: Any):
        layers = config.get_text_config(decoder=True).num_hidden_layers
        Cache.__init__(
            self, layers=[CascadeLayer() for _ in range(layers)]
        )  # DynamicCache's would build its own

    def add_level(self, cache: DynamicCache, groups: torch.Tensor | None = None) -> None:
        """Append the keys and values of `cache` (batch 1, or one row per group) as a shared level.

        `groups[row]` is the group whose prefix row `row` reads (None: batch 1, read by every row).
        """
        for layer, source in zip(self.layers, cache.layers, strict=True):
            layer.levels.append(Level.of(source.keys, source.values, groups))

    def shared_length(self) -> int:
        return self.layers[0].shared_length()

    # The additive mask of the current forward, built by its first layer and reused by the others.
    bias_source: torch.Tensor | None = None
    bias: torch.Tensor | None = None


def _part(
    query: torch.Tensor,  # [rows, kv_heads, n_rep * q, dim], already scaled
    keys: torch.Tensor,  # [rows, kv_heads, L, dim]
    values: torch.Tensor,
    bias: torch.Tensor | None,  # [rows, 1, 1, q, L]: 0 where visible, -inf where not; None = all visible
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Attention of the queries over one part, unnormalised: (sum of p * v, max score, sum of p).

    p = exp(score - max); a query that sees nothing here gets max -inf and zeros, which the merge
    weighs by exp(-inf) = 0."""
    rows, kv_heads, nq, _ = query.shape
    scores = torch.matmul(query, keys.transpose(-1, -2))
    if bias is not None:
        length = scores.shape[-1]
        scores = (
            scores.view(rows, kv_heads, -1, bias.shape[-2], length)
            .add_(bias)
            .view(rows, kv_heads, nq, length)
        )
    top = scores.amax(dim=-1, keepdim=True)
    safe = top.masked_fill(torch.isinf(top), 0.0) if bias is not None else top
    probs = scores.sub_(safe).exp_()
    return torch.matmul(probs, values), top.squeeze(-1), probs.sum(dim=-1)


def _shared_part(
    query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A part held once (batch 1) and visible to every query: all rows' queries in a single product,
    so its keys and values are read once per step, not once per row."""
    rows, kv_heads, nq, dim = query.shape
    flat = query.transpose(0, 1).reshape(1, kv_heads, rows * nq, dim)
    out, top, total = _part(flat, keys, values, None)
    return (
        out.view(kv_heads, rows, nq, dim).transpose(0, 1),
        top.view(kv_heads, rows, nq).transpose(0, 1),
        total.view(kv_heads, rows, nq).transpose(0, 1),
    )


def _grouped_part(
    query: torch.Tensor, level: Level, bias: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A part held once per group of rows. Consecutive equal-size groups (GRPO's layout) run one product
    per group; any other arrangement gathers each row's group prefix."""
    rows, kv_heads, nq, dim = query.shape
    keys, values, groups, size = level
    n_groups = keys.shape[0]
    if size is not None:
        flat = (
            query.view(n_groups, size, kv_heads, nq, dim)
            .transpose(1, 2)
            .reshape(n_groups, kv_heads, size * nq, dim)
        )
        # The rows of a group share its prefix's mask columns (its padding): the first row's stands for all.
        group_bias = None if bias is None else bias.reshape(n_groups, size, *bias.shape[1:])[:, 0]
        out, top, total = _part(flat, keys, values, group_bias)
        return (
            out.view(n_groups, kv_heads, size, nq, dim).transpose(1, 2).reshape(rows, kv_heads, nq, dim),
            top.view(n_groups, kv_heads, size, nq).transpose(1, 2).reshape(rows, kv_heads, nq),
            total.view(n_groups, kv_heads, size, nq).transpose(1, 2).reshape(rows, kv_heads, nq),
        )
    return _part(query, keys[groups], values[groups], bias)


def _bias(
    cache: CascadeCache, attention_mask: torch.Tensor | None, q: int, total: int, own: int, device: Any
) -> torch.Tensor | None:
    """The additive mask [rows, 1, 1, q, total], built once per forward (every layer gets the same mask)."""
    if cache.bias_source is attention_mask and cache.bias is not None:
        return cache.bias
    source = attention_mask
    if attention_mask is None:
        if q == 1:
            return None  # transformers drops the mask when one query token sees every column
        # A plain causal prefill without padding: rebuild the causal part.
        attention_mask = torch.ones(q, total, dtype=torch.bool, device=device)
        attention_mask[:, total - own :] = torch.ones(q, own, dtype=torch.bool, device=device).tril(own - q)
        attention_mask = attention_mask[None, None]
    elif attention_mask.dtype != torch.bool:
        attention_mask = attention_mask == 0  # an additive float mask: 0 where visible
    bias = torch.zeros(attention_mask.shape, dtype=torch.float32, device=device)
    bias.masked_fill_(~attention_mask, float("-inf"))
    cache.bias_source, cache.bias = source, bias.unsqueeze(2)
    return cache.bias


def cascade_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers attention function: shared levels + the rows' own part, merged by log-sum-exp."""
    cache = _ACTIVE.get()
    layer_idx = getattr(module, "layer_idx", None)
    if cache is None or layer_idx is None or not cache.layers[layer_idx].levels:
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, **kwargs)
    layer = cache.layers[layer_idx]
    rows, heads, q, dim = query.shape
    kv_heads = key.shape[1]
    scaling = dim**-0.5 if scaling is None else scaling
    # float32 for the products and the merge (a no-op on CPU; bf16 on a GPU would lose the exactness)
    flat = (query.float() * scaling).reshape(rows, kv_heads, heads // kv_heads * q, dim)
    own = key.shape[-2]
    total = layer.shared_length() + own
    bias = _bias(cache, attention_mask, q, total, own, query.device)
    if bias is not None and bias.shape[0] == 1 and rows > 1:
        bias = bias.expand(rows, *bias.shape[1:])

    merged = attend_parts(flat, layer.levels, key.float(), value.float(), bias, own)
    return merged.reshape(rows, heads, q, dim).to(query.dtype).transpose(1, 2).contiguous(), None


def attend_parts(
    flat: torch.Tensor,
    levels: list[Level],
    keys: torch.Tensor,
    values: torch.Tensor,
    bias: torch.Tensor | None,
    own: int,
) -> torch.Tensor:
    """Attention of `flat` (scaled queries, [rows, kv_heads, n_rep * q, dim]) over the shared levels
    and the rows' own float32 `keys`/`values` (the last `own` columns of `bias`), merged exactly."""
    parts = []
    start = 0
    for level in levels:
        length = level.keys.shape[-2]
        if level.groups is None:
            parts.append(_shared_part(flat, level.keys, level.values))
        else:
            level_bias = bias[..., start : start + length] if bias is not None else None
            parts.append(_grouped_part(flat, level, level_bias))
        start += length
    own_bias = bias[..., bias.shape[-1] - own :] if bias is not None else None
    parts.append(_part(flat, keys, values, own_bias))

    # softmax over all parts = sum_i exp(max_i - M) * (p_i @ v_i) / sum_i exp(max_i - M) * sum(p_i)
    top = torch.stack([t for _, t, _ in parts]).amax(dim=0)
    numerator, denominator = None, None
    for out, part_top, part_total in parts:
        weight = torch.exp(part_top - top)
        term = out * weight.unsqueeze(-1)
        numerator = term if numerator is None else numerator + term
        part_sum = part_total * weight
        denominator = part_sum if denominator is None else denominator + part_sum
    return numerator / denominator.unsqueeze(-1)


AttentionInterface.register(NAME, cascade_attention_forward)
AttentionMaskInterface.register(NAME, sdpa_mask)


@contextlib.contextmanager
def cascade_attention(model: Any, cache: Any) -> Iterator[None]:
    """Run `model`'s attention through `cascade_attention_forward` with `cache`'s shared levels
    (nothing changes for any other cache)."""
    if not isinstance(cache, CascadeCache):
        yield
        return
    token = _ACTIVE.set(cache)
    try:
        with attention_implementation(model, NAME):
            yield
    finally:
        _ACTIVE.reset(token)
