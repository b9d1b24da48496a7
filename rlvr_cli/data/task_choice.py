"""Which task scores a run: the one rule for local training, the SageMaker job (checked when it is
submitted and again in the container) and evaluation.

The prepared data's manifest names the task its rows were made for (`rlvr prepare --task`); a
recipe may name one too (`task`, `task_options`):

- the data names a task, the recipe none: the data's, with the recipe's options if it gives any;
- both name one: they must be the same task, else the run is refused before anything loads;
- the data names none (prepared before tasks existed, or made by hand): the recipe's, else gsm8k,
  and the caller shows the note that says so.

Plain names and dicts only (no task objects): the SageMaker control plane uses it without
importing the tasks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rlvr_cli.core.errors import UsageError

DEFAULT_TASK = "gsm8k"


@dataclass(frozen=True)
class TaskChoice:
    name: str
    options: dict[str, Any] = field(default_factory=dict)
    note: str | None = None  # for the user, when the data did not say


def choose_task(
    prepared: dict[str, Any] | None, task: str | None, options: dict[str, Any] | None, *, data: str
) -> TaskChoice:
    """The task for data whose manifest says `prepared` ({name, options}, or None) and a recipe
    that says `task` / `options`. `data` names the data in messages.

    >>> choose_task({"name": "reasoning-gym", "options": {"dataset": "chain_sum"}}, None, None, data="d")
    TaskChoice(name='reasoning-gym', options={'dataset': 'chain_sum'}, note=None)
    >>> print(choose_task(None, None, None, data="d").note)
    d does not say which task it was prepared for: scored as gsm8k (set `task` in the recipe to choose)
    """
    named = (prepared or {}).get("name")
    if named:
        if task and task != named:
            raise UsageError(
                f"the recipe's task is {task} but {data} was prepared for {named}; prepare the data "
                f"with --task {task}, or drop `task` from the recipe"
            )
        return TaskChoice(named, dict(options or (prepared or {}).get("options") or {}))
    if task:
        return TaskChoice(task, dict(options or {}))
    return TaskChoice(
        DEFAULT_TASK,
        dict(options or {}),
        f"{data} does not say which task it was prepared for: scored as {DEFAULT_TASK} "
        "(set `task` in the recipe to choose)",
    )
