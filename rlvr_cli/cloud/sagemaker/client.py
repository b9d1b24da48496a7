"""boto3 clients with retries, and AWS errors turned into one line that says what to do.

Credentials, region and profile come from the usual boto3 chain (environment, ~/.aws, instance
role), with `--profile` and `--region` on top. `AWS_ENDPOINT_URL` (boto3's own variable) points
every client elsewhere, e.g. at a local moto server in tests.

boto3 is imported here, inside functions, so commands that do not talk to AWS never pay for it.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rlvr_cli import __version__
from rlvr_cli.core.errors import ExitCode, RlvrError

TRIMMED_MODELS = Path(__file__).resolve().parent / "botocore_data"
S3_URI = re.compile(r"^s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:/(.*))?$")


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/a/b/` -> ("bucket", "a/b"); a one-line error for anything else."""
    match = S3_URI.match(uri or "")
    if not match:
        raise RlvrError(f"{uri!r} is not an S3 URI; expected s3://bucket/prefix", ExitCode.USAGE)
    return match.group(1), (match.group(2) or "").strip("/")


@functools.cache
def _data_loader(data_path: str | None) -> Any:
    """One botocore data loader per search path for the whole process: it keeps the service models
    and endpoint rules it parsed, which every new botocore session would parse again (a client took
    0.16-0.26 s to make with a loader of its own, 0.03-0.05 s with this one). Sessions stay one per
    client, so credentials, region and endpoint are still read afresh each time."""
    import botocore.loaders

    return botocore.loaders.create_loader(data_path)


def client(service: str, *, profile: str | None = None, region: str | None = None) -> Any:
    # botocore directly, not boto3: `rlvr status` starts faster without boto3's S3 transfer machinery.
    import botocore.config
    import botocore.exceptions
    import botocore.session

    config = botocore.config.Config(
        retries={"mode": "adaptive", "max_attempts": 8},  # throttling and transient errors back off and retry
        user_agent_extra=f"rlvr/{__version__}",
    )
    try:
        session = botocore.session.Session(profile=profile)
        if service == "sagemaker" and not session.get_config_variable("data_path"):
            # A trimmed SageMaker model (scripts/trim_botocore_model.py): parsing botocore's full one
            # is a third of `rlvr status`'s start-up.
            session.set_config_variable("data_path", str(TRIMMED_MODELS))
        session.register_component("data_loader", _data_loader(session.get_config_variable("data_path")))
        return session.create_client(service, region_name=region, config=config)
    except botocore.exceptions.ProfileNotFound as exc:
        raise RlvrError(
            f"AWS profile {profile!r} not found; check ~/.aws/config or drop --profile", ExitCode.USAGE
        ) from exc
    except botocore.exceptions.NoRegionError as exc:
        raise RlvrError(
            "no AWS region: pass --region, set remote.region in the recipe, or set AWS_REGION", ExitCode.USAGE
        ) from exc


def configured_region(*, profile: str | None = None, region: str | None = None) -> str | None:
    """The region a client would use (`region`, else botocore's chain: AWS_DEFAULT_REGION, the
    profile), found without calling AWS; None when nothing sets one."""
    import botocore.exceptions
    import botocore.session

    if region:
        return region
    try:
        return botocore.session.Session(profile=profile).get_config_variable("region")
    except botocore.exceptions.ProfileNotFound as exc:
        raise RlvrError(
            f"AWS profile {profile!r} not found; check ~/.aws/config or drop --profile", ExitCode.USAGE
        ) from exc


def bucket_region(s3: Any, bucket: str) -> str:
    """The region of `bucket` (HeadBucket's x-amz-bucket-region header, which S3 also sends with a
    redirect or an access-denied answer)."""
    import botocore.exceptions

    try:
        response = s3.head_bucket(Bucket=bucket)
    except botocore.exceptions.ClientError as exc:
        response = exc.response
        headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        if "x-amz-bucket-region" not in headers:
            code = str(response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchBucket", "NotFound"):
                raise RlvrError(
                    f"bucket {bucket} does not exist; create it or fix the S3 URIs in remote:"
                ) from exc
            raise
    return response["ResponseMetadata"]["HTTPHeaders"]["x-amz-bucket-region"]


@contextlib.contextmanager
def aws_errors(what: str) -> Iterator[None]:
    """Translate botocore failures during `what` into RlvrError lines."""
    import botocore.exceptions

    try:
        yield
    except RlvrError:
        raise
    except botocore.exceptions.NoCredentialsError as exc:
        raise RlvrError(
            f"{what}: no AWS credentials found; run `aws configure`, set AWS_PROFILE, or pass --profile"
        ) from exc
    except botocore.exceptions.NoRegionError as exc:
        raise RlvrError(f"{what}: no AWS region; pass --region or set AWS_REGION", ExitCode.USAGE) from exc
    except (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectTimeoutError) as exc:
        raise RlvrError(f"{what}: cannot reach AWS ({exc}); check the network and the region") from exc
    except botocore.exceptions.ClientError as exc:
        raise RlvrError(f"{what}: {describe_client_error(exc)}") from exc


def describe_client_error(exc: Any) -> str:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    message = str(error.get("Message", "")).strip()
    headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    if code in ("NoSuchBucket",):
        return f"bucket does not exist ({message or code}); create it or fix the S3 URI"
    if code in ("AccessDenied", "403", "Forbidden", "AccessDeniedException"):
        return f"access denied ({message or code}); the credentials in use lack permission (see the README's IAM section)"
    if code in (
        "PermanentRedirect",
        "AuthorizationHeaderMalformed",
        "IllegalLocationConstraintException",
        "301",
    ):
        region = headers.get("x-amz-bucket-region")
        hint = f"pass --region {region}" if region else "pass the bucket's region with --region"
        return f"the bucket is in another region; {hint}"
    if code in (
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
    ):
        return f"AWS credentials are invalid or expired ({code}); refresh them (e.g. `aws sso login`)"
    if code in ("ThrottlingException", "Throttling", "SlowDown"):
        return "AWS kept throttling after retries; wait a minute and run again"
    if code in ("404", "NotFound"):
        return "not found"
    return f"{code}: {message}" if message else code
