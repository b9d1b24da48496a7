"""The `rlvr` command line (`rlvr_cli.cli:main` is the console script)."""

from rlvr_cli.cli.app import app, main, run

__all__ = ["app", "main", "run"]
