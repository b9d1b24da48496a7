"""Regenerate the docs' generated parts: the configuration reference (docs/configuration.md, from the
recipe schema) and the module map (docs/architecture.md, from the package's docstrings).

    python scripts/readme_reference.py        # tests/test_config.py and tests/test_layout.py check them
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONFIG_DOC = REPO / "docs" / "configuration.md"
ARCHITECTURE_DOC = REPO / "docs" / "architecture.md"
PACKAGE = REPO / "rlvr_cli"
CONFIG = "<!-- config-reference:start -->", "<!-- config-reference:end -->"
MODULES = "<!-- module-map:start -->", "<!-- module-map:end -->"
# The layers, top to bottom, as pyproject.toml's import-linter contract orders them.
ORDER = (
    "cli",
    "container",
    "evaluation",
    "training",
    "decoding",
    "cloud",
    "cloud/sagemaker",
    "data",
    "models",
    "tracking",
    "config",
    "tasks",
    "tasks/gsm8k",
    "core",
)


def config_table() -> list[str]:
    from rlvr_cli.config.reference import reference_table

    return ["| key | type | default | description |", "| --- | --- | --- | --- |", *reference_table()]


def _summary(path: Path) -> str:
    """The first paragraph of a module's docstring, on one line."""
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    return " ".join(doc.split("\n\n", 1)[0].split())


def packages() -> list[Path]:
    """Every package under rlvr_cli, in layer order (a package not in ORDER fails the README test)."""
    found = sorted(p.parent for p in PACKAGE.rglob("__init__.py"))
    rank = {name: i for i, name in enumerate(ORDER)}
    return sorted(
        (p for p in found if p != PACKAGE),
        key=lambda p: rank.get(p.relative_to(PACKAGE).as_posix(), len(ORDER)),
    )


def module_map() -> list[str]:
    """A markdown table: each subpackage, what it holds, its modules."""
    rows = ["| package | what it holds | modules |", "| --- | --- | --- |"]
    for package in packages():
        modules = sorted(p.stem for p in package.glob("*.py") if p.name != "__init__.py")
        name = package.relative_to(REPO).as_posix() + "/"
        rows.append(f"| `{name}` | {_summary(package / '__init__.py')} | {', '.join(modules) or '-'} |")
    return rows


def section(text: str, markers: tuple[str, str]) -> list[str]:
    """The lines between two markers of the README."""
    return text.split(markers[0], 1)[1].split(markers[1], 1)[0].strip("\n").splitlines()


def replace(text: str, markers: tuple[str, str], lines: list[str]) -> str:
    before, rest = text.split(markers[0], 1)
    _, after = rest.split(markers[1], 1)
    return f"{before}{markers[0]}\n" + "\n".join(lines) + f"\n{markers[1]}{after}"


def main() -> None:
    for path, markers, lines in (
        (CONFIG_DOC, CONFIG, config_table()),
        (ARCHITECTURE_DOC, MODULES, module_map()),
    ):
        path.write_text(replace(path.read_text(encoding="utf-8"), markers, lines), encoding="utf-8")
        print(f"updated {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
