"""Check a request against the SageMaker service model rlvr ships, the way AWS would.

botocore validates types, required members and minimums before sending, but not maximum lengths,
list sizes, patterns or enums: AWS refuses those after the call, or not until the job starts.
`validate` walks an operation's input shape in `rlvr_cli/cloud/sagemaker/botocore_data/` (the trimmed model
`scripts/trim_botocore_model.py` writes; it keeps every constraint) and returns one problem per
violation, so `--dry-run` refuses what `CreateTrainingJob` would.

AWS writes patterns in Java's regex dialect. Python's `re` reads them once Unicode properties
(`\\p{L}`, `\\p{N}`, `\\p{Z}`, `\\p{Alnum}`) are translated; a pattern that still does not compile
is skipped rather than guessed at. Matching is a full match, as Java's `String.matches`.
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MODELS = Path(__file__).resolve().parent / "botocore_data"
# Java's POSIX classes, ASCII as in Java's default mode.
_POSIX = {"Alnum": "a-zA-Z0-9", "Alpha": "a-zA-Z", "Digit": "0-9", "Upper": "A-Z", "Lower": "a-z"}
_PROPERTY = re.compile(r"\\p\{(\w+)\}")


@dataclass(frozen=True)
class Problem:
    """One violation: where in the request (`("Tags", 3, "Key")`) and what is wrong."""

    path: tuple[str | int, ...]
    message: str


@functools.lru_cache(maxsize=4)
def service_model(service: str = "sagemaker") -> dict[str, Any]:
    versions = sorted((MODELS / service).iterdir())
    return json.loads((versions[-1] / "service-2.json").read_text(encoding="utf-8"))


def validate(operation: str, params: dict[str, Any], service: str = "sagemaker") -> list[Problem]:
    model = service_model(service)
    shape = model["operations"][operation]["input"]["shape"]
    problems: list[Problem] = []
    _check(model["shapes"], shape, params, (), problems)
    return problems


def python_pattern(pattern: str, value: str) -> re.Pattern[str] | None:
    """The Java `pattern` as a Python regex that decides `value` the same way; None if untranslatable.

    Python's `re` has no Unicode property classes. A general category such as `\\p{L}` becomes the
    characters of `value` itself that are in the category: exact for this value, and small.
    """

    if "\\P{" in pattern:
        return None
    out, i, in_class = [], 0, False
    while i < len(pattern):
        match = _PROPERTY.match(pattern, i)
        if match:
            name = match.group(1)
            if name in _POSIX:
                chars = _POSIX[name]
            else:
                members = sorted({c for c in value if unicodedata.category(c).startswith(name)})
                # A class must not be empty: a noncharacter absent from `value` stands for "none".
                chars = "".join(re.escape(c) for c in members) or _absent(value)
            out.append(chars if in_class else f"[{chars}]")
            i = match.end()
            continue
        char = pattern[i]
        if char == "\\":
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if char == "[" and not in_class:
            in_class = True
        elif char == "]" and in_class:
            in_class = False
        out.append(char)
        i += 1
    translated = "".join(out)
    try:
        return re.compile(translated, re.ASCII)  # Java's \w \d \s are ASCII by default
    except re.error:
        return None


def _absent(value: str) -> str:
    return next(c for c in map(chr, range(0xFDD0, 0xFDF0)) if c not in value)


def _check(
    shapes: dict[str, Any], name: str, value: Any, path: tuple[str | int, ...], out: list[Problem]
) -> None:
    shape = shapes[name]
    kind = shape["type"]
    if kind == "structure":
        if not isinstance(value, dict):
            out.append(Problem(path, f"expected a structure, got {type(value).__name__}"))
            return
        members = shape.get("members", {})
        for required in shape.get("required", []):
            if value.get(required) is None:
                out.append(Problem((*path, required), "is required"))
        for key, item in value.items():
            if key not in members:
                out.append(Problem((*path, key), f"is not a member of {name}"))
            elif item is not None:
                _check(shapes, members[key]["shape"], item, (*path, key), out)
    elif kind == "list":
        if not isinstance(value, list):
            out.append(Problem(path, f"expected a list, got {type(value).__name__}"))
            return
        _size(shape, len(value), path, out)
        for i, item in enumerate(value):
            _check(shapes, shape["member"]["shape"], item, (*path, i), out)
    elif kind == "map":
        if not isinstance(value, dict):
            out.append(Problem(path, f"expected a map, got {type(value).__name__}"))
            return
        _size(shape, len(value), path, out)
        for key, item in value.items():
            _check(shapes, shape["key"]["shape"], key, (*path, key), out)
            _check(shapes, shape["value"]["shape"], item, (*path, key), out)
    elif kind == "string":
        _string(shape, value, path, out)
    elif kind in ("integer", "long"):
        if not isinstance(value, int) or isinstance(value, bool):
            out.append(Problem(path, f"expected an integer, got {type(value).__name__}"))
            return
        _range(shape, value, path, out)
    elif kind in ("float", "double"):
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            out.append(Problem(path, f"expected a number, got {type(value).__name__}"))
            return
        _range(shape, value, path, out)
    elif kind == "boolean" and not isinstance(value, bool):
        out.append(Problem(path, f"expected true or false, got {type(value).__name__}"))
    # timestamp and blob: rlvr sends neither.


def _size(shape: dict[str, Any], n: int, path: tuple[str | int, ...], out: list[Problem]) -> None:
    if "min" in shape and n < shape["min"]:
        out.append(Problem(path, f"has {n} entries; SageMaker needs at least {shape['min']}"))
    if "max" in shape and n > shape["max"]:
        out.append(Problem(path, f"has {n} entries; SageMaker allows at most {shape['max']}"))


def _range(shape: dict[str, Any], n: float, path: tuple[str | int, ...], out: list[Problem]) -> None:
    if "min" in shape and n < shape["min"]:
        out.append(Problem(path, f"is {n}; SageMaker needs at least {shape['min']}"))
    if "max" in shape and n > shape["max"]:
        out.append(Problem(path, f"is {n}; SageMaker allows at most {shape['max']}"))


def _string(shape: dict[str, Any], value: Any, path: tuple[str | int, ...], out: list[Problem]) -> None:
    if not isinstance(value, str):
        out.append(Problem(path, f"expected a string, got {type(value).__name__}"))
        return
    if "enum" in shape and value not in shape["enum"]:
        # Enum values (instance types, modes) are not secrets: naming the value helps.
        out.append(
            Problem(path, f"{value!r} is not one of SageMaker's values" + _closest(value, shape["enum"]))
        )
        return
    if "min" in shape and len(value) < shape["min"]:
        out.append(Problem(path, f"is {len(value)} characters; SageMaker needs at least {shape['min']}"))
    if "max" in shape and len(value) > shape["max"]:
        out.append(Problem(path, f"is {len(value)} characters; SageMaker allows at most {shape['max']}"))
    if "pattern" in shape:
        compiled = python_pattern(shape["pattern"], value)
        if compiled is not None and not compiled.fullmatch(value):
            out.append(Problem(path, f"does not match SageMaker's pattern {shape['pattern']}"))


def _closest(value: str, options: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(value, options, n=3, cutoff=0.6)
    return f"; did you mean {', '.join(close)}?" if close else ""
