"""SageMaker's config files, read as the SageMaker Python SDK reads them.

An administrator (`/etc/xdg/sagemaker/config.yaml`) or a user (`~/.config/sagemaker/config.yaml`)
sets a training job's role, VPC, KMS keys, network isolation, tags and environment once; the SDK's
`SAGEMAKER_ADMIN_CONFIG_OVERRIDE` / `SAGEMAKER_USER_CONFIG_OVERRIDE` name another file (or a
directory holding config.yaml). The user's file wins over the administrator's, and the recipe
(file or --set) over both. `SageMaker.PythonSDK.Modules.Session.DefaultS3Bucket` (and its
`DefaultS3ObjectKeyPrefix`) stands in for `remote.s3_prefix`.

    SchemaVersion: '1.0'
    SageMaker:
      TrainingJob:
        RoleArn: arn:aws:iam::123456789012:role/SageMakerRole
        VpcConfig: {SecurityGroupIds: [sg-0123], Subnets: [subnet-0123]}
        Tags: [{Key: team, Value: research}]

`apply_config_files` fills the recipe's `remote:` keys the recipe leaves unset and says where each
value came from (shown by `train --remote`, dry run or not).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rlvr_cli.core.errors import UsageError, first_line

ADMIN_FILE = Path("/etc/xdg/sagemaker/config.yaml")
USER_FILE = Path("~/.config/sagemaker/config.yaml")
ADMIN_ENV, USER_ENV = "SAGEMAKER_ADMIN_CONFIG_OVERRIDE", "SAGEMAKER_USER_CONFIG_OVERRIDE"

# SageMaker.TrainingJob.<path> -> the recipe's remote key.
TRAINING_JOB_KEYS: dict[tuple[str, ...], str] = {
    ("RoleArn",): "role_arn",
    ("VpcConfig", "Subnets"): "subnets",
    ("VpcConfig", "SecurityGroupIds"): "security_group_ids",
    ("OutputDataConfig", "KmsKeyId"): "output_kms_key_id",
    ("ResourceConfig", "VolumeKmsKeyId"): "volume_kms_key_id",
    ("EnableNetworkIsolation",): "enable_network_isolation",
    ("EnableInterContainerTrafficEncryption",): "encrypt_inter_container_traffic",
    ("Environment",): "environment",
    ("Tags",): "tags",
}
SESSION = ("SageMaker", "PythonSDK", "Modules", "Session")


def config_files() -> list[Path]:
    """The files that exist, the administrator's first (the later one wins)."""
    found = []
    for env, default in ((ADMIN_ENV, ADMIN_FILE), (USER_ENV, USER_FILE)):
        path = Path(os.environ.get(env) or default).expanduser()
        if path.is_dir():
            path = path / "config.yaml"
        if path.is_file():
            found.append(path)
    return found


def _read(path: Path) -> dict[str, Any]:
    import yaml

    from rlvr_cli.core.files import read_text

    try:
        data = yaml.safe_load(read_text(path, "SageMaker config file")) or {}
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: not valid YAML ({first_line(exc)}); fix or move the file") from exc
    if not isinstance(data, dict) or str(data.get("SchemaVersion")) != "1.0":
        raise UsageError(
            f"{path}: not a SageMaker config file (it needs SchemaVersion: '1.0' at the top); fix or move it"
        )
    return data


def _at(data: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


def _value(key: str, value: Any, path: Path) -> Any:
    if key == "tags":
        if not isinstance(value, list) or not all(isinstance(t, dict) and "Key" in t for t in value):
            raise UsageError(f"{path}: SageMaker.TrainingJob.Tags must be a list of {{Key, Value}}")
        return {str(t["Key"]): str(t.get("Value", "")) for t in value}
    return value


def file_defaults() -> dict[str, tuple[Any, str]]:
    """remote key -> (value, where it came from), the user's file over the administrator's."""
    found: dict[str, tuple[Any, str]] = {}
    for path in config_files():
        data = _read(path)
        for job_path, key in TRAINING_JOB_KEYS.items():
            value = _at(data, ("SageMaker", "TrainingJob", *job_path))
            if value is not None:
                where = f"{path} (SageMaker.TrainingJob.{'.'.join(job_path)})"
                value = _value(key, value, path)
                earlier = found.get(key, (None, ""))[0]
                if isinstance(value, dict) and isinstance(earlier, dict):  # tags, environment: merged
                    value = {**earlier, **value}
                found[key] = (value, where)
        bucket = _at(data, (*SESSION, "DefaultS3Bucket"))
        if bucket:
            prefix = str(_at(data, (*SESSION, "DefaultS3ObjectKeyPrefix")) or "").strip("/")
            uri = f"s3://{bucket}/{prefix + '/' if prefix else ''}rlvr"
            found["s3_prefix"] = (uri, f"{path} (SageMaker.PythonSDK.Modules.Session.DefaultS3Bucket)")
    return found


def apply_config_files(data: dict[str, Any]) -> list[str]:
    """Fill the recipe data's unset `remote:` keys from the config files (dicts: tags and
    environment are merged, the recipe's entries winning); the notes say what came from where."""
    defaults = file_defaults()
    if not defaults:
        return []
    remote = data.setdefault("remote", {}) if isinstance(data.get("remote", {}), dict) else None
    if remote is None:
        return []  # not a mapping: the recipe's validation says so
    notes = []
    for key, (value, where) in defaults.items():
        if isinstance(value, dict) and isinstance(remote.get(key), dict):
            merged = {**value, **remote[key]}
            if merged != remote[key]:
                remote[key] = merged
                notes.append(f"remote.{key}: entries from {where}")
        elif remote.get(key) in (None, [], {}):
            remote[key] = value
            notes.append(f"remote.{key}: from {where}")
    return notes
