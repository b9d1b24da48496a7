"""reasoning-gym: any of its 100+ procedural datasets, checked by the dataset's own verifier.

    rlvr prepare --source reasoning-gym:chain_sum --option min_digits=1 --option max_digits=2

Options are the dataset's generator settings (its config dataclass: `min_digits`, `max_terms`,
...); an unknown one is refused with the closest valid name. Train and test problems come from
different seeds. Correctness is `dataset.score_answer(answer, entry) == 1.0` on the first answer
line's text, so string answers (sorted words, counts, ...) work, not only numbers.
"""

from __future__ import annotations

import enum
import json
from typing import Any

from rlvr_cli.core.errors import RlvrError, UsageError
from rlvr_cli.tasks.base import ANSWER_MARKER, Answer, Problem, SourceData, Task

INSTALL = "pip install 'rlvr[train]' (reasoning-gym)"


def _reasoning_gym() -> Any:
    try:
        import reasoning_gym
    except ImportError as exc:
        raise RlvrError(f"the reasoning-gym task needs the reasoning-gym package: {INSTALL}") from exc
    return reasoning_gym


def config_fields(dataset: str) -> dict[str, Any]:
    """The generator options of a reasoning-gym dataset: field name -> default."""
    import dataclasses

    from reasoning_gym.factory import DATASETS

    if dataset not in DATASETS:
        import difflib

        close = difflib.get_close_matches(dataset, list(DATASETS), n=3)
        hint = f"did you mean {', '.join(close)}?" if close else "see reasoning_gym.factory.DATASETS"
        raise UsageError(f"reasoning-gym has no dataset {dataset!r}; {hint}")
    config_cls = DATASETS[dataset][1]
    fields = {}
    for f in dataclasses.fields(config_cls):
        if f.name in ("seed", "size"):
            continue
        if f.default is not dataclasses.MISSING:
            fields[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:  # lists (aiw's task_types)
            fields[f.name] = f.default_factory()
        else:
            fields[f.name] = None
    return fields


def as_enums(dataset: str, options: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """Options whose default is an Enum (or a list of them), given as the enum's values or names:
    `--option 'task_types=[siblings]'` for aiw's TaskType.SIBLINGS. The generators compare with
    their enums, so a plain string would pass the config's checks and fail when a problem is drawn."""
    converted = dict(options)
    for key, value in options.items():
        default = defaults.get(key)
        members = default if isinstance(default, (list, tuple)) else [default]
        enum_cls = next((type(m) for m in members if isinstance(m, enum.Enum)), None)
        if enum_cls is None:
            continue

        def member(item: Any, key: str = key, enum_cls: Any = enum_cls) -> Any:
            if isinstance(item, enum.Enum):
                return item
            for m in enum_cls:
                if str(item) == str(m.value) or str(item).upper() == m.name:
                    return m
            valid = ", ".join(str(m.value) for m in enum_cls)
            raise UsageError(f"reasoning-gym:{dataset}: option {key}: {item!r} is not one of {valid}")

        converted[key] = [member(v) for v in value] if isinstance(value, (list, tuple)) else member(value)
    return converted


def paired_lists(options: dict[str, Any], defaults: dict[str, Any]) -> list[str]:
    """Hints for lists left at their default while a list of the same default length was given
    another length: generators pair such lists item by item (aiw's task_types and
    task_type_weights), and fail with their own message, which names neither."""
    hints = []
    for key, value in options.items():
        default = defaults.get(key)
        if (
            not isinstance(value, (list, tuple))
            or not isinstance(default, (list, tuple))
            or len(value) == len(default)
        ):
            continue
        for other, other_default in defaults.items():
            if (
                other not in options
                and isinstance(other_default, (list, tuple))
                and len(other_default) == len(default)
            ):
                items = "item" if len(value) == 1 else "items"
                hints.append(
                    f"{other} is left at its default of {len(default)}: give it {len(value)} {items} like {key}"
                )
    return hints


def _yaml(value: Any) -> str:
    """An option's value as it would be written after --option KEY=."""
    return value if isinstance(value, str) else json.dumps(value)


class ReasoningGymTask(Task):
    name = "reasoning-gym"
    title = "reasoning-gym"
    description = "any reasoning-gym dataset, scored by its own verifier"

    def __init__(self, options: dict[str, Any] | None = None):
        options = dict(options or {})
        dataset = options.get("dataset")
        if not dataset:
            raise UsageError("the reasoning-gym task needs a dataset: --source reasoning-gym:NAME")
        _reasoning_gym()
        defaults = config_fields(dataset)
        self.options_help = {
            "dataset": "reasoning-gym dataset name",
            **{k: f"generator option (default {v!r})" for k, v in defaults.items()},
        }
        super().__init__(options)
        self.dataset_name = dataset
        given = {k: v for k, v in options.items() if k != "dataset"}
        self.generator_options = as_enums(dataset, given, defaults)
        self._paired = paired_lists(given, defaults)
        self._scorer: Any = None
        self.title = f"reasoning-gym:{dataset}"

    def _create(self, size: int, seed: int) -> Any:
        try:
            return _reasoning_gym().create_dataset(
                self.dataset_name, size=size, seed=seed, **self.generator_options
            )
        except (TypeError, ValueError, AssertionError) as exc:
            raise UsageError(f"reasoning-gym:{self.dataset_name}: bad options ({exc})") from exc

    def _items(self, size: int, seed: int) -> list[dict[str, Any]]:
        # Drawn here, before anything is written: some option combinations pass the config's
        # checks and fail only when a problem is drawn (aiw's task_types as strings).
        dataset = self._create(size, seed)
        try:
            return list(dataset)
        except Exception as exc:  # the generator's own code, run on the user's options
            given = " ".join(f"--option {k}={_yaml(v)}" for k, v in self.options.items() if k != "dataset")
            hint = f" ({'; '.join(self._paired)})" if self._paired else ""
            raise UsageError(
                f"reasoning-gym:{self.dataset_name}: the generator fails on these options "
                f"({type(exc).__name__}: {exc}); change {given or 'them'}{hint}"
            ) from exc

    def load(self, source: str, *, size: int, seed: int, strict: bool) -> SourceData:
        test_size = max(50, size // 10)
        name = f"reasoning-gym:{self.dataset_name}"
        data = SourceData(name=name, kind="generator", train=[], test=[])
        # Different seeds per split, so that test problems are not copies of train problems.
        for split, n, split_seed in (("train", size, seed), ("test", test_size, seed + 1_000_003)):
            problems = []
            for i, item in enumerate(self._items(n, split_seed)):
                metadata = item.get("metadata") or {}
                cot = metadata.get("answer_cot")
                steps = cot if isinstance(cot, str) else ""
                if ANSWER_MARKER in steps:  # the exemplar adds its own answer line
                    steps = steps[: steps.rfind(ANSWER_MARKER)].strip()
                entry = {"question": item["question"], "answer": item["answer"], "metadata": metadata}
                problems.append(
                    Problem(
                        id=f"{split}-{i}",
                        question=item["question"],
                        answer=steps,
                        final_answer=str(item["answer"]),
                        # JSON-safe (tuples become lists): what score_answer reads besides the answer
                        metadata=json.loads(json.dumps(entry, default=str)),
                    )
                )
            setattr(data, split, problems)
            data.skipped[split] = 0
        return data

    def check(self, answer: Answer, gold: str, metadata: dict[str, Any] | None) -> bool | None:
        if answer.text is None:
            return False
        if self._scorer is None:
            self._scorer = self._create(size=10, seed=0)  # any instance: score_answer reads the entry
        entry = metadata or {"answer": gold, "metadata": {}}
        entry.setdefault("answer", gold)
        try:
            return float(self._scorer.score_answer(answer.text, entry)) >= 1.0
        except Exception:  # a verifier must never crash training; an unreadable answer is wrong
            return False
