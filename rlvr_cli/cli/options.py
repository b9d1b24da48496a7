"""Options several `rlvr` commands share, and reading the recipe they name."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from rlvr_cli.core import console

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="Recipe YAML (see configs/). Default: the built-in reference recipe."
    ),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set", help="Override a recipe key, typed by the recipe: --set learning_rate=1e-5 (repeatable)."
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
ProfileOpt = Annotated[str | None, typer.Option("--profile", help="AWS profile (default: the boto3 chain).")]
RegionOpt = Annotated[
    str | None, typer.Option("--region", help="AWS region (default: recipe, then the boto3 chain).")
]
JobArg = Annotated[
    str | None, typer.Argument(help="Training job name. Default: the last job submitted from here.")
]


def load_recipe_option(config: Path | None, overrides: list[str] | None, quiet: bool = False):
    """The recipe `--config` and `--set` name, validated; its notices on stderr unless `quiet`."""
    from rlvr_cli.config.loading import load_recipe

    loaded = load_recipe(config, overrides or [])
    if not quiet:
        for line in loaded.notices:
            console.notice(escape(line))
    return loaded
