"""Reading the final answer out of a completion: the one function rewards and evaluation share.

A completion answers in the few-shot layout `#### The final answer is N`. The rules fix the
reference implementation's flaws (../shared/GUIDE.md):

- Only the *first* answer line counts. Anything after it, including an invented follow-up
  `Question:` with its own answer line, can neither add nor change the score, and a completion
  that writes several conflicting answer lines is judged by the first alone.
- An answer line inside an invented follow-up question (after a line starting `Question:`) is not
  an answer to this question: it earns nothing.
- Numbers: minus signs (ASCII and U+2212), decimals, thousands separators (`1,234`) and `$` are
  read; a line with more than one number is ambiguous and yields no value.
- Linear time on any input: only `str.find` scans the whole completion; the regular expressions
  run on the answer line alone, which is capped at `MAX_ANSWER_LINE` characters and has no nested
  quantifiers. A 1 MB completion of `"#### " * 200_000` is read in well under a millisecond.
- Never raises, whatever the input.
"""

from __future__ import annotations

import functools
import math
import re
from typing import Any, NamedTuple

ANSWER_MARKER = "####"
ANSWER_PHRASE = "The final answer is"
QUESTION_MARKER = "Question:"
_QUESTION_LINE = "\n" + QUESTION_MARKER
# A real answer line is a few dozen characters; longer lines are malformed. The cap also bounds the
# work the regular expressions below can ever do.
MAX_ANSWER_LINE = 256
# The reference compares numbers within this absolute tolerance.
TOLERANCE = 1e-3

# A number: optional sign, optional `$` (on either side of the sign), digits with properly grouped
# thousands separators or plain digits, optional decimals. No `\s*` next to another quantifier,
# so no backtracking blow-up.
_NUMBER = re.compile(r"(-)?\$?(-)?((?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)")
# The well-formed answer line (after the `####` marker): the phrase, then the number first.
_FORMAT = re.compile(r"[ \t]{0,4}The final answer is:?[ \t]{0,4}-?\$?-?[\d.]")
# The well-formed line exactly, number included: one match settles the common case.
_WELL_FORMED = re.compile(
    r"[ \t]{0,4}The final answer is:?[ \t]{0,4}(-)?\$?(-)?((?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)\.?[ \t\r]{0,8}$"
)


class Answer(NamedTuple):
    """What a completion answered. `value` is None when there is no single readable number.

    A NamedTuple rather than a frozen dataclass: GRPO builds one per completion, and the frozen
    dataclass's constructor (~0.5 µs) was a quarter of the whole parse.
    """

    value: float | None
    text: str | None  # the number as written, normalised (no commas, no `$`), for reports
    format_ok: bool  # the first answer line is `#### The final answer is N` with exactly one number


NO_ANSWER = Answer(value=None, text=None, format_ok=False)


def completion_text(completion: Any) -> str:
    """The text of a completion in TRL's plain (str) or conversational (list of messages) form."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        completion = [completion]
    if isinstance(completion, list | tuple):
        parts: list[str] = []
        for message in completion:
            content = message.get("content") if isinstance(message, dict) else message
            if isinstance(content, str):
                parts.append(content)
            elif isinstance(content, list):  # multimodal form: [{"type": "text", "text": ...}]
                parts.extend(
                    p.get("text", "")
                    for p in content
                    if isinstance(p, dict) and isinstance(p.get("text"), str)
                )
        return "".join(parts)
    return ""


def _numbers(line: str) -> list[tuple[float, str]]:
    found = []
    for match in _NUMBER.finditer(line):
        negative = bool(match.group(1) or match.group(2))
        digits = match.group(3).replace(",", "")
        text = ("-" if negative else "") + digits
        try:
            found.append((float(text), text))
        except ValueError:  # pragma: no cover - the pattern only matches float syntax
            continue
    return found


@functools.lru_cache(maxsize=4096)
def _parse_number_text(text: str) -> float | None:
    numbers = _numbers(text.strip().replace("\u2212", "-"))
    return numbers[0][0] if len(numbers) == 1 else None


def parse_number(text: Any) -> float | None:
    """Parse a gold answer such as `"1,234"`, `"-5"`, `"$3.50"`; None when it is not one number."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        return float(text) if math.isfinite(text) else None
    if not isinstance(text, str) or len(text) > MAX_ANSWER_LINE:
        return None
    return _parse_number_text(text)


def answer_line_end(text: str) -> int | None:
    """Index just past the first answer line's newline, or None while that line is unfinished.

    Generation uses this to stop right after the answer (see `rlvr_cli/stopping.py`).
    """
    start = text.find(ANSWER_MARKER)
    if start < 0:
        return None
    newline = text.find("\n", start)
    return None if newline < 0 else newline + 1


def extract_answer(completion: Any) -> Answer:
    """Read the first answer line of a completion. Never raises."""
    text = completion_text(completion)
    try:
        return _extract(text)
    except Exception:  # pragma: no cover - defensive: a reward function must never crash training
        return NO_ANSWER


# GRPO scores each completion with every reward function: parse it once. Bounded, so a long run
# does not accumulate completions.
@functools.lru_cache(maxsize=4096)
def _extract(text: str) -> Answer:
    start = text.find(ANSWER_MARKER)
    if start < 0:
        return NO_ANSWER
    # An answer line after a line starting `Question:` belongs to an invented question. Only the
    # text before the marker is searched: an invented tail after the answer costs nothing.
    if text.startswith(QUESTION_MARKER) or text.find(_QUESTION_LINE, 0, start) >= 0:
        return NO_ANSWER
    line_start = start + len(ANSWER_MARKER)
    line_end = text.find("\n", line_start, line_start + MAX_ANSWER_LINE + 1)
    if line_end < 0:
        line_end = len(text)
    if line_end - line_start > MAX_ANSWER_LINE:
        return NO_ANSWER
    line = text[line_start:line_end]
    well_formed = _WELL_FORMED.match(line)
    if well_formed:  # the common case, in one match: the phrase, one number, nothing else
        sign = "-" if well_formed.group(1) or well_formed.group(2) else ""
        number = sign + well_formed.group(3).replace(",", "")
        return Answer(value=float(number), text=number, format_ok=True)
    if "\u2212" in line:
        line = line.replace("\u2212", "-")
    if ANSWER_MARKER in line:  # `#### #### ...`: not an answer line
        return NO_ANSWER
    numbers = _numbers(line)
    if len(numbers) != 1:
        return Answer(value=None, text=None, format_ok=False)
    value, number_text = numbers[0]
    return Answer(value=value, text=number_text, format_ok=bool(_FORMAT.match(line)))


def is_correct(predicted: float | None, gold: float | None) -> bool:
    return predicted is not None and gold is not None and abs(predicted - gold) <= TOLERANCE


def normalize_gold(answer_field: str) -> str | None:
    """The gold number of a GSM8K `answer` field (`... #### 1,234`) as text: `"1234"`.

    Negative and decimal answers are kept as written (`"-3"`, `"0.5"`). None when the field has no
    `####` line or its number cannot be read.
    """
    if not isinstance(answer_field, str):
        return None
    index = answer_field.rfind(ANSWER_MARKER)
    if index < 0:
        return None
    tail = answer_field[index + len(ANSWER_MARKER) :].strip().replace("\u2212", "-")
    numbers = _numbers(tail)
    if len(numbers) != 1:
        return None
    return numbers[0][1]
