"""Loading a recipe: YAML in (with the line of every key), `--set key=value` overrides on top.

Errors are collected all at once and rendered one per line as `location: message`, where the
location is `file:line` for YAML and `--set key` for overrides.

    from rlvr_cli.config.loading import load_recipe
    loaded = load_recipe(Path("configs/smoke-cpu.yaml"), ["max_steps=2"])
    loaded.recipe.learning_rate
"""

from __future__ import annotations

import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ValidationError

from rlvr_cli.config.recipe import Recipe
from rlvr_cli.config.sagemaker_files import apply_config_files
from rlvr_cli.core.errors import UsageError, first_line
from rlvr_cli.core.files import read_text


@dataclass
class LoadedRecipe:
    recipe: Recipe
    source: str  # file path or "<defaults>"
    given: set[str] = field(default_factory=set)  # top-level keys set by the file or --set
    notices: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)  # remote keys filled from SageMaker's config files


def _yaml_with_lines(text: str, source: str) -> tuple[Any, dict[tuple[str, ...], int]]:
    """Parse YAML, returning the data and the 1-based line of every mapping key path."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = getattr(exc, "problem", None) or first_line(exc)
        raise UsageError(f"{where}: invalid YAML: {problem}") from exc
    lines: dict[tuple[str, ...], int] = {}
    duplicates: list[str] = []

    def walk(n: Any, path: tuple[str, ...]) -> None:
        if isinstance(n, yaml.MappingNode):
            seen: set[str] = set()
            for key, value in n.value:
                k = str(key.value)
                if k in seen:
                    duplicates.append(
                        f"{source}:{key.start_mark.line + 1}: {'.'.join((*path, k))}: duplicate key"
                    )
                seen.add(k)
                lines[(*path, k)] = key.start_mark.line + 1
                walk(value, (*path, k))

    walk(node, ())
    if duplicates:
        raise UsageError("\n".join(duplicates))
    data = yaml.safe_load(text) if node is not None else {}
    return data, lines


def _model_fields(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_fields


def submodel(annotation: Any) -> type[BaseModel] | None:
    """The nested recipe model a field holds (`remote`: RemoteConfig), else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _is_str_field(annotation: Any) -> bool:
    """True for `str`, `str | None` and string Literals: override values for them are taken
    literally, not as YAML (which would read `save_strategy=no` as False)."""
    if annotation is str:
        return True
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return all(isinstance(a, str) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return bool(args) and all(_is_str_field(a) for a in args)
    return False


def _closest(name: str, options: list[str]) -> str:
    match = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
    return f"; did you mean '{match[0]}'?" if match else ""


def _apply_override(data: dict[str, Any], item: str) -> tuple[str, ...]:
    """Set one `a.b.c=value` override into `data`; the value is typed by the recipe's field."""
    if "=" not in item:
        raise UsageError(f"--set {item}: expected key=value, e.g. --set learning_rate=1e-5")
    key, raw = item.split("=", 1)
    path = tuple(p for p in key.strip().split(".") if p)
    if not path:
        raise UsageError(f"--set {item}: empty key; expected key=value, e.g. --set learning_rate=1e-5")
    annotation: Any = Recipe
    target = data
    for i, part in enumerate(path):
        model = submodel(annotation)
        if model is not None:
            fields = _model_fields(model)
            if part not in fields:
                raise UsageError(
                    f"--set {'.'.join(path[: i + 1])}: unknown key{_closest(part, list(fields))}"
                )
            annotation = fields[part].annotation
        elif typing.get_origin(annotation) is dict:  # e.g. remote.tags.team: the dict's value type
            annotation = typing.get_args(annotation)[1]
        else:
            annotation = None
        if i == len(path) - 1:
            target[part] = raw if _is_str_field(annotation) else _parse_value(raw, item)
        else:
            nxt = target.get(part)
            if not isinstance(nxt, dict):
                nxt = {}
                target[part] = nxt
            target = nxt
    return path


def _parse_value(raw: str, item: str) -> Any:
    try:
        return yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise UsageError(f"--set {item}: the value is not valid YAML; quote it or fix the brackets") from exc


def _trl_problems(section: Any) -> list[tuple[tuple[str, ...], str]]:
    """The `trl:` section's problems (rlvr_cli.config.trl), each with its key path."""
    from rlvr_cli.config.trl import check_section

    return [(("trl", key) if key else ("trl",), message) for key, message in check_section(section)]


def _line(path: tuple[str, ...], lines: dict[tuple[str, ...], int], overridden: set[tuple[str, ...]]) -> int:
    """Where a value came from, for ordering: its line, -1 for an override, 0 when unknown."""
    for n in range(len(path), 0, -1):
        if path[:n] in overridden:
            return -1
        if path[:n] in lines:
            return lines[path[:n]]
    return 0


def _where(
    path: tuple[str, ...], source: str, lines: dict[tuple[str, ...], int], overridden: set[tuple[str, ...]]
) -> str:
    """`file:line: a.b: ` or `--set a.b: `, the prefix of an error about the value at `path`."""
    dotted = ".".join(path)
    line = _line(path, lines, overridden)
    if line == -1:
        return f"--set {dotted}: "
    return f"{source}:{line}: {dotted}: " if line else f"{source}: {dotted}: "


def format_validation_error(
    exc: ValidationError, source: str, lines: dict[tuple[str, ...], int], overridden: set[tuple[str, ...]]
) -> list[str]:
    """One `location: message` line per pydantic error, in file order, overrides last."""
    out: list[tuple[int, str]] = []
    for error in exc.errors():
        loc = tuple(str(p) for p in error["loc"])
        dotted = ".".join(loc) if loc else "(recipe)"
        if error["type"] == "extra_forbidden":
            parent: type[BaseModel] = Recipe
            for part in loc[:-1]:
                sub = (
                    submodel(_model_fields(parent).get(part).annotation)
                    if part in _model_fields(parent)
                    else None
                )
                if sub is None:
                    break
                parent = sub
            message = f"unknown key{_closest(loc[-1], list(_model_fields(parent)))}"
        else:
            message = error["msg"]
            if message.startswith("Value error, "):
                message = message[len("Value error, ") :]
            if error["type"] in ("literal_error", "enum"):
                message = f"{message}, got {error.get('input')!r}"
        # Where did the value come from? An override below it when the value is of the wrong kind
        # (`--set learning_rate.x=1` made it a mapping), else the longest prefix of the path that
        # was overridden or has a line (a check of the whole value, e.g. remote's VPC pair).
        line, text = 0, f"{source}: {dotted}: {message}" if loc else f"{source}: {message}"
        wrong_kind = error["type"].endswith(("_type", "_parsing"))
        below = (
            sorted(o for o in overridden if len(o) > len(loc) and o[: len(loc)] == loc)
            if loc and wrong_kind
            else []
        )
        if below:
            line, text = -1, f"--set {'.'.join(below[0])}: {message}"
        else:
            for n in range(len(loc), 0, -1):
                if loc[:n] in overridden:
                    line, text = -1, f"--set {dotted}: {message}"
                    break
                if loc[:n] in lines:
                    line, text = lines[loc[:n]], f"{source}:{lines[loc[:n]]}: {dotted}: {message}"
                    break
        out.append((line, text))
    return [text for _, text in sorted(out, key=lambda pair: pair[0])]


def load_recipe(path: Path | None, overrides: list[str] | None = None) -> LoadedRecipe:
    """Load a recipe file (or the defaults), apply `key=value` overrides, validate everything."""
    data: dict[str, Any] = {}
    lines: dict[tuple[str, ...], int] = {}
    source = "<defaults>"
    if path is not None:
        source = str(path)
        p = Path(path)
        if not p.is_file():
            raise UsageError(
                f"{path}: recipe not found; pass an existing YAML file, e.g. --config configs/smoke-cpu.yaml"
            )
        loaded, lines = _yaml_with_lines(read_text(p, "recipe"), source)
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise UsageError(f"{path}: a recipe is a YAML mapping of key: value, got {type(loaded).__name__}")
        data = loaded
    given = {k for k in data}
    overridden: set[tuple[str, ...]] = set()
    problems = []
    for item in overrides or []:
        try:
            override_path = _apply_override(data, item)
        except UsageError as exc:
            problems.append(exc.message)
            continue
        overridden.add(override_path)
        given.add(override_path[0])
    if problems:
        raise UsageError("\n".join(problems))
    sources = apply_config_files(data)  # SageMaker's own defaults, under the recipe's values
    located = [(_line(path, lines, overridden), _where(path, source, lines, overridden) + message)
               for path, message in _trl_problems(data.get("trl"))]  # fmt: skip
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        found = format_validation_error(exc, source, lines, overridden)
        raise UsageError("\n".join([*found, *(text for _, text in sorted(located))])) from exc
    if located:
        raise UsageError("\n".join(text for _, text in sorted(located)))
    return LoadedRecipe(
        recipe=recipe, source=source, given=given, notices=recipe.notices(given), sources=sources
    )


def recipe_to_yaml(recipe: Recipe) -> str:
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False, default_flow_style=None, width=100)
