"""Ending generation at the end of the answer, for training and evaluation alike.

A few-shot model that has written `#### The final answer is 18` goes on to invent the next
`Question:` and answer it too, until max length. The reference paid for all of that text, trained
on it, and scored it. rlvr ends a completion as soon as

- its first answer line is complete (the newline after `####`), or
- it starts a line with `Question:` (an invented follow-up),

by forcing the EOS token as the next token. Forcing EOS (rather than a StoppingCriteria) matters:
HF generation then marks the row finished, TRL masks everything after the first EOS out of the
loss, and the completion is not counted as cut at max length.

HF `generate` only builds stop-string criteria when it is handed a tokenizer, which TRL's
generation call does not do; a logits processor needs no tokenizer at call time. It is injected
into `model.generate` by `generate_with`. vLLM takes plain stop strings instead (`VLLM_STOP`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from rlvr_cli.tasks.base import STOP_STRINGS, StopRule

# vLLM stops on fixed strings: an invented question (see rlvr_cli.tasks.base.STOP_STRINGS).
VLLM_STOP = STOP_STRINGS


class TokenText:
    """Token id -> its text, decoded once per id (enough to find `####`, newlines and `Question:`)."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self._pieces: dict[int, str] = {}

    def __call__(self, token_id: int) -> str:
        piece = self._pieces.get(token_id)
        if piece is None:
            piece = self.tokenizer.decode([token_id], skip_special_tokens=False)
            self._pieces[token_id] = piece
        return piece


class AnswerStop(LogitsProcessor):
    """Force EOS once a completion's answer line is finished or it starts inventing a question.

    Call `reset()` before each `generate` call: the processor keeps the text of each row so far.
    """

    def __init__(self, tokenizer: Any, eos_token_id: int, rule: Callable[[], StopRule] = StopRule):
        self.token_text = TokenText(tokenizer)
        self.eos_token_id = eos_token_id
        self.rule = rule  # the task's stop rule, one per row
        self.reset()

    def reset(self) -> None:
        self._states: list[StopRule] | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self._states is None or len(self._states) != input_ids.shape[0]:
            # First step of a generate call: nothing generated yet.
            self._states = [self.rule() for _ in range(input_ids.shape[0])]
            return scores
        rows = [
            row
            for row, (state, token_id) in enumerate(zip(self._states, input_ids[:, -1].tolist(), strict=True))
            if state.feed(self.token_text(token_id))
        ]
        if rows:
            index = torch.tensor(rows, device=scores.device)
            scores[index] = torch.finfo(scores.dtype).min
            scores[index, self.eos_token_id] = 0.0
        return scores


@contextlib.contextmanager
def generate_with(model: Any, processor: AnswerStop | None, share_prefix: bool = True) -> Iterator[None]:
    """Patch `model.generate` for the duration (the generate call itself is TRL's).

    The patched call stops completions with `processor` and, with `share_prefix`, runs the prompt
    prefix common to the batch once (`rlvr_cli.training.generation`).
    """
    from rlvr_cli.training.generation import generate_shared_prefix, unpad_left

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
