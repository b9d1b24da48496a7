"""The command line itself: help, version, start-up imports, exit codes, no tracebacks."""

from __future__ import annotations

import subprocess
import sys

import pytest

from rlvr_cli import __version__

from .conftest import REPO, run_module

COMMANDS = ["prepare", "validate", "train", "eval", "upload", "status", "logs", "stop"]
HEAVY = ("torch", "transformers", "trl", "datasets", "mlflow", "peft", "boto3", "botocore")


def test_version(cli):
    result = cli("--version")
    assert result.code == 0 and result.out.strip() == f"rlvr {__version__}"


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_exits_zero(cli, command):
    result = cli(*([command] if command else []), "--help")
    assert result.code == 0
    assert "Usage" in result.out


def test_every_subcommand_has_an_example_in_its_help_and_in_the_readme(cli):
    readme = (REPO / "README.md").read_text()
    for command in COMMANDS:
        assert "Example: rlvr " + command in cli(command, "--help").out.replace("\n", " ").replace("  ", " ")
        assert f"rlvr {command}" in readme


@pytest.mark.parametrize("args", [["--help"], ["status", "--help"], ["--version"]])
def test_fast_paths_import_no_heavy_library(args):
    code = (
        "import sys\nfrom rlvr_cli.cli import run\n"
        f"code = run({args!r})\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr


def test_unknown_command_is_a_usage_error(cli):
    assert cli("frobnicate").code == 2


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["prepare", "--shots", "abc"],
            "error: Invalid value for '--shots': Input should be a valid integer, unable to parse string "
            "as an integer; see `rlvr prepare --help`",
        ),
        (["eval", "--bogus"], "error: No such option: --bogus; see `rlvr eval --help`"),
        (["frobnicate"], "error: No such command 'frobnicate'; see `rlvr --help`"),
    ],
)
def test_argument_errors_are_one_line_naming_the_help(cli, args: list[str], line: str):
    result = cli(*args)
    assert result.code == 2
    assert result.err.strip().splitlines() == [line]


def test_expected_errors_print_one_line_without_traceback():
    result = run_module("prepare", "--source", "does/not/exist/here", "--output", "x")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: does/not/exist/here: source not found")


def test_a_reader_that_closes_the_pipe_gets_no_traceback():
    # `rlvr validate RECIPE --json | head -1`: the reader is gone before rlvr writes its data (Rich,
    # which writes all of rlvr's output, exits with 1 then; print() would raise BrokenPipeError).
    process = subprocess.Popen(
        [sys.executable, "-m", "rlvr_cli", "validate", str(REPO / "configs" / "smoke-cpu.yaml"), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
    )
    process.stdout.close()
    stderr = process.stderr.read().decode()
    assert process.wait() == 1
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr


def test_remote_only_flags_without_remote_are_refused(cli):
    result = cli("train", "--dry-run")
    assert result.code == 2 and "apply to --remote jobs" in result.err


# --- one error protocol ---------------------------------------------------------------------------


def test_rlvr_debug_re_raises_with_the_traceback_and_its_cause(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("learning_rate: [1, 2\n")
    quiet = run_module("validate", str(bad))
    assert quiet.returncode == 2 and "Traceback" not in quiet.stderr
    assert quiet.stderr.strip().startswith(f"error: {bad}:2:1: invalid YAML")
    debug = run_module("validate", str(bad), env={"RLVR_DEBUG": "1"})
    assert debug.returncode != 0
    assert "rlvr_cli.core.errors.UsageError" in debug.stderr  # the error itself, with its traceback
    assert "yaml.parser.ParserError" in debug.stderr  # and the exception that caused it
    assert "The above exception was the direct cause of the following exception" in debug.stderr


def test_an_error_with_an_empty_message_is_still_one_line(cli, monkeypatch, tmp_path):
    from rlvr_cli.core.errors import RlvrError

    def fails(*args, **kwargs):
        raise RlvrError("")

    monkeypatch.setattr("rlvr_cli.config.loading.load_recipe", fails)
    result = cli("validate", tmp_path / "any.yaml")
    assert result.code == 1
    assert result.err.strip() == "error: RlvrError"


@pytest.mark.parametrize("message", ["", "   ", "\n\n", "\n  second line only"])
def test_one_line_forms_of_an_exception_never_fail(message):
    from rlvr_cli.core.errors import first_line, one_line

    exc = ValueError(message)
    expected = message.strip() or "ValueError"
    assert first_line(exc) == expected
    assert one_line(exc) == (f"ValueError: {expected}" if message.strip() else "ValueError")


def test_no_module_takes_the_first_line_of_a_message_by_index():
    """`str(exc).splitlines()[0]` raises IndexError on an empty message: core.errors.first_line instead."""
    import re

    offenders = [
        f"{path.relative_to(REPO)}:{n}"
        for path in sorted((REPO / "rlvr_cli").rglob("*.py"))
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if re.search(r"splitlines\(\)\[0\]", line)
    ]
    assert not offenders, offenders
