"""SageMaker training jobs: the CreateTrainingJob request built from a recipe, states, costs.

The request is plain data built by `build_request`: `--dry-run` prints exactly what
`create_training_job` receives. The recipe travels as hyperparameters (one per key, JSON-encoded,
as SageMaker wants strings); the container entry (`rlvr_cli/sagemaker_entry.py`) decodes them.
Nothing secret goes into hyperparameters, tags or printed output: recipes hold no secrets, and
secret-looking environment variables are refused in favour of Secrets Manager.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from rlvr_cli import __version__, metrics_line
from rlvr_cli.errors import ExitCode, UsageError

if TYPE_CHECKING:  # status/logs use this module and must not import pydantic
    from rlvr_cli.config import Recipe

LOG_GROUP = "/aws/sagemaker/TrainingJobs"
CHECKPOINT_LOCAL_PATH = "/opt/ml/checkpoints"
# Keys the container sets itself: paths inside /opt/ml, and the SageMaker section.
CONTAINER_KEYS = {"remote", "train_dataset_path", "test_dataset_path", "output_dir", "checkpoint_dir"}
SECRET_NAME = re.compile(
    r"(TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|PRIVATE|_KEY$|^AWS_ACCESS|^AWS_SESSION)", re.I
)
# Approximate on-demand SageMaker training prices, USD per instance-hour, us-east-1 (2025 list
# prices). Used for the --dry-run estimate only; check the SageMaker pricing page for your region.
PRICES = {
    "ml.p4d.24xlarge": 37.69,
    "ml.p4de.24xlarge": 47.11,
    "ml.p5.48xlarge": 113.07,
    "ml.p3.2xlarge": 3.825,
    "ml.p3.16xlarge": 28.152,
    "ml.g5.xlarge": 1.408,
    "ml.g5.2xlarge": 1.515,
    "ml.g5.12xlarge": 7.09,
    "ml.g5.48xlarge": 20.36,
    "ml.g6.xlarge": 1.006,
    "ml.g6e.xlarge": 2.336,
    "ml.g4dn.xlarge": 0.736,
    "ml.m5.xlarge": 0.23,
    "ml.c5.xlarge": 0.204,
}
# State -> exit code, for `rlvr status` and `rlvr train --remote --wait`.
STATUS_CODES = {
    "Completed": ExitCode.OK,
    "InProgress": ExitCode.IN_PROGRESS,
    "Stopping": ExitCode.IN_PROGRESS,
    "Failed": ExitCode.FAILED,
    "Stopped": ExitCode.STOPPED,
}
# SageMaker reads training metrics from the trainer's `rlvr-metrics {json}` lines; the regexes live
# beside the code that prints them.
METRIC_DEFINITIONS = metrics_line.METRIC_DEFINITIONS


def slug(text: str) -> str:
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9]", "-", text.lower())).strip("-")


def job_name(recipe: Recipe, now: datetime | None = None) -> str:
    """`{base}-{recipe hash}-{UTC time}`: unique per second, <= 63 chars of [a-zA-Z0-9-]."""
    from rlvr_cli.runs import recipe_fingerprint

    now = now or datetime.now(timezone.utc)
    stamp = now.strftime("%Y%m%d-%H%M%S")
    base = recipe.remote.base_job_name or f"rlvr-{slug(recipe.model_name_or_path.split('/')[-1])}"
    suffix = f"-{recipe_fingerprint(recipe)[:6]}-{stamp}"
    return (base[: 63 - len(suffix)].rstrip("-") or "rlvr") + suffix


def hyperparameters(recipe: Recipe) -> dict[str, str]:
    data = recipe.model_dump(mode="json", exclude=CONTAINER_KEYS)
    out = {key: json.dumps(value) for key, value in data.items() if value is not None}
    too_long = [k for k, v in out.items() if len(v) > 2500]
    if too_long:
        raise UsageError(
            f"recipe values too long for SageMaker hyperparameters (2,500 chars): {', '.join(too_long)}"
        )
    return out


def check_environment(environment: dict[str, str]) -> None:
    secret = [k for k in environment if SECRET_NAME.search(k)]
    if secret:
        raise UsageError(
            f"remote.environment: {', '.join(secret)} look like secrets, which DescribeTrainingJob would show to anyone "
            "with read access; store them in Secrets Manager and set remote.hf_token_secret (Hugging Face) instead"
        )


def build_request(recipe: Recipe, *, name: str, data_uri: str) -> dict[str, Any]:
    from rlvr_cli.runs import recipe_fingerprint

    remote = recipe.remote
    missing = [
        k for k, v in (("remote.role_arn", remote.role_arn), ("remote.image_uri", remote.image_uri)) if not v
    ]
    if not remote.uri("output"):
        missing.append("remote.s3_prefix (or remote.s3_output)")
    if missing:
        raise UsageError(f"a SageMaker job needs {', '.join(missing)}: set them in the recipe or with --set")
    check_environment(remote.environment)
    environment = dict(remote.environment)
    if remote.hf_token_secret:
        environment["RLVR_HF_TOKEN_SECRET"] = remote.hf_token_secret  # a secret's name, not its value
    request: dict[str, Any] = {
        "TrainingJobName": name,
        "AlgorithmSpecification": {
            "TrainingImage": remote.image_uri,
            "TrainingInputMode": "File",
            "MetricDefinitions": METRIC_DEFINITIONS,
            "EnableSageMakerMetricsTimeSeries": True,
        },
        "RoleArn": remote.role_arn,
        "InputDataConfig": [
            {
                "ChannelName": channel,
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": f"{data_uri.rstrip('/')}/{channel}/",
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
                "ContentType": "application/jsonlines",
            }
            for channel in ("train", "val")
        ],
        "OutputDataConfig": {"S3OutputPath": remote.uri("output")},
        "ResourceConfig": {
            "InstanceType": remote.instance_type,
            "InstanceCount": remote.instance_count,
            "VolumeSizeInGB": remote.volume_size_gb,
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": remote.max_runtime_seconds},
        "HyperParameters": hyperparameters(recipe),
        "Environment": environment,
        "EnableManagedSpotTraining": remote.use_spot,
        "Tags": [
            {"Key": "rlvr:version", "Value": __version__},
            {"Key": "rlvr:recipe", "Value": recipe_fingerprint(recipe)},
            *({"Key": k, "Value": v} for k, v in remote.tags.items()),
        ],
    }
    checkpoints = remote.uri("checkpoints")
    if checkpoints:
        # One checkpoint prefix per job name: a spot restart of this job finds its own checkpoints.
        request["CheckpointConfig"] = {"S3Uri": f"{checkpoints}/{name}", "LocalPath": CHECKPOINT_LOCAL_PATH}
    if remote.use_spot:
        request["StoppingCondition"]["MaxWaitTimeInSeconds"] = (
            remote.max_wait_seconds or remote.max_runtime_seconds
        )
    return request


def estimate_cost(recipe: Recipe) -> dict[str, Any]:
    remote = recipe.remote
    price = PRICES.get(remote.instance_type)
    hours = remote.max_runtime_seconds / 3600
    on_demand = price * remote.instance_count * hours if price is not None else None
    return {
        "instance_type": remote.instance_type,
        "instance_count": remote.instance_count,
        "price_per_instance_hour_usd": price,
        "max_runtime_hours": round(hours, 3),
        "max_cost_on_demand_usd": round(on_demand, 2) if on_demand is not None else None,
        # Spot bills only running time, at a discount, never above on-demand: the same ceiling.
        "max_cost_spot_usd": round(on_demand, 2) if on_demand is not None and remote.use_spot else None,
        "note": "approximate us-east-1 list prices; the job usually ends well before max runtime"
        if price is not None
        else f"no price known for {remote.instance_type}",
    }


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
