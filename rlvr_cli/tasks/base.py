"""The Task seam: everything that makes a verifiable task a task, in one object.

A task says where its problems come from, how a prompt is written, what the gold answer is, how a
completion is read and checked, which rewards it offers, when generation should stop, and what it
reports. Everything else in rlvr (prepare, train, eval, SageMaker metrics, plots) asks the task
instead of assuming GSM8K.

Every built-in task uses the same few-shot layout, so that a base model learns the answer format
from the exemplars alone:

    Question: <question>
    Solution: Let's think step by step. <worked solution, when the source has one>
    #### The final answer is <answer>

and differs in what `<answer>` may be and how it is compared with the gold one. A new task
subclasses `Task` and overrides `load` and `check` (and `read` when its answers look different);
it registers by name in `rlvr_cli.tasks`, or from another package through the `rlvr.tasks` entry
point group.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

PROMPT_TAIL = "Solution: Let's think step by step."
ANSWER_MARKER = "####"
ANSWER_PHRASE = "The final answer is"
FORMAT_REWARD = 0.5
CORRECTNESS_REWARD = 1.0
# A real answer line is a few dozen characters; longer lines are malformed. The cap also bounds the
# work any regular expression can do on it.
MAX_ANSWER_LINE = 256

# A line that opens an invented follow-up question, in the forms small models write it:
# `Question:`, ` Question:`, `**Question:**`, `Question 2:`, `### Question 3:`, `> Question:`.
QUESTION_LINE = re.compile(r"[ \t>*_#]{0,8}Question[ \t]{0,2}\d{0,4}[ \t]{0,2}[*_]{0,2}[ \t]{0,2}:")

RewardFunc = Callable[..., list[float | None]]


class Answer(NamedTuple):
    """What a completion answered: `text` as written (None when there is no answer line)."""

    value: float | None  # the number, for numeric answers
    text: str | None
    format_ok: bool  # the first answer line is `#### The final answer is X` with a readable X


NO_ANSWER = Answer(value=None, text=None, format_ok=False)


@dataclass
class Problem:
    id: str
    question: str
    answer: str  # the source's solution text (GSM8K: ending `#### N`); exemplars show it
    final_answer: str  # the gold answer as text
    metadata: dict[str, Any] | None = None  # what a task's checker needs beyond the gold text


@dataclass
class SourceData:
    name: str
    kind: str  # hub | local | generator
    train: list[Problem]
    test: list[Problem]
    skipped: dict[str, int] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # local source files -> sha256


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


def starts_question(line: str) -> bool:
    """True for a line that opens an invented follow-up question (`Question:`, `**Question 2:**`, ...)."""
    return QUESTION_LINE.match(line) is not None


def is_answer_line(rest: str) -> bool:
    """Whether the text after a `####` marker is an answer, not a markdown heading (`#### Step 1`).

    An answer line starts with the phrase, or directly with the answer (`#### 42`, `#### -3`,
    `#### $5`, `#### \\frac{1}{2}`); a heading starts with any other word.
    """
    rest = rest.lstrip(" \t")
    if rest.startswith("#"):  # `#####`: a deeper heading
        return False
    if rest[:1].isalpha():
        return rest.startswith(ANSWER_PHRASE) or rest.startswith(ANSWER_PHRASE.lower())
    return True


def find_answer_line(text: str) -> tuple[int, int] | None:
    """(start, end) of the first answer line's content after `####`, or None.

    Skips markdown headings that start with `####`; None when a line opening an invented question
    comes first (its answer is not an answer to this question). Linear time: `str.find` over the
    text, the question pattern on line starts only, bounded per line.
    """
    position = 0
    line_start = 0
    while True:
        marker = text.find(ANSWER_MARKER, position)
        if marker < 0:
            return None
        # Any invented question between the last checked point and the marker?
        while True:
            newline = text.find("\n", line_start, marker)
            if starts_question(text[line_start : min(line_start + 40, marker)]):
                return None
            if newline < 0:
                break
            line_start = newline + 1
        content = marker + len(ANSWER_MARKER)
        end = text.find("\n", content, content + MAX_ANSWER_LINE + 1)
        if end < 0:
            end = min(len(text), content + MAX_ANSWER_LINE + 1)
        if is_answer_line(text[content:end]):
            return content, end
        position = end  # a heading: look for the next marker after its line


class StopRule:
    """One completion's text so far; `feed` returns True once generation should end it.

    It ends right after the first answer line (the newline after `#### <answer>`; a `####` heading
    does not count), or when the completion starts a line that opens an invented question.
    """

    __slots__ = ("line_start", "stopped", "text")

    def __init__(self) -> None:
        self.text = ""
        self.line_start = 0  # start of the line being written
        self.stopped = False

    def feed(self, piece: str) -> bool:
        if self.stopped:
            return True
        self.text += piece
        # Check each line completed by this piece, and the line in progress for a question opener.
        while True:
            newline = self.text.find("\n", self.line_start)
            # Only a line's first characters can open a question: bounded work per token.
            if starts_question(self.text[self.line_start : self.line_start + 40]):
                self.stopped = True
                return True
            if newline < 0:
                return False
            line = self.text[self.line_start : newline]
            marker = line.find(ANSWER_MARKER)
            if marker >= 0 and is_answer_line(line[marker + len(ANSWER_MARKER) :]):
                self.stopped = True
                return True
            self.line_start = newline + 1


# vLLM stops on fixed strings only: an invented question. (A blank line is no stop: solutions
# contain blank lines before their answer.) The answer line itself cannot be a fixed string; what
# follows it is ignored by every reward, since only the first answer line counts.
STOP_STRINGS = ["\nQuestion:", "\n Question:", "\n**Question", "\nQuestion 1", "\nQuestion 2"]


def read_answer_text(completion: Any) -> Answer:
    """The first answer line as text (`#### The final answer is X` -> X), for non-numeric tasks."""
    text = completion_text(completion)
    found = find_answer_line(text)
    if found is None:
        return NO_ANSWER
    line = text[found[0] : found[1]].strip()
    phrased = line.startswith(ANSWER_PHRASE)
    if phrased:
        line = line[len(ANSWER_PHRASE) :].lstrip(": \t")
    line = line.rstrip(" \t\r")
    if line.endswith(".") and not line.endswith(".."):
        line = line[:-1].rstrip()
    if not line:
        return NO_ANSWER
    return Answer(value=None, text=line, format_ok=phrased)


class Task:
    """A verifiable task. Subclasses set `name` and implement `load` and `check`."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""  # how reports name it
    description: ClassVar[str] = ""
    options_help: ClassVar[dict[str, str]] = {}  # option -> what it does (for errors and --help)
    stop_strings: ClassVar[list[str]] = STOP_STRINGS

    def __init__(self, options: dict[str, Any] | None = None):
        options = dict(options or {})
        self.check_options(options)
        self.options = options

    # --- options --------------------------------------------------------------------------------
    def check_options(self, options: dict[str, Any]) -> None:
        """Refuse an unknown option, naming the closest valid one."""
        import difflib

        from rlvr_cli.core.errors import UsageError

        for key in options:
            if key not in self.options_help:
                close = difflib.get_close_matches(key, list(self.options_help), n=1)
                hint = (
                    f"did you mean {close[0]!r}?"
                    if close
                    else f"valid options: {', '.join(self.options_help) or 'none'}"
                )
                raise UsageError(f"task {self.name}: unknown option {key!r}; {hint}")

    # --- problems -------------------------------------------------------------------------------
    def load(self, source: str, *, size: int, seed: int, strict: bool) -> SourceData:
        raise NotImplementedError

    # --- prompts --------------------------------------------------------------------------------
    def exemplar_text(self, problem: Problem) -> str:
        """One solved example in the few-shot layout, ending `#### The final answer is X`."""
        steps = problem.answer.strip()
        body = f"{PROMPT_TAIL} {steps}" if steps else PROMPT_TAIL
        return f"Question: {problem.question.strip()}\n{body}\n{ANSWER_MARKER} {ANSWER_PHRASE} {problem.final_answer}"

    def prompt_text(self, problem: Problem) -> str:
        """The question part of a prompt, ending where the model starts its solution."""
        return f"Question: {problem.question.strip()}\n{PROMPT_TAIL}"

    # --- reading and checking -------------------------------------------------------------------
    def read(self, completion: Any) -> Answer:
        return read_answer_text(completion)

    def check(self, answer: Answer, gold: str, metadata: dict[str, Any] | None) -> bool | None:
        """Whether `answer` is right; None when the gold answer cannot be checked (not scored)."""
        raise NotImplementedError

    def read_flexible(self, completion: Any) -> Answer:
        """The lenient reading published results also report beside the strict one: here the
        answer line if there is one, else the completion's last non-empty line. Numeric tasks
        read the last number instead (lm-eval's flexible-extract)."""
        strict = self.read(completion)
        if strict.text is not None:
            return strict
        lines = [line.strip() for line in completion_text(completion).splitlines() if line.strip()]
        return Answer(value=None, text=lines[-1], format_ok=False) if lines else NO_ANSWER

    def stop_rule(self) -> StopRule:
        return StopRule()

    # --- rewards --------------------------------------------------------------------------------
    def rewards(self) -> dict[str, RewardFunc]:
        """The rewards this task offers, by the names recipes use."""
        return {"format": self._format_reward(), "correctness": self._correctness_reward()}

    def _format_reward(self) -> RewardFunc:
        task = self

        def format_reward(completions: Sequence[Any], **kwargs: Any) -> list[float]:
            return [FORMAT_REWARD if task.read(c).format_ok else 0.0 for c in completions]

        format_reward.__doc__ = f"{FORMAT_REWARD} for a well-formed first answer line ({self.name})."
        return format_reward

    def _correctness_reward(self) -> RewardFunc:
        task = self

        def correctness_reward(
            completions: Sequence[Any], final_answer: Sequence[Any], **kwargs: Any
        ) -> list[float | None]:
            metadata = kwargs.get("metadata") or [None] * len(completions)
            out: list[float | None] = []
            for completion, gold, meta in zip(completions, final_answer, metadata, strict=True):
                verdict = task.check(task.read(completion), str(gold), _metadata(meta))
                out.append(None if verdict is None else (CORRECTNESS_REWARD if verdict else 0.0))
            return out

        correctness_reward.__doc__ = f"{CORRECTNESS_REWARD} when the first answer is right ({self.name})."
        return correctness_reward

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "options": self.options}


def _metadata(meta: Any) -> dict[str, Any] | None:
    """Metadata travels through datasets as a JSON string (Arrow needs one type per column)."""
    if isinstance(meta, str):
        import json

        try:
            return json.loads(meta)
        except ValueError:
            return None
    return meta if isinstance(meta, dict) else None
