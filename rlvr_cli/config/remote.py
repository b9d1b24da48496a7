"""The recipe's `remote:` section: the SageMaker training job's settings."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rlvr_cli.config.patterns import (
    KMS_KEY,
    REGION,
    ROLE_ARN,
    S3_URI,
    SECURITY_GROUP,
    SUBNET,
    TRAINING_PLAN_ARN,
)


class Strict(BaseModel):
    """Unknown keys are errors (with the closest valid key), never silently ignored settings."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


# 28 days: SageMaker's ceiling for MaxRuntimeInSeconds.
MAX_RUNTIME_CEILING = 28 * 24 * 3600


class RemoteConfig(Strict):
    """SageMaker training job settings, used by `rlvr upload` and `rlvr train --remote`."""

    region: str | None = Field(None, description="AWS region; default: the boto3 chain (AWS_REGION, profile)")
    role_arn: str | None = Field(
        None, description="IAM role SageMaker assumes for the job (arn:aws:iam::ACCOUNT:role/NAME)"
    )
    image_uri: str | None = Field(
        None, description="training image built from container/ (`make push` prints it)"
    )
    instance_type: str = Field(
        "ml.p4d.24xlarge",
        description="SageMaker instance type, checked against SageMaker's list (prices: `rlvr train --remote`)",
    )
    instance_count: int = Field(1, ge=1, le=64, description="number of instances")
    volume_size_gb: int = Field(100, ge=1, le=16384, description="EBS volume per instance, GB")
    max_runtime_seconds: int = Field(
        24 * 3600, ge=60, le=MAX_RUNTIME_CEILING, description="stop the job after this many seconds"
    )
    use_spot: bool = Field(
        False, description="managed spot training (cheaper, can be interrupted and resumed)"
    )
    max_wait_seconds: int | None = Field(
        None,
        ge=60,
        description="spot only: total time including waiting for capacity; >= max_runtime_seconds",
    )
    s3_prefix: str | None = Field(
        None, description="s3://bucket/prefix: root for data/, output/ and checkpoints/ unless set below"
    )
    s3_data: str | None = Field(
        None, description="where `rlvr upload` puts the datasets; default {s3_prefix}/data"
    )
    s3_output: str | None = Field(None, description="job output (model.tar.gz); default {s3_prefix}/output")
    s3_checkpoints: str | None = Field(
        None, description="checkpoints synced from /opt/ml/checkpoints; default {s3_prefix}/checkpoints"
    )
    base_job_name: str | None = Field(
        None, description="job name prefix; default derived from the recipe's model"
    )
    environment: dict[str, str] = Field(
        default_factory=dict,
        description="environment variables for the container (no secrets: see hf_token_secret)",
    )
    hf_token_secret: str | None = Field(
        None,
        description=(
            'Secrets Manager secret (name or ARN) holding a Hugging Face token (the token itself, or {"HF_TOKEN": '
            '"hf_..."}), read inside the container'
        ),
    )
    tags: dict[str, str] = Field(default_factory=dict, description="tags on the training job")
    # --- network, encryption, scheduling (CreateTrainingJob members of the same names) ------------
    subnets: list[str] = Field(
        default_factory=list,
        max_length=16,
        description="VPC subnet ids (subnet-...) for the job's instances; needs security_group_ids",
    )
    security_group_ids: list[str] = Field(
        default_factory=list, max_length=5, description="VPC security group ids (sg-...); needs subnets"
    )
    volume_kms_key_id: str | None = Field(
        None,
        description="KMS key (id, ARN or alias) for the instances' EBS volumes; not for instances with "
        "local NVMe storage (g5, g6, p4d, p5, ...), which encrypt it themselves",
    )
    output_kms_key_id: str | None = Field(
        None, description="KMS key (id, ARN or alias) that encrypts the job's output in S3"
    )
    enable_network_isolation: bool = Field(
        False,
        description="no network from the container: the model must be in the image (a path), and "
        "hf_token_secret, the Hub and MLflow servers are out of reach",
    )
    encrypt_inter_container_traffic: bool = Field(
        False, description="encrypt traffic between instances (instance_count > 1); slower"
    )
    keep_alive_seconds: int | None = Field(
        None,
        ge=0,
        le=21600,
        description="warm pool: keep the instances this long after the job for a matching next job; "
        "billed at the instance price while kept",
    )
    max_pending_seconds: int | None = Field(
        None,
        ge=1800,
        le=28 * 24 * 3600,
        description="stop the job if it waits longer than this for capacity (GPU instances)",
    )
    max_retry_attempts: int | None = Field(
        None, ge=1, le=30, description="retry the job this many times after an InternalServerError"
    )
    training_plan_arn: str | None = Field(
        None, description="SageMaker training plan (reserved capacity) to run on"
    )

    @field_validator("role_arn")
    @classmethod
    def _role(cls, v: str | None) -> str | None:
        if v is not None and not ROLE_ARN.match(v):
            raise ValueError("must look like arn:aws:iam::123456789012:role/NAME")
        return v

    @field_validator("region")
    @classmethod
    def _region(cls, v: str | None) -> str | None:
        if v is not None and not REGION.match(v):
            raise ValueError("must be an AWS region name such as us-east-1")
        return v

    @field_validator("instance_type")
    @classmethod
    def _instance(cls, v: str) -> str:
        if not re.match(r"^ml\.[a-z0-9-]+\.[a-z0-9]+$", v):
            raise ValueError("must be a SageMaker instance type such as ml.p4d.24xlarge (prefix 'ml.')")
        return v

    @field_validator("s3_prefix", "s3_data", "s3_output", "s3_checkpoints")
    @classmethod
    def _s3(cls, v: str | None) -> str | None:
        if v is not None:
            if not S3_URI.match(v):
                raise ValueError("must be an S3 URI such as s3://my-bucket/rlvr")
            v = v.rstrip("/")
        return v

    @field_validator("base_job_name")
    @classmethod
    def _job_name(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,39}$", v):
            raise ValueError("must be 1-40 characters of letters, digits and hyphens (SageMaker job names)")
        return v

    @field_validator("environment")
    @classmethod
    def _env(cls, v: dict[str, str]) -> dict[str, str]:
        bad = [k for k in v if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", k)]
        if bad:
            raise ValueError(f"invalid environment variable name(s): {', '.join(bad)}")
        return v

    @field_validator("subnets")
    @classmethod
    def _subnets(cls, v: list[str]) -> list[str]:
        bad = [x for x in v if not SUBNET.match(x)]
        if bad:
            raise ValueError(f"not subnet ids (subnet-0123abcd...): {', '.join(bad)}")
        return v

    @field_validator("security_group_ids")
    @classmethod
    def _security_groups(cls, v: list[str]) -> list[str]:
        bad = [x for x in v if not SECURITY_GROUP.match(x)]
        if bad:
            raise ValueError(f"not security group ids (sg-0123abcd...): {', '.join(bad)}")
        return v

    @field_validator("volume_kms_key_id", "output_kms_key_id")
    @classmethod
    def _kms(cls, v: str | None) -> str | None:
        if v is not None and not KMS_KEY.match(v):
            raise ValueError(
                "must be a KMS key id, key ARN, alias/NAME or alias ARN "
                "(e.g. arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab)"
            )
        return v

    @field_validator("training_plan_arn")
    @classmethod
    def _plan(cls, v: str | None) -> str | None:
        if v is not None and not TRAINING_PLAN_ARN.match(v):
            raise ValueError("must look like arn:aws:sagemaker:REGION:ACCOUNT:training-plan/NAME")
        return v

    @model_validator(mode="after")
    def _vpc(self) -> RemoteConfig:
        if bool(self.subnets) != bool(self.security_group_ids):
            given, missing = (
                ("subnets", "security_group_ids") if self.subnets else ("security_group_ids", "subnets")
            )
            raise ValueError(
                f"a VPC needs both subnets and security_group_ids: {given} is set, add {missing}"
            )
        return self

    @model_validator(mode="after")
    def _spot(self) -> RemoteConfig:
        if self.max_wait_seconds is not None:
            if not self.use_spot:
                raise ValueError(
                    "max_wait_seconds applies to spot training only: set use_spot: true or remove it"
                )
            if self.max_wait_seconds < self.max_runtime_seconds:
                raise ValueError(
                    f"max_wait_seconds ({self.max_wait_seconds}) must be >= max_runtime_seconds ({self.max_runtime_seconds})"
                )
        return self

    def uri(self, kind: Literal["data", "output", "checkpoints"]) -> str | None:
        explicit = {"data": self.s3_data, "output": self.s3_output, "checkpoints": self.s3_checkpoints}[kind]
        if explicit:
            return explicit
        return f"{self.s3_prefix}/{kind}" if self.s3_prefix else None
