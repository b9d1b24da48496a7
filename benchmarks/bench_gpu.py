"""GRPO and evaluation throughput at Qwen2.5-0.5B's shape, random weights, for a machine with a GPU.

    python benchmarks/bench_gpu.py --gsm8k ../shared/data/gsm8k --tokenizer DIR          # on a CUDA machine
    python benchmarks/bench_gpu.py --gsm8k ../shared/data/gsm8k --tokenizer DIR --tiny   # CPU check of the script

Speed and memory do not depend on the weights, so a model built from Qwen2.5-0.5B's configuration
(hidden 896, 24 layers, 14 heads / 2 KV heads, intermediate 4864, vocab 151,936, tied embeddings)
with random weights stands in for it where the Hub is unreachable. The tokenizer is any small one
(e.g. the offline SmolLM2's, `~/.cache/rlvr/models/smollm2-135m-*`); token ids past its vocabulary
are suppressed during generation. Runs `rlvr train` itself (bf16 LoRA, then 4-bit QLoRA when
bitsandbytes is installed) and `rlvr eval`'s generator, and writes a RESULTS.md section.

Random weights never write an answer line, so completions run to max_completion_length: the
figures are the upper bound per step; real runs stop earlier.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import write_section

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
    model: Path, data: Path, out: Path, four_bit: bool, steps: int, suppress: list[int], cuda: bool
) -> dict:
    import torch

    from rlvr_cli.config import load_recipe
    from rlvr_cli.train import run_training

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
        f"load_in_4bit={str(four_bit).lower()}",
        "attn_implementation=sdpa",
        f"bf16={str(cuda).lower()}",
        f"torch_dtype={'bfloat16' if cuda else 'float32'}",
    ]
    loaded = load_recipe(None, overrides)
    # Token ids the stand-in tokenizer cannot decode are never sampled.
    loaded.recipe.generation_kwargs = {"suppress_tokens": suppress}
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    run_training(loaded, force=True)
    history = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    history = [h for h in history if "step_time" in h][1:] or history
    step = sum(h["step_time"] for h in history) / len(history)
    tokens = sum(h.get("completions/mean_length", 0) for h in history) / len(history) * 32
    return {
        "s_per_step": step,
        "completion_tokens_per_s": tokens / step,
        "peak_gb": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gsm8k", type=Path, required=True)
    parser.add_argument("--tokenizer", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=4)
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
    from rlvr_cli.data import load_source, prepare, write_prepared

    prepared = prepare(load_source(str(args.gsm8k)), shots=8, val_fraction=0.1, seed=42)
    write_prepared(work / "data", prepared)
    results = {"bf16 LoRA": train(model, work / "data", work / "bf16", False, args.steps, suppress, cuda)}
    if cuda:
        try:
            import bitsandbytes  # noqa: F401

            results["4-bit QLoRA"] = train(
                model, work / "data", work / "qlora", True, args.steps, suppress, cuda
            )
        except ImportError:
            print("bitsandbytes not installed: QLoRA skipped", file=sys.stderr)

    # Evaluation generation at this shape: batch 16, 256 new tokens (random weights never stop).
    from rlvr_cli.evaluate import HFGenerator, load_model

    loaded = load_model(str(model), is_checkpoint=False)
    generator = HFGenerator(loaded.model, loaded.tokenizer, max_new_tokens=256, suppress_tokens=suppress)
    prompts = [r["prompt"] for r in prepared.rows["test"][:16]]
    start = time.perf_counter()
    generated = generator.generate(prompts)
    wall = time.perf_counter() - start
    gen_tokens = sum(g.tokens for g in generated)

    device = (
        torch.cuda.get_device_name(0)
        if cuda
        else "CPU (tiny shape: a check of the script, not a measurement)"
    )
    steps_per_epoch = len(prepared.rows["train"]) * 8 // 32
    rows = [
        "| setting | s / step | completion tokens / s | peak GPU memory | one epoch (projected) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, r in results.items():
        peak = f"{r['peak_gb']:.1f} GiB" if r["peak_gb"] is not None else "-"
        rows.append(
            f"| {name} | {r['s_per_step']:.2f} | {r['completion_tokens_per_s']:.0f} | {peak} | "
            f"{r['s_per_step'] * steps_per_epoch / 3600:.1f} h |"
        )
    write_section(
        f"GRPO at Qwen2.5-0.5B's shape ({'tiny check' if args.tiny else device})",
        f"Device: {device}. Random weights; 8-shot prompts; 32 completions (4 prompts x 8) per step "
        f"(per-device batch 16 x accumulation 2, the reference recipe's batch on one GPU); max_completion_length 256; "
        f"one epoch = {steps_per_epoch} steps on one GPU.\n\n"
        + "\n".join(rows)
        + f"\n\nEvaluation generation (batch 16, 256 new tokens, shared prefix): {gen_tokens / wall:.0f} tokens/s, "
        f"{len(prompts) / wall:.2f} problems/s.\n\nReproduce: `python benchmarks/bench_gpu.py --gsm8k DIR --tokenizer DIR`.",
    )


if __name__ == "__main__":
    main()
