"""Competition math with boxed answers (MATH, MATH-500 and the like), checked with math-verify.

    rlvr prepare --task math --source my_math/ --shots 4

Rows need `problem` (or `question`) and `answer` (or a `solution` whose last `\\boxed{...}` is the
answer). A completion answers `#### The final answer is \\boxed{X}`; X and the gold answer are
compared by math-verify (the checker TRL and open-r1 use): `\\frac{1}{2}`, `0.5` and `1/2` are
equal, so are equivalent expressions and intervals.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rlvr_cli.core.errors import RlvrError
from rlvr_cli.tasks.base import ANSWER_MARKER, ANSWER_PHRASE, Answer, Problem, SourceData, Task
from rlvr_cli.tasks.files import load_dir, text_field

INSTALL = "pip install 'rlvr[math]' (math-verify)"


def last_boxed(text: str) -> str | None:
    r"""The content of the last `\boxed{...}` in `text` (braces balanced), or None."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    i = start + len("\\boxed{")
    depth, begin = 1, i
    while i < len(text):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[begin:i]
        i += 1
    return None


def _math_verify() -> Any:
    try:
        import math_verify
    except ImportError as exc:
        raise RlvrError(f"the math task needs math-verify: {INSTALL}") from exc
    return math_verify


def _timeout() -> int | None:
    """math-verify bounds sympy with SIGALRM, which only the main thread can use."""
    import threading

    return 5 if threading.current_thread() is threading.main_thread() else None


def parse_math(text: str) -> list[Any]:
    """math-verify's parse of a LaTeX answer; [] when it cannot read it."""
    import logging

    mv = _math_verify()
    logging.getLogger("math_verify").setLevel(logging.ERROR)  # its per-call timeout notices
    text = text.strip()
    if "\\boxed" not in text and not text.startswith("$"):
        text = f"${text}$"
    try:
        return mv.parse(text, parsing_timeout=_timeout())
    except Exception:  # a checker must never crash training: unreadable is wrong
        return []


def equivalent(answer: str, gold: str) -> bool:
    mv = _math_verify()
    parsed_gold, parsed = parse_math(gold), parse_math(answer)
    if not parsed_gold or not parsed:
        return False
    try:
        return bool(mv.verify(parsed_gold, parsed, timeout_seconds=_timeout()))
    except Exception:
        return False


class MathTask(Task):
    name = "math"
    title = "MATH"
    description = "boxed-answer competition math, compared with math-verify"
    options_help: ClassVar[dict[str, str]] = {}

    def load(self, source: str, *, size: int, seed: int, strict: bool) -> SourceData:
        _math_verify()

        def make(split: str, index: int, row: dict[str, Any]) -> Problem | None:
            question = text_field(row, "problem", "question")
            solution = str(row.get("solution") or "")
            gold = row.get("answer")
            gold = str(gold) if gold not in (None, "") else last_boxed(solution)
            if gold is None or not parse_math(gold):
                return None
            return Problem(id=f"{split}-{index}", question=question, answer=solution, final_answer=gold)

        return load_dir(
            source, make, "'problem' (or 'question') and 'answer' (or a boxed 'solution')", strict
        )

    def exemplar_text(self, problem: Problem) -> str:
        from rlvr_cli.tasks.base import PROMPT_TAIL

        steps = problem.answer.strip()
        body = f"{PROMPT_TAIL} {steps}" if steps else PROMPT_TAIL
        return (
            f"Question: {problem.question.strip()}\n{body}\n"
            f"{ANSWER_MARKER} {ANSWER_PHRASE} \\boxed{{{problem.final_answer}}}"
        )

    def read(self, completion: Any) -> Answer:
        from rlvr_cli.tasks.base import read_answer_text

        answer = read_answer_text(completion)
        if answer.text is None:
            return answer
        boxed = last_boxed(answer.text)
        return Answer(
            value=None,
            text=boxed if boxed is not None else answer.text,
            format_ok=answer.format_ok and boxed is not None,
        )

    def check(self, answer: Answer, gold: str, metadata: dict[str, Any] | None) -> bool | None:
        if answer.text is None:
            return False
        return equivalent(answer.text, gold)
