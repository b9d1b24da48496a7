"""The CreateTrainingJob request built from a recipe, the job name, and the cost estimate.

The request is plain data built by `build_request`: `--dry-run` prints exactly what
`create_training_job` receives. The recipe travels as hyperparameters (every key, explicit nulls
included, JSON-encoded, as SageMaker wants strings); the container entry
(`rlvr_cli/container/entry.py`) decodes them into the same recipe. Before anything is printed or
sent, `rlvr_cli.cloud.sagemaker.request_checks` refuses what AWS would refuse and anything that looks like a secret.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from rlvr_cli import __version__
from rlvr_cli.config.fingerprint import recipe_fingerprint
from rlvr_cli.config.patterns import MLFLOW_ARN
from rlvr_cli.core import metrics
from rlvr_cli.core.errors import UsageError
from rlvr_cli.data.layout import MANIFEST_CHANNEL, MANIFEST_FILE

if TYPE_CHECKING:  # the control plane imports no pydantic
    from rlvr_cli.config.recipe import Recipe

CHECKPOINT_LOCAL_PATH = "/opt/ml/checkpoints"
# Keys the container sets itself: paths inside /opt/ml, and the SageMaker section.
CONTAINER_KEYS = {"remote", "train_dataset_path", "test_dataset_path", "output_dir", "checkpoint_dir"}
# On-demand SageMaker training list prices, USD per instance-hour, us-east-1, as written down from
# the AWS SageMaker pricing page in 2025 and not re-checked since: approximate, for the --dry-run
# estimate only. Other regions cost more or less; the pricing page has the current numbers.
PRICE_SOURCE = "list price, us-east-1, as of 2025, source: AWS SageMaker pricing page; approximate"
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
# SageMaker reads training metrics from the trainer's `rlvr-metrics {json}` lines; the regexes live
# beside the code that prints them.
METRIC_DEFINITIONS = metrics.METRIC_DEFINITIONS


def slug(text: str) -> str:
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9]", "-", text.lower())).strip("-")


def job_name(recipe: Recipe, now: datetime | None = None) -> str:
    """`{base}-{recipe hash}-{UTC time}`: unique per second, <= 63 chars of [a-zA-Z0-9-]."""
    now = now or datetime.now(timezone.utc)
    stamp = now.strftime("%Y%m%d-%H%M%S")
    base = recipe.remote.base_job_name or f"rlvr-{slug(recipe.model_name_or_path.split('/')[-1])}"
    suffix = f"-{recipe_fingerprint(recipe)[:6]}-{stamp}"
    return (base[: 63 - len(suffix)].rstrip("-") or "rlvr") + suffix


def hyperparameters(recipe: Recipe) -> dict[str, str]:
    """Every recipe key the container does not set itself, JSON-encoded. An explicit null is sent
    as `null`: left out, the container would fall back to the key's default (for
    `lora_modules_to_save`, [lm_head, embed_tokens]) and train another recipe."""
    data = recipe.model_dump(mode="json", exclude=CONTAINER_KEYS)
    return {key: json.dumps(value) for key, value in data.items()}


def mlflow_arn(recipe: Recipe) -> str | None:
    """The SageMaker managed MLflow server the job reports to, if any."""
    if "mlflow" not in recipe.report_to:
        return None
    for uri in (recipe.mlflow_tracking_uri, recipe.remote.environment.get("MLFLOW_TRACKING_URI")):
        if uri and MLFLOW_ARN.match(uri):
            return uri
    return None


def required_settings(recipe: Recipe, *, output: bool = False) -> None:
    """The settings a job cannot do without: the role and the image (and, with `output`, where its
    output goes, which the SageMaker default bucket provides when nothing else does)."""
    remote = recipe.remote
    missing = [
        k for k, v in (("remote.role_arn", remote.role_arn), ("remote.image_uri", remote.image_uri)) if not v
    ]
    if output and not remote.uri("output"):
        missing.append("remote.s3_prefix (or remote.s3_output)")
    if missing:
        raise UsageError(
            f"a SageMaker job needs {', '.join(missing)}: set them in the recipe, with --set, or in "
            "SageMaker's config file (SageMaker.TrainingJob.RoleArn)"
        )


def build_request(recipe: Recipe, *, name: str, data_uri: str, data_from: str = "recipe") -> dict[str, Any]:
    """The CreateTrainingJob parameters; a UsageError listing every problem if AWS or rlvr would
    refuse them (rlvr_cli.cloud.sagemaker.request_checks). `data_from` (recipe, last-upload or
    default-bucket) says where `data_uri` came from; both are tagged on the job."""
    from rlvr_cli.cloud.sagemaker.request_checks import refusals

    remote = recipe.remote
    required_settings(recipe, output=True)
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
        ]
        + [
            {
                # The manifest travels with the data: one object, its own channel (data/layout.py).
                "ChannelName": MANIFEST_CHANNEL,
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": f"{data_uri.rstrip('/')}/{MANIFEST_FILE}",
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
                "ContentType": "application/json",
            }
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
            # Equal to the fingerprint in the job's rlvr_run.json: it ignores the keys the container sets.
            {"Key": "rlvr:recipe", "Value": recipe_fingerprint(recipe)},
            {"Key": "rlvr:data", "Value": data_uri.rstrip("/")},
            *([{"Key": "rlvr:data-from", "Value": data_from}] if data_from != "recipe" else []),
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
    _power_user_settings(request, recipe)
    problems = refusals(request, recipe)
    if problems:
        raise UsageError("\n".join(problems))
    return request


def _power_user_settings(request: dict[str, Any], recipe: Recipe) -> None:
    """The optional `remote:` keys, each into the CreateTrainingJob member of the same meaning."""
    remote = recipe.remote
    resource, stopping = request["ResourceConfig"], request["StoppingCondition"]
    if remote.volume_kms_key_id:
        resource["VolumeKmsKeyId"] = remote.volume_kms_key_id
    if remote.keep_alive_seconds is not None:
        resource["KeepAlivePeriodInSeconds"] = remote.keep_alive_seconds
    if remote.training_plan_arn:
        resource["TrainingPlanArn"] = remote.training_plan_arn
    if remote.output_kms_key_id:
        request["OutputDataConfig"]["KmsKeyId"] = remote.output_kms_key_id
    if remote.max_pending_seconds is not None:
        stopping["MaxPendingTimeInSeconds"] = remote.max_pending_seconds
    if remote.max_retry_attempts is not None:
        request["RetryStrategy"] = {"MaximumRetryAttempts": remote.max_retry_attempts}
    if remote.subnets:  # the recipe has both or neither (config.RemoteConfig._vpc)
        request["VpcConfig"] = {"Subnets": remote.subnets, "SecurityGroupIds": remote.security_group_ids}
    if remote.enable_network_isolation:
        request["EnableNetworkIsolation"] = True
    if remote.encrypt_inter_container_traffic:
        request["EnableInterContainerTrafficEncryption"] = True
    arn = mlflow_arn(recipe)
    if arn:  # SageMaker's own MLflow integration, beside the tracking URI the trainer uses
        request["MlflowConfig"] = {
            "MlflowResourceArn": arn,
            "MlflowExperimentName": recipe.mlflow_experiment_name,
            **({"MlflowRunName": recipe.run_name} if recipe.run_name else {}),
        }


def estimate_cost(recipe: Recipe) -> dict[str, Any]:
    remote = recipe.remote
    price = PRICES.get(remote.instance_type)
    hours = remote.max_runtime_seconds / 3600
    on_demand = price * remote.instance_count * hours if price is not None else None
    # A warm pool bills its instances after the job for up to keep_alive_seconds (less if a
    # matching job takes it over): an upper bound.
    keep_alive_hours = (remote.keep_alive_seconds or 0) / 3600
    warm_pool = price * remote.instance_count * keep_alive_hours if price is not None else None
    return {
        "instance_type": remote.instance_type,
        "instance_count": remote.instance_count,
        "price_per_instance_hour_usd": price,
        "max_runtime_hours": round(hours, 3),
        "max_cost_on_demand_usd": round(on_demand, 2) if on_demand is not None else None,
        # Spot bills only running time, at a discount, never above on-demand: the same ceiling.
        "max_cost_spot_usd": round(on_demand, 2) if on_demand is not None and remote.use_spot else None,
        "keep_alive_hours": round(keep_alive_hours, 3),
        "max_warm_pool_cost_usd": round(warm_pool, 2) if warm_pool is not None and keep_alive_hours else None,
        "price_source": PRICE_SOURCE,
        "note": f"{PRICE_SOURCE}; the job usually ends well before max runtime"
        if price is not None
        else f"no price known for {remote.instance_type}; see the AWS SageMaker pricing page",
    }
