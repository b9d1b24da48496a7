"""The SageMaker commands: upload, train --remote, status, logs, stop. Each calls AWS and returns
what happened as data; the CLI (`rlvr_cli.cli`) renders it (tables, --json, next steps).

Exit codes come from `rlvr_cli.core.errors.ExitCode` (0 completed, 3 in progress, 4 failed, 5 stopped,
6 not found) so CI scripts can branch on `rlvr status`. A job that does not exist is
`rlvr_cli.cloud.sagemaker.jobs.JobNotFound` for every command.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlvr_cli.cloud.sagemaker import history
from rlvr_cli.config.patterns import JOB_NAME
from rlvr_cli.core.errors import ExitCode, RlvrError, UsageError

if TYPE_CHECKING:  # `rlvr status` must start fast: no pydantic import on its path
    from rlvr_cli.config.loading import LoadedRecipe
    from rlvr_cli.config.recipe import Recipe
    from rlvr_cli.core.progress import Progress

# How often `logs` (following) and `train --remote --wait` poll: $RLVR_POLL_SECONDS, read per command.
POLL_SECONDS = 10.0
# After a job ends, how long `logs` waits at most for lines that are still arriving.
LATE_LOG_SECONDS = 120.0


def _region(recipe: Recipe | None, region: str | None) -> str | None:
    return region or (recipe.remote.region if recipe else None)


# --- upload -------------------------------------------------------------------------------------------


def upload_data(
    data: Path,
    s3: str | None,
    *,
    recipe: Recipe | None,
    configured_prefix: tuple[str, str] | None = None,
    force: bool,
    profile: str | None,
    region: str | None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Upload a prepared directory (`rlvr_cli.cloud.sagemaker.upload`) and remember where it went:
    {s3_uri, channels, files: [{file, s3_uri, sha256, bytes, action, verified}]}. Without `s3` or a
    recipe location: `configured_prefix` (SageMaker's config-file DefaultS3Bucket as (uri, where)),
    else the account's default bucket."""
    from rlvr_cli.cloud.sagemaker.upload import require_prepared, upload_dataset

    files = require_prepared(data)  # a mistyped --data, or files edited since prepare, create no bucket
    uri = s3 or (recipe.remote.uri("data") if recipe else None)
    notes = []
    if not uri and configured_prefix:  # where `train --remote` looks without a recipe location
        uri = f"{configured_prefix[0]}/data"
        notes.append(f"data: {uri}  (from {configured_prefix[1]})")
    if not uri:  # as the SageMaker SDK does: the account's default bucket
        from rlvr_cli.cloud.sagemaker.default_bucket import default_bucket

        bucket = default_bucket(profile=profile, region=_region(recipe, region), create=True)
        uri = f"{bucket.prefix}/data"
        notes.append(bucket.note())
    result = upload_dataset(
        data,
        uri,
        force=force,
        profile=profile,
        region=_region(recipe, region),
        progress=progress,
        files=files,
    )
    history.record_upload(result["s3_uri"])
    return {**result, "notes": notes}


# --- submit -------------------------------------------------------------------------------------------


@dataclass
class Submission:
    """`rlvr train --remote`: the request (as sent, or as it would be with --dry-run) and its cost."""

    job_name: str
    request: dict[str, Any]
    estimate: dict[str, Any]
    dry_run: bool
    arn: str | None = None  # None on a dry run
    region: str | None = None  # the job's region, when known
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """What `--json` prints: one shape, dry run or not."""
        return {
            "job_name": self.job_name,
            "arn": self.arn,
            "dry_run": self.dry_run,
            "request": self.request,
            "estimate": self.estimate,
        }


def submit(
    loaded: LoadedRecipe,
    *,
    dry_run: bool,
    profile: str | None,
    region: str | None,
    name: str | None = None,
) -> Submission:
    """Build the CreateTrainingJob request, check it as AWS would, and send it unless `dry_run`.

    The data is the recipe's (`remote.s3_data` or `remote.s3_prefix`, which `train --data s3://...`
    sets); without one, the last `rlvr upload` from this machine, else the SageMaker default
    bucket's `rlvr/data`, said in a note and tagged on the job (`rlvr:data-from`); output and
    checkpoints go to the default bucket when the recipe names no place. Before sending, the upload is checked against its manifest
    (`upload.check_uploaded`): a prefix holding a failed or mixed upload is refused. The manifest
    goes to the job as its own channel, so the container reads the data's task from it.
    """
    from rlvr_cli.cloud.sagemaker.client import aws_errors, bucket_region, client, configured_region
    from rlvr_cli.cloud.sagemaker.request import build_request, estimate_cost, job_name, required_settings
    from rlvr_cli.cloud.sagemaker.request_checks import region_problems, request_buckets, setting_warnings
    from rlvr_cli.cloud.sagemaker.upload import check_uploaded

    recipe = loaded.recipe
    notes: list[str] = [*loaded.sources]  # remote settings that came from SageMaker's config files
    required_settings(recipe)  # before any call
    if name is not None and not JOB_NAME.match(name):
        raise UsageError(
            f"--job-name {name}: 1-63 letters, digits and hyphens, starting with a letter or digit"
        )
    region = _region(recipe, region)
    data_uri, data_from = recipe.remote.uri("data"), "recipe"
    if not data_uri and history.last_data_uri():
        data_uri, data_from = history.last_data_uri(), "last-upload"
        notes.append(f"data: {data_uri}  (the last rlvr upload from this machine; --data s3://... to choose)")
    bucket = None
    if not data_uri or not recipe.remote.uri("output"):  # as the SageMaker SDK does
        from rlvr_cli.cloud.sagemaker.default_bucket import default_bucket

        # Looked up now, created (if need be) only once the request has passed every check.
        bucket = default_bucket(profile=profile, region=region, create=False)
        notes.append(bucket.note())
        remote = recipe.remote.model_copy(update={"s3_prefix": recipe.remote.s3_prefix or bucket.prefix})
        recipe = recipe.model_copy(update={"remote": remote})
        if not data_uri:
            data_uri, data_from = remote.uri("data"), "default-bucket"
            notes.append(f"data: {data_uri}  (the SageMaker default bucket; `rlvr upload` puts it there)")
    name = name or job_name(recipe)
    # refuses what AWS would refuse
    request = build_request(recipe, name=name, data_uri=data_uri, data_from=data_from)
    uploaded: dict[str, Any] | None = None
    if not dry_run:
        with aws_errors(f"reading {data_uri}"):
            uploaded = check_uploaded(client("s3", profile=profile, region=region), data_uri)
    task_note = _check_task(recipe, uploaded, data_uri)
    if task_note:
        notes.append(task_note)
    submission = Submission(name, request, estimate_cost(recipe), dry_run, notes=notes)
    job_region = configured_region(profile=profile, region=region)
    if job_region:  # the image's region is in its URI: no call needed
        _refuse(region_problems(request, job_region))
    submission.warnings = setting_warnings(recipe)
    if dry_run:
        submission.notes.append(
            "dry run: the data's manifest and the buckets' regions are checked on submit (they need S3 calls)"
            + ("" if job_region else "; no region is set, so the image's region was not checked either")
        )
        return submission
    if bucket is not None and not bucket.exists:  # the job's output goes there
        from rlvr_cli.cloud.sagemaker.default_bucket import default_bucket

        submission.notes.append(default_bucket(profile=profile, region=region, create=True).note())
    sm = client("sagemaker", profile=profile, region=region)
    job_region = sm.meta.region_name
    s3 = client("s3", profile=profile, region=job_region)
    with aws_errors("checking the buckets' regions"):
        buckets = {bucket: bucket_region(s3, bucket) for bucket in request_buckets(request)}
    _refuse(region_problems(request, job_region, buckets))
    with aws_errors(f"submitting {name}"):
        response = sm.create_training_job(**request)
    history.record_job(name, region or sm.meta.region_name, profile)
    submission.arn = response.get("TrainingJobArn")
    submission.region = job_region
    return submission


def _check_task(recipe: Any, uploaded: dict[str, Any] | None, data_uri: str) -> str | None:
    """Refuse a recipe whose `task` contradicts the data's now, not in the job: the same rule the
    container applies (`rlvr_cli.data.task_choice`), on the uploaded manifest (the job's data) or, on
    a dry run, which calls nothing, on the local one beside `train_dataset_path` if there is one."""
    from rlvr_cli.data.layout import PreparedDir
    from rlvr_cli.data.task_choice import choose_task

    if uploaded is not None:
        prepared, data = uploaded.get("task"), data_uri
    else:
        local = PreparedDir.of_split_file(Path(recipe.train_dataset_path))
        manifest = local.manifest()
        if manifest is None:
            return None
        prepared, data = manifest.task, str(local.root)
    return choose_task(
        prepared if isinstance(prepared, dict) else None, recipe.task, recipe.task_options, data=data
    ).note


def _refuse(problems: list[str]) -> None:
    if problems:
        raise UsageError("\n".join(problems))  # one `error:` line each


# --- status, logs, stop ---------------------------------------------------------------------------------


def _job_client(job: str | None, profile: str | None, region: str | None, service: str = "sagemaker") -> Any:
    from rlvr_cli.cloud.sagemaker.client import client

    known = history.resolve_job(job)
    return client(service, profile=profile or known.get("profile"), region=region or known.get("region"))


@dataclass
class JobStatus:
    """`rlvr status`: the fields of DescribeTrainingJob a user or script needs, and the exit code."""

    view: dict[str, Any]
    exit_code: ExitCode

    def to_dict(self) -> dict[str, Any]:
        return {**self.view, "exit_code": int(self.exit_code)}

    @classmethod
    def not_found(cls, name: str) -> JobStatus:
        """The same shape for a job that does not exist: every field null, status NotFound."""
        from rlvr_cli.cloud.sagemaker.jobs import status_view

        return cls({**status_view({}), "job_name": name, "status": "NotFound"}, ExitCode.NOT_FOUND)


def job_status(job: str | None, *, profile: str | None, region: str | None) -> JobStatus:
    """The job's state; `JobNotFound` when there is no such job."""
    from rlvr_cli.cloud.sagemaker.client import aws_errors
    from rlvr_cli.cloud.sagemaker.jobs import describe_existing, exit_code, status_view

    name = history.resolve_job(job)["name"]
    sm = _job_client(job, profile, region)
    with aws_errors(f"status of {name}"):
        view = status_view(describe_existing(sm, name))
    return JobStatus(view, exit_code(view["status"]))


def follow_logs(
    job: str | None,
    *,
    follow: bool,
    tail: int | None,
    profile: str | None,
    region: str | None,
    write: Callable[[Iterable[Any]], int],
    info: Callable[[str], None],
    poll_seconds: float | None = None,
) -> ExitCode:
    """Hand a job's log events to `write` (it returns how many it wrote), and progress lines to
    `info`; with `follow`, until the job ends and its last lines have arrived. Returns the exit code
    of the job's state (0 without `follow`)."""
    from rlvr_cli.cloud.sagemaker.client import aws_errors
    from rlvr_cli.cloud.sagemaker.jobs import describe, describe_existing, exit_code
    from rlvr_cli.cloud.sagemaker.logs import JobLogReader
    from rlvr_cli.cloud.sagemaker.logs import tail as take_tail

    if tail is not None and tail < 0:
        raise UsageError(f"--tail {tail}: must be 0 or more")
    poll = poll_seconds if poll_seconds is not None else _env_seconds("RLVR_POLL_SECONDS", POLL_SECONDS)
    name = history.resolve_job(job)["name"]
    sm = _job_client(job, profile, region)
    reader = JobLogReader(_job_client(job, profile, region, "logs"), name)
    with aws_errors(f"logs of {name}"):
        described = describe_existing(sm, name)
        backlog = reader.poll()
        write(take_tail(backlog, tail))
        status = described["TrainingJobStatus"]
        if not backlog and not follow:
            info(f"no log lines yet for {name} ({status})")
        if not follow:
            return ExitCode.OK
        while status in ("InProgress", "Stopping"):
            time.sleep(poll)
            write(reader.poll())
            status = (describe(sm, name) or {}).get("TrainingJobStatus", status)
        info(f"{name} is {status}; reading its last log lines")
        _read_late_lines(reader, min(poll, 5.0), write)
        info(f"{name}: {status}")
    return exit_code(status)


def _env_seconds(name: str, default: float) -> float:
    # Read when called, not at import, so a test (or a user) can set it for one command.
    try:
        return float(os.environ.get(name, default))
    except ValueError as exc:
        raise UsageError(f"{name}={os.environ[name]!r}: must be a number of seconds") from exc


def _read_late_lines(reader: Any, poll: float, write: Callable[[Iterable[Any]], int]) -> None:
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
        if write(reader.poll()):
            last_line = time.monotonic()
        now = time.monotonic()
        if now - last_line >= settle or now >= deadline:
            return
        time.sleep(min(poll, max(0.0, deadline - now)))


def stop_job(job: str | None, *, profile: str | None, region: str | None) -> str:
    """Ask SageMaker to stop an InProgress job; returns its name."""
    from rlvr_cli.cloud.sagemaker.client import aws_errors
    from rlvr_cli.cloud.sagemaker.jobs import describe_existing

    name = history.resolve_job(job)["name"]
    sm = _job_client(job, profile, region)
    with aws_errors(f"stopping {name}"):
        status = describe_existing(sm, name)["TrainingJobStatus"]
        if status not in ("InProgress",):
            raise RlvrError(f"{name} is {status}: only an InProgress job can be stopped")
        sm.stop_training_job(TrainingJobName=name)
    return name
