"""The correctness checks and the decode measurement of `benchmarks/gpu_check.py`, each one part.

- `attention`: cascade attention (one and two shared levels) against SDPA over the full per-row
  cache, at Qwen2.5-0.5B's head layout, in bf16 and fp16 (on a CPU: float32), as the largest
  absolute difference from a float32 reference; passes under the dtype's stated tolerance.
- `greedy`: `rlvr eval`'s decoding (shared prefix, finished rows leaving; on CUDA from fixed buffers
  replayed as CUDA graphs, and again eagerly) against plain `generate` on the same prompts: identical
  completions, and where the first difference falls. Random weights have near-ties that bf16 can
  flip, so this is reported with the share identical, not asserted.
- `sigterm`: a GRPO run stopped by SIGTERM after its first step exits 130 with a complete
  checkpoint, and `--resume` finishes from it.
- `decode`: one row's greedy decode, tokens/s, and the weight bytes read per token against the
  card's memory bandwidth (the bound a decode step of a 0.5B model cannot beat); with CUDA graphs
  and, as the baseline in the same run, eagerly.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# Nominal memory bandwidth (bytes/s) by device name: a decode step reads every weight once.
BANDWIDTH = {"H200": 4.8e12, "H100": 3.35e12, "A100": 2.0e12, "L40S": 0.864e12, "A10G": 0.6e12}
TOLERANCE = {"bfloat16": 3e-2, "float16": 4e-3, "float32": 1e-5}


@contextlib.contextmanager
def static_decoding(static: bool) -> Iterator[None]:
    """rlvr's generator from fixed buffers (replayed as CUDA graphs on CUDA; eagerly on a CPU, which
    checks the GPU's path there) or, with `static=False`, its eager loop: the baseline in the same run."""
    from rlvr_cli.decoding import graphs

    real = graphs.use_graphs
    graphs.use_graphs = lambda device: static
    try:
        yield
    finally:
        graphs.use_graphs = real


def attention(device: str) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F

    from rlvr_cli.decoding import cascade
    from rlvr_cli.decoding.cascade import CascadeCache, Level, cascade_attention_forward

    class Module(torch.nn.Module):
        layer_idx = 0

    class Config:
        def get_text_config(self, decoder: bool = True):
            return type("Text", (), {"num_hidden_layers": 1})()

    kv_heads, n_rep, dim = 2, 7, 64  # Qwen2.5-0.5B: 14 query heads on 2 kv heads of 64
    rows, l1, l2, own, q = 8, 700, 60, 256, 1
    dtypes = ["bfloat16", "float16"] if device == "cuda" else ["float32"]
    out: dict[str, Any] = {}
    for dtype_name in dtypes:
        dtype = getattr(torch, dtype_name)
        for levels in (1, 2):
            torch.manual_seed(0)

            def rand(*shape):
                return torch.randn(*shape, device=device, dtype=torch.float32)

            k1, v1 = rand(1, kv_heads, l1, dim), rand(1, kv_heads, l1, dim)
            k2, v2 = rand(2, kv_heads, l2, dim), rand(2, kv_heads, l2, dim)
            k3, v3 = rand(rows, kv_heads, own, dim), rand(rows, kv_heads, own, dim)
            query = rand(rows, kv_heads * n_rep, q, dim)
            index = torch.tensor([0] * (rows // 2) + [1] * (rows // 2), device=device)
            cache = CascadeCache(Config())
            layer = cache.layers[0]
            layer.levels.append(Level.of(k1.to(dtype), v1.to(dtype), None))
            keys, values = [k1.expand(rows, -1, -1, -1)], [v1.expand(rows, -1, -1, -1)]
            if levels == 2:
                layer.levels.append(Level.of(k2.to(dtype), v2.to(dtype), index))
                keys.append(k2[index]), values.append(v2[index])
            keys.append(k3), values.append(v3)
            total = sum(k.shape[2] for k in keys)
            visible = torch.ones(rows, 1, q, total, dtype=torch.bool, device=device)
            token = cascade._ACTIVE.set(cache)
            try:
                got, _ = cascade_attention_forward(
                    Module(), query.to(dtype), k3.to(dtype), v3.to(dtype), visible
                )
            finally:
                cascade._ACTIVE.reset(token)
            full_k = torch.cat(keys, dim=2).repeat_interleave(n_rep, dim=1)
            full_v = torch.cat(values, dim=2).repeat_interleave(n_rep, dim=1)
            expected = F.scaled_dot_product_attention(query, full_k, full_v, attn_mask=visible).transpose(
                1, 2
            )
            error = float((got.float() - expected).abs().max())
            out[f"{dtype_name}_{levels}_level"] = {
                "max_abs_error": error,
                "tolerance": TOLERANCE[dtype_name],
                "passed": error <= TOLERANCE[dtype_name],
            }
    return out


def greedy(model_dir: Path, prompts: list[str], suppress: list[int], new_tokens: int = 32) -> dict[str, Any]:
    import torch

    from rlvr_cli.evaluation.generators import greedy_generate
    from rlvr_cli.evaluation.loading import load_model

    loaded = load_model(str(model_dir), is_checkpoint=False)
    model, tokenizer = loaded.model, loaded.tokenizer
    batch = prompts[:8]
    rows = [tokenizer(p, add_special_tokens=True)["input_ids"] for p in batch]

    def ours_now() -> list[Any]:
        return greedy_generate(
            model, rows, max_new_tokens=new_tokens, eos_token_id=tokenizer.eos_token_id,
            pad_id=tokenizer.pad_token_id, suppress_tokens=suppress,
        )  # fmt: skip

    with static_decoding(True):
        ours = ours_now()
    with static_decoding(False):
        eager = ours_now()
    encoded = tokenizer(batch, return_tensors="pt", padding=True).to(model.device)
    with torch.no_grad():
        plain = model.generate(
            **encoded, max_new_tokens=new_tokens, do_sample=False, suppress_tokens=suppress,
            pad_token_id=tokenizer.pad_token_id,
        )[:, encoded["input_ids"].shape[1] :].tolist()  # fmt: skip

    def first_differences(completions: list[Any]) -> list[int | None]:
        found = []
        for (ids, _), reference in zip(completions, plain, strict=True):
            reference = [t for t in reference if t != tokenizer.pad_token_id][: len(ids) or new_tokens]
            found.append(
                next((i for i, (a, b) in enumerate(zip(ids, reference, strict=False)) if a != b), None)
            )
        return found

    differences, eager_differences = first_differences(ours), first_differences(eager)
    return {
        "rows": len(batch),
        "new_tokens": new_tokens,
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "cuda_graphs": model.device.type == "cuda",  # else: the same buffers, eagerly
        "identical": sum(d is None for d in differences),
        "first_difference_at": differences,
        "eager_identical": sum(d is None for d in eager_differences),
        "eager_first_difference_at": eager_differences,
        "graphs_equal_eager": sum(a == b for a, b in zip(ours, eager, strict=True)),
    }


def sigterm(model_dir: Path, data: Path, work: Path, cuda: bool, suppress: list[int]) -> dict[str, Any]:
    """`rlvr train` as a user runs it, stopped by SIGTERM after step 1, then resumed."""
    import yaml

    out = work / "sigterm"
    recipe = work / "sigterm.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "model_name_or_path": str(model_dir),
                "train_dataset_path": str(data / "train" / "dataset.json"),
                "output_dir": str(out),
                "max_steps": 6,
                "per_device_train_batch_size": 8,
                "gradient_accumulation_steps": 1,
                "num_generations": 8,
                "max_completion_length": 32,
                "logging_steps": 1,
                "save_strategy": "steps",
                "save_steps": 100,
                "report_to": "none",
                "lora_modules_to_save": None,
                "attn_implementation": "sdpa",
                "load_in_4bit": False,
                "bf16": cuda,
                "torch_dtype": "bfloat16" if cuda else "float32",
                "generation_kwargs": {"suppress_tokens": suppress},
            }
        )
    )
    # The repo first, then what the caller had (benchmarks/gpu_device.sh: the carried wheels).
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    command = [sys.executable, "-m", "rlvr_cli", "train", "--config", str(recipe), "--force"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env, cwd=work)
    assert process.stderr is not None
    seen = []
    for line in process.stderr:
        seen.append(line)
        if line.startswith("step "):
            process.send_signal(signal.SIGTERM)
            break
    code = process.wait(timeout=600)
    record = json.loads((out / "rlvr_run.json").read_text())
    checkpoint = Path(record.get("checkpoint") or "")
    complete = all(
        (checkpoint / name).is_file() for name in ("trainer_state.json", "adapter_model.safetensors")
    )
    start = time.perf_counter()
    resumed = subprocess.run(
        [*command[:-1], "--resume"], capture_output=True, text=True, env=env, cwd=work, timeout=600
    )
    final = json.loads((out / "rlvr_run.json").read_text())
    return {
        "stop_exit_code": code,
        "stopped_at_step": record.get("global_step"),
        "status": record.get("status"),
        "checkpoint_complete": complete,
        "resume_exit_code": resumed.returncode,
        "resumed_status": final.get("status"),
        "resumed_to_step": final.get("global_step"),
        "resume_s": round(time.perf_counter() - start, 1),
        "passed": code == 130 and complete and resumed.returncode == 0 and final.get("status") == "completed",
        "log_tail": "".join(seen)[-500:] if code != 130 else None,
    }


def decode(model_dir: Path, prompts: list[str], suppress: list[int], new_tokens: int = 128) -> dict[str, Any]:
    import torch

    from rlvr_cli.evaluation.generators import HFGenerator
    from rlvr_cli.evaluation.loading import load_model

    loaded = load_model(str(model_dir), is_checkpoint=False)
    model, tokenizer = loaded.model, loaded.tokenizer
    generator = HFGenerator(model, tokenizer, max_new_tokens=new_tokens, suppress_tokens=suppress)
    cuda = model.device.type == "cuda"
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    name = torch.cuda.get_device_name(0) if cuda else "cpu"
    bandwidth = next((b for key, b in BANDWIDTH.items() if key in name), None)

    def measure() -> dict[str, Any]:
        generator.generate(prompts[:1])  # warm-up
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        (result,) = generator.generate(prompts[1:2])
        if cuda:
            torch.cuda.synchronize()
        wall = time.perf_counter() - start
        tokens_per_s = result.tokens / wall
        achieved = tokens_per_s * weight_bytes
        return {
            "new_tokens": result.tokens,
            "tokens_per_s": round(tokens_per_s, 1),
            "ms_per_token": round(1000 * wall / max(result.tokens, 1), 2),
            "achieved_gb_per_s": round(achieved / 1e9, 1),
            "share_of_bandwidth": round(achieved / bandwidth, 4) if bandwidth else None,
        }

    with static_decoding(True):
        graphed = measure()
    with static_decoding(False):
        eager = measure()
    return {
        **graphed,
        "cuda_graphs": cuda,
        "eager": eager,
        "speedup_over_eager": round(graphed["tokens_per_s"] / eager["tokens_per_s"], 2),
        "weight_gib": round(weight_bytes / 2**30, 3),
        "nominal_gb_per_s": round(bandwidth / 1e9) if bandwidth else None,
        "bandwidth_bound_tokens_per_s": round(bandwidth / weight_bytes) if bandwidth else None,
    }
