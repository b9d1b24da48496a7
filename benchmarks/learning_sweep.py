"""The small-model recipe against one-factor changes of it, on the table's three tasks
(`bench_learning.py --part sweep`).

Each variant is `configs/smollm2-reasoning.yaml` with one thing changed (`--set`), trained for the
recipe's own 70 steps on each task (same data, seed and held-out problems as `--part tasks`), and
its last checkpoint evaluated greedily on the same 300 held-out problems. The recipe itself runs
in the same sweep, so every figure of the table comes from the same code. Results are written
after every run (`results/learning.json`, key `sweep`), so an interrupted sweep keeps what it has.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from benchmarks.common import REPO, environment, write_section
from benchmarks.learning_groups import QUICK_EVAL, train_for, zero_std_share
from benchmarks.learning_tasks import ALSO_TRIED, RECIPE, TASKS, prepare_args

# name -> (what changes, the --set overrides). At 16 completions per step, "4 x 4" trades group
# size for prompts per step.
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "recipe": ("as shipped: lr 2e-4, 2 prompts x 8, temperature 1.0", []),
    "lr 4e-4": ("twice the learning rate", ["learning_rate=4.0e-4"]),
    "4 prompts x 4": ("4 prompts per step, groups of 4", ["num_generations=4"]),
    "temperature 1.2": ("hotter sampling: fewer groups whose completions all agree", ["temperature=1.2"]),
}


def run(args: argparse.Namespace, evaluate: Any, rlvr: Any) -> None:
    work = args.work.parent / "bench-learning-sweep"
    tasks = args.tasks.split(",") if args.tasks else [t for t in TASKS if t not in ALSO_TRIED]
    variants = args.variants.split(",") if args.variants else list(VARIANTS)
    path = Path(__file__).resolve().parent / "results" / "learning.json"
    extra = QUICK_EVAL if args.quick else ()
    for variant in variants:
        for task in tasks:
            data, output = work / task / "data", work / task / variant.replace(" ", "-")
            rlvr("prepare", *prepare_args(task), "--output", str(data), "--force")
            overrides = [x for s in VARIANTS[variant][1] for x in ("--set", s)]
            steps = 4 if args.quick else None
            trained = train_for(30, RECIPE, data, output, overrides, max_steps=steps, save_steps=1000)
            last = trained["checkpoints"][-1]
            summary = evaluate(last["path"], data, output / "eval", False, extra)
            result = summary["results"][0]["summary"]
            figures = {
                **environment(),
                "overrides": VARIANTS[variant][1],
                "accuracy": result["accuracy"],
                "steps": last["step"],
                "train_s": trained["wall_s"],
                "zero_std_share": zero_std_share(trained["metrics"]),
            }
            if args.quick:
                print(json.dumps({variant: {task: figures}}, indent=2))
                continue
            # Re-read before each write: another part may have written its key meanwhile.
            results = json.loads(path.read_text()) if path.exists() else {}
            sweep = results.setdefault("sweep", {"recipe": str(RECIPE.relative_to(REPO)), "runs": {}})
            sweep["runs"].setdefault(variant, {})[task] = figures
            path.write_text(json.dumps(results, indent=2) + "\n")
    if not args.quick:
        report(json.loads(path.read_text()))


def report(results: dict[str, Any]) -> None:
    runs = results["sweep"]["runs"]
    base = {t: f["base_accuracy"] for t, f in results["tasks"]["per_task"].items()}
    tasks = [t for t in TASKS if any(t in r for r in runs.values())]
    rows = []
    for variant, (what, _) in VARIANTS.items():
        if variant not in runs:
            continue
        cells, gains = [], []
        for task in tasks:
            f = runs[variant].get(task)
            if f is None:
                cells.append("-")
                continue
            gains.append((f["accuracy"] - base[task]) * 100)
            cells.append(f"{f['accuracy']:.1%} ({gains[-1]:+.1f}; {f['zero_std_share']:.2f})")
        mean = f"{sum(gains) / len(gains):+.1f}" if len(gains) == len(tasks) else "-"
        rows.append(f"| {variant}: {what} | " + " | ".join(cells) + f" | {mean} |")
    stamps = sorted({f"{f['date'][:10]}, commit {f['commit']}" for r in runs.values() for f in r.values()})
    header = " | ".join(f"{t} (base {base[t]:.1%})" for t in tasks)
    write_section(
        "Choosing the small-model recipe: one-factor sweep on three tasks",
        f"""`{results["sweep"]["recipe"]}` and variants of it that change one thing, each trained for
the recipe's 70 steps (2 CPU cores, about 7 minutes) on each task of the table above and its last
checkpoint evaluated greedily on the same 300 held-out problems. Each cell: held-out accuracy
(gain in points over the base model; share of groups whose 8 rewards were all equal).

| variant | {header} | mean gain |
| --- | {" | ".join("---:" for _ in tasks)} | ---: |
{chr(10).join(rows)}

Runs: {"; ".join(stamps)}. Reproduce: `python benchmarks/bench_learning.py --part sweep`
(`--variants` and `--tasks` for some).""",
    )
