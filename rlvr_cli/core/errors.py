"""Exit codes and the one exception type the CLI turns into a one-line error.

Every expected failure (bad input, missing file, unreachable service) raises `RlvrError` with a
message that names the problem and the fix. The CLI prints it on one line, without a traceback,
and exits with its code. Scripts branch on the codes, so they live in one enum.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1  # a run failed: bad data, a service error, a training error
    USAGE = 2  # bad command line or recipe: nothing was started
    # `rlvr status` / `rlvr train --remote --wait`: the state of a SageMaker job
    IN_PROGRESS = 3  # InProgress or Stopping
    FAILED = 4
    STOPPED = 5
    NOT_FOUND = 6
    INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT


class RlvrError(Exception):
    """An expected failure: the message is shown to the user as is, on one line."""

    def __init__(self, message: str, code: ExitCode = ExitCode.ERROR):
        message = "" if message is None else str(message)
        super().__init__(message)
        self.message = message
        self.code = code


class UsageError(RlvrError):
    """Bad input given by the user (arguments, recipe values): exit code 2."""

    def __init__(self, message: str):
        super().__init__(message, ExitCode.USAGE)


def first_line(exc: BaseException, limit: int | None = 200) -> str:
    """The first non-empty line of an exception's message, at most `limit` characters (None: all); the
    exception's type name when the message is empty (never an IndexError)."""
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return (lines[0].strip() if lines else type(exc).__name__)[:limit]


def one_line(exc: BaseException) -> str:
    """`Type: first line of the message`, or `Type` alone for an empty message: for a record or a
    failure reason that must stay one line."""
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0].strip()}" if lines else type(exc).__name__


def error_lines(exc: RlvrError) -> list[str]:
    """The lines the CLI prints for an expected error, one `error:` each; the exception's type name
    when its message is empty."""
    return [line for line in exc.message.splitlines() if line.strip()] or [type(exc).__name__]
