"""Scoring evaluation samples and the statistics reported with them. Pure Python, no torch.

Each completion is scored two ways: strict, the task's own answer rule (what the rewards use), and
flexible, the task's lenient reading (for GSM8K-style numeric tasks the last number in the
completion, lm-evaluation-harness's `flexible-extract`), so results compare with published ones.
Accuracy comes with a 95 % Wilson score interval (sound at small n and near 0 or 1, unlike the
normal approximation). Two models on the same problems are compared pairwise on strict accuracy:
problems one fixes and the other breaks, with McNemar's exact test on those discordant pairs.
With several sampled completions per problem: pass@k by the unbiased estimator of Chen et al.
(2021) and maj@k (the most common answer), each with a 95 % interval.
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
    flexible: str | None = None  # the lenient reading's answer
    flexible_correct: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def score(row: dict[str, Any], completion: str, tokens: int, cut: bool, task: Any = None) -> Sample:
    """One evaluated problem, read and checked by `task` (the default task, GSM8K, when None): the
    same reading and check the correctness reward uses in training."""
    from rlvr_cli.tasks import get_task
    from rlvr_cli.tasks.base import _metadata

    task = task or get_task(DEFAULT_TASK)
    gold, metadata = str(row["final_answer"]), _metadata(row.get("metadata"))
    answer = task.read(completion)
    correct = bool(task.check(answer, gold, metadata))
    lenient = task.read_flexible(completion)
    flexible_correct = correct if lenient == answer else bool(task.check(lenient, gold, metadata))
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
        flexible=lenient.text,
        flexible_correct=flexible_correct,
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
    flexible = sum(s.flexible_correct for s in samples)
    return {
        "n": n,
        "correct": correct,
        "accuracy": correct / n if n else 0.0,
        "accuracy_ci95": [low, high],
        "flexible_accuracy": flexible / n if n else 0.0,
        "flexible_accuracy_ci95": list(wilson_interval(flexible, n)),
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


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased pass@k of one problem with `c` correct among `n` samples (Chen et al. 2021):
    the chance that k of the n, drawn without replacement, include a correct one.

    >>> [round(pass_at_k(4, 1, k), 4) for k in (1, 2, 3, 4)]
    [0.25, 0.5, 0.75, 1.0]
    >>> pass_at_k(4, 0, 4), pass_at_k(10, 10, 1), pass_at_k(2, 0, 3)
    (0.0, 1.0, 0.0)
    """
    if c == 0:  # no correct sample: none of any k draws is correct (also for k > n)
        return 0.0
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def _mean_interval(values: list[float]) -> list[float]:
    """Mean +- 1.96 standard errors, within [0, 1]: per-problem pass@k values are not 0/1."""
    n = len(values)
    if n == 0:
        return [0.0, 0.0]
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    half = 1.959964 * sd / math.sqrt(n)
    return [max(0.0, mean - half), min(1.0, mean + half)]


def majority(samples: list[Sample]) -> Sample | None:
    """The sample whose (strict) answer is the most common among them, the first such on a tie;
    None when none has an answer (self-consistency, as lm-eval's maj@k votes)."""
    counts: dict[str, int] = {}
    for s in samples:
        if s.extracted is not None:
            counts[s.extracted] = counts.get(s.extracted, 0) + 1
    if not counts:
        return None
    best = max(counts.values())
    return next(s for s in samples if s.extracted is not None and counts[s.extracted] == best)


def summarize_sampled(groups: list[list[Sample]], temperature: float) -> dict[str, Any]:
    """pass@1..K and maj@K over problems with K sampled completions each (strict reading)."""
    k_max = min(len(g) for g in groups) if groups else 0
    out: dict[str, Any] = {"samples_per_problem": k_max, "temperature": temperature, "n": len(groups)}
    for k in range(1, k_max + 1):
        values = [pass_at_k(len(g), sum(s.correct for s in g), k) for g in groups]
        out[f"pass@{k}"] = sum(values) / len(values)
        out[f"pass@{k}_ci95"] = _mean_interval(values)
    voted = [majority(g) for g in groups]
    right = sum(1 for v in voted if v is not None and v.correct)
    out[f"maj@{k_max}"] = right / len(groups) if groups else 0.0
    out[f"maj@{k_max}_ci95"] = list(wilson_interval(right, len(groups)))
    return out
