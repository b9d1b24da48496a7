"""Decoding from fixed buffers, each step replayed as one captured CUDA graph.

A decoding step of a small model is hundreds of small kernels (per layer: norms, projections, rotary,
attention, MLP), each launched from Python. On a GPU the launches, not the memory reads, set the
pace: Qwen2.5-0.5B's weights take ~0.3 ms to read on an H100, its eager step takes tens of
milliseconds. Captured once into a CUDA graph, a step is one launch.

A graph replays fixed kernels on fixed addresses, so everything a step touches lives in buffers
allocated once (`StaticDecoder`):

    tokens, positions          [slots, 1]     the step's input, written before each replay
    rows' keys and values      [slots, kv_heads, own + max_new_tokens, dim] per layer, float32,
                               the step's key written at a column held in a device tensor
    bias                       [slots, 1, 1, levels + own + max_new_tokens]: 0 where a row sees a
                               column, -inf where not (padding, columns not yet written)

The shared levels of the prompt (`rlvr_cli.decoding.cascade`) are read as they are. The attention
is cascade attention's (`attend_parts`): the rows' part simply has more columns, masked.

A row that ends keeps its slot (its tokens are computed and ignored) until the rows still running fit
a smaller batch (a power of two): they are then moved to the first slots and the smaller batch's
graph is captured, so a step costs about the rows still running, as in `decode_rows`. On a CPU
(`graphs=False`) the same steps run eagerly: that is how the tests check them against `generate`.
"""

from __future__ import annotations

import contextlib
import contextvars
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
from transformers import AttentionInterface
from transformers.cache_utils import Cache, DynamicLayer

from rlvr_cli.decoding.attention import attention_implementation
from rlvr_cli.decoding.cascade import Level, attend_parts

NAME = "rlvr_static"

_ACTIVE: contextvars.ContextVar[StaticCache | None] = contextvars.ContextVar("rlvr_static", default=None)


class StaticLayer(DynamicLayer):
    """One layer's shared levels (read as they are) and the rows' own keys and values in fixed buffers."""

    def __init__(self, levels: list[Level], keys: torch.Tensor, values: torch.Tensor, cache: StaticCache):
        super().__init__()
        self.levels, self.keys, self.values, self.cache = levels, keys, values, cache

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        slots = key_states.shape[0]
        column = self.cache.column
        self.keys[:slots].index_copy_(2, column, key_states.float())
        self.values[:slots].index_copy_(2, column, value_states.float())
        return self.keys[:slots], self.values[:slots]


class StaticCache(Cache):
    """The cache a step hands the model: `update` writes the step's keys at `column` (a device tensor)."""

    def __init__(self, column: torch.Tensor):
        super().__init__(layers=[])
        self.column = column  # [1]: the rows' column this step's keys go to

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args: Any, **kwargs: Any
    ):
        return self.layers[layer_idx].update(key_states, value_states)


def static_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers attention function over a `StaticCache` layer; `attention_mask` is its bias."""
    layer = _ACTIVE.get().layers[module.layer_idx]  # switched on only inside StaticDecoder.active
    rows, heads, q, dim = query.shape
    kv_heads = key.shape[1]
    scaling = dim**-0.5 if scaling is None else scaling
    flat = (query.float() * scaling).reshape(rows, kv_heads, heads // kv_heads * q, dim)
    merged = attend_parts(flat, layer.levels, key, value, attention_mask.unsqueeze(2), key.shape[-2])
    return merged.reshape(rows, heads, q, dim).to(query.dtype).transpose(1, 2).contiguous(), None


# No mask function is registered with it: each step passes its bias as a 4-D mask, which transformers
# hands to every layer as it is.
AttentionInterface.register(NAME, static_attention_forward)


def buckets(rows: int) -> list[int]:
    """Batch sizes a step is captured for: `rows`, then the powers of two below it."""
    sizes = [rows]
    while sizes[-1] > 1:
        sizes.append(1 << (sizes[-1] - 1).bit_length() - 1)  # the largest power of two below
    return sizes


class StaticDecoder:
    """The decoding state of one batch in fixed buffers, and its step (captured per batch size on CUDA).

    Built from a finished prefill: `prefill_cache` holds the shared levels and the rows' own first
    keys (the columns the first forward wrote), `mask` the batch's attention mask so far.
    """

    def __init__(
        self,
        model: Any,
        prefill_cache: Any,
        mask: torch.Tensor,
        positions: torch.Tensor,
        max_new_tokens: int,
        *,
        cache_kwarg: str,
        graphs: bool,
    ):
        self.model, self.cache_kwarg, self.graphs = model, cache_kwarg, graphs
        rows, width = mask.shape
        device = mask.device
        self.cache = StaticCache(torch.zeros(1, dtype=torch.long, device=device))
        # Columns held by the shared levels (every layer holds the same; a DynamicCache none).
        shared = sum(level.keys.shape[-2] for level in getattr(prefill_cache.layers[0], "levels", []))
        for source in prefill_cache.layers:
            levels = list(getattr(source, "levels", []))
            own = source.keys.shape[-2]
            shape = (rows, source.keys.shape[1], own + max_new_tokens, source.keys.shape[-1])
            keys = torch.zeros(shape, dtype=torch.float32, device=device)
            values = torch.zeros(shape, dtype=torch.float32, device=device)
            keys[:, :, :own] = source.keys
            values[:, :, :own] = source.values
            self.cache.layers.append(StaticLayer(levels, keys, values, self.cache))
        # The cache's columns: the levels', then the rows' own (the prefill's, then one per new token).
        self.cache.column.fill_(width - shared)
        self.bias = torch.full((rows, 1, 1, width + max_new_tokens), float("-inf"), device=device)
        self.bias[:, 0, 0, :width].masked_fill_(mask.bool(), 0.0)
        self.shared = shared
        self.tokens = torch.zeros((rows, 1), dtype=torch.long, device=device)
        self.positions = positions[:, -1:].clone() + 1
        self.logits: torch.Tensor | None = None
        self.slots = rows
        self.graph: torch.cuda.CUDAGraph | None = None
        self.pool: Any = None

    def _forward(self) -> None:
        slots = self.slots
        self.bias[:slots].index_fill_(-1, self.cache.column + self.shared, 0.0)
        self.logits = self.model(
            input_ids=self.tokens[:slots],
            attention_mask=self.bias[:slots],
            position_ids=self.positions[:slots],
            use_cache=True,
            logits_to_keep=1,
            **{self.cache_kwarg: self.cache},
        ).logits[:, -1]

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Feed one token per slot, return each slot's next-token logits (valid until the next step)."""
        self.tokens[: len(tokens), 0].copy_(tokens)
        if self.graphs and self.graph is None:
            self._capture()
        if self.graph is not None:
            self.graph.replay()
        else:
            self._forward()
        self.cache.column += 1
        self.positions += 1
        assert self.logits is not None
        return self.logits

    def _capture(self) -> None:
        """Capture this batch size's step on a side stream, after one warm-up step there (as torch asks).

        `torch.cuda.graph` would also empty the allocator's cache at each capture, several times per
        generation call, and training would then allocate its memory afresh every step: the capture
        is begun and ended here directly. A model whose step cannot be captured decodes eagerly from
        the same buffers, with a warning."""
        column, positions, bias = self.cache.column.clone(), self.positions.clone(), self.bias.clone()
        try:
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                self._forward()
                graph = torch.cuda.CUDAGraph()
                graph.capture_begin(pool=self.pool)
                try:
                    self._forward()
                finally:
                    graph.capture_end()
            torch.cuda.current_stream().wait_stream(stream)
        except RuntimeError as error:  # e.g. an operation that synchronises with the host
            warnings.warn(f"decoding without CUDA graphs: capturing a step failed ({error})", stacklevel=3)
            self.graphs = False
            return
        finally:
            # The warm-up step wrote the same keys at the same column; the state moves on only by replays.
            self.cache.column.copy_(column)
            self.positions.copy_(positions)
            self.bias.copy_(bias)
        self.graph, self.pool = graph, graph.pool()

    def keep(self, slots: list[int]) -> None:
        """Move the rows in `slots` (in order) to the first slots of the smallest batch size they fit;
        the slots after them are copies of the first, decoded and ignored."""
        size = next(b for b in reversed(buckets(self.cache.layers[0].keys.shape[0])) if b >= len(slots))
        if size == self.slots:
            return
        index = torch.tensor(slots + [slots[0]] * (size - len(slots)), device=self.tokens.device)
        for layer in self.cache.layers:
            layer.keys[:size] = layer.keys.index_select(0, index)
            layer.values[:size] = layer.values.index_select(0, index)
            layer.levels = [
                level if level.groups is None else Level.of(level.keys, level.values, level.groups[index])
                for level in layer.levels
            ]
        self.bias[:size] = self.bias.index_select(0, index)
        self.positions[:size] = self.positions.index_select(0, index)
        self.slots, self.graph = size, None

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        token = _ACTIVE.set(self.cache)
        try:
            with attention_implementation(self.model, NAME):
                yield
        finally:
            _ACTIVE.reset(token)


def use_graphs(device: torch.device) -> bool:
    """Whether `decode_rows` decodes from fixed buffers: where they can be replayed as CUDA graphs.

    On a CPU a step's launches cost little beside its arithmetic, and the eager loop, whose cache
    holds only the columns written so far, is faster."""
    return device.type == "cuda"


def decode_static(
    model: Any,
    prefill_cache: Any,
    mask: torch.Tensor,
    positions: torch.Tensor,
    logits: torch.Tensor,
    max_new_tokens: int,
    choose: Callable[[torch.Tensor], torch.Tensor],
    take: Callable[[int, int, int], bool],
    *,
    cache_kwarg: str,
    graphs: bool,
) -> None:
    """`decode_rows`' loop from its first logits on, each step from `StaticDecoder`'s buffers.

    `choose` sees the logits of the rows still running only, in row order, as in `decode_rows`: a
    sampler draws the same numbers either way."""
    decoder = StaticDecoder(
        model, prefill_cache, mask, positions, max_new_tokens, cache_kwarg=cache_kwarg, graphs=graphs
    )
    active = list(range(mask.shape[0]))  # the row in each slot still running, slot order = row order
    slots = list(range(mask.shape[0]))  # the slot of each running row
    with torch.no_grad(), decoder.active():
        for step in range(max_new_tokens):
            tokens = choose(logits)
            keep = [j for j, token in enumerate(tokens.tolist()) if not take(active[j], token, step)]
            if not keep or step == max_new_tokens - 1:
                return
            if len(keep) < len(active):
                active = [active[j] for j in keep]
                slots = [slots[j] for j in keep]
                tokens = tokens[keep]
                before = decoder.slots
                decoder.keep(slots)
                if decoder.slots != before:
                    slots = list(range(len(active)))
            feed = torch.zeros(decoder.slots, dtype=torch.long, device=tokens.device)
            feed[torch.tensor(slots, device=tokens.device)] = tokens
            out = decoder.step(feed)
            logits = out if len(slots) == decoder.slots else out[torch.tensor(slots, device=out.device)]
