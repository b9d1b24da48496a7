"""The recipe's `difficulty_filter`: prompts that keep earning equal rewards sit out for a while.

A prompt whose group of completions was all right (or all wrong) `streak` times in a row is, for
now, too easy (or too hard) to teach anything: its groups have zero advantage. It is set aside for
`steps` optimizer steps; while aside, a batch that draws it gets a fresh prompt in its place, so
the generation it would cost goes to a prompt that may teach. After the pause it comes back with a
clean record (the model has moved on). Prompts are told apart by their row id. Each process keeps
its own record of the prompts it generated for; a resumed run starts with an empty record.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

REPLACEMENT_TRIES = 3  # draws of fresh prompts per batch before a set-aside prompt is kept after all


class SetAside:
    def __init__(self, streak: int, steps: int) -> None:
        self.streak = streak
        self.steps = steps
        self.equal_in_a_row: dict[str, int] = {}
        self.aside_until: dict[str, int] = {}  # id -> first step it is back

    def is_aside(self, row: dict[str, Any], step: int) -> bool:
        until = self.aside_until.get(str(row.get("id")))
        if until is None:
            return False
        if step >= until:
            del self.aside_until[str(row.get("id"))]
            return False
        return True

    def record(self, rows: Sequence[dict[str, Any]], taught: Sequence[bool], step: int) -> None:
        """One scored group per row: did its rewards differ?"""
        for row, differed in zip(rows, taught, strict=True):
            key = str(row.get("id"))
            if differed:
                self.equal_in_a_row.pop(key, None)
                continue
            count = self.equal_in_a_row.get(key, 0) + 1
            if count >= self.streak:
                self.equal_in_a_row.pop(key, None)
                self.aside_until[key] = step + self.steps
            else:
                self.equal_in_a_row[key] = count

    def replace(
        self,
        rows: list[dict[str, Any]],
        group_size: int,
        step: int,
        draw: Callable[[int, int], list[dict[str, Any]]],
    ) -> tuple[list[dict[str, Any]], int]:
        """`rows` (groups of group_size) with each set-aside prompt's group swapped for a fresh
        prompt's; draw(groups, try) returns rows for that many groups. Returns the rows and the
        number of groups swapped."""
        groups = [rows[i : i + group_size] for i in range(0, len(rows), group_size)]
        aside = [i for i, g in enumerate(groups) if self.is_aside(g[0], step)]
        swapped = 0
        for attempt in range(REPLACEMENT_TRIES):
            if not aside:
                break
            fresh = draw(len(aside), attempt)
            candidates = [fresh[i : i + group_size] for i in range(0, len(fresh), group_size)]
            still = []
            for index, candidate in zip(aside, candidates, strict=True):
                if self.is_aside(candidate[0], step):
                    still.append(index)
                else:
                    groups[index] = candidate
                    swapped += 1
            aside = still
        return [row for g in groups for row in g], swapped
