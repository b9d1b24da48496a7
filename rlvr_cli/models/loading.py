"""Model sources, resolved in one place: a Hub id, a local directory, or an offline model by short
name (`rlvr_cli.models.offline`); loading them with one-line errors instead of tracebacks.

No ML library is imported at module level: transformers is imported by the functions that load.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlvr_cli.core.errors import RlvrError, first_line
from rlvr_cli.models.offline import OFFLINE_MODELS, materialize_offline, offline_name


@dataclass(frozen=True)
class ResolvedModel:
    name: str  # what the user wrote
    path: str  # what from_pretrained gets: a Hub id or a local directory
    kind: str  # hub | local | offline


def resolve_model(name: str) -> ResolvedModel:
    """Map a recipe's `model_name_or_path` to something `from_pretrained` can load."""
    if offline_name(name):
        return ResolvedModel(name=name, path=str(materialize_offline(name)), kind="offline")
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file() and not (path / "adapter_config.json").is_file():
            raise RlvrError(
                f"{name}: not a model directory (no config.json); give a saved model dir or a Hub id"
            )
        return ResolvedModel(name=name, path=str(path), kind="local")
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise RlvrError(f"{name}: model directory not found")
    return ResolvedModel(name=name, path=name, kind="hub")


def load_tokenizer(name: str, revision: str = "main", **kwargs: Any) -> Any:
    """Load a tokenizer for a model name, with a one-line error when it cannot be had."""
    from transformers import AutoTokenizer

    resolved = resolve_model(name)
    try:
        return AutoTokenizer.from_pretrained(resolved.path, revision=revision, **kwargs)
    except Exception as exc:
        raise RlvrError(f"{name}: cannot load its tokenizer ({first_line(exc)}){hub_hint(resolved)}") from exc


def hub_hint(resolved: ResolvedModel) -> str:
    if resolved.kind != "hub":
        return ""
    offline = ", ".join(OFFLINE_MODELS)
    return f"; without the Hugging Face Hub use a local model directory or an offline model ({offline})"


def load_causal_lm(resolved: ResolvedModel, *, revision: str = "main", **kwargs: Any) -> Any:
    """`AutoModelForCausalLM.from_pretrained` with a one-line error when the model cannot be had."""
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(resolved.path, revision=revision, **kwargs)
    except Exception as exc:
        raise RlvrError(
            f"{resolved.name}: cannot load the model ({first_line(exc)}){hub_hint(resolved)}"
        ) from exc


def load_config(resolved: ResolvedModel, *, revision: str = "main", **kwargs: Any) -> Any:
    """The model's configuration alone (seconds faster than the weights), with a one-line error."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(resolved.path, revision=revision, **kwargs)
    except Exception as exc:
        raise RlvrError(
            f"{resolved.name}: cannot load the model config ({first_line(exc)}){hub_hint(resolved)}"
        ) from exc


def quiet_libraries() -> None:
    """Keep library chatter (per-file progress bars, deprecations of their own internals) off the terminal."""
    import warnings

    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    warnings.filterwarnings(
        "ignore", message=r".*is deprecated and will be removed in (v6|version)", category=FutureWarning
    )
