"""Building prepared datasets from a task's problems: exemplars, few-shot prompts, splits, manifest.

Output, all JSON lines that `datasets.load_dataset("json", ...)` reads (`rlvr_cli.data.layout`):
`train/dataset.json`, `val/dataset.json`, `test/dataset.json`, each row with `id`, `question`,
`answer`, `final_answer` (gold answer as text) and `prompt`; `manifest.json` with counts, seed,
shots and the sha256 of each file. Same inputs give byte-identical files.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlvr_cli import __version__
from rlvr_cli.core.errors import RlvrError, UsageError
from rlvr_cli.core.files import sha256_bytes, sha256_file, write_together
from rlvr_cli.data.layout import MANIFEST_FILE, SPLITS, Manifest, split_file
from rlvr_cli.tasks.base import Problem, SourceData, Task

MAX_SHOTS = 32

Progress = Callable[[str, int, int], None]


@dataclass
class Prepared:
    rows: dict[str, list[dict[str, Any]]]
    manifest: Manifest
    payloads: dict[str, bytes]  # relative path (`rlvr_cli.data.layout.FILES`) -> exact bytes to write


def split_problems(
    train: list[Problem], shots: int, val_fraction: float, seed: int
) -> tuple[list[Problem], list[Problem], list[Problem]]:
    """Choose exemplars by seed and remove them; split the rest into train/val (val rounded up)."""
    if shots > len(train):
        raise UsageError(f"--shots {shots}: the source has only {len(train)} usable train rows")
    if len(train) - shots < 2:  # one for train and one for val, whatever the fraction
        raise UsageError(
            f"the source has {len(train)} usable train rows, {shots} of them for exemplars: too few to "
            "split into train and val; give it more rows (or fewer --shots)"
        )
    rng = random.Random(seed)
    exemplar_idx = sorted(rng.sample(range(len(train)), shots))
    exemplar_set = set(exemplar_idx)
    rest = [p for i, p in enumerate(train) if i not in exemplar_set]
    n_val = math.ceil(len(rest) * val_fraction)
    order = list(range(len(rest)))
    rng.shuffle(order)
    val_set = set(order[:n_val])
    val = [p for i, p in enumerate(rest) if i in val_set]
    train_rows = [p for i, p in enumerate(rest) if i not in val_set]
    if not train_rows or not val:
        raise UsageError(
            f"--val-fraction {val_fraction}: leaves {len(train_rows)} train and {len(val)} val rows; both must be non-empty"
        )
    return [train[i] for i in exemplar_idx], train_rows, val


def longest_by_chars(prompts: list[str], k: int = 64) -> list[str]:
    """The k longest prompts by characters. Token counts follow character counts closely, so
    tokenizing these finds the longest prompt in tokens without tokenizing every prompt."""
    return sorted(prompts, key=len, reverse=True)[:k]


def _jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")


def check_split_settings(shots: int, val_fraction: float) -> None:
    """--shots and --val-fraction in range (run_prepare checks them before loading any data)."""
    if not 0 <= shots <= MAX_SHOTS:
        raise UsageError(f"--shots {shots}: must be between 0 and {MAX_SHOTS}")
    if not 0 < val_fraction < 1:
        raise UsageError(f"--val-fraction {val_fraction}: must be strictly between 0 and 1, e.g. 0.1")


def prepare(
    source: SourceData,
    *,
    shots: int,
    val_fraction: float,
    seed: int,
    count_tokens: Callable[[list[str]], list[int]] | None = None,
    tokenizer_name: str | None = None,
    progress: Progress | None = None,
    task: Task | None = None,
) -> Prepared:
    """Build the three datasets and the manifest in memory (nothing is written here).

    `task` writes the exemplars and prompts (default GSM8K) and is recorded in the manifest, so
    that train and eval score the data as it was meant to be scored.
    """
    if task is None:
        from rlvr_cli.tasks import get_task

        task = get_task()
    check_split_settings(shots, val_fraction)
    exemplars, train, val = split_problems(source.train, shots, val_fraction, seed)
    splits = dict(zip(SPLITS, (train, val, source.test), strict=True))
    if not source.test:
        raise RlvrError(f"{source.name}: the test split has no usable rows")
    total = sum(len(v) for v in splits.values())
    done = 0
    # Every prompt shares the same exemplar prefix: build it once.
    prefix = "".join(task.exemplar_text(e) + "\n\n" for e in exemplars)
    rows: dict[str, list[dict[str, Any]]] = {}
    for split, problems in splits.items():
        out = []
        for p in problems:
            row = {
                "id": p.id,
                "question": p.question,
                "answer": p.answer,
                "final_answer": p.final_answer,
                "prompt": prefix + task.prompt_text(p),
            }
            if p.metadata is not None:
                # One JSON string per row: Arrow (datasets) needs one type per column.
                row["metadata"] = json.dumps(p.metadata, ensure_ascii=False, sort_keys=True)
            out.append(row)
            done += 1
            if progress and done % 500 == 0:
                progress("building prompts", done, total)
        rows[split] = out
    if progress:
        progress("building prompts", total, total)

    longest = max((r for split_rows in rows.values() for r in split_rows), key=lambda r: len(r["prompt"]))
    longest_info: dict[str, Any] = {
        "id": longest["id"],
        "chars": len(longest["prompt"]),
        "tokens": None,
        "tokenizer": None,
    }
    if count_tokens is not None:
        by_prompt = {r["prompt"]: r["id"] for split_rows in rows.values() for r in split_rows}
        candidates = longest_by_chars(list(by_prompt))
        counts = count_tokens(candidates)
        best = max(range(len(candidates)), key=lambda i: counts[i])
        longest_info.update(id=by_prompt[candidates[best]], tokens=counts[best], tokenizer=tokenizer_name)

    payloads = {split_file(split): _jsonl(split_rows) for split, split_rows in rows.items()}
    manifest = Manifest(
        rlvr_version=__version__,
        source={"name": source.name, "kind": source.kind, "files": source.files},
        task=task.describe(),
        shots=shots,
        seed=seed,
        val_fraction=val_fraction,
        exemplar_ids=[e.id for e in exemplars],
        counts={split: len(split_rows) for split, split_rows in rows.items()},
        skipped=source.skipped,
        longest_prompt=longest_info,
        files={
            split_file(split): {"sha256": sha256_bytes(data), "bytes": len(data), "rows": len(rows[split])}
            for split, data in zip(rows, payloads.values(), strict=True)
        },
    )
    payloads[MANIFEST_FILE] = manifest.to_json()
    return Prepared(rows=rows, manifest=manifest, payloads=payloads)


def existing_differs(output: Path, payloads: dict[str, bytes]) -> list[str]:
    """Files under `output` that exist with content different from what would be written."""
    changed = []
    for rel, data in payloads.items():
        target = output / rel
        if target.exists() and (
            target.stat().st_size != len(data) or sha256_file(target) != sha256_bytes(data)
        ):
            changed.append(rel)
    return changed


def check_output_paths(output: Path) -> None:
    """Refuse an --output where a prepared set's files cannot go (a file where a directory must be,
    or the reverse), before any data is loaded."""
    for rel in (*(split_file(s) for s in SPLITS), MANIFEST_FILE):
        target = output / rel
        for directory in (output, *(output / p for p in Path(rel).parents[:-1])):
            if directory.exists() and not directory.is_dir():
                raise UsageError(
                    f"{directory}: a file, where the prepared set needs a directory; move it or pass --output another directory"
                )
        if target.is_dir():
            raise UsageError(
                f"{target}: a directory, where the prepared set writes a file; move it or pass --output another directory"
            )


def write_prepared(output: Path, prepared: Prepared) -> None:
    """Write the set as one change (`core.files.write_together`): a failed write leaves the old set
    as it was, and a manifest always describes the files beside it (it is renamed into place last)."""
    payloads = {output / rel: payload for rel, payload in prepared.payloads.items()}
    write_together(payloads, last=output / MANIFEST_FILE)
