"""SageMaker and S3 against a local moto server: upload, submit, status, logs, stop."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import threading
import time
from pathlib import Path

import pytest

ACCOUNT, REGION = "123456789012", "us-east-1"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/SageMakerRole"
IMAGE = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/rlvr-train:abc123"


def boto(service: str):
    import boto3

    return boto3.client(service, region_name=REGION)


@pytest.fixture
def bucket(aws: str) -> str:
    boto("s3").create_bucket(Bucket="rlvr-test")
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


def sagemaker_job(name: str):
    from moto.sagemaker.models import sagemaker_backends

    return sagemaker_backends[ACCOUNT][REGION].training_jobs[name]


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
    (prepared / "test" / "dataset.json").write_text('{"prompt": "changed", "final_answer": "1"}\n')
    refused = cli("upload", "--data", prepared, "--s3", uri)
    assert refused.code == 1 and "exists with different content; pass --force" in refused.err
    forced = cli("upload", "--data", prepared, "--s3", uri, "--force", "--json")
    assert [f["action"] for f in forced.json()["files"]] == ["skipped", "skipped", "replaced", "skipped"]


def test_upload_large_file_goes_multipart_and_verifies(cli, prepared: Path, bucket: str):
    big = prepared / "train" / "dataset.json"
    line = big.read_text().splitlines()[0] + "\n"
    big.write_text(line * (20 * 1024 * 1024 // len(line) + 1))  # > 16 MiB: multipart
    result = cli("upload", "--data", prepared, "--s3", f"s3://{bucket}/big", "--json")
    assert result.code == 0, result.err
    head = boto("s3").head_object(Bucket=bucket, Key="big/train/dataset.json")
    assert head["ContentLength"] == big.stat().st_size
    assert head["Metadata"]["sha256"] == hashlib.sha256(big.read_bytes()).hexdigest()


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

    from rlvr_cli.aws import describe_client_error

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


# --- submit -------------------------------------------------------------------------------------------


def test_dry_run_prints_the_request_and_calls_nothing(cli, recipe: Path, aws: str):
    result = cli("train", "--remote", "--dry-run", "--config", recipe, "--job-name", "rlvr-dry", "--json")
    assert result.code == 0, result.err
    request = result.json()["request"]
    assert request["TrainingJobName"] == "rlvr-dry"
    assert result.json()["estimate"]["max_cost_on_demand_usd"] == pytest.approx(37.69 * 2, rel=1e-3)
    assert "cost:" in result.err
    assert boto("sagemaker").list_training_jobs()["TrainingJobSummaries"] == []


def test_submit_sends_exactly_the_dry_run_request(cli, recipe: Path, bucket: str):
    dry = cli("train", "--remote", "--dry-run", "--config", recipe, "--job-name", "rlvr-job-1").json()
    submitted = cli("train", "--remote", "--config", recipe, "--job-name", "rlvr-job-1")
    assert submitted.code == 0, submitted.err
    job = boto("sagemaker").describe_training_job(TrainingJobName="rlvr-job-1")
    assert (
        job["AlgorithmSpecification"]["TrainingImage"]
        == dry["AlgorithmSpecification"]["TrainingImage"]
        == IMAGE
    )
    assert job["RoleArn"] == dry["RoleArn"] == ROLE
    assert (
        job["ResourceConfig"]
        == dry["ResourceConfig"]
        == {
            "InstanceType": "ml.p4d.24xlarge",
            "InstanceCount": 1,
            "VolumeSizeInGB": 100,
        }
    )
    assert job["InputDataConfig"] == dry["InputDataConfig"]
    assert [c["DataSource"]["S3DataSource"]["S3Uri"] for c in job["InputDataConfig"]] == [
        "s3://rlvr-test/rlvr/data/train/",
        "s3://rlvr-test/rlvr/data/val/",
    ]
    assert job["OutputDataConfig"]["S3OutputPath"] == "s3://rlvr-test/rlvr/output"
    assert (
        job["StoppingCondition"]
        == dry["StoppingCondition"]
        == {"MaxRuntimeInSeconds": 7200, "MaxWaitTimeInSeconds": 10800}
    )
    assert job["EnableManagedSpotTraining"] is True
    assert job["CheckpointConfig"] == {
        "S3Uri": "s3://rlvr-test/rlvr/checkpoints/rlvr-job-1",
        "LocalPath": "/opt/ml/checkpoints",
    }
    assert job["HyperParameters"] == dry["HyperParameters"]
    assert json.loads(job["HyperParameters"]["model_name_or_path"]) == "Qwen/Qwen2.5-0.5B"
    assert "remote" not in job["HyperParameters"] and "output_dir" not in job["HyperParameters"]
    tags = {
        t["Key"]: t["Value"] for t in boto("sagemaker").list_tags(ResourceArn=job["TrainingJobArn"])["Tags"]
    }
    assert tags["team"] == "research" and tags["rlvr:version"] and tags["rlvr:recipe"]
    assert dry["Environment"] == {
        "MLFLOW_TRACKING_URI": "arn:aws:sagemaker:us-east-1:123456789012:mlflow-tracking-server/rlvr"
    }


def test_job_names_are_valid_unique_and_derived_from_the_recipe(recipe: Path):
    import re
    from datetime import datetime, timezone

    from rlvr_cli.config import load_recipe
    from rlvr_cli.sagemaker_jobs import job_name

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


def test_submit_needs_role_image_and_output(cli, tmp_path: Path, aws: str):
    result = cli("train", "--remote", "--dry-run", "--set", "remote.s3_prefix=s3://rlvr-test/x")
    assert result.code == 2 and "needs remote.role_arn, remote.image_uri" in result.err


def test_submit_uses_the_last_upload_when_the_recipe_has_no_prefix(
    cli, prepared: Path, bucket: str, tmp_path: Path
):
    assert cli("upload", "--data", prepared, "--s3", f"s3://{bucket}/elsewhere").code == 0
    result = cli(
        "train",
        "--remote",
        "--dry-run",
        "--set",
        f"remote.role_arn={ROLE}",
        "--set",
        f"remote.image_uri={IMAGE}",
        "--set",
        f"remote.s3_output=s3://{bucket}/out",
    )
    assert (
        json.loads(result.out)["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"]
        == f"s3://{bucket}/elsewhere/train/"
    )


# --- status -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code"),
    [("Completed", 0), ("InProgress", 3), ("Stopping", 3), ("Failed", 4), ("Stopped", 5)],
)
def test_status_exit_codes_follow_the_job_state(cli, recipe: Path, bucket: str, status: str, code: int):
    assert cli("train", "--remote", "--config", recipe, "--job-name", "rlvr-s").code == 0
    job = sagemaker_job("rlvr-s")
    job.training_job_status = status
    if status == "Failed":
        job.failure_reason = "AlgorithmError: CUDA out of memory"
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


def test_status_of_an_unknown_job(cli, aws: str):
    result = cli("status", "no-such-job", "--json")
    assert result.code == 6 and result.json()["status"] == "NotFound"


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


def test_logs_follow_until_the_job_ends_without_duplicates(
    cli, recipe: Path, bucket: str, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("RLVR_POLL_SECONDS", "0.2")
    assert cli("train", "--remote", "--config", recipe, "--job-name", "rlvr-follow").code == 0
    job = sagemaker_job("rlvr-follow")
    job.training_job_status = "InProgress"
    base = int(time.time() * 1000)
    put_logs("rlvr-follow", {"algo-1": [(base, "first")]})

    def later():
        time.sleep(1.0)
        put_logs("rlvr-follow", {"algo-2": [(base + 5, "second")]})  # a stream that did not exist before
        time.sleep(0.6)
        put_logs("rlvr-follow", {"algo-1": [(base + 10, "last")]})
        job.training_job_status = "Failed"

    thread = threading.Thread(target=later)
    thread.start()
    result = cli("logs", "rlvr-follow")  # follows by default
    thread.join()
    assert result.code == 4  # the job's final state decides the exit code
    assert [line.rsplit(" ", 1)[1] for line in result.out.splitlines()] == ["first", "second", "last"]


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
    monkeypatch.setattr("rlvr_cli.aws.client", lambda service, **kwargs: client)
    result = cli("stop", "rlvr-stop", "--json")
    assert result.code == 0, result.err
    assert result.json() == {"job_name": "rlvr-stop", "status": "Stopping"}
    stubber.assert_no_pending_responses()


def test_stop_refuses_a_finished_job(cli, recipe: Path, bucket: str):
    assert cli("train", "--remote", "--config", recipe, "--job-name", "rlvr-done").code == 0
    result = cli("stop")
    assert result.code == 1 and "is Completed: only an InProgress job can be stopped" in result.err
