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
into `model.generate` by `rlvr_cli.training.trl_generate`. vLLM takes plain stop strings instead
(`rlvr_cli.tasks.base.STOP_STRINGS`, through `Task.stop_strings`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from transformers import LogitsProcessor

from rlvr_cli.tasks.base import StopRule


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
