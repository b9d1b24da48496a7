"""A user's own verifiable data, no code: local files with a question and a gold answer.

    rlvr prepare --task custom --source my_data/ --compare exact

Rows need `question` (built into the few-shot layout) or `prompt` (used as written, after the
exemplars), and `answer`; an optional `solution` is shown in exemplars. `--compare` chooses how
the first answer line is checked against `answer`:

- `numeric` (default): one number, within 1e-3 (signs, decimals, `1,234`, `$`);
- `exact`: the same text, ignoring surrounding spaces, case and a final period;
- `math-verify`: equivalent mathematical expressions (needs `rlvr[math]`).
"""

from __future__ import annotations

from typing import Any, ClassVar

from rlvr_cli.core.errors import UsageError
from rlvr_cli.tasks.base import Answer, Problem, SourceData, Task
from rlvr_cli.tasks.files import load_dir, text_field

COMPARISONS = ("numeric", "exact", "math-verify")


def _normalise(text: str) -> str:
    text = " ".join(text.strip().split()).casefold()
    return text[:-1].rstrip() if text.endswith(".") else text


class CustomTask(Task):
    name = "custom"
    title = "custom"
    description = "your own JSONL/parquet with question (or prompt) and answer columns"
    options_help: ClassVar[dict[str, str]] = {
        "compare": f"how answers are compared: {', '.join(COMPARISONS)}"
    }

    def __init__(self, options: dict[str, Any] | None = None):
        super().__init__(options)
        self.compare = str(self.options.get("compare") or "numeric")
        if self.compare not in COMPARISONS:
            raise UsageError(f"--compare {self.compare}: choose one of {', '.join(COMPARISONS)}")
        if self.compare == "math-verify":
            from rlvr_cli.tasks.math import _math_verify

            _math_verify()

    def readable(self, gold: str) -> bool:
        if self.compare == "numeric":
            from rlvr_cli.tasks.gsm8k.answers import parse_number

            return parse_number(gold) is not None
        if self.compare == "math-verify":
            from rlvr_cli.tasks.math import parse_math

            return bool(parse_math(gold))
        return bool(gold.strip())

    def load(self, source: str, *, size: int, seed: int, strict: bool) -> SourceData:
        def make(split: str, index: int, row: dict[str, Any]) -> Problem | None:
            if "answer" not in row:
                raise KeyError("answer")
            gold = "" if row["answer"] is None else str(row["answer"]).strip()
            if not self.readable(gold):
                return None
            verbatim = isinstance(row.get("prompt"), str) and row["prompt"].strip()
            question = row["prompt"] if verbatim else text_field(row, "question", "prompt")
            return Problem(
                id=str(row.get("id") or f"{split}-{index}"),
                question=question,
                answer=str(row.get("solution") or ""),
                final_answer=gold,
                metadata={"verbatim_prompt": True} if verbatim else None,
            )

        return load_dir(source, make, "'question' (or 'prompt') and 'answer'", strict)

    def prompt_text(self, problem: Problem) -> str:
        if problem.metadata and problem.metadata.get("verbatim_prompt"):
            return problem.question
        return super().prompt_text(problem)

    def read(self, completion: Any) -> Answer:
        if self.compare == "numeric":
            from rlvr_cli.tasks.gsm8k.answers import extract_answer

            return extract_answer(completion)
        return super().read(completion)

    def read_flexible(self, completion: Any) -> Answer:
        if self.compare == "numeric":
            from rlvr_cli.tasks.gsm8k.answers import last_number

            return last_number(completion)
        return super().read_flexible(completion)

    def check(self, answer: Answer, gold: str, metadata: dict[str, Any] | None) -> bool | None:
        if not self.readable(gold):
            return None
        if self.compare == "numeric":
            from rlvr_cli.tasks.gsm8k.answers import is_correct, parse_number

            return is_correct(answer.value, parse_number(gold))
        if answer.text is None:
            return False
        if self.compare == "exact":
            return _normalise(answer.text) == _normalise(gold)
        from rlvr_cli.tasks.math import equivalent

        return equivalent(answer.text, gold)
