"""The package's shape as the README shows it: the module map is generated from the package, and
every module says what it holds."""

from __future__ import annotations

import ast
import importlib.util

from .conftest import REPO

spec = importlib.util.spec_from_file_location("readme_reference", REPO / "scripts" / "readme_reference.py")
readme_reference = importlib.util.module_from_spec(spec)
spec.loader.exec_module(readme_reference)


def test_readme_module_map_matches_the_package():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert readme_reference.section(readme, readme_reference.MODULES) == readme_reference.module_map(), (
        "regenerate with: python scripts/readme_reference.py"
    )


def test_every_package_has_a_place_in_the_layers():
    package = REPO / "rlvr_cli"
    names = {p.relative_to(package).as_posix() for p in readme_reference.packages()}
    assert names == set(readme_reference.ORDER), "add the package to ORDER (and to pyproject's layers)"


def test_every_module_says_what_it_holds():
    missing = [
        path.relative_to(REPO).as_posix()
        for path in sorted((REPO / "rlvr_cli").rglob("*.py"))
        if path.name != "__main__.py" and not ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    ]
    assert not missing, missing
