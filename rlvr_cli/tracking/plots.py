"""The reward-curve PNG written at the end of training (to the output dir and MLflow)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rlvr_cli.core.files import atomic_write

CURVES = (
    ("reward", "total reward"),
    ("rewards/format_reward/mean", "format reward"),
    ("rewards/correctness_reward/mean", "correctness reward"),
)
RATES = (
    ("accuracy", "accuracy"),
    ("format_rate", "format rate"),
    ("completions/cut_at_max_ratio", "cut at max length"),
)


def _series(history: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    points = [(h["step"], h[key]) for h in history if isinstance(h.get(key), int | float) and "step" in h]
    return [p[0] for p in points], [p[1] for p in points]


def reward_curves(history: list[dict[str, Any]], path: Path, title: str) -> Path | None:
    """Plot rewards and rates per step from a trainer log history; None if nothing was logged."""
    if not any(_series(history, key)[0] for key, _ in CURVES):
        return None
    import matplotlib

    matplotlib.use("Agg")  # no display: write files only
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 7), sharex=True)
    for key, label in CURVES:
        steps, values = _series(history, key)
        if steps:
            top.plot(steps, values, marker="o", markersize=3, label=label)
    top.set_ylabel("mean reward per completion")
    top.set_title(title)
    top.grid(alpha=0.3)
    top.legend(loc="best")
    for key, label in RATES:
        steps, values = _series(history, key)
        if steps:
            bottom.plot(steps, values, marker="o", markersize=3, label=label)
    bottom.set_ylim(-0.02, 1.02)
    bottom.set_xlabel("optimizer step")
    bottom.set_ylabel("share of completions")
    bottom.grid(alpha=0.3)
    bottom.legend(loc="best")
    fig.tight_layout()
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=110)
    plt.close(fig)
    return path
