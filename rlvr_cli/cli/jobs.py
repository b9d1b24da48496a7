"""The SageMaker commands of `rlvr`: upload, status, logs, stop (`train --remote` is in `app`).

Each parses, calls `rlvr_cli.cloud.sagemaker.commands` (which returns data) and renders it; none
imports an ML library, so `rlvr status` starts fast. `app` registers them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rlvr_cli.cli.options import ConfigOpt, JobArg, JsonOpt, ProfileOpt, RegionOpt, load_recipe_option
from rlvr_cli.core import console


def upload(
    data: Annotated[Path, typer.Option(help="Prepared data directory.")] = Path("data"),
    s3: Annotated[
        str | None,
        typer.Option(
            "--s3",
            help="s3://bucket/prefix (default: the --config recipe's remote.s3_data or s3_prefix/data; "
            "else rlvr/data in SageMaker's config-file DefaultS3Bucket or the SageMaker default bucket).",
        ),
    ] = None,
    config: ConfigOpt = None,
    force: Annotated[bool, typer.Option(help="Overwrite objects that differ from the local files.")] = False,
    profile: ProfileOpt = None,
    region: RegionOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Put the prepared datasets on S3 (checksummed; unchanged files are skipped).

    Example: rlvr upload --data data --s3 s3://my-bucket/rlvr/data
    """
    from rlvr_cli.cli import render
    from rlvr_cli.cloud.sagemaker.commands import upload_data

    recipe = load_recipe_option(config, None, quiet=True).recipe if config else None
    configured = None
    if s3 is None and recipe is None:  # a recipe has SageMaker's config files applied already
        from rlvr_cli.config.sagemaker_files import file_defaults

        configured = file_defaults().get("s3_prefix")
    with render.progress("upload", unit="bytes") as progress:
        result = upload_data(
            data,
            s3,
            recipe=recipe,
            configured_prefix=configured,
            force=force,
            profile=profile,
            region=region,
            progress=progress,
        )
    render.upload(result)
    if json_out:
        console.print_json(result)


def status(
    job: JobArg = None, profile: ProfileOpt = None, region: RegionOpt = None, json_out: JsonOpt = False
) -> None:
    """Show a SageMaker job's state; the exit code tells scripts what happened.

    Exit codes: 0 completed, 3 in progress, 4 failed, 5 stopped, 6 not found.
    Example: rlvr status --json
    """
    from rlvr_cli.cli import render
    from rlvr_cli.cloud.sagemaker.commands import JobStatus, job_status
    from rlvr_cli.cloud.sagemaker.jobs import JobNotFound

    try:
        result = job_status(job, profile=profile, region=region)
    except JobNotFound as exc:
        if json_out:  # the same shape as a job's status, for scripts
            console.print_json(JobStatus.not_found(exc.name).to_dict())
        raise
    if json_out:
        console.print_json(result.to_dict())
    else:
        render.status(result)
    raise typer.Exit(int(result.exit_code))


def logs(
    job: JobArg = None,
    follow: Annotated[
        bool, typer.Option("--follow/--no-follow", help="Keep reading while the job runs.")
    ] = True,
    tail: Annotated[int | None, typer.Option(help="Start with the last N lines.")] = None,
    profile: ProfileOpt = None,
    region: RegionOpt = None,
) -> None:
    """Print a job's CloudWatch logs, all instances merged in time order.

    Example: rlvr logs --tail 50
    """
    raise typer.Exit(follow_job(job, follow, tail, profile, region))


def follow_job(
    job: str | None, follow: bool, tail: int | None, profile: str | None, region: str | None
) -> int:
    from rlvr_cli.cli import render
    from rlvr_cli.cloud.sagemaker.commands import follow_logs

    return int(
        follow_logs(
            job,
            follow=follow,
            tail=tail,
            profile=profile,
            region=region,
            write=render.log_events,
            info=console.info,
        )
    )


def stop(
    job: JobArg = None, profile: ProfileOpt = None, region: RegionOpt = None, json_out: JsonOpt = False
) -> None:
    """Ask SageMaker to stop a job (it saves a checkpoint first).

    Example: rlvr stop rlvr-qwen2-5-0-5b-20261125-101500
    """
    from rlvr_cli.cli import render
    from rlvr_cli.cloud.sagemaker.commands import stop_job

    name = stop_job(job, profile=profile, region=region)
    if json_out:
        console.print_json({"job_name": name, "status": "Stopping"})
    render.stopping(name)
