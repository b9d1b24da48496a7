"""The account's SageMaker default bucket, as the SageMaker Python SDK uses it.

With no S3 location in the recipe, the SageMaker config files or on the command line, the SDK puts
a job's data, output and checkpoints in `s3://sagemaker-{region}-{account-id}/`, creating that
bucket (with the region's location constraint and all public access blocked) if it does not exist.
rlvr does the same, under the `rlvr/` prefix, and says so: `rlvr upload` and `train --remote` print
the bucket they use and whether they created it; a dry run says it would be created.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rlvr_cli.cloud.sagemaker.client import aws_errors, client
from rlvr_cli.core.errors import RlvrError

PREFIX = "rlvr"  # under the bucket: rlvr/data, rlvr/output, rlvr/checkpoints


@dataclass(frozen=True)
class DefaultBucket:
    name: str
    region: str
    exists: bool
    created: bool = False

    @property
    def prefix(self) -> str:
        """s3://sagemaker-REGION-ACCOUNT/rlvr: the root for data/, output/ and checkpoints/."""
        return f"s3://{self.name}/{PREFIX}"

    def note(self) -> str:
        if self.created:
            return f"created the SageMaker default bucket {self.name} ({self.region}, public access blocked)"
        if not self.exists:
            return f"the SageMaker default bucket {self.name} does not exist yet: submitting creates it"
        return f"using the SageMaker default bucket {self.name}"


def default_bucket(*, profile: str | None, region: str | None, create: bool) -> DefaultBucket:
    """`sagemaker-{region}-{account}` for the caller's account (STS) and region; created when
    `create` and absent. A bucket of that name owned by another account is an error."""
    import botocore.exceptions

    sts = client("sts", profile=profile, region=region)
    s3 = client("s3", profile=profile, region=region)
    region = s3.meta.region_name
    with aws_errors("finding the SageMaker default bucket"):
        account = sts.get_caller_identity()["Account"]
        name = f"sagemaker-{region}-{account}"
        try:
            s3.head_bucket(Bucket=name, ExpectedBucketOwner=account)
            return DefaultBucket(name, region, exists=True)
        except botocore.exceptions.ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code"))
            if code in ("403", "AccessDenied"):
                raise RlvrError(
                    f"the SageMaker default bucket {name} exists but is not this account's, or is not "
                    "readable with these credentials; set remote.s3_prefix (or pass --s3 / --data)"
                ) from exc
            if code not in ("404", "NoSuchBucket", "NotFound"):
                raise
        if not create:
            return DefaultBucket(name, region, exists=False)
        _create(s3, name, region)
    return DefaultBucket(name, region, exists=True, created=True)


def _create(s3: Any, name: str, region: str) -> None:
    request: dict[str, Any] = {"Bucket": name}
    if region != "us-east-1":  # us-east-1 takes no location constraint
        request["CreateBucketConfiguration"] = {"LocationConstraint": region}
    s3.create_bucket(**request)
    s3.put_public_access_block(
        Bucket=name,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
