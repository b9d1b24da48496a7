"""What `rlvr train --remote` refuses before calling AWS: the CreateTrainingJob request is checked
against SageMaker's service model, for secrets, for tag rules, and for settings that cannot work.

Each problem is one line, `recipe key (request member): what is wrong; the fix`. Lines about
secrets never contain the value. Nothing here calls AWS: the bucket regions, which need S3, are
passed in by the caller (`rlvr_cli.cloud.sagemaker.commands`), and the dry run leaves them out.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from rlvr_cli.cloud.sagemaker import service_model

if TYPE_CHECKING:
    from rlvr_cli.config.recipe import Recipe

OPERATION = "CreateTrainingJob"
# Set by rlvr itself: counted against SageMaker's limits, exempt from the secret-name rule
# (RLVR_HF_TOKEN_SECRET holds the *name* of a Secrets Manager secret).
RLVR_ENVIRONMENT = ("RLVR_HF_TOKEN_SECRET",)
RLVR_TAGS = ("rlvr:version", "rlvr:recipe", "rlvr:data", "rlvr:data-from")

# A name is secret-looking when one of its words is one of these (words split at `_`, `-`, `.`,
# `:` and camelCase), so HF_TOKEN and hfToken are refused and TOKENIZERS_PARALLELISM is not.
SECRET_WORDS = {
    "TOKEN",
    "TOKENS",
    "SECRET",
    "SECRETS",
    "PASSWORD",
    "PASSWORDS",
    "PASSWD",
    "PASSPHRASE",
    "CREDENTIAL",
    "CREDENTIALS",
    "APIKEY",
    "PRIVATE",
}
# Well-known credential shapes, found anywhere in the request.
TOKEN_SHAPES = [
    ("a Hugging Face token (hf_...)", re.compile(r"(?<![A-Za-z0-9])hf_[A-Za-z0-9]{30,}")),
    ("an AWS access key id", re.compile(r"(?<![A-Z0-9])(AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}(?![A-Z0-9])")),
    (
        "a GitHub token",
        re.compile(r"(?<![A-Za-z0-9])(gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})"),
    ),
    ("a GitLab token", re.compile(r"(?<![A-Za-z0-9])glpat-[A-Za-z0-9_-]{20,}")),
    ("an OpenAI-style API key (sk-...)", re.compile(r"(?<![A-Za-z0-9])sk-[A-Za-z0-9_-]{32,}")),
    ("a Slack token", re.compile(r"(?<![A-Za-z0-9])xox[abprs]-[A-Za-z0-9-]{10,}")),
    ("a Google API key", re.compile(r"(?<![A-Za-z0-9])AIza[0-9A-Za-z_-]{35}")),
    ("a JSON web token", re.compile(r"(?<![A-Za-z0-9])eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.")),
    ("a private key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")),
]
# scheme://user:password@host (user may be empty: redis://:password@host).
URL_WITH_PASSWORD = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s/@:]*:[^\s/@]+@")
SECRETS_FIX = (
    "DescribeTrainingJob shows the request to anyone with read access; keep secrets in Secrets Manager "
    "(remote.hf_token_secret for a Hugging Face token)"
)
# Instance families with local NVMe storage: SageMaker refuses VolumeKmsKeyId for them (the
# instance encrypts that storage with its own hardware key). From the EC2 instance store list.
LOCAL_STORAGE_FAMILIES = {
    "c5d", "m5d", "r5d", "c6id", "m6id", "r6id", "g4dn", "g5", "g6", "g6e", "gr6",
    "p3dn", "p4d", "p4de", "p5", "p5e", "p5en", "p6-b200", "trn1", "trn1n", "trn2",
}  # fmt: skip
ECR_IMAGE = re.compile(r"^\d{12}\.dkr\.ecr(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/")

# Which recipe key fills each request member, for messages.
RECIPE_KEYS: dict[tuple[str, ...], str] = {
    ("TrainingJobName",): "--job-name / remote.base_job_name",
    ("AlgorithmSpecification", "TrainingImage"): "remote.image_uri",
    ("RoleArn",): "remote.role_arn",
    ("InputDataConfig",): "remote.s3_data",
    ("OutputDataConfig", "S3OutputPath"): "remote.s3_output",
    ("OutputDataConfig", "KmsKeyId"): "remote.output_kms_key_id",
    ("ResourceConfig", "InstanceType"): "remote.instance_type",
    ("ResourceConfig", "InstanceCount"): "remote.instance_count",
    ("ResourceConfig", "VolumeSizeInGB"): "remote.volume_size_gb",
    ("ResourceConfig", "VolumeKmsKeyId"): "remote.volume_kms_key_id",
    ("ResourceConfig", "KeepAlivePeriodInSeconds"): "remote.keep_alive_seconds",
    ("ResourceConfig", "TrainingPlanArn"): "remote.training_plan_arn",
    ("StoppingCondition", "MaxRuntimeInSeconds"): "remote.max_runtime_seconds",
    ("StoppingCondition", "MaxWaitTimeInSeconds"): "remote.max_wait_seconds",
    ("StoppingCondition", "MaxPendingTimeInSeconds"): "remote.max_pending_seconds",
    ("RetryStrategy",): "remote.max_retry_attempts",
    ("VpcConfig", "Subnets"): "remote.subnets",
    ("VpcConfig", "SecurityGroupIds"): "remote.security_group_ids",
    ("CheckpointConfig",): "remote.s3_checkpoints",
    ("EnableNetworkIsolation",): "remote.enable_network_isolation",
    ("EnableInterContainerTrafficEncryption",): "remote.encrypt_inter_container_traffic",
    ("EnableManagedSpotTraining",): "remote.use_spot",
    ("MlflowConfig",): "mlflow_tracking_uri",
    ("Tags",): "remote.tags",
    ("Environment",): "remote.environment",
    ("HyperParameters",): "the recipe",
}


def where(request: dict[str, Any], path: tuple[str | int, ...]) -> str:
    """`recipe key (request member)` for a request path, e.g. `remote.tags (Tags[3].Key)`."""
    member = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")
    if path[:1] == ("HyperParameters",) and len(path) > 1:
        return f"{path[1]} (HyperParameters.{path[1]})"
    if path[:1] == ("Environment",) and len(path) > 1:
        return f"remote.environment.{path[1]} (Environment.{path[1]})"
    if path[:1] == ("Tags",) and len(path) > 1 and isinstance(path[1], int):
        key = request["Tags"][path[1]].get("Key", "")
        return f"remote.tags.{key} ({member})"
    for n in range(len(path), 0, -1):
        key = RECIPE_KEYS.get(tuple(str(p) for p in path[:n]))
        if key:
            return f"{key} ({member})"
    return member or OPERATION


def refusals(request: dict[str, Any], recipe: Recipe) -> list[str]:
    """Every reason AWS would refuse `request`, or rlvr refuses it; [] when it may be sent."""
    lines = secret_problems(request) + tag_problems(request)
    # The service model's messages state lengths and patterns, never the value itself.
    for problem in service_model.validate(OPERATION, request):
        lines.append(
            f"{where(request, problem.path)}: {problem.message}{_added_by_rlvr(request, problem.path)}"
        )
    return lines + setting_problems(request, recipe)


# --- secrets -------------------------------------------------------------------------------------------


def words(name: str) -> list[str]:
    return [w.upper() for w in re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+", name)]


def secret_word(name: str) -> str | None:
    """The word that makes `name` look like a secret's name, or None."""
    parts = words(name)
    for word in parts:
        if word in SECRET_WORDS:
            return word
    if len(parts) > 1 and parts[-1] == "KEY":  # API_KEY, SECRET_ACCESS_KEY, ...
        return "_".join(parts[-2:])
    if "ACCESS_KEY" in "_".join(parts):  # AWS_ACCESS_KEY_ID
        return "ACCESS_KEY"
    return None


def secret_shape(text: str) -> str | None:
    """What kind of credential `text` contains, or None."""
    if URL_WITH_PASSWORD.search(text):
        return "a URL with a password"
    for kind, pattern in TOKEN_SHAPES:
        if pattern.search(text):
            return kind
    return None


def _leaves(value: Any, path: tuple[str | int, ...] = ()) -> Any:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _leaves(item, (*path, i))
    elif isinstance(value, str):
        yield path, value


def secret_problems(request: dict[str, Any]) -> list[str]:
    lines = []
    for name in request.get("Environment", {}):
        word = secret_word(name)
        if word and name not in RLVR_ENVIRONMENT:
            lines.append(
                f"{where(request, ('Environment', name))}: the name looks like a secret (the word {word}); {SECRETS_FIX}"
            )
    for i, tag in enumerate(request.get("Tags", [])):
        word = secret_word(tag.get("Key", ""))
        if word:
            lines.append(
                f"{where(request, ('Tags', i, 'Key'))}: the tag key looks like a secret (the word {word}); "
                "tags are shown to anyone who can list them; rename the tag"
            )
    for path, text in _leaves(request):
        kind = secret_shape(text)
        if kind:
            lines.append(f"{where(request, path)}: holds {kind} (not shown); {SECRETS_FIX}")
    return lines


# --- tags ---------------------------------------------------------------------------------------------


def tag_problems(request: dict[str, Any]) -> list[str]:
    """AWS's tag rules the service model does not state: no `aws:` prefix, no duplicate keys."""
    lines, seen = [], set()
    for i, tag in enumerate(request.get("Tags", [])):
        key = tag.get("Key", "")
        if key.lower().startswith("aws:"):
            lines.append(
                f"{where(request, ('Tags', i, 'Key'))}: the prefix aws: is reserved for AWS; rename the tag"
            )
        if key in seen:
            fix = "rlvr sets it; choose another key" if key in RLVR_TAGS else "remove one"
            lines.append(f"{where(request, ('Tags', i, 'Key'))}: the tag key appears twice; {fix}")
        seen.add(key)
    return lines


def _added_by_rlvr(request: dict[str, Any], path: tuple[str | int, ...]) -> str:
    """For a too-long list or map: how many of its entries rlvr adds itself."""
    if path == ("Tags",):
        ours = [t["Key"] for t in request.get("Tags", []) if t.get("Key") in RLVR_TAGS]
    elif path == ("Environment",):
        ours = [k for k in request.get("Environment", {}) if k in RLVR_ENVIRONMENT]
    else:
        return ""
    return f" (rlvr adds {len(ours)}: {', '.join(ours)})" if ours else ""


# --- settings that cannot work ------------------------------------------------------------------------


def instance_family(instance_type: str) -> str:
    """`ml.p4d.24xlarge` -> `p4d`."""
    parts = instance_type.split(".")
    return parts[1] if len(parts) == 3 else instance_type


def setting_problems(request: dict[str, Any], recipe: Recipe) -> list[str]:
    remote, lines = recipe.remote, []
    if remote.use_spot and "CheckpointConfig" not in request:
        lines.append(
            "remote.use_spot: spot training without a checkpoint location starts over after every "
            "interruption; set remote.s3_checkpoints or remote.s3_prefix"
        )
    if remote.use_spot and recipe.save_strategy == "no":
        lines.append(
            "remote.use_spot: save_strategy 'no' saves no checkpoint, so an interruption starts over; "
            "set save_strategy: steps (with save_steps)"
        )
    if remote.volume_kms_key_id and instance_family(remote.instance_type) in LOCAL_STORAGE_FAMILIES:
        lines.append(
            f"remote.volume_kms_key_id: {remote.instance_type} has local NVMe storage, which the instance "
            "encrypts itself, and SageMaker refuses VolumeKmsKeyId for it; remove volume_kms_key_id"
        )
    if remote.enable_network_isolation and remote.hf_token_secret:
        lines.append(
            "remote.hf_token_secret: with enable_network_isolation the container cannot reach Secrets "
            "Manager (nor the Hub); remove one of them"
        )
    tracking = recipe.mlflow_tracking_uri or remote.environment.get("MLFLOW_TRACKING_URI", "")
    remote_tracking = tracking.startswith(("arn:", "http:", "https:"))
    if remote.enable_network_isolation and "mlflow" in recipe.report_to and remote_tracking:
        lines.append(
            "remote.enable_network_isolation: the container cannot reach the MLflow server; drop "
            "mlflow_tracking_uri (the default store is saved with the job's output) or enable_network_isolation"
        )
    return lines


def setting_warnings(recipe: Recipe) -> list[str]:
    remote, lines = recipe.remote, []
    if remote.enable_network_isolation and not recipe.model_name_or_path.startswith("/"):
        lines.append(
            f"remote.enable_network_isolation: the container cannot download {recipe.model_name_or_path} "
            "from the Hub; put the model in the image and set model_name_or_path to its path"
        )
    return lines


# --- regions ------------------------------------------------------------------------------------------


def image_region(uri: str) -> str | None:
    """The region of an ECR image URI (ACCOUNT.dkr.ecr.REGION.amazonaws.com/...), else None."""
    match = ECR_IMAGE.match(uri or "")
    return match.group(1) if match else None


def request_buckets(request: dict[str, Any]) -> dict[str, str]:
    """Bucket -> the recipe key that names it, for every S3 location in the request."""
    from rlvr_cli.cloud.sagemaker.client import parse_s3_uri

    uris = [
        ("remote.s3_data", c["DataSource"]["S3DataSource"]["S3Uri"])
        for c in request.get("InputDataConfig", [])
    ]
    uris.append(("remote.s3_output", request["OutputDataConfig"]["S3OutputPath"]))
    if "CheckpointConfig" in request:
        uris.append(("remote.s3_checkpoints", request["CheckpointConfig"]["S3Uri"]))
    buckets: dict[str, str] = {}
    for key, uri in uris:
        buckets.setdefault(parse_s3_uri(uri)[0], key)
    return buckets


def region_problems(
    request: dict[str, Any], job_region: str, bucket_regions: dict[str, str | None] | None = None
) -> list[str]:
    """SageMaker pulls the image and reads and writes S3 in the job's region only."""
    lines = []
    image = request["AlgorithmSpecification"]["TrainingImage"]
    region = image_region(image)
    if region and region != job_region:
        lines.append(
            f"remote.image_uri: the image is in {region}, the job in {job_region}; push the image to "
            f"{job_region} (make push with AWS_REGION={job_region}) or run the job in {region} (--region)"
        )
    for bucket, key in request_buckets(request).items():
        where_bucket = (bucket_regions or {}).get(bucket)
        if where_bucket and where_bucket != job_region:
            lines.append(
                f"{key}: bucket {bucket} is in {where_bucket}, the job in {job_region}; use a bucket in "
                f"{job_region} or run the job in {where_bucket} (--region)"
            )
    return lines
