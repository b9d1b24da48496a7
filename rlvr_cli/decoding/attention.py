"""Switching a model's attention function for the duration of a call, and SDPA that keeps GQA.

transformers' SDPA path repeats the key/value heads to the query heads (`repeat_kv`) whenever an
attention mask is passed, and the repeated copies are what the backward keeps. rlvr's policy pass
always has a mask (completions attend to a cached prompt), so on a CPU every layer saved the
prompt's and completions' keys and values three times over for SmolLM2 (9 query heads, 3 kv
heads). torch's SDPA takes `enable_gqa=True` with a mask and its CPU flash kernel handles it
natively: the same output (tests/test_prefix_logps.py), a third of that memory, and faster.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

GQA_SDPA = "rlvr_sdpa_gqa"


def gqa_sdpa_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """SDPA with the kv heads left as they are (CPU); anything else goes to transformers' SDPA."""
    if query.device.type != "cpu" or kwargs.get("is_causal") is not None or query.shape[1] % key.shape[1]:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    is_causal = attention_mask is None and query.shape[2] > 1 and getattr(module, "is_causal", True)
    out = F.scaled_dot_product_attention(
        query,
        key,
        value,
        attn_mask=attention_mask,
        dropout_p=dropout,
        scale=scaling,
        is_causal=is_causal,
        enable_gqa=True,
    )
    return out.transpose(1, 2).contiguous(), None


AttentionInterface.register(GQA_SDPA, gqa_sdpa_forward)
AttentionMaskInterface.register(GQA_SDPA, sdpa_mask)


@contextlib.contextmanager
def attention_implementation(model: Any, name: str, *, only_from: str | None = None) -> Iterator[None]:
    """Run `model` with the registered attention function `name` for the duration (the model code
    reads `config._attn_implementation` at every forward). With `only_from`, switch only a model
    that uses that implementation now (e.g. leave flash-attention alone)."""
    config = model.config
    previous = config._attn_implementation
    if only_from is not None and previous != only_from:
        yield
        return
    config._attn_implementation = name
    try:
        yield
    finally:
        config._attn_implementation = previous
