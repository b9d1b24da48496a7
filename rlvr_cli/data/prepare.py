"""`rlvr prepare`: load a source, build the datasets, refuse to clobber, write atomically.

`run_prepare` returns a `PrepareResult`; the CLI renders its table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlvr_cli.core.errors import RlvrError, UsageError
from rlvr_cli.core.progress import Progress, silent
from rlvr_cli.data.build import (
    Prepared,
    check_output_paths,
    check_split_settings,
    existing_differs,
    prepare,
    write_prepared,
)


def parse_options(items: list[str]) -> dict[str, Any]:
    """`--option KEY=VALUE` pairs; values typed as YAML reads them (`2` an int, `true` a bool)."""
    import yaml

    options: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--option {item}: expected KEY=VALUE, e.g. --option max_digits=2")
        try:
            options[key.strip()] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            options[key.strip()] = value
    return options


@dataclass
class PrepareResult:
    prepared: Prepared
    output: Path
    state: str  # written | unchanged
    notes: list[str] = field(default_factory=list)


def _token_counter(model_name: str, notes: list[str]) -> Any:
    """A function counting tokens with the recipe's tokenizer, or None (with a note) if unavailable."""
    try:
        from rlvr_cli.models.loading import load_tokenizer

        tokenizer = load_tokenizer(model_name)
    except ImportError:
        notes.append("prompt tokens not counted: transformers is not installed (pip install 'rlvr[train]')")
        return None
    except RlvrError as exc:
        notes.append(f"prompt tokens not counted: {exc.message}")
        return None

    def count(texts: list[str]) -> list[int]:
        return [len(ids) for ids in tokenizer(texts, add_special_tokens=True)["input_ids"]]

    return count


def run_prepare(
    *,
    source: str,
    output: Path,
    shots: int,
    val_fraction: float,
    seed: int,
    strict: bool,
    force: bool,
    size: int,
    tokenizer_model: str | None,
    task_name: str | None = None,
    options: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> PrepareResult:
    """The prepared data and what happened on disk (written | unchanged); reports to `progress`."""
    from rlvr_cli.tasks import get_task, task_for_source

    report = progress or silent
    name, task_options = task_for_source(source, task_name, dict(options or {}))
    chosen = get_task(name, task_options)  # unknown task or option: fails before any loading
    check_split_settings(shots, val_fraction)  # and so do these, before a download
    check_output_paths(output)
    if size < 1:
        raise UsageError(f"--size {size}: must be at least 1 (the train problems a generator draws)")
    report(f"loading {source}", 0, None)
    data = chosen.load(source, size=size, seed=seed, strict=strict)
    notes: list[str] = []
    counter = _token_counter(tokenizer_model, notes) if tokenizer_model else None
    prepared = prepare(
        data,
        shots=shots,
        val_fraction=val_fraction,
        seed=seed,
        count_tokens=counter,
        tokenizer_name=tokenizer_model if counter else None,
        progress=report,
        task=chosen,
    )
    changed = existing_differs(output, prepared.payloads)
    if changed and not force:
        raise RlvrError(
            f"{output}: holds a different dataset ({', '.join(changed)}); pass --force to replace it "
            "or --output another directory"
        )
    if not changed and all((output / rel).exists() for rel in prepared.payloads):
        return PrepareResult(prepared, output, "unchanged", notes)
    report(f"writing {output}", 0, len(prepared.payloads))
    write_prepared(output, prepared)
    return PrepareResult(prepared, output, "written", notes)
