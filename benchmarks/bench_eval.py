"""`rlvr eval` against the reference's evaluation method on this CPU, same model and problems.

    python benchmarks/bench_eval.py [--reference-n 16] [--rlvr-n 64]     # ~25 minutes on 2 cores

Model: SmolLM2-135M-Instruct (offline). Problems: the first N of the GSM8K test split, 8-shot
prompts as `rlvr prepare --shots 8` builds them.

- reference method (../shared/GUIDE.md): batch 1, 1,024 new tokens, no stop, greedy, and the last
  number of prompt + completion compared with the gold answer;
- rlvr: `rlvr eval`'s generator (batches of 64, the shared exemplars held once by cascade
  attention, stop after the answer line, finished rows leave the batch, max 512 new tokens) and
  its scoring.

Then base against tuned on the same `--rlvr-n` problems: a LoRA adapter as `rlvr train` saves it
(r 16 on every linear layer), loaded as `rlvr eval --checkpoint` loads it (merged into the base),
and the same adapter left unmerged, to show what merging removes. The adapter's weights are small
random values (its speed does not depend on them; outputs stay close to the base's, so the
completions have similar lengths). Figures also go to benchmarks/results/eval.json.

Both run on the same first `--reference-n` problems; rlvr also runs on `--rlvr-n` problems to
project the time for all 1,319. The table says how often the reference method's score differs from
rlvr's on the same completions, and why.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import SHARED_GSM8K, write_section

RESULTS_JSON = Path(__file__).resolve().parent / "results" / "eval.json"

NUMBER = re.compile(r"-?[\d,]*\.?\d+")


def reference_score(prompt: str, completion: str, gold: str) -> bool:
    numbers = NUMBER.findall(prompt + completion)
    try:
        return bool(numbers) and abs(float(numbers[-1].replace(",", "")) - float(gold)) <= 1e-3
    except ValueError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reference-n", type=int, default=16)
    parser.add_argument("--rlvr-n", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    import torch
    from transformers import AutoTokenizer

    from rlvr_cli.data.build import prepare
    from rlvr_cli.evaluation.generators import HFGenerator
    from rlvr_cli.evaluation.loading import load_model
    from rlvr_cli.evaluation.run import evaluate
    from rlvr_cli.evaluation.scoring import summarize
    from rlvr_cli.models.loading import quiet_libraries
    from rlvr_cli.tasks.gsm8k.answers import extract_answer
    from rlvr_cli.tasks.gsm8k.sources import load_source

    quiet_libraries()
    rows = prepare(load_source(str(SHARED_GSM8K)), shots=8, val_fraction=0.1, seed=42).rows["test"]
    loaded = load_model("smollm2-135m", is_checkpoint=False)
    model, tokenizer = loaded.model, loaded.tokenizer

    # --- reference method ---
    ref_rows = rows[: args.reference_n]
    plain = AutoTokenizer.from_pretrained(tokenizer.name_or_path)
    ref_correct, ref_tokens, ref_completions = 0, 0, []
    start = time.perf_counter()
    for row in ref_rows:
        inputs = plain(row["prompt"], return_tensors="pt")
        with torch.no_grad():
            out = model.generate(
                **inputs,
                max_new_tokens=1024,
                min_new_tokens=1024,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                pad_token_id=plain.eos_token_id,
            )
        ids = out[0, inputs["input_ids"].shape[1] :]
        completion = plain.decode(ids, skip_special_tokens=True)
        ref_completions.append(completion)
        ref_tokens += len(ids)
        ref_correct += reference_score(row["prompt"], completion, row["final_answer"])
    ref_wall = time.perf_counter() - start

    # --- rlvr on the same problems, then on more for the projection ---
    generator = HFGenerator(model, tokenizer, max_new_tokens=512)
    same, same_wall, _ = evaluate(generator, ref_rows, args.batch_size, "rlvr (same problems)")
    more, more_wall, _ = evaluate(generator, rows[: args.rlvr_n], args.batch_size, "rlvr (projection)")
    same_summary, more_summary = summarize(same, same_wall), summarize(more, more_wall)
    tuned = tuned_vs_base(model, tokenizer, rows[: args.rlvr_n], args.batch_size)

    # What the reference method gets wrong, on its own completions: rlvr's reading of the same text.
    disagreements = []
    for row, completion in zip(ref_rows, ref_completions, strict=True):
        ours = extract_answer(completion)
        theirs = reference_score(row["prompt"], completion, row["final_answer"])
        mine = ours.value is not None and abs(ours.value - float(row["final_answer"])) <= 1e-3
        if theirs != mine:
            disagreements.append(row["id"])
    invented = sum("Question:" in c for c in ref_completions)

    ref_pps = len(ref_rows) / ref_wall
    rows_md = [
        "| method | problems | accuracy | problems / s | new tokens / s | mean new tokens | wall |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| reference (batch 1, 1,024 tokens, no stop, last number) | {len(ref_rows)} | {ref_correct / len(ref_rows):.1%} | "
        f"{ref_pps:.4f} | {ref_tokens / ref_wall:.1f} | {ref_tokens / len(ref_rows):.0f} | {ref_wall:.0f} s |",
        f"| rlvr eval (batch {args.batch_size}, stop, exemplars held once (cascade attention), finished rows dropped) | {same_summary['n']} | {same_summary['accuracy']:.1%} | "
        f"{same_summary['problems_per_second']:.3f} | {same_summary['tokens_per_second']:.1f} | "
        f"{same_summary['mean_completion_tokens']:.0f} | {same_wall:.0f} s |",
        f"| rlvr eval, {more_summary['n']} problems | {more_summary['n']} | {more_summary['accuracy']:.1%} | "
        f"{more_summary['problems_per_second']:.3f} | {more_summary['tokens_per_second']:.1f} | "
        f"{more_summary['mean_completion_tokens']:.0f} | {more_wall:.0f} s |",
    ]
    speedup = same_summary["problems_per_second"] / ref_pps
    full_rlvr = 1319 / more_summary["problems_per_second"]
    full_ref = 1319 / ref_pps
    body = (
        "SmolLM2-135M-Instruct on the GSM8K test split, 8-shot prompts, greedy, on this CPU, one run.\n\n"
        + "\n".join(rows_md)
        + f"\n\nAt {more_summary['n']} problems (one batch of {args.batch_size}, as `rlvr eval` runs by default) rlvr's "
        f"throughput is **{more_summary['problems_per_second'] / ref_pps:.0f}x** the reference method's (target >= 20x). "
        "The reference's cost per problem does not depend on the problem (always 1,024 tokens at batch 1), so "
        f"its problems/s measured on the first {len(ref_rows)} stands for any of them. On those same "
        f"{len(ref_rows)} alone rlvr is {speedup:.0f}x faster: a batch of {len(ref_rows)} is held up by its longest "
        "completion, decoded alone at the end. "
        f"All 1,319 test problems, projected: rlvr {full_rlvr / 60:.0f} min, reference method {full_ref / 3600:.1f} h.\n\n"
        f"What the reference method scores wrongly: {invented} of its {len(ref_rows)} completions run on into invented "
        "`Question:` blocks, whose numbers its last-number rule then scores. "
        + (
            f"Here that changed the verdict on {len(disagreements)} problems ({', '.join(disagreements)}). "
            if disagreements
            else "Here the verdicts happen to agree (this small model answers none of these correctly either way); "
            "tests/test_eval.py shows a completion the rule gets wrong. "
        )
        + f"Its 1,024 tokens per problem are mostly invented text: rlvr generates "
        f"{same_summary['mean_completion_tokens'] / (ref_tokens / len(ref_rows)):.0%} as many.\n\n"
        "Reproduce: `python benchmarks/bench_eval.py`. GPU figures: `benchmarks/gpu_check.py` (section below)."
    )
    tuned_rows = [
        "| model | problems | problems / s | new tokens / s | mean new tokens | wall |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, summary in [("base", more_summary), *tuned.items()]:
        tuned_rows.append(
            f"| {name} | {summary['n']} | {summary['problems_per_second']:.3f} | {summary['tokens_per_second']:.1f} | "
            f"{summary['mean_completion_tokens']:.0f} | {summary['wall_seconds']:.0f} s |"
        )
    merged = tuned["tuned (adapter merged, as rlvr eval loads it)"]
    body += (
        f"\n\n### Tuned and base evaluate at the same speed\n\nThe same {more_summary['n']} problems, batches of "
        f"{args.batch_size}:\n\n" + "\n".join(tuned_rows) + "\n\n"
        f"Generated tokens per second, tuned (merged) / base: **{merged['tokens_per_second'] / more_summary['tokens_per_second']:.2f}**. "
        "`rlvr eval --checkpoint` merges the adapter into the base weights before generating, so the tuned model "
        "runs exactly the base's matrix products; problems per second then differ only by how long the "
        "completions are. The unmerged row is what a PEFT model costs per token without that."
    )
    write_section("Evaluation speed on CPU (rlvr eval vs the reference method)", body)
    RESULTS_JSON.parent.mkdir(exist_ok=True)
    RESULTS_JSON.write_text(
        json.dumps(
            {
                "model": "smollm2-135m",
                "shots": 8,
                "batch_size": args.batch_size,
                "reference": {
                    "n": len(ref_rows),
                    "accuracy": ref_correct / len(ref_rows),
                    "problems_per_second": ref_pps,
                    "tokens_per_second": ref_tokens / ref_wall,
                    "mean_completion_tokens": ref_tokens / len(ref_rows),
                    "wall_seconds": ref_wall,
                },
                "rlvr_same_problems": same_summary,
                "rlvr": more_summary,
                "speedup_same_problems": speedup,
                "speedup": more_summary["problems_per_second"] / ref_pps,
                "tuned_vs_base": {"base": more_summary, **tuned},
            },
            indent=2,
        )
        + "\n"
    )


def tuned_vs_base(model, tokenizer, rows, batch_size):
    """Evaluate a LoRA adapter on `rows` merged (as `rlvr eval --checkpoint` loads it) and unmerged."""
    import copy

    import torch
    from peft import LoraConfig, get_peft_model

    from rlvr_cli.evaluation.generators import HFGenerator
    from rlvr_cli.evaluation.run import evaluate
    from rlvr_cli.evaluation.scoring import summarize

    torch.manual_seed(0)
    peft_model = get_peft_model(
        copy.deepcopy(model),
        LoraConfig(r=16, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM"),
    )
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=1e-3)  # a trained adapter is non-zero; small keeps outputs near the base's
    out = {}
    generator = HFGenerator(peft_model.eval(), tokenizer, max_new_tokens=512)
    samples, wall, _ = evaluate(generator, rows, batch_size, "tuned, adapter unmerged")
    out["tuned (adapter unmerged)"] = summarize(samples, wall)
    merged = peft_model.merge_and_unload()
    generator = HFGenerator(merged.eval(), tokenizer, max_new_tokens=512)
    samples, wall, _ = evaluate(generator, rows, batch_size, "tuned, merged")
    out["tuned (adapter merged, as rlvr eval loads it)"] = summarize(samples, wall)
    return out


if __name__ == "__main__":
    main()
