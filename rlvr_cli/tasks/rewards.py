"""Rewards by name, as recipes give them: a task's own (`format`, `correctness`) or `package.module:function`.

Every built-in task offers the same two names (`Task.rewards`); TRL sums `weight * reward` per
completion. Checking names imports nothing, so validating a recipe never imports a user's reward
module (it may exist only in the training image); `get_reward_funcs` imports it, in `rlvr train`.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rlvr_cli.tasks.base import RewardFunc

if TYPE_CHECKING:
    from rlvr_cli.tasks.base import Task

BUILTIN_REWARDS = ("format", "correctness")


def import_reward(path: str) -> RewardFunc:
    """A custom reward given as `package.module:function` (TRL's signature, same as the built-ins)."""
    module_name, _, attr = path.partition(":")
    try:
        func = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot import reward {path!r} ({exc})") from exc
    if not callable(func):
        raise ValueError(f"reward {path!r} is not a function")
    return func


def check_reward_names(names: Sequence[str]) -> None:
    """Refuse a name that is neither a built-in reward nor `module:function`, listing the valid ones."""
    unknown = [n for n in names if n not in BUILTIN_REWARDS and ":" not in n]
    if unknown:
        raise ValueError(
            f"unknown reward {', '.join(map(repr, unknown))}; valid rewards: {', '.join(BUILTIN_REWARDS)} "
            "(or a custom one as package.module:function)"
        )


def get_reward_funcs(names: Sequence[str], task: Task | None = None) -> list[RewardFunc]:
    """The reward functions by name: the task's own (GSM8K's by default), or imported `module:function`."""
    check_reward_names(names)
    if task is None:
        from rlvr_cli.tasks import get_task

        task = get_task()
    offered: dict[str, Any] = task.rewards()
    missing = [n for n in names if ":" not in n and n not in offered]
    if missing:
        raise ValueError(
            f"task {task.name} offers no reward {', '.join(map(repr, missing))}; it offers {', '.join(offered)}"
        )
    return [offered[n] if ":" not in n else import_reward(n) for n in names]
