"""What this machine can do, and the settings a recipe actually runs with here.

A recipe written for a GPU (4-bit QLoRA, flash-attention, bf16) also runs on a CPU for small
models: each GPU-only setting that has a sensible fallback produces one warning and the fallback,
and the effective settings are recorded in the run manifest. Settings without a fallback (an
explicit `use_vllm: true`) are errors.
"""

from __future__ import annotations

import importlib.util
import math
import os
import platform
import re
import subprocess
from dataclasses import asdict, dataclass, field
from typing import Any

from rlvr_cli.config.recipe import Recipe
from rlvr_cli.core.errors import RlvrError, UsageError


@dataclass
class Environment:
    device: str  # cuda | cpu
    device_name: str
    world_size: int
    local_rank: int
    dtype: str  # torch dtype name the base weights load in
    bf16: bool
    tf32: bool | None
    load_in_4bit: bool
    attn_implementation: str
    use_vllm: bool = False  # TRL generates with vLLM (colocated); else rlvr's own generator
    generator: str = ""  # which generator runs and why, as `rlvr train` prints it
    fallbacks: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


# The vLLM releases the installed TRL supports: trl.import_utils.is_vllm_available warns outside
# them (tests/test_generator_choice.py holds these to the installed TRL).
TRL_VLLM_RANGE = ("0.22.0", "0.31.0")
# TRL's weight sync sends vLLM the packed 4-bit weights without their quantisation state, which
# vLLM's loader rejects (huggingface/trl#4973, unfixed in the locked TRL).
QLORA_VLLM = "TRL cannot sync a 4-bit (QLoRA) model's weights into vLLM (huggingface/trl#4973)"
OWN = "rlvr's generator (transformers, each shared prompt part run once, stopped after the answer)"


def _release(version: str) -> tuple[int, ...]:
    """A version's release numbers: "0.30.0+cu129" and "0.30.0rc1" are (0, 30, 0)."""
    match = re.match(r"\d+(?:\.\d+)*", version)
    return tuple(int(part) for part in match.group().split(".")) if match else ()


def choose_generator(
    use_vllm: bool | str,
    cuda: bool,
    load_in_4bit: bool,
    vllm_version: str | None,
    *,
    cuda_graphs: bool = True,
) -> tuple[bool, str]:
    """Whether TRL generates with vLLM, and a line saying which generator runs and why.

    `auto` takes vLLM (colocated with training, TRL's importance-sampling correction on) wherever
    it can serve the recipe; an explicit `true` that cannot is an error rather than a silent switch.
    On a GPU, rlvr's own generator's line also says whether its decoding steps are CUDA graphs.
    """
    steps = ""
    if cuda:
        steps = (
            "; each decoding step one CUDA graph"
            if cuda_graphs
            else "; decoding eagerly (cuda_graphs: false)"
        )

    def own(why: str) -> str:
        return f"{OWN}: {why}{steps}"

    if use_vllm is False:
        return False, own("use_vllm: false")
    explicit = use_vllm is True
    if not cuda:
        if explicit:
            raise UsageError(
                "use_vllm needs a CUDA GPU; set use_vllm: auto or false to generate with transformers"
            )
        return False, own("no CUDA GPU, which vLLM needs")
    if load_in_4bit:
        if explicit:
            raise UsageError(f"use_vllm: {QLORA_VLLM}: set load_in_4bit: false (bf16 LoRA) or use_vllm: auto")
        return False, own(f"{QLORA_VLLM}; load_in_4bit: false would use vLLM")
    if vllm_version is None:
        if explicit:
            raise RlvrError(
                "use_vllm: vLLM is not installed: pip install 'rlvr[vllm]', or set use_vllm: auto"
            )
        return False, own("vLLM is not installed (pip install 'rlvr[vllm]'; the training image has it)")
    low, high = TRL_VLLM_RANGE
    supported = _release(low) <= _release(vllm_version) <= _release(high)
    if not supported and not explicit:
        return False, own(f"vLLM {vllm_version} is outside the releases TRL supports ({low} to {high})")
    why = "use_vllm: true" if explicit else "use_vllm: auto, a CUDA GPU and a vLLM that TRL supports"
    caveat = "" if supported else f", outside the releases TRL supports ({low} to {high})"
    return True, f"vLLM {vllm_version} colocated with training{caveat}: {why}"


def resolve_environment(recipe: Recipe) -> Environment:
    import torch

    cuda = torch.cuda.is_available()
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    fallbacks: list[str] = []
    use_vllm, generator = choose_generator(
        recipe.use_vllm,
        cuda,
        recipe.load_in_4bit,
        package_versions()["vllm"],
        cuda_graphs=recipe.cuda_graphs,
    )

    load_in_4bit = recipe.load_in_4bit
    if load_in_4bit and not cuda:
        load_in_4bit = False
        fallbacks.append(
            "load_in_4bit needs CUDA (bitsandbytes): training LoRA on full-precision weights instead"
        )
    elif load_in_4bit and not _installed("bitsandbytes"):
        raise RlvrError(
            "load_in_4bit needs bitsandbytes: pip install 'rlvr[gpu]', or set load_in_4bit: false"
        )

    attn = recipe.attn_implementation
    if attn.startswith("flash_attention"):
        package = "flash_attn_interface" if attn == "flash_attention_3" else "flash_attn"
        if not cuda:
            fallbacks.append(f"attn_implementation {attn} needs CUDA: using sdpa")
            attn = "sdpa"
        elif not _installed(package):
            fallbacks.append(
                f"attn_implementation {attn}: flash-attn is not installed (pip install flash-attn builds it "
                "for your torch; the image has none): using sdpa, whose CUDA flash kernels serve bf16/fp16"
            )
            attn = "sdpa"

    dtype = "float32" if recipe.torch_dtype == "auto" and not cuda else recipe.torch_dtype
    bf16 = recipe.bf16
    if not cuda and (bf16 or dtype in ("bfloat16", "float16")):
        fallbacks.append(
            f"{dtype if dtype != 'float32' else 'bf16'} asked for: on CPU rlvr trains in float32"
        )
        dtype, bf16 = "float32", False
    elif cuda and (bf16 or dtype == "bfloat16") and not torch.cuda.is_bf16_supported():
        fallbacks.append("this GPU has no bf16: training in float32")
        dtype, bf16 = "float32", False

    tf32 = recipe.tf32 if cuda and torch.cuda.get_device_capability()[0] >= 8 else None
    if cuda:
        device, name = "cuda", torch.cuda.get_device_name(local_rank % max(torch.cuda.device_count(), 1))
    else:
        device, name = "cpu", platform.processor() or platform.machine()
    return Environment(
        device=device,
        device_name=name,
        world_size=world_size,
        local_rank=local_rank,
        dtype=dtype,
        bf16=bf16,
        tf32=tf32,
        load_in_4bit=load_in_4bit,
        attn_implementation=attn,
        use_vllm=use_vllm,
        generator=generator,
        fallbacks=fallbacks,
    )


# Allocations from this size up get their own mapping, returned to the system when freed.
MMAP_THRESHOLD = 1 << 20


def return_freed_memory() -> bool:
    """Make glibc give large freed blocks back to the system (Linux; skipped if the user set
    MALLOC_MMAP_THRESHOLD_ or RLVR_ALLOCATOR=default). Returns whether it changed anything.

    A GRPO step allocates and frees gigabytes of activations. glibc raises its mmap threshold
    after large blocks are freed (up to 32 MiB), so later tensors come from the heap, whose freed
    pages stay resident: the policy pass then starts on top of what generation and the previous
    backward left, and the process peaks ~2.4 GB higher (benchmarks/RESULTS.md, memory section).
    A fixed 1 MiB threshold keeps every large tensor in its own mapping; measured at the same
    speed on CPU.
    """
    if platform.system() != "Linux" or os.environ.get("RLVR_ALLOCATOR") == "default":
        return False
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (e.g. musl)
        return False
    m_mmap_threshold = -3  # <malloc.h>
    return bool(libc.mallopt(m_mmap_threshold, MMAP_THRESHOLD))


def check_generation_batch(recipe: Recipe, world_size: int) -> None:
    """GRPO needs every prompt's group of completions in one generation batch."""
    batch = recipe.per_device_train_batch_size * recipe.gradient_accumulation_steps * world_size
    if batch % recipe.num_generations:
        others = recipe.gradient_accumulation_steps * world_size
        fix = recipe.num_generations // math.gcd(recipe.num_generations, others)
        raise UsageError(
            f"per_device_train_batch_size ({recipe.per_device_train_batch_size}) x gradient_accumulation_steps "
            f"({recipe.gradient_accumulation_steps}) x processes ({world_size}) = {batch} completions per step is not a "
            f"multiple of num_generations ({recipe.num_generations}); e.g. set per_device_train_batch_size to a multiple of {fix}"
        )


def package_versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in (
        "rlvr",
        "torch",
        "transformers",
        "trl",
        "peft",
        "accelerate",
        "datasets",
        "mlflow",
        "bitsandbytes",
        "flash-attn",
        "vllm",
    ):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def git_commit() -> str | None:
    """The commit of the working directory's git checkout (the user's project), if any."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None
