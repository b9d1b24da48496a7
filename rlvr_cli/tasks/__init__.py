"""Verifiable tasks by name (the built-ins, and any that another package registers), and rewards by name.

    from rlvr_cli.tasks import get_task
    task = get_task("reasoning-gym", {"dataset": "chain_sum", "max_digits": 2})

Built-in tasks are imported only when asked for (reasoning-gym and math-verify are heavy). A task
from another package is a `rlvr_cli.tasks.base.Task` subclass registered as an entry point:

    [project.entry-points."rlvr.tasks"]
    my-task = "my_package.tasks:MyTask"
"""

from __future__ import annotations

import importlib
from typing import Any

from rlvr_cli.core.errors import UsageError
from rlvr_cli.tasks.base import Task

ENTRY_POINT_GROUP = "rlvr.tasks"
DEFAULT_TASK = "gsm8k"
BUILTIN: dict[str, str] = {
    "gsm8k": "rlvr_cli.tasks.gsm8k:GSM8KTask",
    "reasoning-gym": "rlvr_cli.tasks.reasoning_gym:ReasoningGymTask",
    "math": "rlvr_cli.tasks.math:MathTask",
    "custom": "rlvr_cli.tasks.custom:CustomTask",
}
RG_PREFIX = "reasoning-gym:"


def _entry_points() -> dict[str, Any]:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def task_names() -> list[str]:
    return [*BUILTIN, *(n for n in _entry_points() if n not in BUILTIN)]


def task_class(name: str) -> type[Task]:
    if name in BUILTIN:
        module, _, attr = BUILTIN[name].partition(":")
        return getattr(importlib.import_module(module), attr)
    found = _entry_points().get(name)
    if found is None:
        raise UsageError(f"unknown task {name!r}; valid tasks: {', '.join(task_names())}")
    cls = found.load()
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise UsageError(f"task {name!r} ({found.value}) is not a rlvr_cli.tasks.base.Task subclass")
    return cls


def get_task(name: str | None = None, options: dict[str, Any] | None = None) -> Task:
    return task_class(name or DEFAULT_TASK)(options)


def task_for_source(source: str, task: str | None, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The task a `--source` implies: `reasoning-gym:NAME` is the reasoning-gym task on NAME."""
    if source.startswith(RG_PREFIX):
        if task not in (None, "reasoning-gym"):
            raise UsageError(
                f"--source {source} is scored by reasoning-gym's own verifier; drop --task {task} "
                "(or use --source reasoning-gym for GSM-style problems scored as gsm8k)"
            )
        return "reasoning-gym", {"dataset": source[len(RG_PREFIX) :], **options}
    return task or DEFAULT_TASK, options


def task_from_description(described: dict[str, Any] | None) -> Task:
    """The task `Task.describe()` wrote (a manifest's `task`); GSM8K when there is none (data
    prepared before tasks existed)."""
    info = described or {}
    return get_task(info.get("name") or DEFAULT_TASK, info.get("options") or {})
