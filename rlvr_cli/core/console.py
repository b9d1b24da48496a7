"""Where output goes: human messages on stderr, data (JSON, tables asked for) on stdout."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

# Messages, progress bars and tables for people go to stderr so that stdout stays parseable.
err = Console(stderr=True, highlight=False)


def info(message: str) -> None:
    err.print(message)


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/yellow] {message}", soft_wrap=True)


def notice(message: str) -> None:
    err.print(f"[cyan]note:[/cyan] {message}", soft_wrap=True)


def print_json(data: Any) -> None:
    """Write `data` as JSON to stdout: the machine-readable form of a command's result."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()
