"""A SageMaker training job's state: DescribeTrainingJob, the fields a user needs, the exit code.

`rlvr status`, `rlvr logs`, `rlvr stop` and `rlvr eval --job` read jobs here; a job that does not
exist is one error, `JobNotFound` (exit code 6), for all of them.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from rlvr_cli.core.errors import ExitCode, RlvrError

# State -> exit code, for `rlvr status` and `rlvr train --remote --wait`.
STATUS_CODES = {
    "Completed": ExitCode.OK,
    "InProgress": ExitCode.IN_PROGRESS,
    "Stopping": ExitCode.IN_PROGRESS,
    "Failed": ExitCode.FAILED,
    "Stopped": ExitCode.STOPPED,
}


class JobNotFound(RlvrError):
    """No training job of that name in the account and region asked."""

    def __init__(self, name: str, region: str | None):
        where = f" in {region}" if region else ""
        super().__init__(
            f"job {name}: no such training job{where}; check the name, --region and --profile",
            ExitCode.NOT_FOUND,
        )
        self.name = name


def elapsed_seconds(job: dict[str, Any]) -> float | None:
    start = job.get("TrainingStartTime")
    if start is None:
        return None
    end = job.get("TrainingEndTime") or datetime.now(start.tzinfo or timezone.utc)
    return max(0.0, (end - start).total_seconds())


def status_view(job: dict[str, Any]) -> dict[str, Any]:
    """The fields of DescribeTrainingJob a user or script needs, JSON-ready."""
    resource = job.get("ResourceConfig", {})
    return {
        "job_name": job.get("TrainingJobName"),
        "status": job.get("TrainingJobStatus"),
        "secondary_status": job.get("SecondaryStatus"),
        "failure_reason": job.get("FailureReason"),
        "instance_type": resource.get("InstanceType"),
        "instance_count": resource.get("InstanceCount"),
        "created": _iso(job.get("CreationTime")),
        "started": _iso(job.get("TrainingStartTime")),
        "ended": _iso(job.get("TrainingEndTime")),
        "elapsed_seconds": elapsed_seconds(job),
        "billable_seconds": job.get("BillableTimeInSeconds"),
        "spot": job.get("EnableManagedSpotTraining", False),
        "model_artifacts": job.get("ModelArtifacts", {}).get("S3ModelArtifacts")
        if job.get("TrainingJobStatus") == "Completed"
        else None,
        "checkpoints": job.get("CheckpointConfig", {}).get("S3Uri"),
        "transitions": [
            {
                "status": t.get("Status"),
                "start": _iso(t.get("StartTime")),
                "end": _iso(t.get("EndTime")),
                "message": t.get("StatusMessage"),
            }
            for t in job.get("SecondaryStatusTransitions", [])
        ],
    }


def _iso(value: Any) -> str | None:
    return value.isoformat() if hasattr(value, "isoformat") else value


def exit_code(status: str | None) -> ExitCode:
    return STATUS_CODES.get(status or "", ExitCode.ERROR)


def describe(sm: Any, name: str) -> dict[str, Any] | None:
    """DescribeTrainingJob, or None when no such job exists."""
    import botocore.exceptions

    try:
        return sm.describe_training_job(TrainingJobName=name)
    except botocore.exceptions.ClientError as exc:
        error = exc.response.get("Error", {})
        message = str(error.get("Message", "")).lower()
        if error.get("Code") in ("ResourceNotFound", "ValidationException") and (
            "not found" in message or "could not find" in message
        ):
            return None
        raise


def describe_existing(sm: Any, name: str) -> dict[str, Any]:
    """DescribeTrainingJob; `JobNotFound` when no such job exists."""
    described = describe(sm, name)
    if described is None:
        raise JobNotFound(name, sm.meta.region_name)
    return described
