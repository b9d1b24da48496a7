"""Problems from a user's local files: a directory with `train*` and `test*` files (JSON lines,
a JSON array, or parquet), read row by row with `file:line` in every error."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from rlvr_cli.core.errors import RlvrError, UsageError, first_line
from rlvr_cli.core.files import json_lines, read_text
from rlvr_cli.tasks.base import Problem, SourceData

# (split, index, row) -> a Problem, or None when the gold answer cannot be read (skipped, counted)
MakeProblem = Callable[[str, int, dict[str, Any]], Problem | None]
DATA_EXTENSIONS = (".jsonl", ".json", ".parquet")


def rows_from_file(path: Path) -> Iterable[tuple[int, dict[str, Any]]]:
    """Yield (line number or row index, row) from a JSONL, JSON-array or parquet file."""
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise RlvrError(f"{path}: reading parquet needs pyarrow: pip install 'rlvr[train]'") from exc
        import pyarrow

        try:
            rows = pq.read_table(path).to_pylist()
        except pyarrow.ArrowException as exc:
            raise RlvrError(
                f"{path}: not a readable parquet file ({first_line(exc)}); replace it, or give the split as JSON lines"
            ) from exc
        yield from enumerate(rows, start=1)
        return
    text = read_text(path, "data file")
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RlvrError(f"{path}:{exc.lineno}: malformed JSON: {exc.msg}") from exc
        yield from enumerate(data, start=1)
        return
    for lineno, line in json_lines(text):
        if not line.strip():
            continue
        try:
            yield lineno, json.loads(line)
        except json.JSONDecodeError as exc:
            raise RlvrError(
                f"{path}:{lineno}: malformed JSON line: {exc.msg}; fix or remove that line"
            ) from exc


def find_split_file(directory: Path, split: str) -> Path | None:
    candidates = [
        p
        for d in (directory, directory / "main")
        if d.is_dir()
        for p in sorted(d.iterdir())
        if p.is_file() and p.name.startswith(split) and any(p.name.endswith(ext) for ext in DATA_EXTENSIONS)
    ]
    return candidates[0] if candidates else None


def load_dir(source: str, make: MakeProblem, needs: str, strict: bool, *, kind: str = "local") -> SourceData:
    """Read `train*` and `test*` files under `source`; `needs` names the required columns in errors."""
    from rlvr_cli.core.files import sha256_file

    path = Path(source).expanduser()
    if not path.is_dir():
        raise UsageError(
            f"{source}: not a directory; give a directory holding train.jsonl and test.jsonl with {needs}"
        )
    files = {split: find_split_file(path, split) for split in ("train", "test")}
    missing = [s for s, f in files.items() if f is None]
    if missing:
        raise UsageError(
            f"{path}: no {' or '.join(missing)} file (expected names like train.jsonl and test.jsonl; .json and .parquet work too)"
        )
    data = SourceData(name=str(path), kind=kind, train=[], test=[])
    for split, file in files.items():
        assert file is not None
        problems, skipped = [], 0
        for index, (pos, row) in enumerate(rows_from_file(file)):
            where = f"{file}:{pos}"
            if not isinstance(row, dict):
                raise RlvrError(f"{where}: expected an object with {needs}")
            try:
                problem = make(split, index, row)
            except KeyError as exc:
                raise RlvrError(f"{where}: missing column {exc.args[0]!r}; rows need {needs}") from exc
            if problem is None:
                if strict:
                    raise RlvrError(
                        f"{where}: the gold answer cannot be read by this task's comparison; drop --strict to skip such rows"
                    )
                skipped += 1
                continue
            problems.append(problem)
        setattr(data, split, problems)
        data.skipped[split] = skipped
        data.files[str(file)] = sha256_file(file)
    return data


def text_field(row: dict[str, Any], *names: str) -> str:
    """The first of `names` present in `row` as a non-empty string; KeyError naming the first."""
    for name in names:
        value = row.get(name)
        if isinstance(value, str | int | float) and not isinstance(value, bool) and str(value).strip():
            return str(value)
    raise KeyError(" or ".join(names))
