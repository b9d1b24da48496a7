"""The SageMaker commands: upload, train --remote, status, logs, stop. Calls AWS, renders results.

Exit codes come from `rlvr_cli.core.errors.ExitCode` (0 completed, 3 in progress, 4 failed, 5 stopped,
6 not found) so CI scripts can branch on `rlvr status`.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.table import Table

from rlvr_cli.cloud.sagemaker import history
from rlvr_cli.core import console
from rlvr_cli.core.errors import ExitCode, RlvrError, UsageError

if TYPE_CHECKING:  # `rlvr status` must start fast: no pydantic import on its path
    from rlvr_cli.config.recipe import LoadedRecipe, Recipe

# How often `logs` (following) and `train --remote --wait` poll: $RLVR_POLL_SECONDS, read per command.
POLL_SECONDS = 10.0
# After a job ends, how long `logs` waits at most for lines that are still arriving.
LATE_LOG_SECONDS = 120.0


def _region(recipe: Recipe | None, region: str | None) -> str | None:
    return region or (recipe.remote.region if recipe else None)


# --- upload -------------------------------------------------------------------------------------------


def upload_data(
    data: Path, s3: str | None, *, recipe: Recipe | None, force: bool, profile: str | None, region: str | None
) -> dict[str, Any]:
    from rlvr_cli.cloud.sagemaker.upload import upload_dataset

    uri = s3 or (recipe.remote.uri("data") if recipe else None)
    if not uri:
        raise UsageError(
            "no destination: pass --s3 s3://bucket/prefix, or --config with remote.s3_prefix or remote.s3_data"
        )
    result = upload_dataset(data, uri, force=force, profile=profile, region=_region(recipe, region))
    history.record_upload(result["s3_uri"])
    table = Table(title=f"upload to {result['s3_uri']}", title_justify="left")
    for column in ("file", "action", "bytes", "sha256", "S3 checked by"):
        table.add_column(column, justify="right" if column == "bytes" else "left")
    for item in result["files"]:
        checks = [c.removeprefix("Checksum") for c in item["verified"] or [] if c != "size"]
        table.add_row(
            item["file"], item["action"], f"{item['bytes']:,}", item["sha256"][:12], ", ".join(checks)
        )
    console.err.print(table)
    console.info(f"next: rlvr train --remote --config RECIPE   (data: {result['s3_uri']})")
    return result


# --- submit -----------------------------------------------------------------------------------------


def submit(
    loaded: LoadedRecipe,
    *,
    dry_run: bool,
    wait: bool,
    profile: str | None,
    region: str | None,
    json_out: bool,
    name: str | None = None,
) -> ExitCode:
    from rlvr_cli.cloud.sagemaker.request import build_request, estimate_cost, job_name

    recipe = loaded.recipe
    data_uri = recipe.remote.uri("data") or history.last_data_uri()
    if not data_uri:
        raise UsageError(
            "no training data on S3: run `rlvr upload --s3 s3://bucket/prefix`, or set remote.s3_prefix"
        )
    if name is not None and not re.match(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$", name):
        raise UsageError(
            f"--job-name {name}: 1-63 letters, digits and hyphens, starting with a letter or digit"
        )
    name = name or job_name(recipe)
    request = build_request(recipe, name=name, data_uri=data_uri)  # refuses what AWS would refuse
    estimate = estimate_cost(recipe)
    from rlvr_cli.cloud.sagemaker.client import configured_region
    from rlvr_cli.cloud.sagemaker.request_checks import region_problems, setting_warnings

    region = _region(recipe, region)
    job_region = configured_region(profile=profile, region=region)
    if job_region:  # the image's region is in its URI: no call needed
        _refuse(region_problems(request, job_region))
    for line in setting_warnings(recipe):
        console.warn(line)
    if dry_run:
        console.print_json({"request": request, "estimate": estimate} if json_out else request)
        _print_estimate(estimate)
        console.notice(
            "dry run: bucket regions are checked on submit (they need S3 calls)"
            + ("" if job_region else "; no region is set, so the image's region was not checked either")
        )
        return ExitCode.OK
    from rlvr_cli.cloud.sagemaker.client import aws_errors, bucket_region, client
    from rlvr_cli.cloud.sagemaker.request_checks import request_buckets

    sm = client("sagemaker", profile=profile, region=region)
    job_region = sm.meta.region_name
    s3 = client("s3", profile=profile, region=job_region)
    with aws_errors("checking the buckets' regions"):
        buckets = {bucket: bucket_region(s3, bucket) for bucket in request_buckets(request)}
    _refuse(region_problems(request, job_region, buckets))
    with aws_errors(f"submitting {name}"):
        response = sm.create_training_job(**request)
    history.record_job(name, region or sm.meta.region_name, profile)
    if json_out:
        console.print_json({"job_name": name, "arn": response.get("TrainingJobArn"), "estimate": estimate})
    console.info(f"[green]submitted[/green] {name}")
    _print_estimate(estimate)
    console.info(f"next: rlvr status {name}   ·   rlvr logs {name}   ·   rlvr stop {name}")
    if wait:
        return show_logs(name, follow=True, tail=None, profile=profile, region=region)
    return ExitCode.OK


def _refuse(problems: list[str]) -> None:
    if problems:
        raise UsageError("\n".join(problems))  # one `error:` line each


def _print_estimate(estimate: dict[str, Any]) -> None:
    if estimate["max_cost_on_demand_usd"] is None:
        console.info(f"cost: {estimate['note']}")
        return
    spot = (
        f"; spot ceiling ${estimate['max_cost_spot_usd']:,.2f}"
        if estimate["max_cost_spot_usd"] is not None
        else ""
    )
    warm = (
        f"; warm pool up to ${estimate['max_warm_pool_cost_usd']:,.2f} more for {estimate['keep_alive_hours']} h "
        "after the job"
        if estimate.get("max_warm_pool_cost_usd")
        else ""
    )
    console.err.print(  # one line, however narrow the terminal: scripts and people grep it
        f"cost: {estimate['instance_count']} x {estimate['instance_type']} at ~${estimate['price_per_instance_hour_usd']}/h, "
        f"at most ${estimate['max_cost_on_demand_usd']:,.2f} on demand for {estimate['max_runtime_hours']} h{spot}{warm} "
        f"({escape(estimate['note'])})",
        soft_wrap=True,
    )


# --- status, logs, stop ---------------------------------------------------------------------------------


def _job_client(job: str | None, profile: str | None, region: str | None) -> tuple[str, Any]:
    from rlvr_cli.cloud.sagemaker.client import client

    known = history.resolve_job(job)
    return known["name"], client(
        "sagemaker", profile=profile or known.get("profile"), region=region or known.get("region")
    )


def show_status(job: str | None, *, profile: str | None, region: str | None, json_out: bool) -> ExitCode:
    from rlvr_cli.cloud.sagemaker.client import aws_errors
    from rlvr_cli.cloud.sagemaker.request import describe, exit_code, status_view

    name, sm = _job_client(job, profile, region)
    with aws_errors(f"status of {name}"):
        described = describe(sm, name)
    if described is None:
        if json_out:
            console.print_json({"job_name": name, "status": "NotFound", "exit_code": int(ExitCode.NOT_FOUND)})
        console.err.print(
            f"[red]not found:[/red] no training job named {escape(name)} in this account and region"
        )
        return ExitCode.NOT_FOUND
    view = status_view(described)
    code = exit_code(view["status"])
    if json_out:
        console.print_json({**view, "exit_code": int(code)})
    else:
        _render_status(view)
    return code


def _render_status(view: dict[str, Any]) -> None:
    colour = {"Completed": "green", "Failed": "red", "Stopped": "yellow"}.get(view["status"], "cyan")
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("job", view["job_name"]),
        ("status", f"[{colour}]{view['status']}[/{colour}] ({view['secondary_status']})"),
        (
            "instances",
            f"{view['instance_count']} x {view['instance_type']}" + (" (spot)" if view["spot"] else ""),
        ),
        ("elapsed", _duration(view["elapsed_seconds"])),
        ("billable", _duration(view["billable_seconds"])),
    ]
    if view["failure_reason"]:
        rows.append(("failure", escape(view["failure_reason"])))
    if view["model_artifacts"]:
        rows.append(("model", view["model_artifacts"]))
    if view["checkpoints"]:
        rows.append(("checkpoints", view["checkpoints"]))
    for key, value in rows:
        table.add_row(key, str(value))
    console.err.print(table)
    if view["transitions"]:
        transitions = Table(title="secondary status", title_justify="left", show_edge=False)
        for column in ("status", "start", "message"):
            transitions.add_column(column)
        for t in view["transitions"]:
            transitions.add_row(t["status"] or "", (t["start"] or "")[:19], escape(t["message"] or ""))
        console.err.print(transitions)
    hint = {
        "InProgress": f"rlvr logs {view['job_name']}",
        "Stopping": f"rlvr status {view['job_name']}",
        "Completed": f"rlvr eval --job {view['job_name']} --baseline",
        "Failed": f"rlvr logs {view['job_name']} --no-follow --tail 100",
        "Stopped": f"rlvr logs {view['job_name']} --no-follow --tail 50",
    }.get(view["status"] or "")
    if hint:
        console.info(f"next: {hint}")


def _duration(seconds: float | int | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m{seconds % 60:02d}s"


def show_logs(
    job: str | None,
    *,
    follow: bool,
    tail: int | None,
    profile: str | None,
    region: str | None,
    poll_seconds: float | None = None,
) -> ExitCode:
    from rlvr_cli.cloud.sagemaker.client import aws_errors, client
    from rlvr_cli.cloud.sagemaker.logs import JobLogReader
    from rlvr_cli.cloud.sagemaker.logs import tail as take_tail
    from rlvr_cli.cloud.sagemaker.request import describe, exit_code

    if tail is not None and tail < 0:
        raise UsageError(f"--tail {tail}: must be 0 or more")
    poll = poll_seconds if poll_seconds is not None else _env_seconds("RLVR_POLL_SECONDS", POLL_SECONDS)
    name, sm = _job_client(job, profile, region)
    known = history.resolve_job(job)
    logs = client("logs", profile=profile or known.get("profile"), region=region or known.get("region"))
    reader = JobLogReader(logs, name)
    with aws_errors(f"logs of {name}"):
        described = describe(sm, name)
        if described is None:
            console.err.print(f"[red]not found:[/red] no training job named {escape(name)}")
            return ExitCode.NOT_FOUND
        backlog = reader.poll()
        _write_events(take_tail(backlog, tail))
        status = described["TrainingJobStatus"]
        if not backlog and not follow:
            console.info(f"no log lines yet for {name} ({status})")
        if not follow:
            return ExitCode.OK
        while status in ("InProgress", "Stopping"):
            time.sleep(poll)
            _write_events(reader.poll())
            status = (describe(sm, name) or {}).get("TrainingJobStatus", status)
        console.info(f"{name} is {status}; reading its last log lines")
        _read_late_lines(reader, min(poll, 5.0))
        console.info(f"{name}: {status}")
    return exit_code(status)


def _env_seconds(name: str, default: float) -> float:
    # Read when called, not at import, so a test (or a user) can set it for one command.
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        raise UsageError(f"{name}={os.environ[name]!r}: must be a number of seconds") from None


def _read_late_lines(reader: Any, poll: float) -> None:
    """Read the lines that reach CloudWatch after the job's status changed.

    A failed job's traceback is often among them: the status flips when the container exits, and
    its last lines are shipped afterwards. Keep polling until no new line has come for
    RLVR_LOG_SETTLE_SECONDS (default three polls: 15 s), but not longer than RLVR_LATE_LOG_SECONDS
    (default 120 s).
    """
    settle = _env_seconds("RLVR_LOG_SETTLE_SECONDS", 3 * poll)
    deadline = time.monotonic() + _env_seconds("RLVR_LATE_LOG_SECONDS", LATE_LOG_SECONDS)
    last_line = time.monotonic()
    while True:
        if _write_events(reader.poll()):
            last_line = time.monotonic()
        now = time.monotonic()
        if now - last_line >= settle or now >= deadline:
            return
        time.sleep(min(poll, max(0.0, deadline - now)))


def _write_events(events: Any) -> int:
    import sys

    count = 0
    for event in events:
        sys.stdout.write(event.render() + "\n")
        count += 1
    sys.stdout.flush()
    return count


def stop_job(job: str | None, *, profile: str | None, region: str | None, json_out: bool) -> ExitCode:
    from rlvr_cli.cloud.sagemaker.client import aws_errors
    from rlvr_cli.cloud.sagemaker.request import describe

    name, sm = _job_client(job, profile, region)
    with aws_errors(f"stopping {name}"):
        described = describe(sm, name)
        if described is None:
            console.err.print(f"[red]not found:[/red] no training job named {escape(name)}")
            return ExitCode.NOT_FOUND
        status = described["TrainingJobStatus"]
        if status not in ("InProgress",):
            raise RlvrError(f"{name} is {status}: only an InProgress job can be stopped")
        sm.stop_training_job(TrainingJobName=name)
    if json_out:
        console.print_json({"job_name": name, "status": "Stopping"})
    console.info(f"stopping {name}: the trainer saves a checkpoint, then the job ends as Stopped")
    console.info(f"next: rlvr status {name}")
    return ExitCode.OK
