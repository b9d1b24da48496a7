"""Groups that teach, measured: held-out accuracy against training minutes, with and without the
recipe's `dynamic_sampling`, at the same wall-clock budget (`bench_learning.py --part groups`).

Each variant trains from the same recipe and data; after `--minutes` the run gets SIGTERM, which
`rlvr train` answers by saving a resumable checkpoint (the same stop a SageMaker spot interruption
gets), so both end at the same wall-clock budget. The base model and every checkpoint are evaluated
greedily on the same held-out problems; each checkpoint's minute is when it was written, counted
from the start of `rlvr train` (model loading included, the same for both).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import REPO, environment, write_section

QUICK_EVAL = ("--max-new-tokens", "32", "--limit", "20")
VARIANTS = {
    "dynamic_sampling": ["--set", "dynamic_sampling=true"],
    "plain": ["--set", "dynamic_sampling=false"],
}


def train_for(
    minutes: float,
    recipe: Path,
    data: Path,
    output: Path,
    extra: list[str],
    max_steps: int | None = 1000,
    save_steps: int = 10,
) -> dict[str, Any]:
    """`rlvr train` stopped by SIGTERM after `minutes` (unless the recipe's own max_steps ends it
    first, with max_steps=None); each checkpoint's minute since the start."""
    steps = ["--set", f"max_steps={max_steps}"] if max_steps else []
    command = [
        sys.executable, "-m", "rlvr_cli", "train", "--config", str(recipe), "--data", str(data),
        "--output", str(output), "--force", *steps, "--set", f"save_steps={save_steps}",
        "--set", "save_total_limit=100", "--set", "logging_steps=1", *extra,
    ]  # fmt: skip
    print("$ rlvr " + " ".join(command[3:]), file=sys.stderr, flush=True)
    start = time.time()
    process = subprocess.Popen(command, cwd=REPO, env=os.environ)
    try:
        process.wait(timeout=minutes * 60)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=600)
    wall = time.time() - start
    checkpoints = sorted(output.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    # An interrupted run writes no metrics.jsonl; the last checkpoint holds the log history.
    state = checkpoints[-1] / "trainer_state.json" if checkpoints else None
    metrics = json.loads(state.read_text())["log_history"] if state and state.exists() else []
    return {
        "wall_s": round(wall, 1),
        "checkpoints": [
            {
                "step": int(c.name.split("-")[1]),
                "minute": round((c.stat().st_mtime - start) / 60, 2),
                "path": c,
            }
            for c in checkpoints
        ],
        "metrics": metrics,
    }


def zero_std_share(metrics: list[dict[str, Any]]) -> float | None:
    """Share of groups generated whose rewards were all equal (TRL's frac_reward_zero_std)."""
    values = [m["frac_reward_zero_std"] for m in metrics if "frac_reward_zero_std" in m]
    return round(sum(values) / len(values), 3) if values else None


def run(
    args: argparse.Namespace, evaluate: Any, rlvr: Any, prepare: list[str], recipe: Path, task: str
) -> None:
    work = args.work.parent / "bench-learning-groups" / task
    data = work / "data"
    work.mkdir(parents=True, exist_ok=True)
    rlvr("prepare", *prepare, "--output", str(data), "--force")
    minutes = 0.5 if args.quick else args.minutes
    variants: dict[str, Any] = {}
    base = None
    for name, extra in VARIANTS.items():
        output = work / name
        trained = train_for(minutes, recipe, data, output, extra)
        record = json.loads((output / "rlvr_run.json").read_text())
        curve = []
        for checkpoint in trained["checkpoints"]:
            (checkpoint["path"] / "rlvr_run.json").write_text(json.dumps(record))  # names the base model
            summary = evaluate(
                checkpoint["path"], data, work / f"eval-{name}-{checkpoint['step']}", baseline=base is None,
                extra=QUICK_EVAL if args.quick else (),
            )  # fmt: skip
            if base is None:
                base = summary["results"][1]["summary"]
            result = summary["results"][0]["summary"]
            curve.append(
                {"step": checkpoint["step"], "minute": checkpoint["minute"], "accuracy": result["accuracy"]}
            )
        last = curve[-1] if curve else None
        variants[name] = {
            "steps": last["step"] if last else 0,
            "train_s": trained["wall_s"],
            "curve": [{"step": 0, "minute": 0.0, "accuracy": base["accuracy"] if base else None}, *curve],
            "tuned_accuracy": last["accuracy"] if last else None,
            "best_accuracy": max((c["accuracy"] for c in curve), default=None),
            "zero_std_share": zero_std_share(trained["metrics"]),
            "prompts_generated": sum(m.get("groups/prompts_generated", 0) for m in trained["metrics"])
            or None,
        }
    figures = {
        **environment(),
        "task": task,
        "recipe": str(recipe.relative_to(REPO)),
        "budget_minutes": minutes,
        "base_accuracy": base["accuracy"] if base else None,
        "variants": variants,
    }
    if args.quick:
        print(json.dumps(figures, indent=2))
        return
    path = Path(__file__).resolve().parent / "results" / "learning.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    results.setdefault("groups_that_teach", {})[task] = figures
    path.write_text(json.dumps(results, indent=2) + "\n")
    plot(variants, Path(__file__).resolve().parent / "results" / f"learning_groups_{task}.png")
    report(figures)


def plot(variants: dict[str, Any], target: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, v in variants.items():
        ax.plot(
            [c["minute"] for c in v["curve"]],
            [c["accuracy"] * 100 for c in v["curve"]],
            marker="o",
            label=name,
        )
    ax.set_xlabel("training minutes (2 CPU cores)")
    ax.set_ylabel("held-out accuracy (%)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(target, dpi=100)
    plt.close(fig)


def report(figures: dict[str, Any]) -> None:
    rows = []
    for name, v in figures["variants"].items():
        curve = ", ".join(f"{c['minute']:.1f} min {c['accuracy']:.0%}" for c in v["curve"][1:])
        rows.append(
            f"| `{name}` | {v['steps']} | {v['tuned_accuracy']:.1%} | {v['best_accuracy']:.1%} | "
            f"{v['zero_std_share']} | {curve} |"
        )
    table = "\n".join(rows)
    task = figures["task"]
    write_section(
        f"Groups that teach (dynamic sampling) at equal minutes: {task}",
        f"""SmolLM2-135M-Instruct + LoRA, `{figures["recipe"]}` (run until the budget), reasoning-gym
{task}; each variant trained for {figures["budget_minutes"]} minutes of wall clock (stopped by
SIGTERM, which saves a checkpoint), every checkpoint evaluated greedily on the same 300 held-out
problems. Base accuracy {figures["base_accuracy"]:.1%}. `zero-std share`: groups generated whose 8
rewards were all equal (TRL's `frac_reward_zero_std`, mean over steps).

| variant | steps | accuracy at the budget | best | zero-std share | curve |
| --- | ---: | ---: | ---: | ---: | --- |
{table}

Curve: `benchmarks/results/learning_groups_{task}.png`. Reproduce:
`python benchmarks/bench_learning.py --part groups --tasks {task}`.""",
    )
