"""Loading what `rlvr eval` compares: a trained output (LoRA adapter, merged into its base for speed,
or a full model) or a base model, with the run record that names its base and MLflow run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlvr_cli.core.errors import RlvrError, UsageError
from rlvr_cli.core.files import read_json_object
from rlvr_cli.models.loading import resolve_model
from rlvr_cli.models.offline import offline_name
from rlvr_cli.models.record import RunRecord


@dataclass
class LoadedModel:
    label: str  # what the report calls it
    model: Any
    tokenizer: Any
    base: str | None  # base model name, for --baseline
    run: RunRecord | None  # the checkpoint's rlvr_run.json


def _device_and_dtype() -> tuple[str, Any]:
    import torch

    if torch.cuda.is_available():
        return "cuda", torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return "cpu", torch.float32  # bf16 matmuls are slow or unsupported on most CPUs


def adapter_config(directory: Path) -> dict[str, Any]:
    """A LoRA checkpoint's adapter_config.json (checked by `rlvr eval` before any model loads)."""
    path = directory / "adapter_config.json"
    config = read_json_object(path)
    if config is None:
        raise UsageError(
            f"{path}: not a JSON object; restore it from the run (rlvr train writes it with the adapter)"
        )
    return config


def base_of_checkpoint(path: Path) -> str | None:
    """The base model of a local checkpoint, read without loading anything: the run record's (it
    keeps the name trained from, e.g. an offline model's short name), else the adapter's."""
    run = RunRecord.read(path)
    base = run.base_model if run else None
    if not base and (path / "adapter_config.json").is_file():
        base = adapter_config(path).get("base_model_name_or_path")
    return base if isinstance(base, str) and base else None


def check_base(checkpoint: Path, *, baseline: bool) -> str | None:
    """The base model an adapter loads onto, or that --baseline evaluates: known and, when local,
    there (`rlvr eval` checks every checkpoint before evaluating any, so a missing base does not
    end a run after its first model). None for a full model without --baseline."""
    adapter = (checkpoint / "adapter_config.json").is_file()
    if adapter:
        adapter_config(checkpoint)  # readable, even where the run record names the base: PEFT reads it
    elif not baseline:
        return None
    base = base_of_checkpoint(checkpoint)
    if not base:
        raise UsageError(
            f"{checkpoint}: adapter_config.json names no base model; set its base_model_name_or_path "
            "to the model the adapter was trained from"
            if adapter
            else f"{checkpoint}: its base model is unknown (no rlvr_run.json or adapter config); "
            "pass --model BASE instead of --baseline"
        )
    if not offline_name(base):
        try:
            resolve_model(base)  # local paths only: a Hub id is looked up when it loads
        except RlvrError as exc:
            raise UsageError(f"{checkpoint}: its base model cannot be found ({exc.message})") from exc
    return base


def load_model(spec: str, *, is_checkpoint: bool) -> LoadedModel:
    from rlvr_cli.models.loading import load_causal_lm, load_tokenizer

    device, dtype = _device_and_dtype()
    path = Path(spec)
    if not is_checkpoint:
        resolved = resolve_model(spec)
        model = load_causal_lm(resolved, dtype=dtype).to(device)
        # A merged model written by `rlvr train --merge` keeps its run record one level up.
        run = None
        if path.is_dir():
            run = RunRecord.read(path) or (RunRecord.read(path.parent) if path.name == "merged" else None)
        base = (run.base_model if run else None) or spec
        tokenizer = load_tokenizer(spec, padding_side="left")
        return LoadedModel(label=spec, model=model, tokenizer=tokenizer, base=base, run=run)
    if not path.is_dir():
        raise UsageError(f"--checkpoint {spec}: directory not found")
    run = RunRecord.read(path)
    if (path / "adapter_config.json").is_file():
        base = check_base(path, baseline=False)
        assert base is not None  # an adapter's base, or check_base raised
        try:
            resolved = resolve_model(base)
            base_model = load_causal_lm(resolved, dtype=dtype)
        except RlvrError as exc:
            raise RlvrError(f"{spec}: the adapter's base model cannot be loaded ({exc.message})") from exc
        from peft import PeftModel

        # Merging the adapter makes inference as fast as the base model's.
        model = PeftModel.from_pretrained(base_model, str(path)).merge_and_unload().to(device)
        return LoadedModel(
            label=spec, model=model, tokenizer=load_tokenizer(spec, padding_side="left"), base=base, run=run
        )
    if (path / "config.json").is_file():
        resolved = resolve_model(spec)
        model = load_causal_lm(resolved, dtype=dtype).to(device)
        return LoadedModel(
            label=spec,
            model=model,
            tokenizer=load_tokenizer(spec, padding_side="left"),
            base=run.base_model if run else None,
            run=run,
        )
    raise UsageError(
        f"--checkpoint {spec}: not a model or adapter directory (no adapter_config.json or config.json)"
    )
