"""Write rlvr_cli/config/trl_fields.json: the fields of the installed TRL's GRPOConfig, the JSON
kinds each accepts, the loss types TRL supports and transformers' learning-rate schedulers, so that `rlvr validate` checks a recipe's
`trl:` section without importing TRL (seconds, and not installed with `pip install rlvr`).

    python scripts/trl_fields.py          # after a TRL upgrade; tests/test_trl_section.py compares
"""

from __future__ import annotations

import dataclasses
import enum
import json
import re
import types
import typing
from pathlib import Path

TARGET = Path(__file__).resolve().parent.parent / "rlvr_cli" / "config" / "trl_fields.json"
SCALARS = {bool: "bool", int: "int", float: "float", str: "str", type(None): "null"}


def kinds(annotation: object) -> list[str]:
    """The JSON kinds a value of this annotation may be (YAML gives no others); [] for none."""
    if annotation in SCALARS:
        return [SCALARS[annotation]]
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return ["str"]  # transformers' strategy enums also take their string values
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return sorted({k for arg in typing.get_args(annotation) for k in kinds(arg)})
    if annotation is list or origin is list:
        return ["list"]
    if annotation is dict or origin is dict:
        return ["dict"]
    if origin is typing.Literal:
        return sorted({SCALARS[type(a)] for a in typing.get_args(annotation)})
    return []  # a Python object (e.g. ParallelismConfig): not expressible in a recipe


def table() -> dict[str, object]:
    import trl
    from transformers.trainer_utils import SchedulerType
    from trl import GRPOConfig

    fields = {}
    for field in dataclasses.fields(GRPOConfig):
        if not field.init or field.name.startswith("_"):
            continue
        fields[field.name] = kinds(field.type)
    loss_help = next(f for f in dataclasses.fields(GRPOConfig) if f.name == "loss_type").metadata["help"]
    supported = loss_help.split("Supported values are", 1)[1].split(".", 1)[0]
    return {
        "trl_version": trl.__version__,
        "loss_types": re.findall(r"'([a-z_]+)'", supported),
        "lr_scheduler_types": [s.value for s in SchedulerType],
        "fields": dict(sorted(fields.items())),
    }


def main() -> None:
    TARGET.write_text(json.dumps(table(), indent=1) + "\n", encoding="utf-8")
    print(f"wrote {TARGET}")


if __name__ == "__main__":
    main()
