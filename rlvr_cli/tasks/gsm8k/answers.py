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
from typing import Any

# One Answer type, answer-line finder and limits for every task; GSM8K fills `value` with the number.
from rlvr_cli.tasks.base import (
    ANSWER_MARKER,
    MAX_ANSWER_LINE,
    NO_ANSWER,
    Answer,
    completion_text,
    find_answer_line,
)

__all__ = ["Answer", "completion_text", "extract_answer", "is_correct", "normalize_gold", "parse_number"]
# The reference compares numbers within this absolute tolerance.
TOLERANCE = 1e-3

# A number: optional sign, optional `$` (on either side of the sign), digits with properly grouped
# thousands separators or plain digits, optional decimals. No `\s*` next to another quantifier,
# so no backtracking blow-up.
_NUMBER = re.compile(r"(-)?\$?(-)?((?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)")
# The well-formed answer line (after the `####` marker): the phrase, then the number first.
# lm-eval's GSM8K flexible-extract pattern, and how much of a completion's end it reads (linear time).
_LM_EVAL_NUMBER = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
MAX_FLEXIBLE = 10_000
_FORMAT = re.compile(r"[ \t]{0,4}The final answer is:?[ \t]{0,4}-?\$?-?[\d.]")
# The well-formed line exactly, number included: one match settles the common case.
_WELL_FORMED = re.compile(
    r"[ \t]{0,4}The final answer is:?[ \t]{0,4}(-)?\$?(-)?((?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)\.?[ \t\r]{0,8}$"
)


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


def _one_number(text: str) -> float | None:
    numbers = _numbers(text.strip().replace("\u2212", "-"))
    return numbers[0][0] if len(numbers) == 1 else None


# Gold answers repeat across a run (each is scored num_generations times): parse each once.
_parse_number_text = functools.lru_cache(maxsize=4096)(_one_number)


def parse_number(text: Any) -> float | None:
    """Parse a gold answer such as `"1,234"`, `"-5"`, `"$3.50"`; None when it is not one number.

    Example:
        >>> [parse_number(x) for x in ("1,234", "\u22125", "$3.50", "3 or 4", "seven")]
        [1234.0, -5.0, 3.5, None, None]
    """
    if isinstance(text, int | float) and not isinstance(text, bool):
        return float(text) if math.isfinite(text) else None
    if not isinstance(text, str) or len(text) > MAX_ANSWER_LINE:
        return None
    return _parse_number_text(text)


def extract_answer(completion: Any) -> Answer:
    """Read the first answer line of a completion. Never raises (tests/test_rewards.py checks it on
    generated input; nothing here catches an error, so a reader that raised would fail there).

    Example:
        >>> extract_answer("7 - 3 = 4\\n#### The final answer is 4\\n#### The final answer is 5")
        Answer(value=4.0, text='4', format_ok=True)
    """
    return _extract(completion_text(completion))


def last_number(completion: Any) -> Answer:
    """lm-evaluation-harness's `flexible-extract` for GSM8K: the last number anywhere in the
    completion (its regex `(-?[$0-9.,]{2,})|(-?[0-9]+)`, then `$` and `,` stripped), whether or
    not the answer line is well formed. `format_ok` is always False: this reading ignores format.

    Example:
        >>> last_number("3 + 4 = 7, so she has $1,070.")
        Answer(value=1070.0, text='$1,070.', format_ok=False)
        >>> last_number("no number here")
        Answer(value=None, text=None, format_ok=False)
    """
    text = completion_text(completion)[-MAX_FLEXIBLE:]
    matches = _LM_EVAL_NUMBER.findall(text)
    if not matches:
        return Answer(value=None, text=None, format_ok=False)
    found = next(group for group in matches[-1] if group)
    cleaned = found.replace("$", "").replace(",", "").rstrip(".")
    try:
        value = float(cleaned) if cleaned not in ("", "-", ".") else None
    except ValueError:
        value = None
    return Answer(
        value=value if value is not None and math.isfinite(value) else None, text=found, format_ok=False
    )


def _read_first_answer(text: str) -> Answer:
    # The first `####` line that is an answer (a markdown heading `#### Step 1` is not), and none
    # after a line that opens an invented question (`Question:`, `**Question 2:**`, ...): that
    # answer belongs to the invented question.
    found = find_answer_line(text)
    if found is None:
        return NO_ANSWER
    line_start, line_end = found
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


# GRPO scores each completion with every reward function: parse it once. Bounded, so a long run
# does not accumulate completions. (Wrapped here rather than decorated: the function stays plain.)
_extract = functools.lru_cache(maxsize=4096)(_read_first_answer)


def is_correct(predicted: float | None, gold: float | None) -> bool:
    return predicted is not None and gold is not None and abs(predicted - gold) <= TOLERANCE


def normalize_gold(answer_field: str) -> str | None:
    """The gold number of a GSM8K `answer` field (`... #### 1,234`) as text: `"1234"`.

    Negative and decimal answers are kept as written (`"-3"`, `"0.5"`). None when the field has no
    `####` line or its number cannot be read.

    Example:
        >>> normalize_gold("48 / 2 = <<48/2=24>>24 ... #### 1,234"), normalize_gold("no marker")
        ('1234', None)
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
