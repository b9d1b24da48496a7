"""SageMaker and S3 against a local moto server: upload, submit, status, logs, stop."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import rewrite_split

ACCOUNT, REGION = "123456789012", "us-east-1"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/SageMakerRole"
IMAGE = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/rlvr-train:abc123"


def boto(service: str):
    import boto3

    return boto3.client(service, region_name=REGION)


@pytest.fixture
def bucket(aws: str, prepared: Path) -> str:
    """The test bucket, holding a complete `rlvr upload` where the recipes' s3_prefix puts the data."""
    from .conftest import upload_prepared

    boto("s3").create_bucket(Bucket="rlvr-test")
    upload_prepared(prepared, "s3://rlvr-test/rlvr/data")
    return "rlvr-test"


@pytest.fixture
def recipe(tmp_path: Path) -> Path:
    path = tmp_path / "remote.yaml"
    path.write_text(
        "model_name_or_path: Qwen/Qwen2.5-0.5B\n"
        "remote:\n"
        f"  role_arn: {ROLE}\n"
        f"  image_uri: {IMAGE}\n"
        "  s3_prefix: s3://rlvr-test/rlvr\n"
        "  use_spot: true\n"
        "  max_runtime_seconds: 7200\n"
        "  max_wait_seconds: 10800\n"
        "  environment: {MLFLOW_TRACKING_URI: 'arn:aws:sagemaker:us-east-1:123456789012:mlflow-tracking-server/rlvr'}\n"
        "  tags: {team: research}\n"
    )
    return path


def _moto_auth(endpoint: str, initial_free_requests: str) -> None:
    import urllib.request

    request = urllib.request.Request(
        f"{endpoint}/moto-api/reset-auth",
        data=initial_free_requests.encode(),
        method="POST",
        headers={"Content-Type": "text/plain"},
    )
    urllib.request.urlopen(request).read()


@contextlib.contextmanager
def limited_credentials(endpoint: str, monkeypatch: pytest.MonkeyPatch, statements: list[dict]):
    """Run as an IAM user with only `statements`: moto then checks every request against them and
    answers AccessDenied as AWS does. Auth is off again afterwards (the server is shared)."""
    iam = boto("iam")
    iam.create_user(UserName="limited")
    iam.put_user_policy(
        UserName="limited",
        PolicyName="limited",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": statements}),
    )
    key = iam.create_access_key(UserName="limited")["AccessKey"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
    _moto_auth(endpoint, "0")
    try:
        yield
    finally:
        _moto_auth(endpoint, "inf")


# --- upload -----------------------------------------------------------------------------------------


def test_upload_puts_checksummed_files_under_the_prefix(cli, prepared: Path, bucket: str):
    result = cli("upload", "--data", prepared, "--s3", f"s3://{bucket}/runs/data", "--json")
    assert result.code == 0, result.err
    summary = result.json()
    assert summary["channels"]["train"] == f"s3://{bucket}/runs/data/train/"
    assert [f["action"] for f in summary["files"]] == ["uploaded"] * 4
    s3 = boto("s3")
    for rel in ("train/dataset.json", "val/dataset.json", "test/dataset.json", "manifest.json"):
        local = (prepared / rel).read_bytes()
        head = s3.head_object(Bucket=bucket, Key=f"runs/data/{rel}", ChecksumMode="ENABLED")
        assert head["Metadata"]["sha256"] == hashlib.sha256(local).hexdigest()
        assert head["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(local).digest()).decode()
        assert s3.get_object(Bucket=bucket, Key=f"runs/data/{rel}")["Body"].read() == local


def test_upload_skips_identical_refuses_different_and_forces(cli, prepared: Path, bucket: str):
    uri = f"s3://{bucket}/data"
    assert cli("upload", "--data", prepared, "--s3", uri).code == 0
    again = cli("upload", "--data", prepared, "--s3", uri, "--json")
    assert [f["action"] for f in again.json()["files"]] == ["skipped"] * 4
    rewrite_split(prepared, "test", '{"prompt": "changed", "final_answer": "1"}\n')
    refused = cli("upload", "--data", prepared, "--s3", uri)
    assert refused.code == 1 and "exists with different content (size: S3 has" in refused.err
    assert "pass --force to replace it" in refused.err
    forced = cli("upload", "--data", prepared, "--s3", uri, "--force", "--json")
    assert [f["action"] for f in forced.json()["files"]] == ["skipped", "skipped", "replaced", "replaced"]


def test_upload_refuses_files_that_the_manifest_does_not_describe(cli, prepared: Path, bucket: str):
    (prepared / "val" / "dataset.json").write_text('{"prompt": "edited", "final_answer": "1"}\n')
    result = cli("upload", "--data", prepared, "--s3", f"s3://{bucket}/edited")
    assert result.code == 2
    assert result.err.strip() == (
        f"error: {prepared / 'manifest.json'} does not describe {prepared / 'val' / 'dataset.json'} "
        f"(changed since `rlvr prepare`?); prepare {prepared} again before uploading it"
    )
    assert keys(bucket, "edited") == []


def test_upload_large_file_goes_multipart_and_verifies(cli, prepared: Path, bucket: str):
    line = (prepared / "train" / "dataset.json").read_text().splitlines()[0] + "\n"
    big = rewrite_split(prepared, "train", line * (20 * 1024 * 1024 // len(line) + 1))  # > 16 MiB: multipart
    result = cli("upload", "--data", prepared, "--s3", f"s3://{bucket}/big", "--json")
    assert result.code == 0, result.err
    head = boto("s3").head_object(Bucket=bucket, Key="big/train/dataset.json")
    assert head["ContentLength"] == big.stat().st_size
    assert head["Metadata"]["sha256"] == hashlib.sha256(big.read_bytes()).hexdigest()
    # Read back and compared by S3's own record: its SHA-256 of the three 8 MiB parts' SHA-256s.
    train = result.json()["files"][0]
    assert "ChecksumSHA256 (composite of 3 parts)" in train["verified"]
    assert "ETag (MD5 of 3 parts)" in train["verified"]

    again = cli("upload", "--data", prepared, "--s3", f"s3://{bucket}/big", "--json")
    assert [f["action"] for f in again.json()["files"]] == ["skipped"] * 4
    assert "ChecksumSHA256 (composite of 3 parts)" in again.json()["files"][0]["verified"]

    # Someone replaces the object: same size, same metadata, one byte changed in the last part.
    changed = bytearray(big.read_bytes())
    changed[-2] = ord("!")
    other = Path("other.json")
    other.write_bytes(bytes(changed))
    from boto3.s3.transfer import S3Transfer, TransferConfig

    S3Transfer(boto("s3"), TransferConfig(multipart_threshold=16 * 1024 * 1024)).upload_file(
        str(other),
        bucket,
        "big/train/dataset.json",
        extra_args={"ChecksumAlgorithm": "SHA256", "Metadata": {"sha256": train["sha256"]}},
    )
    refused = cli("upload", "--data", prepared, "--s3", f"s3://{bucket}/big")
    assert refused.code == 1, refused.err
    assert "big/train/dataset.json exists with different content (ChecksumSHA256" in refused.err


def test_upload_compares_the_bytes_on_s3_not_only_the_metadata(cli, prepared: Path, bucket: str):
    rel = "test/dataset.json"
    local = (prepared / rel).read_bytes()
    s3 = boto("s3")
    # The metadata claims the local file's SHA-256, but the bytes (same length) are another file's.
    s3.put_object(
        Bucket=bucket,
        Key=f"d/{rel}",
        Body=local[::-1],
        Metadata={"sha256": hashlib.sha256(local).hexdigest()},
    )
    refused = cli("upload", "--data", prepared, "--s3", f"s3://{bucket}/d")
    assert refused.code == 1
    assert f"s3://{bucket}/d/{rel} exists with different content" in refused.err
    assert "Traceback" not in refused.err
    assert s3.get_object(Bucket=bucket, Key=f"d/{rel}")["Body"].read() == local[::-1]  # nothing replaced

    # The same bytes put there by another tool, without rlvr's metadata: identical, so skipped.
    s3.put_object(Bucket=bucket, Key=f"d/{rel}", Body=local)
    result = cli("upload", "--data", prepared, "--s3", f"s3://{bucket}/d", "--json")
    assert result.code == 0, result.err
    item = next(f for f in result.json()["files"] if f["file"].endswith(rel))
    assert item["action"] == "skipped"
    assert item["verified"][0] == "size" and "ETag (MD5)" in item["verified"]


def test_s3_checksums_are_read_as_aws_reports_them(bucket: str, tmp_path: Path):
    """moto leaves out ChecksumType and the "-N" suffix on HeadObject; AWS sends them. Both read right."""
    import zlib

    from boto3.s3.transfer import S3Transfer, TransferConfig

    from rlvr_cli.cloud.sagemaker.s3objects import from_head, head, verify_file

    s3 = boto("s3")
    path = tmp_path / "blob"
    path.write_bytes(bytes(range(256)) * (70 * 1024))  # 17.5 MiB: 8 + 8 + 1.5 MiB parts
    S3Transfer(s3, TransferConfig(multipart_threshold=8 * 1024 * 1024)).upload_file(
        str(path), bucket, "blob", extra_args={"ChecksumAlgorithm": "SHA256"}
    )
    moto_view = head(s3, bucket, "blob")
    assert moto_view.parts == 3 and verify_file(s3, moto_view, path).matches
    response = s3.head_object(Bucket=bucket, Key="blob", ChecksumMode="ENABLED")

    composite = from_head(
        bucket,
        "blob",
        {**response, "ChecksumSHA256": response["ChecksumSHA256"] + "-3", "ChecksumType": "COMPOSITE"},
    )
    assert composite.checksums["SHA256"] == response["ChecksumSHA256"]
    assert verify_file(s3, composite, path).checked == [
        "size",
        "ChecksumSHA256 (composite of 3 parts)",
        "ETag (MD5 of 3 parts)",
    ]

    crc = base64.b64encode(zlib.crc32(path.read_bytes()).to_bytes(4, "big")).decode()
    full = {k: v for k, v in response.items() if k != "ChecksumSHA256"}
    full.update(ChecksumCRC32=crc, ChecksumType="FULL_OBJECT", ServerSideEncryption="aws:kms")
    verification = verify_file(s3, from_head(bucket, "blob", full), path)
    assert verification.checked == ["size", "ChecksumCRC32"]  # under SSE-KMS the ETag is no MD5

    other = tmp_path / "other"
    other.write_bytes(path.read_bytes()[:-1] + b"!")
    assert verify_file(s3, composite, other).mismatch == ("ChecksumSHA256 (composite of 3 parts) differs")


def keys(bucket: str, prefix: str) -> list[str]:
    listed = boto("s3").list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return sorted(o["Key"].removeprefix(prefix) for o in listed)


def submit_from(cli, recipe: Path, uri: str):
    return cli("train", "--remote", "--config", recipe, "--data", uri, "--job-name", "rlvr-from-prefix")


@pytest.mark.parametrize(
    ("size", "operation", "landed"),
    [(1024, "PutObject", ["/train/dataset.json"]), (20 * 1024 * 1024, "UploadPart", [])],
    ids=["PutObject", "multipart"],
)
def test_a_failed_upload_is_one_line_and_leaves_a_prefix_no_job_trains_from(
    cli, prepared: Path, bucket: str, recipe: Path, aws_calls, size: int, operation: str, landed: list[str]
):
    """S3 refuses the second request of the kind (the val file's PutObject; the train file's second
    part): one error line, no manifest, and `train --remote` refuses the prefix."""
    line = (prepared / "train" / "dataset.json").read_text().splitlines()[0] + "\n"
    rewrite_split(prepared, "train", line * (size // len(line) + 1))
    aws_calls.fail(operation, after=1)
    result = cli("upload", "--data", prepared, "--s3", f"s3://{bucket}/denied")
    assert result.code == 1 and "Traceback" not in result.err
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1, result.err
    failed = "val" if operation == "PutObject" else "train"
    assert lines[0].startswith(
        f"error: uploading {prepared / failed / 'dataset.json'} to s3://{bucket}/denied/"
    )
    assert "access denied" in lines[0]
    assert keys(bucket, "denied") == landed  # the manifest never went up
    assert not aws_calls.params("PutObject") or all(
        not p["Key"].endswith("manifest.json") for p in aws_calls.params("PutObject")
    )

    refused = submit_from(cli, recipe, f"s3://{bucket}/denied")
    assert refused.code == 2, refused.err
    assert refused.err.strip() == (
        f"error: s3://{bucket}/denied/manifest.json not found: s3://{bucket}/denied holds no complete "
        f"rlvr upload; run `rlvr upload --data DIR --s3 s3://{bucket}/denied` (again)"
    )
    assert not aws_calls.params("CreateTrainingJob")


def test_the_manifest_goes_last_after_every_file_is_verified(cli, prepared: Path, bucket: str, aws_calls):
    assert cli("upload", "--data", prepared, "--s3", f"s3://{bucket}/order").code == 0
    calls = [(op, p.get("Key", "")) for op, p in aws_calls.sent if op in ("PutObject", "HeadObject")]
    uploads = [key for op, key in calls if op == "PutObject"]
    assert uploads == [
        f"order/{f}" for f in ("train/dataset.json", "val/dataset.json", "test/dataset.json", "manifest.json")
    ]
    # Each data file is read back (HeadObject) after its upload and before the manifest goes.
    manifest_at = calls.index(("PutObject", "order/manifest.json"))
    for split in ("train", "val", "test"):
        key = f"order/{split}/dataset.json"
        assert (
            calls.index(("PutObject", key))
            < calls.index(("HeadObject", key), calls.index(("PutObject", key)))
            < manifest_at
        )


def test_a_forced_replacement_removes_the_old_manifest_first(cli, prepared: Path, bucket: str, aws_calls):
    uri = f"s3://{bucket}/replaced"
    assert cli("upload", "--data", prepared, "--s3", uri).code == 0
    train = prepared / "train" / "dataset.json"
    rewrite_split(prepared, "train", train.read_text().splitlines()[0] + "\n")  # other data
    aws_calls.fail("PutObject")  # the new train file is refused
    result = cli("upload", "--data", prepared, "--s3", uri, "--force")
    assert result.code == 1 and "access denied" in result.err
    assert "/manifest.json" not in keys(bucket, "replaced")  # the old one no longer vouches for the files


def test_submit_refuses_objects_that_disagree_with_the_manifest(
    cli, prepared: Path, bucket: str, recipe: Path, aws_calls
):
    uri = f"s3://{bucket}/mixed"
    assert cli("upload", "--data", prepared, "--s3", uri).code == 0
    boto("s3").put_object(
        Bucket=bucket, Key="mixed/val/dataset.json", Body=b'{"prompt": "x", "final_answer": "1"}\n'
    )
    result = submit_from(cli, recipe, uri)
    assert result.code == 2
    size = len(b'{"prompt": "x", "final_answer": "1"}\n')
    expected = (prepared / "val" / "dataset.json").stat().st_size
    assert result.err.strip() == (
        f"error: {uri}/val/dataset.json disagrees with manifest.json ({size} bytes, the manifest says "
        f"{expected}); run `rlvr upload --data DIR --s3 {uri}` (again)"
    )
    # Same size, other bytes: the SHA-256 decides.
    original = (prepared / "val" / "dataset.json").read_bytes()
    boto("s3").put_object(Bucket=bucket, Key="mixed/val/dataset.json", Body=original[:-2] + b"x\n")
    result = submit_from(cli, recipe, uri)
    assert result.code == 2 and "its SHA-256 differs from the manifest's" in result.err
    assert not aws_calls.params("CreateTrainingJob")
    boto("s3").put_object(Bucket=bucket, Key="mixed/val/dataset.json", Body=original)
    assert submit_from(cli, recipe, uri).code == 0


@pytest.mark.parametrize(
    ("uri", "code", "message"),
    [
        ("s3://no-such-bucket/x", 1, "bucket no-such-bucket does not exist"),
        ("http://rlvr-test/x", 2, "is not an S3 URI; expected s3://bucket/prefix"),
    ],
)
def test_upload_errors(cli, prepared: Path, bucket: str, uri: str, code: int, message: str):
    result = cli("upload", "--data", prepared, "--s3", uri)
    assert result.code == code and message in result.err and "Traceback" not in result.err


def test_upload_without_credentials(cli, prepared: Path, aws: str, monkeypatch: pytest.MonkeyPatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    result = cli("upload", "--data", prepared, "--s3", "s3://rlvr-test/x")
    assert result.code == 1 and "no AWS credentials found" in result.err


def test_upload_needs_prepared_data(cli, tmp_path: Path, aws: str):
    result = cli("upload", "--data", tmp_path / "nothing", "--s3", "s3://rlvr-test/x")
    assert result.code == 1 and "run `rlvr prepare" in result.err


def test_aws_error_lines_name_the_fix():
    import botocore.exceptions

    from rlvr_cli.cloud.sagemaker.client import describe_client_error

    def error(code, headers=None):
        return botocore.exceptions.ClientError(
            {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPHeaders": headers or {}}},
            "Op",
        )

    assert "access denied" in describe_client_error(error("AccessDenied"))
    assert "pass --region eu-west-1" in describe_client_error(
        error("PermanentRedirect", {"x-amz-bucket-region": "eu-west-1"})
    )
    assert "refresh them" in describe_client_error(error("ExpiredToken"))


def test_clients_share_botocore_data_per_data_path_and_honour_aws_data_path(tmp_path: Path, monkeypatch):
    """Clients reuse what botocore parsed (a new loader each time made every client cost ~0.2 s),
    but one per data path: a user's AWS_DATA_PATH models are still read, and SageMaker's trimmed
    model is only SageMaker's."""
    from rlvr_cli.cloud.sagemaker.client import TRIMMED_MODELS, client

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    s3, again = client("s3"), client("s3")
    assert s3._loader is again._loader
    assert client("sts")._loader is s3._loader
    sagemaker = client("sagemaker")
    assert str(TRIMMED_MODELS) in sagemaker._loader.search_paths
    assert str(TRIMMED_MODELS) not in s3._loader.search_paths
    assert len(sagemaker.meta.service_model.operation_names) < 10  # the trimmed model, not botocore's

    own = tmp_path / "models"
    folder = own / "sts" / "2011-06-15"
    folder.mkdir(parents=True)
    model = client("sts")._loader.load_service_model("sts", "service-2")
    model = {**model, "operations": {"GetCallerIdentity": model["operations"]["GetCallerIdentity"]}}
    (folder / "service-2.json").write_text(json.dumps(model), encoding="utf-8")
    monkeypatch.setenv("AWS_DATA_PATH", str(own))
    assert client("sts").meta.service_model.operation_names == ["GetCallerIdentity"]
    assert client("sts")._loader is not s3._loader


# --- submit -------------------------------------------------------------------------------------------


def test_dry_run_prints_the_request_and_calls_nothing(cli, recipe: Path, aws: str):
    result = cli("train", "--remote", "--dry-run", "--config", recipe, "--job-name", "rlvr-dry", "--json")
    assert result.code == 0, result.err
    request = result.json()["request"]
    assert request["TrainingJobName"] == "rlvr-dry"
    assert result.json()["estimate"]["max_cost_on_demand_usd"] == pytest.approx(37.69 * 2, rel=1e-3)
    assert "cost:" in result.err
    assert boto("sagemaker").list_training_jobs()["TrainingJobSummaries"] == []


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--data", "data"],
            "--data data: a SageMaker job reads its data from S3; `rlvr upload --data data` puts it there, "
            "then pass the s3:// URI it prints (or no --data: the last upload)",
        ),
        (
            ["--output", "out", "--resume", "--merge"],
            "--output, --resume, --merge: for training here, not with --remote (a job writes its model "
            "to remote.s3_output and resumes from its own checkpoints); drop them",
        ),
        (["--force"], "--force: for training here, not with --remote"),
        (["--job-name", "bad name!"], "--job-name bad name!: 1-63 letters, digits and hyphens"),
    ],
)
def test_flags_a_job_cannot_honour_are_refused_before_any_call(
    cli, tmp_path: Path, aws: str, aws_calls, flags: list[str], message: str
):
    # No S3 location in the recipe: the default bucket's lookup would be the first call.
    bare = tmp_path / "bare.yaml"
    bare.write_text(f"remote:\n  role_arn: {ROLE}\n  image_uri: {IMAGE}\n")
    result = cli("train", "--remote", "--dry-run", "--config", bare, *flags)
    assert result.code == 2 and "Traceback" not in result.err
    assert result.err.startswith(f"error: {message}")
    assert not aws_calls.sent


def test_submit_sends_exactly_the_dry_run_request(cli, recipe: Path, bucket: str, aws_calls):
    """What rlvr hands botocore (captured before it leaves), not what the emulator echoes back."""
    dry = cli("train", "--remote", "--dry-run", "--config", recipe, "--job-name", "rlvr-job-1").json()
    submitted = cli("train", "--remote", "--config", recipe, "--job-name", "rlvr-job-1")
    assert submitted.code == 0, submitted.err
    (sent,) = aws_calls.params("CreateTrainingJob")
    assert sent == dry  # every member, Environment, MetricDefinitions and tags included
    assert sent["AlgorithmSpecification"]["TrainingImage"] == IMAGE and sent["RoleArn"] == ROLE
    assert sent["ResourceConfig"] == {
        "InstanceType": "ml.p4d.24xlarge",
        "InstanceCount": 1,
        "VolumeSizeInGB": 100,
    }
    assert [
        (c["ChannelName"], c["DataSource"]["S3DataSource"]["S3Uri"]) for c in sent["InputDataConfig"]
    ] == [
        ("train", "s3://rlvr-test/rlvr/data/train/"),
        ("val", "s3://rlvr-test/rlvr/data/val/"),
        ("manifest", "s3://rlvr-test/rlvr/data/manifest.json"),  # the data's task travels with it
    ]
    assert sent["OutputDataConfig"] == {"S3OutputPath": "s3://rlvr-test/rlvr/output"}
    assert sent["StoppingCondition"] == {"MaxRuntimeInSeconds": 7200, "MaxWaitTimeInSeconds": 10800}
    assert sent["EnableManagedSpotTraining"] is True
    assert sent["CheckpointConfig"] == {
        "S3Uri": "s3://rlvr-test/rlvr/checkpoints/rlvr-job-1",
        "LocalPath": "/opt/ml/checkpoints",
    }
    assert json.loads(sent["HyperParameters"]["model_name_or_path"]) == "Qwen/Qwen2.5-0.5B"
    assert "remote" not in sent["HyperParameters"] and "output_dir" not in sent["HyperParameters"]
    tags = {t["Key"]: t["Value"] for t in sent["Tags"]}
    assert tags["team"] == "research" and tags["rlvr:version"] and tags["rlvr:recipe"]
    assert tags["rlvr:data"] == "s3://rlvr-test/rlvr/data"
    assert sent["Environment"] == {
        "MLFLOW_TRACKING_URI": "arn:aws:sagemaker:us-east-1:123456789012:mlflow-tracking-server/rlvr"
    }
    assert [m["Name"] for m in sent["AlgorithmSpecification"]["MetricDefinitions"]][:2] == [
        "reward",
        "reward_std",
    ]


def test_job_names_are_valid_unique_and_derived_from_the_recipe(recipe: Path):
    import re
    from datetime import datetime, timezone

    from rlvr_cli.cloud.sagemaker.request import job_name
    from rlvr_cli.config.loading import load_recipe

    r = load_recipe(
        recipe, ["model_name_or_path=some-org/A.Very_Long.Model-Name-With.Many.Parts-And-More-Words-7B"]
    ).recipe
    a = job_name(r, datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc))
    b = job_name(r, datetime(2026, 1, 2, 3, 4, 6, tzinfo=timezone.utc))
    assert a != b
    assert len(a) <= 63 and re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9])*", a)
    assert a.startswith("rlvr-a-very-long-model") and a.endswith("-20260102-030405")


def test_secrets_never_go_into_the_request(cli, recipe: Path, aws: str):
    result = cli(
        "train", "--remote", "--dry-run", "--config", recipe, "--set", "remote.environment.HF_TOKEN=hf_abc"
    )
    assert (
        result.code == 2 and "looks like a secret" in result.err and "hf_abc" not in result.out + result.err
    )
    ok = cli(
        "train", "--remote", "--dry-run", "--config", recipe, "--set", "remote.hf_token_secret=rlvr/hf-token"
    )
    assert json.loads(ok.out)["Environment"]["RLVR_HF_TOKEN_SECRET"] == "rlvr/hf-token"


def test_a_custom_reward_module_is_not_imported_to_submit(cli, recipe: Path, aws: str):
    """The reward's module may exist only in the training image: validating the recipe for a job
    checks the name's shape, it does not import it."""
    result = cli(
        "train", "--remote", "--dry-run", "--config", recipe, "--set",
        "reward_funcs=[format, correctness, nonexistent_pkg.mod:fn]",
    )  # fmt: skip
    assert result.code == 0, result.err
    sent = json.loads(json.loads(result.out)["HyperParameters"]["reward_funcs"])
    assert sent == ["format", "correctness", "nonexistent_pkg.mod:fn"]


def test_submit_needs_role_image_and_output(cli, tmp_path: Path, aws: str):
    result = cli("train", "--remote", "--dry-run", "--set", "remote.s3_prefix=s3://rlvr-test/x")
    assert result.code == 2 and "needs remote.role_arn, remote.image_uri" in result.err


def test_without_data_in_the_recipe_the_last_upload_is_used_only_said_and_tagged(
    cli, prepared: Path, bucket: str, aws_calls
):
    settings = [
        "--set", f"remote.role_arn={ROLE}", "--set", f"remote.image_uri={IMAGE}",
        "--set", f"remote.s3_output=s3://{bucket}/out",
    ]  # fmt: skip
    nothing = cli("train", "--remote", "--dry-run", *settings)  # no upload yet: SageMaker's default bucket
    assert nothing.code == 0, nothing.err
    default = "s3://sagemaker-us-east-1-123456789012/rlvr/data"
    assert (
        f"note: data: {default}  (the SageMaker default bucket; `rlvr upload` puts it there)" in nothing.err
    )
    assert cli("upload", "--data", prepared, "--s3", f"s3://{bucket}/elsewhere").code == 0
    note = f"note: data: s3://{bucket}/elsewhere  (the last rlvr upload from this machine; --data s3://... to choose)"
    dry = cli("train", "--remote", "--dry-run", *settings, "--json")
    assert dry.code == 0 and note in dry.err
    request = dry.json()["request"]
    assert (
        request["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"]
        == f"s3://{bucket}/elsewhere/train/"
    )
    assert {"Key": "rlvr:data-from", "Value": "last-upload"} in request["Tags"]
    sent = cli("train", "--remote", *settings, "--job-name", "rlvr-last")
    assert sent.code == 0 and note in sent.err
    (created,) = aws_calls.params("CreateTrainingJob")
    tags = {t["Key"]: t["Value"] for t in created["Tags"]}
    assert tags["rlvr:data"] == f"s3://{bucket}/elsewhere" and tags["rlvr:data-from"] == "last-upload"

    # --data names it: no note, no origin tag.
    chosen = cli(
        "train", "--remote", *settings, "--data", f"s3://{bucket}/rlvr/data", "--job-name", "rlvr-chosen"
    )
    assert chosen.code == 0 and "last rlvr upload" not in chosen.err
    created = aws_calls.params("CreateTrainingJob")[-1]
    tags = {t["Key"]: t["Value"] for t in created["Tags"]}
    assert tags["rlvr:data"] == f"s3://{bucket}/rlvr/data" and "rlvr:data-from" not in tags
    local = cli("train", "--data", f"s3://{bucket}/rlvr/data")
    assert local.code == 2 and "add --remote to train there" in local.err


# --- status -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code"),
    [("Completed", 0), ("InProgress", 3), ("Stopping", 3), ("Failed", 4), ("Stopped", 5)],
)
def test_status_exit_codes_follow_the_job_state(
    cli, recipe: Path, bucket: str, job_states, status: str, code: int
):
    assert cli("train", "--remote", "--config", recipe, "--job-name", "rlvr-s").code == 0
    failure = {"FailureReason": "AlgorithmError: CUDA out of memory"} if status == "Failed" else {}
    job_states.set("rlvr-s", status, **failure)
    result = cli("status", "--json")  # the latest job submitted from here
    assert result.code == code
    view = result.json()
    assert (view["job_name"], view["status"], view["exit_code"]) == ("rlvr-s", status, code)
    assert view["instance_type"] == "ml.p4d.24xlarge" and view["transitions"]
    if status == "Failed":
        assert view["failure_reason"] == "AlgorithmError: CUDA out of memory"
    if status == "Completed":
        assert view["model_artifacts"].endswith("/output/model.tar.gz")
    human = cli("status", "rlvr-s")
    assert human.code == code and "next:" in human.err
    if status == "Completed":  # the next step is evaluating the job's model
        assert human.err.strip().splitlines()[-1] == "next: rlvr eval --job rlvr-s --baseline"


def test_an_unknown_job_is_one_error_for_every_command(cli, recipe: Path, bucket: str):
    assert cli("train", "--remote", "--config", recipe, "--job-name", "rlvr-known").code == 0
    known = cli("status", "rlvr-known", "--json").json()
    result = cli("status", "no-such-job", "--json")
    assert result.code == 6
    unknown = result.json()
    assert list(unknown) == list(known)  # one shape for scripts, found or not
    assert (unknown["job_name"], unknown["status"], unknown["exit_code"]) == ("no-such-job", "NotFound", 6)
    line = "error: job no-such-job: no such training job in us-east-1; check the name, --region and --profile"
    for command in (["status"], ["logs", "--no-follow"], ["stop"]):
        other = cli(*command, "no-such-job")
        assert (other.code, other.err.strip()) == (6, line), command


def test_a_name_that_cannot_be_a_job_is_refused_before_any_call(cli, aws: str, aws_calls):
    line = (
        "error: rlvr_job: not a SageMaker job name (1-63 letters, digits and hyphens, starting with a "
        "letter or digit); give a job's name, or none for the last job submitted from here"
    )
    for command in (["status"], ["logs", "--no-follow"], ["stop"], ["eval", "--job"]):
        result = cli(*command, "rlvr_job")
        assert (result.code, result.err.strip()) == (2, line), command
    assert not aws_calls.sent


def test_submit_json_has_one_shape_with_or_without_dry_run(cli, recipe: Path, bucket: str):
    dry = cli("train", "--remote", "--dry-run", "--config", recipe, "--job-name", "rlvr-shape", "--json")
    sent = cli("train", "--remote", "--config", recipe, "--job-name", "rlvr-shape", "--json")
    assert dry.code == sent.code == 0, dry.err + sent.err
    assert list(dry.json()) == list(sent.json()) == ["job_name", "arn", "dry_run", "request", "estimate"]
    assert (dry.json()["dry_run"], dry.json()["arn"]) == (True, None)
    assert sent.json()["dry_run"] is False and sent.json()["arn"].endswith("training-job/rlvr-shape")
    assert dry.json()["request"] == sent.json()["request"]


def test_status_without_any_job(cli, aws: str):
    result = cli("status")
    assert result.code == 2 and "none submitted from here yet" in result.err


# --- logs -----------------------------------------------------------------------------------------------


def put_logs(job: str, events_by_host: dict[str, list[tuple[int, str]]]) -> None:
    logs = boto("logs")
    group = "/aws/sagemaker/TrainingJobs"
    with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
        logs.create_log_group(logGroupName=group)
    for host, events in events_by_host.items():
        stream = f"{job}/{host}-1700000000"
        with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
            logs.create_log_stream(logGroupName=group, logStreamName=stream)
        logs.put_log_events(
            logGroupName=group,
            logStreamName=stream,
            logEvents=[{"timestamp": t, "message": m} for t, m in events],
        )


def test_logs_merge_instances_in_time_order(cli, recipe: Path, bucket: str):
    assert cli("train", "--remote", "--config", recipe, "--job-name", "rlvr-logs").code == 0
    base = int(time.time() * 1000)
    put_logs(
        "rlvr-logs",
        {
            "algo-1": [(base + 0, "a0"), (base + 20, "a2"), (base + 40, "a4")],
            "algo-2": [(base + 10, "b1"), (base + 30, "b3")],
        },
    )
    result = cli("logs", "rlvr-logs", "--no-follow")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert [line.rsplit(" ", 1)[1] for line in lines] == ["a0", "b1", "a2", "b3", "a4"]
    assert lines[0].startswith("[algo-1] ") and lines[1].startswith("[algo-2] ")
    tail = cli("logs", "rlvr-logs", "--no-follow", "--tail", "2")
    assert [line.rsplit(" ", 1)[1] for line in tail.out.splitlines()] == ["b3", "a4"]


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch):
    """`logs` polls on a virtual clock: each test says what happens at which poll."""
    from rlvr_cli.cloud.sagemaker import commands

    from .conftest import VirtualClock

    clock = VirtualClock()
    monkeypatch.setattr(commands, "time", clock)
    return clock


def at_log_polls(aws_calls, actions: dict[int, Callable[[], None]]) -> None:
    """Run actions[n]() just before rlvr's nth read of the job's log streams."""
    aws_calls.before("DescribeLogStreams", lambda n: actions[n]() if n in actions else None)


def test_logs_follow_until_the_job_ends_without_duplicates(
    cli, recipe: Path, bucket: str, aws_calls, job_states, clock
):
    assert cli("train", "--remote", "--config", recipe, "--job-name", "rlvr-follow").code == 0
    # Running for three looks at its state, then failed.
    job_states.set("rlvr-follow", "InProgress", "InProgress", "InProgress", "Failed")
    base = int(time.time() * 1000)
    put_logs("rlvr-follow", {"algo-1": [(base, "first")]})
    at_log_polls(aws_calls, {
        2: lambda: put_logs("rlvr-follow", {"algo-2": [(base + 5, "second")]}),  # a new stream
        3: lambda: put_logs("rlvr-follow", {"algo-1": [(base + 10, "last")]}),
    })  # fmt: skip
    result = cli("logs", "rlvr-follow")  # follows by default
    assert result.code == 4, result.err  # the job's final state decides the exit code
    assert [line.rsplit(" ", 1)[1] for line in result.out.splitlines()] == ["first", "second", "last"]
    assert job_states.described("rlvr-follow") == 4  # it looked until the job ended, no longer


def test_logs_follow_reads_the_lines_that_arrive_after_the_job_ended(
    cli, recipe: Path, bucket: str, aws_calls, job_states, clock
):
    assert cli("train", "--remote", "--config", recipe, "--job-name", "rlvr-late").code == 0
    job_states.set("rlvr-late", "InProgress", "Failed")  # the container exited; its last lines are on the way
    base = int(time.time() * 1000)
    put_logs("rlvr-late", {"algo-1": [(base, "step 1")]})
    at_log_polls(aws_calls, {
        3: lambda: put_logs("rlvr-late", {"algo-1": [(base + 10, "Traceback (most recent call last):")]}),
        5: lambda: put_logs("rlvr-late", {"algo-1": [(base + 20, "RuntimeError: CUDA out of memory")]}),
    })  # fmt: skip
    result = cli("logs", "rlvr-late")
    assert result.code == 4, result.err
    messages = [line.split(" ", 2)[2] for line in result.out.splitlines()]
    assert messages == ["step 1", "Traceback (most recent call last):", "RuntimeError: CUDA out of memory"]
    assert "rlvr-late: Failed" in result.err
    # After the status flipped: polls 3 to 5 every 5 s, the last line at poll 5, then quiet for
    # the settle time (three polls, 15 s): 3 more polls, then it stops.
    assert len(aws_calls.params("DescribeLogStreams")) == 8


def test_logs_follow_stops_waiting_for_late_lines_in_bounded_time(
    cli, recipe: Path, bucket: str, aws_calls, job_states, clock, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("RLVR_LATE_LOG_SECONDS", "60")
    assert cli("train", "--remote", "--config", recipe, "--job-name", "rlvr-chatty").code == 0
    job_states.set("rlvr-chatty", "Completed")
    base = int(time.time() * 1000)

    def chatter(n: int) -> None:  # a stream that never falls quiet: a new line at every poll
        assert n <= 100, "still following the logs after 100 polls"  # fail, rather than hang
        put_logs("rlvr-chatty", {"algo-1": [(base + n, f"line {n}")]})

    aws_calls.before("DescribeLogStreams", chatter)
    start = clock.now
    result = cli("logs", "rlvr-chatty")
    assert result.code == 0, result.err
    # Without the cap it would follow the never-quiet stream forever; with it, 60 s of polls.
    assert clock.now - start == pytest.approx(60)
    assert result.out.count("\n") == len(aws_calls.params("DescribeLogStreams")) == 14


def test_train_remote_wait_follows_the_job_and_exits_with_its_state(
    cli, recipe: Path, bucket: str, aws_calls, job_states, clock
):
    job_states.set(
        "rlvr-wait", "InProgress", "InProgress", "InProgress", "Failed", FailureReason="AlgorithmError: boom"
    )
    base = int(time.time() * 1000)
    at_log_polls(aws_calls, {2: lambda: put_logs("rlvr-wait", {"algo-1": [(base, "step 1")]})})
    result = cli("train", "--remote", "--config", recipe, "--job-name", "rlvr-wait", "--wait")
    assert result.code == 4, result.err  # the job failed
    assert aws_calls.params("CreateTrainingJob")[0]["TrainingJobName"] == "rlvr-wait"
    assert result.out.strip().endswith("step 1") and "rlvr-wait: Failed" in result.err
    assert clock.sleeps  # it waited between looks, on the poll interval


def test_logs_before_any_stream_exists(cli, recipe: Path, bucket: str):
    assert cli("train", "--remote", "--config", recipe, "--job-name", "rlvr-quiet").code == 0
    result = cli("logs", "rlvr-quiet", "--no-follow")
    assert result.code == 0 and result.out == "" and "no log lines yet" in result.err


# --- stop (moto lacks StopTrainingJob: botocore's Stubber plays SageMaker) ---------------------------------


def test_stop_asks_sagemaker_to_stop_the_job(cli, monkeypatch: pytest.MonkeyPatch, aws: str):
    import botocore.session
    from botocore.stub import Stubber

    client = botocore.session.get_session().create_client("sagemaker", region_name=REGION)
    stubber = Stubber(client)
    stubber.add_response(
        "describe_training_job",
        {
            "TrainingJobName": "rlvr-stop",
            "TrainingJobArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:training-job/rlvr-stop",
            "ModelArtifacts": {"S3ModelArtifacts": ""},
            "TrainingJobStatus": "InProgress",
            "SecondaryStatus": "Training",
            "AlgorithmSpecification": {"TrainingInputMode": "File"},
            "ResourceConfig": {"VolumeSizeInGB": 100},
            "StoppingCondition": {},
            "CreationTime": "2026-01-01T00:00:00Z",
        },
        {"TrainingJobName": "rlvr-stop"},
    )
    stubber.add_response("stop_training_job", {}, {"TrainingJobName": "rlvr-stop"})
    stubber.activate()
    monkeypatch.setattr("rlvr_cli.cloud.sagemaker.client.client", lambda service, **kwargs: client)
    result = cli("stop", "rlvr-stop", "--json")
    assert result.code == 0, result.err
    assert result.json() == {"job_name": "rlvr-stop", "status": "Stopping"}
    stubber.assert_no_pending_responses()


def test_stop_refuses_a_finished_job(cli, recipe: Path, bucket: str, job_states):
    assert cli("train", "--remote", "--config", recipe, "--job-name", "rlvr-done").code == 0
    job_states.set("rlvr-done", "Completed")
    result = cli("stop")
    assert result.code == 1 and "is Completed: only an InProgress job can be stopped" in result.err
