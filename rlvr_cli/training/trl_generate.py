"""TRL's generation call with rlvr's two changes, by patching `model.generate` for its duration.

TRL's GRPOTrainer calls `model.generate` itself. `generate_with` wraps that method so the call
stops completions after their answer line (`rlvr_cli.decoding.stopping.AnswerStop`, a logits
processor) and, with `share_prefix`, runs the prompt prefix common to the batch once
(`rlvr_cli.decoding.generation.generate_shared_prefix`). The class method shows through again
afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from transformers import LogitsProcessorList

from rlvr_cli.decoding.generation import (
    generate_shared_prefix,
    sample_shared_prefix,
    supports_sampling,
    unpad_left,
)
from rlvr_cli.decoding.stopping import AnswerStop


@contextlib.contextmanager
def generate_with(
    model: Any, processor: AnswerStop | None, share_prefix: bool = True, *, cuda_graphs: bool = True
) -> Iterator[None]:
    """Patch `model.generate` for the duration (the generate call itself is TRL's).

    The patched call stops completions with `processor` and, with `share_prefix`, runs the prompt
    prefix common to the batch once (`rlvr_cli.decoding.generation`). `cuda_graphs=False` keeps
    rlvr's loop eager on a CUDA GPU too.
    """
    had_own = "generate" in vars(model)
    original = model.generate

    def generate(*args: Any, **kwargs: Any) -> Any:
        if processor is not None:
            processor.reset()
            processors = list(kwargs.pop("logits_processor", None) or [])
            kwargs["logits_processor"] = LogitsProcessorList([*processors, processor])
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        attention_mask = kwargs.get("attention_mask")
        config = kwargs.get("generation_config")
        other_tensors = [
            k for k, v in kwargs.items() if torch.is_tensor(v) and k not in ("input_ids", "attention_mask")
        ]
        if not share_prefix or args or attention_mask is None or config is None or other_tensors:
            return original(*args, **kwargs)
        kwargs.pop("input_ids"), kwargs.pop("attention_mask")
        rows = unpad_left(input_ids, attention_mask)
        others = {
            k: v
            for k, v in kwargs.items()
            if k not in ("generation_config", "logits_processor", "disable_compile")
        }
        extra_processors = [p for p in kwargs.get("logits_processor") or [] if p is not processor]
        if not others and not extra_processors and supports_sampling(config):
            # rlvr's own loop: finished rows leave the batch (TRL's settings: sampling, EOS, padding).
            return sample_shared_prefix(
                model,
                rows,
                config,
                width=input_ids.shape[1],
                stop=processor,
                static=None if cuda_graphs else False,
            )
        return generate_shared_prefix(
            model, rows, config.pad_token_id, width=input_ids.shape[1], generate=original, **kwargs
        )

    model.generate = generate
    try:
        yield
    finally:
        if had_own:
            model.generate = original
        else:
            del model.generate  # the class method shows through again
