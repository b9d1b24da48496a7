"""The GPU check: rlvr's CUDA path checked and measured in one go, at Qwen2.5-0.5B's shape, random weights.

    make gpu-check                                                                  # on a CUDA machine
    python benchmarks/gpu_check.py --gsm8k ../shared/data/gsm8k --tokenizer DIR          # the same
    python benchmarks/gpu_check.py --gsm8k ../shared/data/gsm8k --tokenizer DIR --tiny   # CPU run of the script
    bash benchmarks/gpu_device.sh OUT_DIR          # on a machine without network (make gpu-bundle first)

Checks first (benchmarks/gpu_checks.py: cascade attention against SDPA in bf16 and fp16, greedy
eval tokens against plain `generate`, a SIGTERM mid-run that saves a resumable checkpoint, one
row's decode speed against the card's memory bandwidth), then the measurements below. Every part
is recorded in the JSON (`--results`, default benchmarks/results/gpu.json): `environment` (device,
CUDA, versions, commit, date), `checks` and `parts` (name -> figures; a GRPO part names the
generator its steps ran with: rlvr's throughout), `errors` (name -> the failure). The RESULTS.md section is written for a GPU run only.

Speed and memory do not depend on the weights, so a model built from Qwen2.5-0.5B's configuration
(hidden 896, 24 layers, 14 heads / 2 KV heads, intermediate 4864, vocab 151,936, tied embeddings)
with random weights stands in for it where the Hub is unreachable. The tokenizer is any small one
(e.g. the offline SmolLM2's, `~/.cache/rlvr/models/smollm2-135m-*`); token ids past its vocabulary
are suppressed during generation. Runs `rlvr train` itself (bf16 LoRA with and without gradient
checkpointing, then 4-bit QLoRA when bitsandbytes is installed; on CUDA rlvr's generator replays
each decoding step as a CUDA graph) and `rlvr eval`'s generator against plain `generate` and
against its own loop without CUDA graphs on the same problems, and writes a RESULTS.md section and
`benchmarks/results/gpu.json`.

Each part runs on its own: one that fails is recorded with its error and the others still run,
and the JSON is rewritten after every part (and copied to `--out`), so a run cut short by a time
limit still leaves what it measured.

Random weights never write an answer line, so completions run to max_completion_length: the
figures are the upper bound per step; real runs stop earlier.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import write_section

RESULTS_JSON = Path(__file__).resolve().parent / "results" / "gpu.json"  # --results changes it

QWEN_05B = {
    "hidden_size": 896,
    "intermediate_size": 4864,
    "num_hidden_layers": 24,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "vocab_size": 151936,
    "max_position_embeddings": 32768,
    "rope_theta": 1_000_000.0,
    "tie_word_embeddings": True,
    "rms_norm_eps": 1e-6,
}
TINY = {
    **QWEN_05B,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 51200,
}


def build_model(target: Path, tokenizer_dir: Path, shape: dict) -> None:
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = Qwen2Config(
        **shape,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    Qwen2ForCausalLM(config).to(torch.bfloat16).save_pretrained(target)
    tokenizer.save_pretrained(target)


def train(
    model: Path, data: Path, out: Path, settings: list[str], steps: int, suppress: list[int], cuda: bool
) -> dict:
    import torch

    from rlvr_cli.config.loading import load_recipe
    from rlvr_cli.training.run import run_training

    overrides = [
        f"model_name_or_path={model}",
        f"train_dataset_path={data / 'train' / 'dataset.json'}",
        f"output_dir={out}",
        f"max_steps={steps}",
        "per_device_train_batch_size=16",
        "gradient_accumulation_steps=2",
        "num_generations=8",
        "max_completion_length=256",
        "logging_steps=1",
        "save_strategy=no",
        "report_to=none",
        "lora_modules_to_save=null",
        "attn_implementation=sdpa",
        f"bf16={str(cuda).lower()}",
        f"torch_dtype={'bfloat16' if cuda else 'float32'}",
        *settings,
    ]
    loaded = load_recipe(None, overrides)
    # Token ids the stand-in tokenizer cannot decode are never sampled.
    loaded.recipe.generation_kwargs = {"suppress_tokens": suppress}
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    result = run_training(loaded, force=True)
    wall = time.perf_counter() - start
    if result.exit_code:  # a SIGTERM (e.g. the caller's time limit) stopped it: nothing to report
        raise RuntimeError(f"stopped at step {result.record.global_step} ({result.record.interrupted_by})")
    history = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    timed = [h for h in history if "step_time" in h]
    measured = timed[1:] or timed  # the first step warms up kernels and allocators
    step = sum(h["step_time"] for h in measured) / len(measured)
    mean_len = sum(h.get("completions/mean_length", 0) for h in measured) / len(measured)
    completions = 16 * 2  # per_device_train_batch_size x gradient_accumulation_steps on one device
    return {
        "settings": settings,
        "generator": result.record.environment.get("generator"),  # the figures are this generator's
        "steps_measured": len(measured),
        "s_per_step": round(step, 3),
        "each_step_s": [round(h["step_time"], 2) for h in timed],
        "completions_per_s": round(completions / step, 2),
        "completion_tokens_per_s": round(mean_len * completions / step, 1),
        "mean_completion_tokens": round(mean_len, 1),
        "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
        "wall_s_with_load": round(wall, 1),
    }


def eval_generation(model_dir: Path, prompts: list[str], suppress: list[int], args: Any, cuda: bool) -> dict:
    """rlvr eval's generator over the test problems (time-capped), then plain `generate` and rlvr's
    loop without CUDA graphs on the first batch."""
    import torch

    import benchmarks.gpu_checks as checks
    from rlvr_cli.evaluation.generators import HFGenerator
    from rlvr_cli.evaluation.loading import load_model

    loaded = load_model(str(model_dir), is_checkpoint=False)
    model, tokenizer = loaded.model, loaded.tokenizer
    generator = HFGenerator(model, tokenizer, max_new_tokens=args.eval_tokens, suppress_tokens=suppress)
    generator.generate(prompts[:2])  # warm-up: kernels, allocator
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    done = tokens = 0
    start = time.perf_counter()
    while done < len(prompts) and time.perf_counter() - start < args.eval_budget_s:
        batch = prompts[done : done + args.eval_batch]
        tokens += sum(g.tokens for g in generator.generate(batch))
        done += len(batch)
    if cuda:
        torch.cuda.synchronize()
    wall = time.perf_counter() - start
    rlvr = {
        "problems": done,
        "batch_size": args.eval_batch,
        "new_tokens": tokens,
        "wall_s": round(wall, 2),
        "problems_per_s": round(done / wall, 3),
        "tokens_per_s": round(tokens / wall, 1),
        "projected_s_for_all": round(len(prompts) / (done / wall), 1),
        "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
    }

    # Baseline in the same run: transformers' plain batched `generate` on the same first batch.
    batch = prompts[: args.eval_batch]
    encoded = tokenizer(batch, return_tensors="pt", padding=True).to(model.device)
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.no_grad():
        out = model.generate(
            **encoded,
            max_new_tokens=args.eval_tokens,
            do_sample=False,
            suppress_tokens=suppress,
            pad_token_id=tokenizer.pad_token_id,
        )
    if cuda:
        torch.cuda.synchronize()
    plain_wall = time.perf_counter() - start
    plain_tokens = int((out[:, encoded["input_ids"].shape[1] :] != tokenizer.pad_token_id).sum())
    start = time.perf_counter()
    same = generator.generate(batch)
    if cuda:
        torch.cuda.synchronize()
    same_wall = time.perf_counter() - start
    with checks.static_decoding(False):  # rlvr's loop without CUDA graphs, on the same batch
        start = time.perf_counter()
        generator.generate(batch)
        if cuda:
            torch.cuda.synchronize()
        eager_wall = time.perf_counter() - start
    # Greedy on random weights: near-ties can flip under a different batch layout in bf16, so this is
    # reported, not asserted (tests/test_generation.py asserts equality in float32).
    plain_texts = tokenizer.batch_decode(out[:, encoded["input_ids"].shape[1] :], skip_special_tokens=True)
    identical = sum(a == g.text for a, g in zip(plain_texts, same, strict=True))
    return {
        "rlvr": rlvr,
        "same_batch": {
            "problems": len(batch),
            "plain_generate_s": round(plain_wall, 2),
            "plain_tokens_per_s": round(plain_tokens / plain_wall, 1),
            "rlvr_s": round(same_wall, 2),
            "rlvr_tokens_per_s": round(sum(g.tokens for g in same) / same_wall, 1),
            "speedup": round(plain_wall / same_wall, 2),
            "rlvr_eager_s": round(eager_wall, 2),
            "cuda_graphs_speedup": round(eager_wall / same_wall, 2),
            "identical_completions": identical,
        },
    }


def environment(cuda: bool) -> dict:
    import platform

    import torch

    versions = {"python": platform.python_version(), "torch": torch.__version__}
    for name in ("transformers", "trl", "peft", "accelerate", "bitsandbytes"):
        try:
            versions[name] = __import__(name).__version__
        except Exception:
            versions[name] = None
    from datetime import datetime, timezone

    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent
    ).stdout.strip()
    return {
        "device": torch.cuda.get_device_name(0) if cuda else "CPU (tiny shape: a check of the script)",
        "cuda": torch.version.cuda,
        "versions": versions,
        "commit": commit or None,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gsm8k", type=Path, required=True)
    parser.add_argument("--tokenizer", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=4, help="GRPO steps per configuration (first excluded)")
    parser.add_argument("--eval-batch", type=int, default=64)
    parser.add_argument("--eval-tokens", type=int, default=256)
    parser.add_argument("--eval-budget-s", type=float, default=120, help="stop the eval run after this long")
    parser.add_argument(
        "--only", nargs="*", help="parts to run: attention greedy sigterm decode qlora bf16 eval bf16-gc"
    )
    parser.add_argument("--results", type=Path, default=RESULTS_JSON, help="where the JSON goes")
    parser.add_argument("--out", type=Path, help="also copy the JSON and the log of errors here")
    parser.add_argument(
        "--tiny", action="store_true", help="tiny shape on CPU: checks the script, measures nothing"
    )
    args = parser.parse_args()
    import torch

    cuda = torch.cuda.is_available() and not args.tiny
    work = Path(tempfile.mkdtemp(prefix="rlvr-bench-gpu-"))
    model = work / "model"
    shape = TINY if args.tiny else QWEN_05B
    build_model(model, args.tokenizer, shape)
    from transformers import AutoTokenizer

    suppress = list(range(len(AutoTokenizer.from_pretrained(args.tokenizer)), shape["vocab_size"]))
    from rlvr_cli.data.build import prepare, write_prepared
    from rlvr_cli.tasks.gsm8k.sources import load_source

    prepared = prepare(load_source(str(args.gsm8k)), shots=8, val_fraction=0.1, seed=42)
    write_prepared(work / "data", prepared)
    steps_per_epoch = len(prepared.rows["train"]) * 8 // 32

    results: dict[str, Any] = {
        "environment": environment(cuda),
        "shape": "tiny" if args.tiny else "qwen2.5-0.5b",
    }
    results["checks"] = {}
    results["parts"] = {}
    results["errors"] = {}

    def save() -> None:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(json.dumps(results, indent=2) + "\n")
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            shutil.copy(args.results, args.out / "gpu.json")

    def part(name: str, func: Any, into: str = "parts") -> None:
        if args.only and name not in args.only:
            return
        print(f"--- {name}", file=sys.stderr, flush=True)
        try:
            results[into][name] = func()
        except Exception as exc:
            results["errors"][name] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
        save()

    import benchmarks.gpu_checks as checks

    prompts = [r["prompt"] for r in prepared.rows["test"]]
    device = "cuda" if cuda else "cpu"
    part("attention", lambda: checks.attention(device), "checks")
    part("greedy", lambda: checks.greedy(model, prompts, suppress), "checks")
    part("sigterm", lambda: checks.sigterm(model, work / "data", work, cuda, suppress), "checks")
    part("decode", lambda: checks.decode(model, prompts, suppress), "checks")

    # rlvr's default recipe keeps gradient checkpointing on (the reference's memory profile); without
    # it, the policy pass shares each prompt (prefix_logps). 4-bit needs CUDA and bitsandbytes.
    # Order: the 4-bit path first (it had never run on CUDA), the eval before the slowest configuration.
    # rlvr's own generator throughout (use_vllm: auto would take vLLM where a machine has it).
    configs = {
        "qlora": ["load_in_4bit=true", "gradient_checkpointing=true"],
        "bf16": ["load_in_4bit=false", "gradient_checkpointing=false", "use_vllm=false"],
        "eval": None,
        "bf16-gc": ["load_in_4bit=false", "gradient_checkpointing=true", "use_vllm=false"],
    }
    if not cuda:
        del configs["qlora"]
    for name, settings in configs.items():
        if settings is None:
            part(name, lambda: eval_generation(model, prompts, suppress, args, cuda))
        else:
            part(
                name,
                lambda n=name, s=settings: train(
                    model, work / "data", work / n, s, args.steps, suppress, cuda
                ),
            )
    results["steps_per_epoch_one_gpu"] = steps_per_epoch
    save()
    if cuda:  # a CPU run checks the script; its figures are not results
        write_results(results, args, steps_per_epoch)


LABELS = {
    "bf16": "bf16 LoRA, no gradient checkpointing",
    "bf16-gc": "bf16 LoRA, gradient checkpointing",
    "qlora": "4-bit QLoRA, gradient checkpointing (reference recipe)",
}


def write_results(results: dict, args: Any, steps_per_epoch: int) -> None:
    env = results["environment"]
    rows = [
        "| setting | s / step | completions / s | completion tokens / s | peak GPU memory | one epoch (projected) | each step (s) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, label in LABELS.items():
        r = results["parts"].get(name)
        if r:
            peak = f"{r['peak_gpu_gib']:.1f} GiB" if r["peak_gpu_gib"] is not None else "-"
            rows.append(
                f"| {label} | {r['s_per_step']:.2f} | {r['completions_per_s']:.1f} | {r['completion_tokens_per_s']:.0f} | "
                f"{peak} | {r['s_per_step'] * steps_per_epoch / 3600:.1f} h | {' · '.join(map(str, r['each_step_s']))} |"
            )
        elif name in results["errors"]:
            rows.append(f"| {label} | failed: {results['errors'][name][:120]} | | | | | |")
    body = (
        f"Device: {env['device']}, CUDA {env['cuda']}; "
        + ", ".join(f"{k} {v}" for k, v in env["versions"].items())
        + ".\n\nRandom weights at Qwen2.5-0.5B's shape; 8-shot GSM8K prompts; 32 completions (4 prompts x 8) per step "
        "(per-device batch 16 x accumulation 2, the reference recipe's batch on one GPU); max_completion_length 256 "
        f"(random weights never stop, so every completion is 256 tokens); one epoch = {steps_per_epoch} steps on one GPU. "
        "s/step excludes the first step.\n\n" + "\n".join(rows)
    )
    ev = results["parts"].get("eval")
    if ev:
        r, s = ev["rlvr"], ev["same_batch"]
        body += (
            f"\n\nEvaluation generation (`rlvr eval`'s generator: greedy, shared prefix, batch {r['batch_size']}, "
            f"{args.eval_tokens} new tokens): {r['problems']} test problems in {r['wall_s']} s, "
            f"{r['problems_per_s']} problems/s, {r['tokens_per_s']:.0f} tokens/s, peak {r['peak_gpu_gib']} GiB; "
            f"all 1,319 projected at {r['projected_s_for_all']:.0f} s. On the same {s['problems']} problems, plain "
            f"`generate` took {s['plain_generate_s']} s ({s['plain_tokens_per_s']:.0f} tokens/s) and rlvr's generator "
            f"{s['rlvr_s']} s ({s['rlvr_tokens_per_s']:.0f} tokens/s): **{s['speedup']}x**; rlvr's loop "
            f"without CUDA graphs took {s['rlvr_eager_s']} s (graphs: {s['cuda_graphs_speedup']}x)."
        )
    elif "eval" in results["errors"]:
        body += f"\n\nEvaluation generation failed: {results['errors']['eval']}"
    decode = results["checks"].get("decode")
    if decode:
        eager, share = decode["eager"], decode["share_of_bandwidth"]
        body += (
            f"\n\nOne row's greedy decode: {decode['tokens_per_s']:.0f} tokens/s with CUDA graphs "
            f"({decode['ms_per_token']} ms per token, {f'{share:.1%}' if share else 'an unknown share'} of the "
            f"card's memory bandwidth; the bound is {decode['bandwidth_bound_tokens_per_s']} tokens/s), "
            f"{eager['tokens_per_s']:.0f} tokens/s eagerly ({eager['ms_per_token']} ms per token)."
        )
    body += "\n\nFigures also in `benchmarks/results/gpu.json`. Reproduce: `make gpu-check`."
    write_section(f"GRPO at Qwen2.5-0.5B's shape ({'tiny check' if args.tiny else env['device']})", body)
    if args.out:
        shutil.copy(RESULTS_JSON.parent.parent / "RESULTS.md", args.out / "RESULTS.md")


if __name__ == "__main__":
    main()
