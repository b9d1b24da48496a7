"""A prepared data directory: where its files are, its manifest, and the one reader of its rows.

    DIR/train/dataset.json   JSON lines: id, question, answer, final_answer, prompt (+ metadata)
    DIR/val/dataset.json
    DIR/test/dataset.json
    DIR/manifest.json        what made them: source, task, shots, seed, counts, sha256 of each file

`rlvr prepare` writes this layout, `rlvr upload` puts it on S3 as it is, `rlvr train` and `rlvr
eval` read it. A SageMaker job gets `train/`, `val/` and the manifest as channels, so in the
container the manifest is at `DIR/manifest/manifest.json` (`PreparedDir.manifest` looks there too). No third-party imports: the
SageMaker control plane uses the file names.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rlvr_cli.core.errors import RlvrError, first_line
from rlvr_cli.core.files import json_lines, read_json_object, read_text

SPLITS = ("train", "val", "test")
DATASET_FILE = "dataset.json"
MANIFEST_FILE = "manifest.json"
MANIFEST_CHANNEL = "manifest"  # the SageMaker channel that carries manifest.json
# Columns every prepared row has for training and scoring; `metadata` (a JSON string) is optional.
REQUIRED_COLUMNS = ("prompt", "final_answer")


def split_file(split: str) -> str:
    """`train` -> `train/dataset.json`, relative to the data directory."""
    return f"{split}/{DATASET_FILE}"


# Every file of a prepared directory, the manifest last (it is written last: it describes complete files).
FILES = (*(split_file(s) for s in SPLITS), MANIFEST_FILE)


@dataclass
class Manifest:
    """`manifest.json`: what a prepared directory holds and what made it."""

    rlvr_version: str
    source: dict[str, Any]  # name, kind (hub | local | generator), files (local file -> sha256)
    task: dict[str, Any]  # name, options: the task that scores these rows
    shots: int
    seed: int
    val_fraction: float
    exemplar_ids: list[str]
    counts: dict[str, int]  # split -> rows
    skipped: dict[str, int]  # source split -> rows without a readable gold answer
    longest_prompt: dict[str, Any]  # id, chars, tokens, tokenizer
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # split file -> sha256, bytes, rows

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> bytes:
        return (json.dumps(self.to_dict(), indent=2) + "\n").encode("utf-8")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        """Tolerant of manifests from older versions (no `task`: GSM8K, the only task then)."""
        return cls(
            rlvr_version=str(data.get("rlvr_version", "")),
            source=dict(data.get("source") or {}),
            task=dict(data.get("task") or {}),
            shots=int(data.get("shots", 0)),
            seed=int(data.get("seed", 0)),
            val_fraction=float(data.get("val_fraction", 0.0)),
            exemplar_ids=list(data.get("exemplar_ids") or []),
            counts=dict(data.get("counts") or {}),
            skipped=dict(data.get("skipped") or {}),
            longest_prompt=dict(data.get("longest_prompt") or {}),
            files=_entries(data.get("files") or {}),
        )


def _entries(files: Any) -> dict[str, dict[str, Any]]:
    """The manifest's `files`: each a mapping (sha256, bytes, rows), or the manifest is damaged."""
    files = dict(files)
    bad = [k for k, v in files.items() if not isinstance(v, dict)]
    if bad:
        raise TypeError(f"files[{bad[0]!r}] is not an object")
    return files


@dataclass(frozen=True)
class PreparedDir:
    """A data directory in the layout above."""

    root: Path

    @classmethod
    def of_split_file(cls, path: Path) -> PreparedDir:
        """The directory a split file such as `DIR/train/dataset.json` belongs to."""
        return cls(Path(path).parent.parent)

    def split(self, name: str) -> Path:
        return self.root / split_file(name)

    @property
    def manifest_path(self) -> Path:
        """DIR/manifest.json, or DIR/manifest/manifest.json where SageMaker put the channel."""
        here = self.root / MANIFEST_FILE
        channel = sorted((self.root / MANIFEST_CHANNEL).glob("*.json"))  # one object: the manifest
        return channel[0] if not here.is_file() and channel else here

    def manifest(self) -> Manifest | None:
        """The manifest, or None when there is none or it is not a readable JSON object (hand-made
        data). One whose fields are not what `rlvr prepare` writes is an error naming it."""
        if not self.manifest_path.is_file():
            return None
        data = read_json_object(self.manifest_path)
        if data is None:
            return None
        try:
            return Manifest.from_dict(data)
        except (TypeError, ValueError) as exc:
            raise RlvrError(
                f"{self.manifest_path}: not a manifest `rlvr prepare` wrote ({first_line(exc)}); "
                "re-run `rlvr prepare`, or delete the file to use the data as hand-made"
            ) from exc


def _wrong_kind(row: dict[str, Any]) -> str | None:
    """What is wrong with a row's prompt or gold answer, read as text by training and scoring."""
    if not isinstance(row["prompt"], str) or not row["prompt"]:
        return f"'prompt' must be non-empty text, got {json.dumps(row['prompt'])[:40]}"
    answer = row["final_answer"]
    if isinstance(answer, bool) or not isinstance(answer, (str, int, float)):
        return f"'final_answer' must be text or a number, got {json.dumps(answer)[:40]}"
    return None


def read_rows(path: Path, what: str) -> list[dict[str, Any]]:
    """The rows of a prepared split file, each checked for the columns training and scoring read.

    `what` names the set in errors (`train`, `evaluation`, `test`). Every problem is one line that
    says how to fix it; nothing is skipped silently.
    """
    if not path.is_file():
        raise RlvrError(f"{path}: {what} set not found; run `rlvr prepare` first or pass --data DIR")
    rows = []
    for lineno, line in json_lines(read_text(path, f"{what} set")):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise RlvrError(
                f"{path}:{lineno}: malformed JSON line ({exc.msg}); re-run `rlvr prepare`"
            ) from exc
        missing = [c for c in REQUIRED_COLUMNS if c not in row] if isinstance(row, dict) else None
        if missing is None or missing:
            lacking = ", ".join(missing or REQUIRED_COLUMNS)
            raise RlvrError(
                f"{path}:{lineno}: rows lack {lacking}; a prepared set has 'prompt' and "
                "'final_answer' columns (`rlvr prepare` writes them)"
            )
        wrong = _wrong_kind(row)
        if wrong:
            raise RlvrError(f"{path}:{lineno}: {wrong}; re-run `rlvr prepare` (it writes both as text)")
        rows.append(row)
    if not rows:
        raise RlvrError(f"{path}: the {what} set is empty; re-run `rlvr prepare`")
    return rows
