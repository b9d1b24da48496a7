"""SageMaker's own defaults, as the SageMaker SDK applies them: the account's default bucket when no
S3 location is given anywhere, and the admin's and user's config files under the recipe."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ACCOUNT, REGION = "123456789012", "us-east-1"  # moto's account
BUCKET = f"sagemaker-{REGION}-{ACCOUNT}"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/SageMakerRole"
IMAGE = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/rlvr-train:abc123"


def s3():
    import boto3

    return boto3.client("s3", region_name=REGION)


def write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_with_no_s3_location_anywhere_the_default_bucket_is_created_once_and_used(
    cli, prepared: Path, tmp_path: Path, aws: str, aws_calls
):
    recipe = write(tmp_path / "r.yaml", {"remote": {"role_arn": ROLE, "image_uri": IMAGE}})
    dry = cli("train", "--remote", "--dry-run", "--config", recipe, "--json")
    assert dry.code == 0, dry.err
    assert f"note: the SageMaker default bucket {BUCKET} does not exist yet: submitting creates it" in dry.err
    assert dry.json()["request"]["OutputDataConfig"]["S3OutputPath"] == f"s3://{BUCKET}/rlvr/output"
    assert not aws_calls.params("CreateBucket")

    first = cli("upload", "--data", prepared, "--json")
    assert first.code == 0, first.err
    assert (
        f"note: created the SageMaker default bucket {BUCKET} ({REGION}, public access blocked)" in first.err
    )
    assert first.json()["s3_uri"] == f"s3://{BUCKET}/rlvr/data"
    blocked = s3().get_public_access_block(Bucket=BUCKET)["PublicAccessBlockConfiguration"]
    assert all(blocked.values()) and len(blocked) == 4
    again = cli("upload", "--data", prepared)
    assert again.code == 0 and f"note: using the SageMaker default bucket {BUCKET}" in again.err
    assert len(aws_calls.params("CreateBucket")) == 1

    sent = cli("train", "--remote", "--config", recipe, "--job-name", "rlvr-default-bucket", "--json")
    assert sent.code == 0, sent.err
    (request,) = aws_calls.params("CreateTrainingJob")
    assert request["OutputDataConfig"]["S3OutputPath"] == f"s3://{BUCKET}/rlvr/output"
    assert request["CheckpointConfig"]["S3Uri"] == f"s3://{BUCKET}/rlvr/checkpoints/rlvr-default-bucket"
    assert (
        request["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"]
        == f"s3://{BUCKET}/rlvr/data/train/"
    )


def test_a_mistyped_data_directory_creates_no_default_bucket(cli, tmp_path: Path, aws: str, aws_calls):
    result = cli("upload", "--data", tmp_path / "dta")
    assert result.code == 1 and "run `rlvr prepare --output" in result.err
    assert not aws_calls.sent  # not even the account was looked up


def test_files_edited_since_prepare_create_no_default_bucket(cli, prepared: Path, aws: str, aws_calls):
    train = prepared / "train" / "dataset.json"
    train.write_text(train.read_text() + train.read_text().splitlines()[0] + "\n")
    result = cli("upload", "--data", prepared)
    assert result.code == 2 and f"does not describe {train}" in result.err
    assert not aws_calls.sent  # not even the account was looked up


def test_a_default_bucket_of_another_account_is_one_line(
    cli, prepared: Path, aws: str, monkeypatch: pytest.MonkeyPatch, aws_calls
):
    aws_calls.fail("HeadBucket", code="403", status=403)
    result = cli("upload", "--data", prepared)
    assert result.code == 1 and result.err.strip() == (
        f"error: the SageMaker default bucket {BUCKET} exists but is not this account's, or is not readable "
        "with these credentials; set remote.s3_prefix (or pass --s3 / --data)"
    )


@pytest.fixture
def config_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    admin, user = tmp_path / "admin", tmp_path / "user"
    admin.mkdir()
    user.mkdir()
    monkeypatch.setenv("SAGEMAKER_ADMIN_CONFIG_OVERRIDE", str(admin))  # a directory holding config.yaml
    monkeypatch.setenv("SAGEMAKER_USER_CONFIG_OVERRIDE", str(user / "config.yaml"))
    return admin / "config.yaml", user / "config.yaml"


def sagemaker_config(path: Path, training_job: dict, **session: str) -> Path:
    data: dict = {"SchemaVersion": "1.0", "SageMaker": {"TrainingJob": training_job}}
    if session:
        data["SageMaker"]["PythonSDK"] = {"Modules": {"Session": session}}
    return write(path, data)


def test_config_files_fill_what_the_recipe_leaves_unset_user_over_admin_recipe_over_both(
    cli, tmp_path: Path, config_files: tuple[Path, Path], aws: str
):
    admin, user = config_files
    sagemaker_config(
        admin,
        {
            "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/AdminRole",
            "VpcConfig": {"SecurityGroupIds": ["sg-0123abcd"], "Subnets": ["subnet-0123abcd"]},
            "OutputDataConfig": {"KmsKeyId": "alias/admin-output"},
            "EnableNetworkIsolation": False,
            "Tags": [{"Key": "cost-center", "Value": "42"}, {"Key": "team", "Value": "admin"}],
        },
        DefaultS3Bucket="shared-bucket",
        DefaultS3ObjectKeyPrefix="ml",
    )
    sagemaker_config(user, {"RoleArn": ROLE, "Tags": [{"Key": "owner", "Value": "me"}]})
    recipe = write(tmp_path / "r.yaml", {"remote": {"image_uri": IMAGE, "tags": {"team": "research"}}})
    dry = cli("train", "--remote", "--dry-run", "--config", recipe, "--data", "s3://data-bucket/d", "--json")
    assert dry.code == 0, dry.err
    request = dry.json()["request"]
    assert request["RoleArn"] == ROLE  # the user's file over the admin's
    assert request["VpcConfig"] == {"SecurityGroupIds": ["sg-0123abcd"], "Subnets": ["subnet-0123abcd"]}
    assert request["OutputDataConfig"] == {
        "S3OutputPath": "s3://shared-bucket/ml/rlvr/output",
        "KmsKeyId": "alias/admin-output",
    }
    tags = {t["Key"]: t["Value"] for t in request["Tags"]}
    assert (tags["team"], tags["owner"], tags["cost-center"]) == ("research", "me", "42")  # the recipe wins
    for line in (
        f"note: remote.role_arn: from {user} (SageMaker.TrainingJob.RoleArn)",
        f"note: remote.subnets: from {admin} (SageMaker.TrainingJob.VpcConfig.Subnets)",
        f"note: remote.s3_prefix: from {admin} (SageMaker.PythonSDK.Modules.Session.DefaultS3Bucket)",
    ):
        assert line in dry.err, line

    # The recipe over both files.
    own = cli(
        "train", "--remote", "--dry-run", "--config", recipe, "--data", "s3://data-bucket/d", "--json",
        "--set", f"remote.role_arn=arn:aws:iam::{ACCOUNT}:role/Mine", "--set", "remote.s3_prefix=s3://mine/x",
    )  # fmt: skip
    assert own.code == 0, own.err
    assert own.json()["request"]["RoleArn"].endswith("role/Mine")
    assert own.json()["request"]["OutputDataConfig"]["S3OutputPath"] == "s3://mine/x/output"
    assert "remote.role_arn: from" not in own.err


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("SageMaker: [unclosed\n", "not valid YAML"),
        (
            "SageMaker: {TrainingJob: {RoleArn: x}}\n",
            "not a SageMaker config file (it needs SchemaVersion: '1.0'",
        ),
        (
            "SchemaVersion: '1.0'\nSageMaker: {TrainingJob: {Tags: {team: x}}}\n",
            "Tags must be a list of {Key, Value}",
        ),
    ],
)
def test_a_malformed_config_file_is_one_line_naming_it(
    cli, tmp_path: Path, config_files: tuple[Path, Path], content: str, problem: str
):
    _, user = config_files
    user.write_text(content)
    result = cli("validate", write(tmp_path / "r.yaml", {"model_name_or_path": "m"}))
    assert result.code == 2 and "Traceback" not in result.err
    (line,) = result.err.strip().splitlines()
    assert line.startswith(f"error: {user}: ") and problem in line


def test_upload_and_train_remote_find_the_config_files_bucket_without_a_recipe_location(
    cli, prepared: Path, tmp_path: Path, config_files: tuple[Path, Path], aws: str, aws_calls
):
    # A team's DefaultS3Bucket: `rlvr upload` with no --s3 or --config puts the data where
    # `train --remote` will look for it, not in the account's default bucket.
    _, user = config_files
    sagemaker_config(user, {"RoleArn": ROLE}, DefaultS3Bucket="team-bucket", DefaultS3ObjectKeyPrefix="ml")
    s3().create_bucket(Bucket="team-bucket")
    uploaded = cli("upload", "--data", prepared, "--json")
    assert uploaded.code == 0, uploaded.err
    assert uploaded.json()["s3_uri"] == "s3://team-bucket/ml/rlvr/data"
    assert f"note: data: s3://team-bucket/ml/rlvr/data  (from {user} (SageMaker.PythonSDK" in uploaded.err
    assert BUCKET not in {b["Name"] for b in s3().list_buckets()["Buckets"]}

    recipe = write(tmp_path / "r.yaml", {"remote": {"image_uri": IMAGE}})
    sent = cli("train", "--remote", "--config", recipe, "--job-name", "rlvr-team-bucket", "--json")
    assert sent.code == 0, sent.err
    (request,) = aws_calls.params("CreateTrainingJob")
    channel = request["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"]
    assert channel == "s3://team-bucket/ml/rlvr/data/train/"
    assert request["OutputDataConfig"]["S3OutputPath"] == "s3://team-bucket/ml/rlvr/output"
