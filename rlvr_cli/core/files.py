"""File helpers: atomic writes and checksums. Nothing half-written is ever left under a real name."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def _temp_beside(path: Path, mode: str) -> Iterator[tuple[IO[Any], str]]:
    """A temp file beside `path` and its name, fsynced once the block is done; removed if it fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates 0600 files; give the final file the permissions a plain open() would.
        os.chmod(tmp, 0o666 & ~_umask())
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(fd, mode, encoding=encoding) as fh:
            yield fh, tmp
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_write(path: Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temp file beside `path`; on success fsync and rename it over `path`.

    On any exception the temp file is removed and `path` keeps its old content (or stays absent).
    """
    path = Path(path)
    with _temp_beside(path, mode) as (fh, tmp):
        yield fh
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_together(payloads: dict[Path, bytes], *, last: Path) -> None:
    """Write several files as one change: each is written in full and fsynced to a temp file beside
    its place before any is renamed into place, and `last` (which vouches for the others, like a
    manifest) is removed first and renamed last. A failed write (a full disk, at write or fsync)
    leaves every old file as it was; only a failed rename could leave a mix, without `last`."""
    temps: dict[Path, str] = {}
    try:
        for path, payload in payloads.items():
            with _temp_beside(path, "wb") as (fh, tmp):
                fh.write(payload)
            temps[path] = tmp
        last.unlink(missing_ok=True)
        for path in sorted(temps, key=lambda p: p == last):
            os.replace(temps.pop(path), path)
    except BaseException:
        for tmp in temps.values():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_text(path: Path, what: str = "file") -> str:
    """A UTF-8 text file's content; a file in another encoding is one error naming it and the fix."""
    from rlvr_cli.core.errors import UsageError

    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"{path}: the {what} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
            f"{exc.start}); save it as UTF-8"
        ) from exc


def read_json_object(path: Path) -> dict[str, Any] | None:
    """A JSON object rlvr wrote (a manifest, a run record, the job history), or None when the file
    is missing or is not a UTF-8 JSON object: callers treat such a file as absent or hand-made."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def json_lines(text: str) -> Iterator[tuple[int, str]]:
    r"""(line number, line) of a JSON-lines text, split at newlines only.

    `str.splitlines` also splits at U+2028, U+2029 and other separators, which JSON allows raw inside
    strings: a valid row would become two broken ones.

    >>> [(n, json.loads(line)) for n, line in json_lines('{"q": "a\u2028b"}\r\n{"q": 2}')]
    [(1, {'q': 'a\u2028b'}), (2, {'q': 2})]
    """
    for lineno, line in enumerate(text.split("\n"), start=1):
        yield lineno, line.removesuffix("\r")


def write_text(path: Path, text: str) -> None:
    with atomic_write(path) as fh:
        fh.write(text)


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def cache_dir() -> Path:
    """rlvr's cache (converted offline models, fetched checkpoints): `$RLVR_CACHE_DIR`, default ~/.cache/rlvr."""
    return Path(os.environ.get("RLVR_CACHE_DIR") or Path.home() / ".cache" / "rlvr")
