"""Proof of learning: does `rlvr train` make a model better on held-out problems?

    python benchmarks/bench_learning.py            # ~30 minutes on 2 CPU cores
    python benchmarks/bench_learning.py --quick    # a few steps: checks the script, proves nothing

Runs the product as a user would, through its command line: `rlvr prepare` a reasoning-gym task
within the small model's reach, `rlvr train` with `configs/smollm2-chain-sum.yaml`, then
`rlvr eval --baseline` of the final adapter against the untrained model on the same held-out
test problems (in the same run), and `rlvr eval` of the intermediate checkpoints for the curve.
Writes a RESULTS.md section and `benchmarks/results/learning.json` (`gain_points`, `mcnemar_p`,
the curve, wall times).

Target: accuracy +10 points or more over the untrained model, McNemar exact p < 0.01.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import REPO, write_section

RESULTS_JSON = Path(__file__).resolve().parent / "results" / "learning.json"
RECIPE = REPO / "configs" / "smollm2-chain-sum.yaml"
PREPARE = [
    "--source",
    "reasoning-gym:chain_sum",
    "--option",
    "min_terms=2",
    "--option",
    "max_terms=2",
    "--option",
    "min_digits=1",
    "--option",
    "max_digits=2",
    "--size",
    "3000",
    "--shots",
    "2",
]
MAX_NEW_TOKENS = "32"


def rlvr(*args: str, stdout: bool = False) -> tuple[str, float]:
    """Run the installed `rlvr` command; messages stream to this terminal, stdout is returned."""
    command = [sys.executable, "-m", "rlvr_cli", *args]
    print("$ rlvr " + " ".join(args), file=sys.stderr, flush=True)
    start = time.perf_counter()
    result = subprocess.run(command, stdout=subprocess.PIPE, text=True, cwd=REPO, env=os.environ)
    if result.returncode not in (0,):
        raise SystemExit(f"rlvr {' '.join(args)} failed with exit code {result.returncode}")
    return result.stdout, time.perf_counter() - start


def evaluate(
    checkpoint: Path, data: Path, out: Path, baseline: bool, extra: tuple[str, ...] = ()
) -> dict[str, Any]:
    args = [
        "eval",
        "--checkpoint",
        str(checkpoint),
        "--data",
        str(data),
        "--batch-size",
        "50",
        *(extra or ("--max-new-tokens", MAX_NEW_TOKENS)),
        "--no-track",
        "--json",
        "--output",
        str(out),
    ]
    stdout, wall = rlvr(*args, *(["--baseline"] if baseline else []))
    summary = json.loads(stdout)
    summary["wall_s"] = round(wall, 1)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, default=REPO / "outputs" / "bench-learning")
    parser.add_argument("--quick", action="store_true", help="4 steps, 20 problems: a check of the script")
    parser.add_argument(
        "--part",
        choices=["chain-sum", "gsm8k-format", "groups", "tasks", "sweep"],
        default="chain-sum",
        help="chain-sum: accuracy on a learnable task; gsm8k-format: GSM8K's held-out format rate; "
        "groups: with and without dynamic_sampling at equal minutes (benchmarks/learning_groups.py); "
        "tasks: configs/smollm2-reasoning.yaml on three reasoning-gym tasks (benchmarks/learning_tasks.py); "
        "sweep: that recipe against one-factor changes of it on the same tasks (benchmarks/learning_sweep.py)",
    )
    parser.add_argument("--minutes", type=float, default=6.0, help="groups, tasks: training budget per run")
    parser.add_argument(
        "--tasks",
        default=None,
        help="tasks, sweep: a comma-separated subset (default: all three); groups: one task",
    )
    parser.add_argument("--variants", default=None, help="sweep: a comma-separated subset of its variants")
    args = parser.parse_args()
    if args.part == "gsm8k-format":
        gsm8k_format(args)
        return
    if args.part == "groups":
        from benchmarks import learning_groups
        from benchmarks.learning_tasks import RECIPE as REASONING
        from benchmarks.learning_tasks import prepare_args

        task = args.tasks or "chain_sum"
        if task == "chain_sum":
            learning_groups.run(args, evaluate, rlvr, PREPARE, RECIPE, task)
        else:
            learning_groups.run(args, evaluate, rlvr, prepare_args(task), REASONING, task)
        return
    if args.part == "tasks":
        from benchmarks import learning_tasks

        learning_tasks.run(args, evaluate, rlvr)
        return
    if args.part == "sweep":
        from benchmarks import learning_sweep

        learning_sweep.run(args, evaluate, rlvr)
        return
    work = args.work
    data, output = work / "data", work / "model"
    work.mkdir(parents=True, exist_ok=True)

    _, prepare_s = rlvr("prepare", *PREPARE, "--output", str(data), "--force")
    steps = 4 if args.quick else None
    overrides = [
        "--data",
        str(data),
        "--output",
        str(output),
        "--force",
        *(["--set", f"max_steps={steps}", "--set", "save_steps=2"] if steps else []),
    ]
    _, train_s = rlvr("train", "--config", str(RECIPE), *overrides)
    if args.quick:  # evaluate on a few problems only
        limited = work / "data-quick"
        (limited / "test").mkdir(parents=True, exist_ok=True)
        lines = (data / "test" / "dataset.json").read_text().splitlines()[:20]
        (limited / "test" / "dataset.json").write_text("\n".join(lines) + "\n")
        (limited / "manifest.json").write_text((data / "manifest.json").read_text())
        data = limited

    final = evaluate(output, data, work / "eval-final", baseline=True)
    tuned, base = final["results"][0]["summary"], final["results"][1]["summary"]
    comparison = final["comparison"]
    run = json.loads((output / "rlvr_run.json").read_text())
    total_steps = run["global_step"]

    # The curve: the base (step 0), each kept checkpoint, the final adapter.
    curve = [{"step": 0, "accuracy": base["accuracy"], "format_rate": base["format_rate"]}]
    for checkpoint in sorted(output.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1])):
        step = int(checkpoint.name.split("-")[1])
        if step >= total_steps:
            continue
        # A checkpoint holds the adapter but not the run manifest that names its base model.
        (checkpoint / "rlvr_run.json").write_text((output / "rlvr_run.json").read_text())
        summary = evaluate(checkpoint, data, work / f"eval-{step}", baseline=False)["results"][0]["summary"]
        curve.append({"step": step, "accuracy": summary["accuracy"], "format_rate": summary["format_rate"]})
    curve.append({"step": total_steps, "accuracy": tuned["accuracy"], "format_rate": tuned["format_rate"]})

    gain = (tuned["accuracy"] - base["accuracy"]) * 100
    results = {
        "task": "reasoning-gym:chain_sum (2 terms, 1-2 digits)",
        "model": "smollm2-135m",
        "recipe": str(RECIPE.relative_to(REPO)),
        "steps": total_steps,
        "held_out_problems": comparison["n"],
        "base_accuracy": base["accuracy"],
        "tuned_accuracy": tuned["accuracy"],
        "base_ci95": base["accuracy_ci95"],
        "tuned_ci95": tuned["accuracy_ci95"],
        "gain_points": round(gain, 2),
        "fixed": comparison["fixed"],
        "broken": comparison["broken"],
        "mcnemar_p": comparison["mcnemar_p"],
        "base_format_rate": base["format_rate"],
        "tuned_format_rate": tuned["format_rate"],
        "curve": curve,
        "wall_s": {"prepare": round(prepare_s, 1), "train": round(train_s, 1), "eval_final": final["wall_s"]},
        "seconds_per_step": run.get("seconds_per_step"),
        "quick": args.quick,
    }
    if args.quick:
        print(json.dumps(results, indent=2))
        return
    RESULTS_JSON.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_JSON.write_text(json.dumps(results, indent=2) + "\n")
    met = gain >= 10 and comparison["mcnemar_p"] < 0.01
    curve_rows = "\n".join(f"| {c['step']} | {c['accuracy']:.1%} | {c['format_rate']:.0%} |" for c in curve)
    write_section(
        "Proof of learning (GRPO on CPU, held-out accuracy)",
        f"""SmolLM2-135M-Instruct (offline) + LoRA, GRPO with `{results["recipe"]}`: {total_steps} steps of
2 prompts x 8 completions, reasoning-gym `chain_sum` with two 1-2 digit terms (`a + b`, `a - b`),
2-shot prompts, rewards format (0.5) + correctness (1.0, reasoning-gym's own `score_answer`).
Evaluated greedily on the same {comparison["n"]} held-out test problems (generated from another
seed than train), base and tuned in one `rlvr eval --baseline` run.

| model | accuracy [95% CI] | format |
| --- | ---: | ---: |
| base (untrained) | {base["accuracy"]:.1%} [{base["accuracy_ci95"][0]:.1%}, {base["accuracy_ci95"][1]:.1%}] | {base["format_rate"]:.0%} |
| after {total_steps} GRPO steps | {tuned["accuracy"]:.1%} [{tuned["accuracy_ci95"][0]:.1%}, {tuned["accuracy_ci95"][1]:.1%}] | {tuned["format_rate"]:.0%} |

**{gain:+.1f} points**: {comparison["fixed"]} problems fixed, {comparison["broken"]} broken, McNemar exact
p = {comparison["mcnemar_p"]:.2g}. Target +10 points at p < 0.01: **{"met" if met else "missed"}**.

Held-out accuracy along the run (checkpoints evaluated on the same problems):

| step | accuracy | format |
| ---: | ---: | ---: |
{curve_rows}

Wall time on this machine: prepare {prepare_s:.0f} s, train {train_s / 60:.1f} min
({results["seconds_per_step"] or 0:.1f} s/step), final evaluation of both models {final["wall_s"]:.0f} s.

Reproduce: `python benchmarks/bench_learning.py`; figures in `benchmarks/results/learning.json`.""",
    )


GSM8K_STEPS = 20
GSM8K_PROBLEMS = 150
GSM8K_OVERRIDES = [
    f"max_steps={GSM8K_STEPS}",
    "per_device_train_batch_size=8",  # 1 prompt x 8 completions per step
    "num_generations=8",
    "learning_rate=2.0e-4",
    "beta=0.0",
    "logging_steps=5",
    "save_steps=10",
    "report_to=none",
]


def gsm8k_format(args: argparse.Namespace) -> None:
    """GSM8K with the smoke recipe, longer: does the held-out format rate rise by 20 points?"""
    from benchmarks.common import SHARED_GSM8K

    work = args.work.parent / "bench-learning-gsm8k"
    data, output = work / "data", work / "model"
    work.mkdir(parents=True, exist_ok=True)
    # Relative to the repo (where `rlvr` runs), so reports name no path of this machine.
    source = os.path.relpath(SHARED_GSM8K, REPO) if SHARED_GSM8K.is_dir() else "reasoning-gym"
    _, prepare_s = rlvr("prepare", "--shots", "2", "--source", source, "--output", str(data), "--force")
    steps = 2 if args.quick else GSM8K_STEPS
    sets = [x for o in [*GSM8K_OVERRIDES, f"max_steps={steps}"] for x in ("--set", o)]
    _, train_s = rlvr(
        "train", "--config", str(REPO / "configs" / "smoke-cpu.yaml"), "--data", str(data),
        "--output", str(output), "--force", *sets,
    )  # fmt: skip
    problems = "10" if args.quick else str(GSM8K_PROBLEMS)
    final = evaluate(
        output,
        data,
        work / "eval-final",
        baseline=True,
        extra=("--max-new-tokens", "200", "--limit", problems),
    )
    tuned, base = final["results"][0]["summary"], final["results"][1]["summary"]
    gain = (tuned["format_rate"] - base["format_rate"]) * 100
    figures = {
        "task": "gsm8k",
        "source": source,
        "steps": steps,
        "held_out_problems": tuned["n"],
        "base_format_rate": base["format_rate"],
        "tuned_format_rate": tuned["format_rate"],
        "format_gain_points": round(gain, 2),
        "base_accuracy": base["accuracy"],
        "tuned_accuracy": tuned["accuracy"],
        "wall_s": {"prepare": round(prepare_s, 1), "train": round(train_s, 1), "eval_final": final["wall_s"]},
    }
    if args.quick:
        print(json.dumps(figures, indent=2))
        return
    results = json.loads(RESULTS_JSON.read_text()) if RESULTS_JSON.exists() else {}
    results["gsm8k_format"] = figures
    RESULTS_JSON.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_JSON.write_text(json.dumps(results, indent=2) + "\n")
    met = gain >= 20
    write_section(
        "Proof of learning: GSM8K format rate",
        f"""SmolLM2-135M-Instruct + LoRA, `configs/smoke-cpu.yaml` with {" ".join(GSM8K_OVERRIDES)}: {steps}
GRPO steps of 1 prompt x 8 completions on 2-shot GSM8K ({source}); base and tuned evaluated in one
`rlvr eval --baseline` run on the first {tuned["n"]} held-out test problems (greedy, 200 new tokens).

| model | format rate | accuracy [95% CI] |
| --- | ---: | ---: |
| base (untrained) | {base["format_rate"]:.1%} | {base["accuracy"]:.1%} [{base["accuracy_ci95"][0]:.1%}, {base["accuracy_ci95"][1]:.1%}] |
| after {steps} GRPO steps | {tuned["format_rate"]:.1%} | {tuned["accuracy"]:.1%} [{tuned["accuracy_ci95"][0]:.1%}, {tuned["accuracy_ci95"][1]:.1%}] |

Format rate **{gain:+.1f} points** (target +20: **{"met" if met else "missed"}**). Wall time: train
{train_s / 60:.1f} min, evaluation of both {final["wall_s"] / 60:.1f} min.

Reproduce: `python benchmarks/bench_learning.py --part gsm8k-format`.""",
    )


if __name__ == "__main__":
    main()
