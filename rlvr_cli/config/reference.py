"""The README's configuration reference, generated from the recipe schema (scripts/readme_reference.py)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel

from rlvr_cli.config.loading import submodel
from rlvr_cli.config.recipe import Recipe


def reference_table(model: type[BaseModel] = Recipe, prefix: str = "") -> list[str]:
    """Markdown rows `| key | type | default | description |` for the README's configuration reference."""
    rows = []
    for name, info in model.model_fields.items():
        sub = submodel(info.annotation)
        if sub is not None:
            rows.extend(reference_table(sub, prefix=f"{prefix}{name}."))
            continue
        default = info.get_default(call_default_factory=True)
        type_name = _type_name(info.annotation)
        default_text = (
            "—"
            if default is None
            else f"`{default if not isinstance(default, bool) else str(default).lower()}`"
        )
        description = (info.description or "").replace("|", "\\|")
        rows.append(f"| `{prefix}{name}` | {type_name} | {default_text} | {description} |")
    return rows


def _type_name(annotation: Any) -> str:
    text = str(annotation).replace("typing.", "").replace("NoneType", "None")
    text = re.sub(r"<class '(\w+)'>", r"\1", text)
    return text.replace("|", "\\|")
