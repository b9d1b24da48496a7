"""One small-model recipe on several reasoning-gym tasks (`bench_learning.py --part tasks`).

Each task is prepared as a user would (`rlvr prepare --source reasoning-gym:TASK`), trained with
the same recipe for the same wall-clock budget (SIGTERM at the budget saves a checkpoint, as in
learning_groups.py), and its checkpoints evaluated greedily on the same 300 held-out problems; the
last one against the base model in one `rlvr eval --baseline` run (McNemar's test).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from benchmarks.common import REPO, environment, write_section
from benchmarks.learning_groups import QUICK_EVAL, train_for

RECIPE = REPO / "configs" / "smollm2-reasoning.yaml"
# Tasks tried with the recipe for the third kind before aiw (counting, comparison, relations), and
# why none took its place (their figures stay in the JSON and are listed under the table).
ALSO_TRIED = {
    "letter_counting": "+14.3 is short of +15, and it is the majority answer, 1 (143 of the 300 "
    "problems), that the tuned model gives more often",
    "number_format": "no learning: the base picks one of the two candidates (49%) and so does the tuned model",
    "number_sorting": "the gain is copying the two numbers in the order given (297 of 300 answers), which "
    "is right half the time, not ordering them",
    "leg_counting": "learning, but slowly: not significant by the recipe's last step",
    "number_filtering": "a gain by step 20 that fades (17.7% there, 15.7% at the end): not significant",
    "family_relationships": "the base answers the majority relation (son, 26%) to every problem, so 91% "
    "of groups earn one reward: nothing moved",
    "word_sorting": "the tuned model copies the words in the order given (274 of 300 answers, the base 199), "
    "right when they already are sorted: no ordering learned",
}
# What a table task's tuned model answers, read from its samples (a gain that is one repeated answer
# would not count as learning the task).
LEARNED = {
    "aiw": "every answer is one of the two counts given plus one (herself): the sisters' (209 of 300, "
    "right) or the brothers' (91); the base answered 2, 6 or 10 to 284 of them, and the majority answer "
    "(2, 83 problems) would score 27.7%",
}
# name -> (kind, generator options): easy settings within SmolLM2-135M's partial reach; the runs
# take the three of the table (not ALSO_TRIED) unless --tasks names others.
TASKS: dict[str, tuple[str, dict[str, Any]]] = {
    "chain_sum": ("arithmetic", {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 2}),
    # Only the siblings questions ("Alice has 3 brothers and 2 sisters. How many sisters does Alice's
    # brother have?": her sisters and herself); friends and colleagues need more than 32 tokens of reasoning.
    "aiw": ("logic", {"task_type_weights": [1, 0, 0], "max_entities": 4}),
    "word_sequence_reversal": ("string", {"min_words": 2, "max_words": 2}),
    "letter_counting": ("counting", {"min_words": 4, "max_words": 8}),
    "number_sorting": (
        "comparison",
        {
            "min_numbers": 2,
            "max_numbers": 2,
            "min_decimals": 0,
            "max_decimals": 0,
            "min_value": 0,
            "max_value": 99,
        },
    ),
    "number_format": (
        "comparison",
        {"min_num_candidates": 2, "max_num_candidates": 2, "min_n": 10, "max_n": 1000},
    ),
    "leg_counting": ("counting", {"min_animals": 1, "max_animals": 1, "max_instances": 4}),
    "family_relationships": ("relations", {"min_family_size": 3, "max_family_size": 4}),
    "word_sorting": (
        "comparison",
        {"min_words": 3, "max_words": 3, "min_word_length": 3, "max_word_length": 6},
    ),
    "number_filtering": (
        "comparison",
        {
            "min_numbers": 3,
            "max_numbers": 3,
            "min_decimals": 0,
            "max_decimals": 0,
            "min_value": 0,
            "max_value": 99,
        },
    ),
}


def prepare_args(task: str) -> list[str]:
    options = [x for k, v in TASKS[task][1].items() for x in ("--option", f"{k}={v}")]
    return ["--source", f"reasoning-gym:{task}", *options, "--size", "3000", "--shots", "2"]


def run(args: argparse.Namespace, evaluate: Any, rlvr: Any) -> None:
    work = args.work.parent / "bench-learning-tasks"
    minutes = 0.5 if args.quick else args.minutes
    chosen = args.tasks.split(",") if args.tasks else [t for t in TASKS if t not in ALSO_TRIED]
    path = Path(__file__).resolve().parent / "results" / "learning.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    figures: dict[str, Any] = dict(results.get("tasks", {}).get("per_task", {})) if not args.quick else {}
    extra = QUICK_EVAL if args.quick else ()
    for task in chosen:
        data, output = work / task / "data", work / task / "model"
        rlvr("prepare", *prepare_args(task), "--output", str(data), "--force")
        trained = train_for(minutes, RECIPE, data, output, [], max_steps=None, save_steps=20)
        record = json.loads((output / "rlvr_run.json").read_text())
        checkpoints = trained["checkpoints"]
        curve = []
        for i, checkpoint in enumerate(checkpoints):
            (checkpoint["path"] / "rlvr_run.json").write_text(json.dumps(record))
            last = i == len(checkpoints) - 1
            summary = evaluate(
                checkpoint["path"], data, work / task / f"eval-{checkpoint['step']}", last, extra
            )
            result = summary["results"][0]["summary"]
            curve.append(
                {"step": checkpoint["step"], "minute": checkpoint["minute"], "accuracy": result["accuracy"]}
            )
            if last:
                base, comparison = summary["results"][1]["summary"], summary["comparison"]
        zero_std = [m["frac_reward_zero_std"] for m in trained["metrics"] if "frac_reward_zero_std" in m]
        figures[task] = {
            **environment(),
            "kind": TASKS[task][0],
            "options": TASKS[task][1],
            "base_accuracy": base["accuracy"],
            "tuned_accuracy": curve[-1]["accuracy"],
            "best_accuracy": max(c["accuracy"] for c in curve),
            "gain_points": round((curve[-1]["accuracy"] - base["accuracy"]) * 100, 1),
            "fixed": comparison["fixed"],
            "broken": comparison["broken"],
            "mcnemar_p": comparison["mcnemar_p"],
            "held_out_problems": comparison["n"],
            "train_s": trained["wall_s"],
            "steps": curve[-1]["step"],
            "zero_std_share": round(sum(zero_std) / len(zero_std), 3) if zero_std else None,
            "curve": [{"step": 0, "minute": 0.0, "accuracy": base["accuracy"]}, *curve],
        }
    if args.quick:
        print(json.dumps(figures, indent=2))
        return
    results["tasks"] = {
        **environment(),
        "recipe": str(RECIPE.relative_to(REPO)),
        "budget_minutes": minutes,
        "per_task": figures,
    }
    path.write_text(json.dumps(results, indent=2) + "\n")
    report(results["tasks"])


def _row(task: str, f: dict[str, Any]) -> str:
    met = f["gain_points"] >= 15 and f["mcnemar_p"] < 0.01
    stable = f["best_accuracy"] - f["tuned_accuracy"] <= 0.03
    return (
        f"| {task} ({f['kind']}) | {f['base_accuracy']:.1%} | {f['tuned_accuracy']:.1%} | "
        f"{f['gain_points']:+.1f} | {f['fixed']} / {f['broken']} | {f['mcnemar_p']:.2g} | {f['steps']} | "
        f"{f['best_accuracy']:.1%} | {'yes' if met else 'no'} | {'yes' if stable else 'no'} |"
    )


def report(tasks: dict[str, Any]) -> None:
    rows, curves, runs, dropped = [], [], [], []
    for task in sorted(tasks["per_task"], key=list(TASKS).index):
        f = tasks["per_task"][task]
        stamp = f"{f.get('date', tasks['date'])}, commit {f.get('commit', tasks['commit'])}"
        if task in ALSO_TRIED:
            dropped.append(
                f"- {task} ({f['kind']}, {stamp}): {f['base_accuracy']:.1%} -> {f['tuned_accuracy']:.1%} "
                f"({f['gain_points']:+.1f}, p = {f['mcnemar_p']:.2g}); {ALSO_TRIED[task]}"
            )
            continue
        rows.append(_row(task, f))
        curves.append(
            f"- {task}: " + ", ".join(f"{c['minute']:.1f} min {c['accuracy']:.0%}" for c in f["curve"])
        )
        runs.append(f"{task} {stamp}")
        if task in LEARNED:
            curves.append(f"  (what it learned: {LEARNED[task]})")
    table, curve_lines = "\n".join(rows), "\n".join(curves)
    dropped_lines = "\n".join(dropped) or "- none"
    write_section(
        "One small-model recipe on several tasks",
        f"""SmolLM2-135M-Instruct + LoRA with `{tasks["recipe"]}` on three reasoning-gym tasks of
different kinds (2-shot prompts, reasoning-gym's own verifiers), each trained for
{tasks["budget_minutes"]} minutes of wall clock on 2 CPU cores and evaluated greedily on 300
held-out problems, base and tuned in one `rlvr eval --baseline` run. Targets: +15 points at
McNemar p < 0.01 (`met`), and the last checkpoint within 3 points of the best (`stable`).

| task | base | tuned | gain | fixed / broken | p | steps | best | met | stable |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | :---: | :---: |
{table}

Held-out accuracy along each run (minute of training: accuracy):

{curve_lines}

Runs: {"; ".join(runs)}.

Tried with the same recipe for the third kind before aiw, none meeting the target:

{dropped_lines}

Reproduce: `python benchmarks/bench_learning.py --part tasks` (`--tasks a,b` for some).""",
    )
