"""The problems `rlvr eval` scores: a prepared test set (the task its manifest names), or a source
prepared on the fly for a task."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlvr_cli.core.errors import RlvrError, UsageError
from rlvr_cli.data.layout import PreparedDir, read_rows
from rlvr_cli.tasks.base import Task


@dataclass
class Problems:
    rows: list[dict[str, Any]]
    where: str  # what the report says they came from
    task: Task  # what reads and checks the completions
    notes: list[str] = field(default_factory=list)  # for the user: how the prompts were (re)built
    shots: int | None = None  # solved examples per prompt, when known


def load_problems(
    spec: str, shots: int | None, task_name: str | None = None, options: dict[str, Any] | None = None
) -> Problems:
    """Test problems, where they came from, and the task that scores them.

    From a prepared file or directory the task is the one its manifest names (GSM8K for sets
    prepared before tasks existed); from a source, prompts are built here for `task_name`.
    """
    from rlvr_cli.data.build import prepare
    from rlvr_cli.data.task_choice import choose_task
    from rlvr_cli.tasks import get_task, task_for_source

    path = Path(spec)
    if path.is_file():
        prepared_dir, test_file = PreparedDir.of_split_file(path), path
    elif PreparedDir(path).split("test").is_file():
        prepared_dir = PreparedDir(path)
        test_file = prepared_dir.split("test")
    elif path.exists() or "/" in spec or spec.startswith("reasoning-gym"):
        name, task_options = task_for_source(spec, task_name, dict(options or {}))
        task = get_task(name, task_options)
        try:
            source = task.load(spec, size=2000, seed=42, strict=False)
        except RlvrError as exc:
            if path.exists() or spec.startswith("reasoning-gym"):
                raise
            # Neither here nor on the Hub: most likely a prepared directory's path, mistyped.
            raise UsageError(
                f"--data {spec}: no such directory, and no Hub dataset of that name could be loaded; "
                "pass a directory that `rlvr prepare` wrote (it holds test/dataset.json)"
            ) from exc
        n = 8 if shots is None else shots
        prepared = prepare(source, shots=n, val_fraction=0.1, seed=42, task=task)
        return Problems(prepared.rows["test"], f"{spec} (test, {n} shots)", task, shots=n)
    else:
        raise UsageError(
            f"--data {spec}: not found; pass a directory that `rlvr prepare` wrote (it holds "
            "test/dataset.json), one dataset.json, or a source such as reasoning-gym:DATASET"
        )
    rows, where, manifest = read_rows(test_file, "test"), str(test_file), prepared_dir.manifest()
    choice = choose_task(manifest.task if manifest else None, task_name, options, data=str(prepared_dir.root))
    task = get_task(choice.name, choice.options)
    notes = [choice.note] if choice.note else []
    if shots is not None and manifest and manifest.shots != shots:
        source = task.load(manifest.source["name"], size=2000, seed=manifest.seed, strict=False)
        prepared = prepare(
            source, shots=shots, val_fraction=manifest.val_fraction, seed=manifest.seed, task=task
        )
        note = f"prompts rebuilt with {shots} shots (prepared with {manifest.shots})"
        return Problems(
            prepared.rows["test"],
            f"{manifest.source['name']} (test, {shots} shots)",
            task,
            [*notes, note],
            shots=shots,
        )
    if shots is not None and not manifest:
        raise UsageError(
            f"--shots {shots}: {where} has no manifest.json naming its source; prepare it again with --shots {shots}"
        )
    return Problems(rows, where, task, notes, shots=manifest.shots if manifest else None)
