"""`rlvr prepare`: load a source, build the datasets, refuse to clobber, write atomically, report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from rlvr_cli.core import console
from rlvr_cli.core.errors import RlvrError, UsageError
from rlvr_cli.data.build import Prepared, existing_differs, prepare, write_prepared


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


def _token_counter(model_name: str) -> Any:
    """A function counting tokens with the recipe's tokenizer, or None (with a note) if unavailable."""
    try:
        from rlvr_cli.models.loading import load_tokenizer

        tokenizer = load_tokenizer(model_name)
    except ImportError:
        console.notice("prompt tokens not counted: transformers is not installed (pip install 'rlvr[train]')")
        return None
    except RlvrError as exc:
        console.notice(f"prompt tokens not counted: {exc.message}")
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
) -> tuple[Prepared, str]:
    """Returns the prepared data and what happened on disk: written | unchanged."""
    from rlvr_cli.tasks import get_task, task_for_source

    name, task_options = task_for_source(source, task_name, dict(options or {}))
    chosen = get_task(name, task_options)  # unknown task or option: fails before any loading
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console.err,
        transient=True,
    ) as bar:
        task = bar.add_task(f"loading {source}", total=None)
        data = chosen.load(source, size=size, seed=seed, strict=strict)
        counter = _token_counter(tokenizer_model) if tokenizer_model else None

        def progress(stage: str, done: int, total: int) -> None:
            bar.update(task, description=stage, completed=done, total=total)

        prepared = prepare(
            data,
            shots=shots,
            val_fraction=val_fraction,
            seed=seed,
            count_tokens=counter,
            tokenizer_name=tokenizer_model if counter else None,
            progress=progress,
            task=chosen,
        )
        changed = existing_differs(output, prepared.payloads)
        if changed and not force:
            raise RlvrError(
                f"{output}: holds a different dataset ({', '.join(changed)}); pass --force to replace it "
                "or --output another directory"
            )
        if not changed and all((output / rel).exists() for rel in prepared.payloads):
            return prepared, "unchanged"
        bar.update(task, description=f"writing {output}", completed=0, total=len(prepared.payloads))
        write_prepared(output, prepared)
    return prepared, "written"


def summary_table(prepared: Prepared, output: Path, state: str) -> Table:
    m = prepared.manifest
    from rlvr_cli.tasks import task_from_manifest

    title = task_from_manifest(m).title
    table = Table(title=f"{title} prepared ({state}): {output}", title_justify="left")
    table.add_column("split")
    table.add_column("rows", justify="right")
    table.add_column("skipped (no readable answer)", justify="right")
    table.add_column("file")
    table.add_column("sha256", overflow="ellipsis", max_width=16)
    for split in ("train", "val", "test"):
        rel = f"{split}/dataset.json"
        skipped = m["skipped"].get("test" if split == "test" else "train", 0) if split != "val" else ""
        table.add_row(
            split, str(m["counts"][split]), str(skipped), str(output / rel), m["files"][rel]["sha256"][:12]
        )
    lp = m["longest_prompt"]
    tokens = f", {lp['tokens']} tokens ({lp['tokenizer']})" if lp["tokens"] is not None else ""
    table.caption = (
        f"source {m['source']['name']} · {m['shots']} shots · seed {m['seed']} · "
        f"longest prompt {lp['chars']} chars{tokens} ({lp['id']})"
    )
    table.caption_justify = "left"
    return table
