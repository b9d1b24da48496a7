"""Progress of long work, reported by library code and drawn by the CLI.

Library functions take `progress: Progress | None` and call it as `progress(description, done,
total)`, `done` and `total` in the work's own unit (rows, bytes; `total` None while unknown). They
never draw: `rlvr_cli.cli.render.progress` turns the calls into the one progress bar on stderr, and
a script calling the library passes its own function or nothing.
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str, float, "float | None"], None]


def silent(description: str, done: float, total: float | None) -> None:
    """The progress of a caller that shows none."""


class Counter:
    """Adds up increments (bytes from an S3 transfer's callback) and reports the running total.

    >>> seen = []
    >>> c = Counter(lambda d, n, t: seen.append((d, n, t)), total=10)
    >>> c.describe("train"); c.advance(4); c.advance(6)
    >>> seen
    [('train', 0, 10), ('train', 4, 10), ('train', 10, 10)]
    """

    def __init__(self, progress: Progress | None, total: float | None) -> None:
        self.progress = progress or silent
        self.total = total
        self.done: float = 0
        self.description = ""

    def describe(self, description: str) -> None:
        self.description = description
        self.progress(description, self.done, self.total)

    def advance(self, amount: float) -> None:
        self.done += amount
        self.progress(self.description, self.done, self.total)
