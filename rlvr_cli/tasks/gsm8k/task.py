"""GSM8K: grade-school word problems with one number as the answer (the product's default task).

Problems come from the Hub (`openai/gsm8k`), a local copy, or the offline GSM-style generator
(`--source reasoning-gym`); see `rlvr_cli.tasks.gsm8k.sources`. Answers are read by `rlvr_cli.tasks.gsm8k.answers` (signs,
decimals, thousands separators, `$`) and compared as numbers within 1e-3.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rlvr_cli.tasks.base import Answer, Problem, RewardFunc, SourceData, Task


class GSM8KTask(Task):
    name = "gsm8k"
    title = "GSM8K"
    description = "grade-school math word problems; the answer is one number"
    options_help: ClassVar[dict[str, str]] = {}

    def load(self, source: str, *, size: int, seed: int, strict: bool) -> SourceData:
        from rlvr_cli.tasks.gsm8k.sources import load_source

        return load_source(source, strict=strict, size=size, seed=seed)

    def exemplar_text(self, problem: Problem) -> str:
        from rlvr_cli.tasks.gsm8k.sources import exemplar_text

        return exemplar_text(problem)

    def read(self, completion: Any) -> Answer:
        from rlvr_cli.tasks.gsm8k.answers import extract_answer

        return extract_answer(completion)

    def read_flexible(self, completion: Any) -> Answer:
        from rlvr_cli.tasks.gsm8k.answers import last_number

        return last_number(completion)

    def check(self, answer: Answer, gold: str, metadata: dict[str, Any] | None) -> bool | None:
        from rlvr_cli.tasks.gsm8k.answers import is_correct, parse_number

        value = parse_number(gold)
        return None if value is None else is_correct(answer.value, value)

    def rewards(self) -> dict[str, RewardFunc]:
        from rlvr_cli.tasks.gsm8k.rewards import REWARDS

        return dict(REWARDS)
