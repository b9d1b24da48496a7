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


def test_expected_errors_print_one_line_without_traceback():
    result = run_module("prepare", "--source", "does/not/exist/here", "--output", "x")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: does/not/exist/here: source not found")


def test_remote_only_flags_without_remote_are_refused(cli):
    result = cli("train", "--dry-run")
    assert result.code == 2 and "apply to --remote jobs" in result.err
