"""The `rlvr` command line: parse arguments, call a command's function, render its result (tables,
--json, next steps). `rlvr_cli.cli:main` is the console script."""

from rlvr_cli.cli.app import app, main, run

__all__ = ["app", "main", "run"]
