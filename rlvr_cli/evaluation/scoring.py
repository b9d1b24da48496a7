"""Scoring evaluation samples and the statistics reported with them. Pure Python, no torch.

Accuracy comes with a 95 % Wilson score interval (sound at small n and near 0 or 1, unlike the
normal approximation). Two models on the same problems are compared pairwise: problems one fixes
and the other breaks, with McNemar's exact test on those discordant pairs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from rlvr_cli.tasks import DEFAULT_TASK


@dataclass
class Sample:
    id: str
    question: str
    gold: str
    completion: str
    extracted: str | None
    correct: bool
    format_ok: bool
    completion_tokens: int
    cut: bool  # hit max_new_tokens without finishing

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def score(row: dict[str, Any], completion: str, tokens: int, cut: bool, task: Any = None) -> Sample:
    """One evaluated problem, read and checked by `task` (the default task, GSM8K, when None): the
    same reading and check the correctness reward uses in training."""
    from rlvr_cli.tasks import get_task
    from rlvr_cli.tasks.base import _metadata

    task = task or get_task(DEFAULT_TASK)
    answer = task.read(completion)
    correct = bool(task.check(answer, str(row["final_answer"]), _metadata(row.get("metadata"))))
    return Sample(
        id=str(row.get("id", "")),
        question=row.get("question", ""),
        gold=str(row["final_answer"]),
        completion=completion,
        extracted=answer.text,
        correct=correct,
        format_ok=answer.format_ok,
        completion_tokens=tokens,
        cut=cut,
    )


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    if n == 0:
        return (0.0, 0.0)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def mcnemar_exact(fixed: int, broken: int) -> float:
    """Two-sided exact McNemar p-value: a binomial test of `fixed` among `fixed + broken` at 1/2."""
    n = fixed + broken
    if n == 0:
        return 1.0
    k = min(fixed, broken)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def summarize(samples: list[Sample], wall_seconds: float) -> dict[str, Any]:
    n = len(samples)
    correct = sum(s.correct for s in samples)
    tokens = sum(s.completion_tokens for s in samples)
    low, high = wilson_interval(correct, n)
    return {
        "n": n,
        "correct": correct,
        "accuracy": correct / n if n else 0.0,
        "accuracy_ci95": [low, high],
        "format_rate": sum(s.format_ok for s in samples) / n if n else 0.0,
        "cut_rate": sum(s.cut for s in samples) / n if n else 0.0,
        "mean_completion_tokens": tokens / n if n else 0.0,
        "wall_seconds": wall_seconds,
        "problems_per_second": n / wall_seconds if wall_seconds > 0 else 0.0,
        "tokens_per_second": tokens / wall_seconds if wall_seconds > 0 else 0.0,
    }


def compare(base: list[Sample], tuned: list[Sample]) -> dict[str, Any]:
    """Paired comparison on the problems both evaluated (matched by id)."""
    base_by_id = {s.id: s for s in base}
    pairs = [(base_by_id[t.id], t) for t in tuned if t.id in base_by_id]
    fixed = sum(1 for b, t in pairs if not b.correct and t.correct)
    broken = sum(1 for b, t in pairs if b.correct and not t.correct)
    n = len(pairs)
    base_acc = sum(b.correct for b, _ in pairs) / n if n else 0.0
    tuned_acc = sum(t.correct for _, t in pairs) / n if n else 0.0
    return {
        "n": n,
        "accuracy_difference": tuned_acc - base_acc,
        "fixed": fixed,
        "broken": broken,
        "both_correct": sum(1 for b, t in pairs if b.correct and t.correct),
        "both_wrong": sum(1 for b, t in pairs if not b.correct and not t.correct),
        "mcnemar_p": mcnemar_exact(fixed, broken),
    }
