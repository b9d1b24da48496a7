"""Data preparation time and reward throughput, against the reference implementation's regexes.

    python benchmarks/bench_prepare_rewards.py          # writes two sections of benchmarks/RESULTS.md

The reference's reward code is reconstructed from ../shared/GUIDE.md's description of it: a format
regex that accepts only non-negative integers, a correctness regex that reads the number after
`####` (dropping minus signs) and backtracks quadratically on repeated `#### `. Both run on the same
completions as rlvr's rewards: realistic ones (GSM8K solutions written as model answers, half with
an invented follow-up question) and adversarial ones.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import SHARED_GSM8K, best_of, environment, write_section
from rlvr_cli.tasks.gsm8k import answers
from rlvr_cli.tasks.gsm8k.rewards import correctness_reward, format_reward

RESULTS_JSON = Path(__file__).resolve().parent / "results" / "prepare_rewards.json"
FIGURES: dict = {}  # what the sections report, for results/prepare_rewards.json

# --- the reference's rewards (reconstructed) -----------------------------------------------------------
REF_FORMAT = re.compile(r"#### The final answer is \d+")
REF_ANSWER = re.compile(
    r"####.*?(\d[\d,]*(?:\.\d+)?)"
)  # lazy scan from every '####': quadratic on '#### ' spam


def ref_format_reward(completions, **kwargs):
    return [0.5 if REF_FORMAT.search(c) else 0.0 for c in completions]


def ref_correctness_reward(completions, final_answer, **kwargs):
    rewards = []
    for completion, gold in zip(completions, final_answer, strict=True):
        match = REF_ANSWER.search(completion)
        try:
            ok = match is not None and abs(float(match.group(1).replace(",", "")) - float(gold)) <= 1e-3
        except ValueError:
            ok = False
        rewards.append(1.0 if ok else 0.0)
    return rewards


def realistic_completions(limit: int = 2000) -> tuple[list[str], list[str]]:
    from rlvr_cli.tasks.gsm8k.sources import clean_solution, load_source

    source = load_source(str(SHARED_GSM8K))
    completions, golds = [], []
    for i, p in enumerate(source.train[:limit]):
        steps = clean_solution(p.answer).rsplit("####", 1)[0].strip()
        text = f" {steps}\n#### The final answer is {p.final_answer}"
        if i % 2:  # what an untamed few-shot model does next
            other = source.train[(i * 7) % len(source.train)]
            text += f"\n\nQuestion: {other.question}\nSolution: Let's think step by step. {clean_solution(other.answer)}"
        completions.append(text)
        golds.append(p.final_answer)
    return completions, golds


def bench_rewards() -> str:
    completions, golds = realistic_completions()
    n = len(completions)

    def rlvr():
        # A fresh parse cache per run: within a run both rewards share parses, as they do under TRL.
        answers._extract.cache_clear()
        answers._parse_number_text.cache_clear()
        format_reward(completions)
        correctness_reward(completions, final_answer=golds)

    def reference():
        ref_format_reward(completions)
        ref_correctness_reward(completions, final_answer=golds)

    t_rlvr, t_ref = best_of(rlvr, repeat=7), best_of(reference, repeat=7)
    FIGURES["rewards"] = {
        "completions": n,
        "rlvr_per_second": n / t_rlvr,
        "reference_per_second": n / t_ref,
        "adversarial_ms": {},
    }
    agree = sum(
        a == b
        for a, b in zip(
            correctness_reward(completions, final_answer=golds),
            ref_correctness_reward(completions, final_answer=golds),
            strict=True,
        )
    )
    rows = [
        "| completions | rlvr (completions/s) | reference (completions/s) | rlvr / reference |",
        "| --- | ---: | ---: | ---: |",
        f"| {n} realistic (GSM8K solutions, half with an invented follow-up) | {n / t_rlvr:,.0f} | {n / t_ref:,.0f} | {t_ref / t_rlvr:.1f}x |",
    ]
    adversarial = {
        "`'#### ' * 20_000` (100 KB)": "#### " * 20_000,
        "`'#### ' * 200_000` (1 MB)": "#### " * 200_000,
        "1 MB of digits": "1" * 1_000_000,
        "`'#### The final answer is ' + 1 MB of digits`": "#### The final answer is " + "9" * 1_000_000,
    }
    for label, text in adversarial.items():

        def one(t=text):
            answers._extract.cache_clear()
            return format_reward([t]), correctness_reward([t], final_answer=["9"])

        t_r = best_of(one, repeat=3)
        if len(text) <= 100_000 or "#### #### " not in text:  # the 1 MB marker spam would take ~40 minutes
            start = time.perf_counter()
            ref_format_reward([text])
            ref_correctness_reward([text], final_answer=["9"])
            elapsed = time.perf_counter() - start
            ref = f"{elapsed:.2f} s" if elapsed >= 1 else f"{elapsed * 1000:.3f} ms"
        else:
            ref = "not run: quadratic, ~100x the 100 KB time"
        rows.append(f"| {label} | {t_r * 1000:.3f} ms | {ref} | |")
        FIGURES["rewards"]["adversarial_ms"][label] = t_r * 1000
    return (
        "Both reward functions (format + correctness) per completion, best of several runs, one core.\n"
        "Adversarial rows give the time for one completion.\n\n"
        + "\n".join(rows)
        + f"\n\nOn the realistic set rlvr and the reference agree on correctness for {agree} of {n} completions "
        "(realistic completions put the answer line first; the reference fails on negative answers and on answer "
        "lines inside invented questions, which tests/test_rewards.py covers).\n\n"
        "Targets: realistic throughput >= 10x the reference's; a 1 MB completion of any shape in well under 50 ms."
    )


def bench_prepare() -> str:
    from rlvr_cli.data.build import prepare, write_prepared
    from rlvr_cli.tasks.gsm8k.sources import load_source

    out = Path(tempfile.mkdtemp())
    try:

        def run():
            prepared = prepare(load_source(str(SHARED_GSM8K)), shots=8, val_fraction=0.1, seed=42)
            write_prepared(out, prepared)
            return prepared

        start = time.perf_counter()
        prepared = run()
        first = time.perf_counter() - start
        best = best_of(run, repeat=3)
        counts = prepared.manifest.counts
        size = sum(len(v) for v in prepared.payloads.values()) / 1e6
        FIGURES["prepare"] = {"rows": dict(counts), "megabytes": size, "first_s": first, "best_s": best}
    finally:
        shutil.rmtree(out)
    return (
        "`rlvr prepare --shots 8 --source ../shared/data/gsm8k` without the CLI start-up: load both splits, "
        "build every prompt, hash and write the files.\n\n"
        "| rows (train / val / test) | written | first run | best of 3 | target |\n| --- | ---: | ---: | ---: | ---: |\n"
        f"| {counts['train']} / {counts['val']} / {counts['test']} | {size:.1f} MB | {first:.2f} s | {best:.2f} s | < 10 s |"
    )


def main() -> None:
    if not SHARED_GSM8K.is_dir():
        sys.exit(f"needs {SHARED_GSM8K}")
    write_section("Data preparation (prepare, 8 shots, all of GSM8K)", bench_prepare())
    write_section("Rewards vs the reference's regexes", bench_rewards())
    RESULTS_JSON.parent.mkdir(exist_ok=True)
    RESULTS_JSON.write_text(json.dumps({**environment(), **FIGURES}, indent=2) + "\n")


if __name__ == "__main__":
    main()
