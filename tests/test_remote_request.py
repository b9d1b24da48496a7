"""`rlvr train --remote`, the request side: the job trains the recipe, and what AWS (or common sense)
would refuse is refused before any call. AWS is the local moto server; the container entry runs on
the host against a temporary /opt/ml tree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import yaml

from .conftest import REPO

ACCOUNT, REGION = "123456789012", "us-east-1"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/SageMakerRole"
IMAGE = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/rlvr-train:abc123"
MLFLOW = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:mlflow-tracking-server/rlvr"
REFERENCE = REPO / "configs" / "qwen2.5-0.5b-grpo.yaml"
REMOTE = {"role_arn": ROLE, "image_uri": IMAGE, "s3_prefix": "s3://rlvr-test/rlvr"}


def boto(service: str, region: str = REGION):
    import boto3

    return boto3.client(service, region_name=region)


@pytest.fixture
def bucket(aws: str, prepared: Path) -> str:
    """The test bucket, holding a complete `rlvr upload` where the recipes' s3_prefix puts the data."""
    from .conftest import upload_prepared

    boto("s3").create_bucket(Bucket="rlvr-test")
    upload_prepared(prepared, "s3://rlvr-test/rlvr/data")
    return "rlvr-test"


def write_recipe(path: Path, data: dict[str, typing.Any], **remote: typing.Any) -> Path:
    data = {**data, "remote": {**data.get("remote", {}), **REMOTE, **remote}}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def reference(tmp_path: Path) -> Path:
    return write_recipe(tmp_path / "reference.yaml", yaml.safe_load(REFERENCE.read_text()))


def sets(overrides: typing.Iterable[str]) -> list[str]:
    return [arg for item in overrides for arg in ("--set", item)]


def dry_run(cli, recipe: Path, *overrides: str):
    return cli(
        "train",
        "--remote",
        "--dry-run",
        "--config",
        recipe,
        "--job-name",
        "rlvr-dry",
        "--json",
        *sets(overrides),
    )


def errors(result) -> list[str]:
    return [line for line in result.err.splitlines() if line.startswith("error:")]


def no_job_submitted() -> bool:
    return boto("sagemaker").list_training_jobs()["TrainingJobSummaries"] == []


# --- item 1: the job trains the recipe ------------------------------------------------------------------


def nulls_recipe() -> dict[str, typing.Any]:
    """The reference recipe with every key that may be null set to null, where the defaults are not."""
    from rlvr_cli.cloud.sagemaker.request import CONTAINER_KEYS
    from rlvr_cli.config.recipe import Recipe

    data = yaml.safe_load(REFERENCE.read_text())
    for name, info in Recipe.model_fields.items():
        if name not in CONTAINER_KEYS and type(None) in typing.get_args(info.annotation):
            data[name] = None
    return data


def run_entry(root: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "RLVR_SM_ROOT": str(root), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(
        [sys.executable, str(REPO / "container" / "train")],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
    )


@pytest.mark.parametrize("which", ["reference", "nulls"])
def test_the_container_resolves_exactly_the_submitted_recipe(cli, tmp_path: Path, bucket: str, which: str):
    from rlvr_cli.cloud.sagemaker.request import CONTAINER_KEYS
    from rlvr_cli.config.fingerprint import recipe_fingerprint
    from rlvr_cli.config.loading import load_recipe

    data = yaml.safe_load(REFERENCE.read_text()) if which == "reference" else nulls_recipe()
    path = write_recipe(tmp_path / f"{which}.yaml", data)
    local = load_recipe(path).recipe
    if which == "nulls":  # the case that used to fall back to the defaults in the container
        assert local.lora_modules_to_save is None and local.gradient_checkpointing_kwargs is None
    submitted = cli("train", "--remote", "--config", path, "--job-name", f"rlvr-{which}")
    assert submitted.code == 0, submitted.err

    # What SageMaker stored is what the container gets, as /opt/ml/input/config/hyperparameters.json.
    job = boto("sagemaker").describe_training_job(TrainingJobName=f"rlvr-{which}")
    tags = {
        t["Key"]: t["Value"] for t in boto("sagemaker").list_tags(ResourceArn=job["TrainingJobArn"])["Tags"]
    }
    root = tmp_path / "opt_ml"
    (root / "input" / "config").mkdir(parents=True)
    (root / "input" / "config" / "hyperparameters.json").write_text(json.dumps(job["HyperParameters"]))
    (root / "input" / "data" / "val").mkdir(parents=True)
    (root / "input" / "data" / "val" / "dataset.json").write_text("")
    # No train channel: the entry resolves and writes the recipe, then stops before loading a model.
    result = run_entry(root, tmp_path)
    assert result.returncode == 1 and "train set not found" in (root / "output" / "failure").read_text()
    resolved = load_recipe(root / "output" / "data" / "recipe.yaml").recipe

    sent = local.model_dump(mode="json", exclude=CONTAINER_KEYS)
    received = resolved.model_dump(mode="json", exclude=CONTAINER_KEYS)
    assert set(sent) == set(received) and len(sent) > 50
    for key in sent:
        assert received[key] == sent[key], key
    assert tags["rlvr:recipe"] == recipe_fingerprint(resolved) == recipe_fingerprint(local)


def test_explicit_nulls_are_sent_as_null(cli, reference: Path, aws: str):
    request = dry_run(cli, reference, "lora_modules_to_save=null", "tf32=null").json()["request"]
    assert request["HyperParameters"]["lora_modules_to_save"] == "null"
    assert request["HyperParameters"]["tf32"] == "null"
    assert request["HyperParameters"]["tokenizer_name_or_path"] == "null"


# --- item 4: dry-run refuses what AWS would refuse --------------------------------------------------------


def test_dry_run_accepts_the_reference_recipe(cli, reference: Path, aws: str):
    result = dry_run(cli, reference)
    assert result.code == 0, result.err
    assert "buckets' regions are checked on submit" in result.err
    assert no_job_submitted()


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            ["remote.instance_type=ml.p4d.24xlarg"],
            ["remote.instance_type (ResourceConfig.InstanceType): 'ml.p4d.24xlarg' is not one of "
             "SageMaker's values; did you mean ml.p4d.24xlarge"],
        ),
        (
            ["remote.instance_type=ml.p9.huge"],  # passes the recipe's own check (ml.FAMILY.SIZE)
            ["remote.instance_type (ResourceConfig.InstanceType): 'ml.p9.huge' is not one of SageMaker's values"],
        ),
        (
            ["remote.environment.LONG=" + "x" * 513],
            ["remote.environment.LONG (Environment.LONG): is 513 characters; SageMaker allows at most 512"],
        ),
        (
            ["remote.tags.bad!tag=1"],
            ["remote.tags.bad!tag (Tags[4].Key): does not match SageMaker's pattern"],
        ),
        (
            ["remote.tags.team=" + "v" * 257],
            ["remote.tags.team (Tags[4].Value): is 257 characters; SageMaker allows at most 256"],
        ),
        (
            ["remote.tags.aws:owner=me"],
            ["remote.tags.aws:owner (Tags[4].Key): the prefix aws: is reserved for AWS"],
        ),
        (
            ["remote.tags.AWS:owner=me"],
            ["remote.tags.AWS:owner (Tags[4].Key): the prefix aws: is reserved for AWS"],
        ),
        (
            ["remote.tags.rlvr:recipe=mine"],
            ["remote.tags.rlvr:recipe (Tags[4].Key): the tag key appears twice; rlvr sets it"],
        ),
        (
            ["remote.s3_output=s3://rlvr-test/" + "p" * 1010],
            ["remote.s3_output (OutputDataConfig.S3OutputPath): is 1025 characters; SageMaker allows at most 1024"],
        ),
        (
            ["remote.instance_type=ml.p4d.24xlarg", "remote.tags.aws:x=1"],
            ["remote.tags.aws:x (Tags[4].Key): the prefix aws: is reserved",
             "remote.instance_type (ResourceConfig.InstanceType): 'ml.p4d.24xlarg'"],
        ),
    ],
)  # fmt: skip
def test_dry_run_refuses_what_aws_would_refuse(cli, reference: Path, aws: str, overrides, expected):
    result = dry_run(cli, reference, *overrides)
    assert result.code == 2 and result.out == ""
    lines = errors(result)
    assert len(lines) == len(expected), result.err  # one line per problem
    for want in expected:
        assert any(want in line for line in lines), (want, result.err)
    assert "Traceback" not in result.err
    assert no_job_submitted()


LONG_URI = "s3://rlvr-test/" + "p" * 1009  # 1024 characters


@pytest.mark.parametrize(
    ("overrides", "line"),
    [
        (  # the closest three of SageMaker's values, best first
            ["remote.instance_type=ml.p4d.24xlarg"],
            "remote.instance_type (ResourceConfig.InstanceType): 'ml.p4d.24xlarg' is not one of SageMaker's "
            "values; did you mean ml.p4d.24xlarge, ml.p4de.24xlarge, ml.p3dn.24xlarge?",
        ),
        (  # nothing close: no suggestion
            ["remote.instance_type=ml.quantum.q1"],
            "remote.instance_type (ResourceConfig.InstanceType): 'ml.quantum.q1' is not one of SageMaker's values",
        ),
        (
            [f"remote.s3_output={LONG_URI}/o"],
            "remote.s3_output (OutputDataConfig.S3OutputPath): is 1026 characters; SageMaker allows at most 1024",
        ),
        (  # the job's name is appended to the checkpoint location: 1024 + len("/ck/rlvr-dry")
            [f"remote.s3_checkpoints={LONG_URI}/ck"],
            "remote.s3_checkpoints (CheckpointConfig.S3Uri): is 1036 characters; SageMaker allows at most 1024",
        ),
    ],
)
def test_dry_run_error_lines_are_exact(cli, reference: Path, aws: str, overrides: list[str], line: str):
    result = dry_run(cli, reference, *overrides)
    assert result.code == 2
    assert errors(result) == [f"error: {line}"]
    assert no_job_submitted()


def test_too_many_variables_of_the_users_own_name_none_added_by_rlvr(cli, tmp_path: Path, aws: str):
    data = yaml.safe_load(REFERENCE.read_text())
    env = {f"VAR_{i}": "1" for i in range(101)}
    result = dry_run(cli, write_recipe(tmp_path / "env.yaml", data, environment=env))
    assert result.code == 2
    assert errors(result) == [
        "error: remote.environment (Environment): has 101 entries; SageMaker allows at most 100"
    ]


def test_limits_count_what_rlvr_adds(cli, tmp_path: Path, aws: str):
    data = yaml.safe_load(REFERENCE.read_text())
    # 47 tags of the user's + rlvr:version, rlvr:recipe, rlvr:data = 50: accepted; one more is refused.
    fits = write_recipe(tmp_path / "fits.yaml", data, tags={f"t{i}": "v" for i in range(47)})
    assert dry_run(cli, fits).code == 0
    over = write_recipe(tmp_path / "over.yaml", data, tags={f"t{i}": "v" for i in range(48)})
    result = dry_run(cli, over)
    assert result.code == 2
    assert errors(result) == [
        "error: remote.tags (Tags): has 51 entries; SageMaker allows at most 50 "
        "(rlvr adds 3: rlvr:version, rlvr:recipe, rlvr:data)"
    ]
    # 100 variables are SageMaker's limit; with hf_token_secret rlvr adds RLVR_HF_TOKEN_SECRET.
    env = {f"VAR_{i}": "1" for i in range(100)}
    assert dry_run(cli, write_recipe(tmp_path / "env.yaml", data, environment=env)).code == 0
    result = dry_run(
        cli, write_recipe(tmp_path / "env2.yaml", data, environment=env, hf_token_secret="rlvr/hf")
    )
    assert errors(result) == [
        "error: remote.environment (Environment): has 101 entries; SageMaker allows at most 100 "
        "(rlvr adds 1: RLVR_HF_TOKEN_SECRET)"
    ]


def test_unicode_tags_follow_aws_character_set(cli, reference: Path, aws: str):
    result = dry_run(cli, reference, "remote.tags.équipe=Überwachung 42")
    assert result.code == 0, result.err
    assert {"Key": "équipe", "Value": "Überwachung 42"} in result.json()["request"]["Tags"]
    refused = dry_run(cli, reference, "remote.tags.team=a;b")
    assert refused.code == 2 and "remote.tags" in refused.err


def test_the_validator_walks_the_service_model():
    from rlvr_cli.cloud.sagemaker.service_model import validate

    problems = {
        (p.path, p.message)
        for p in validate(
            "CreateTrainingJob",
            {
                "TrainingJobName": "a_b",
                "OutputDataConfig": {},
                "ResourceConfig": {"InstanceType": "ml.g5.xlarge", "InstanceCount": "1", "Oops": 1},
                "VpcConfig": {"Subnets": [], "SecurityGroupIds": ["sg-1"] * 6},
                "RetryStrategy": {"MaximumRetryAttempts": 31},
                "EnableNetworkIsolation": "yes",
            },
        )
    }
    assert problems == {
        (("TrainingJobName",), "does not match SageMaker's pattern [a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}"),
        (("RoleArn",), "is required"),
        (("OutputDataConfig", "S3OutputPath"), "is required"),
        (("ResourceConfig", "InstanceCount"), "expected an integer, got str"),
        (("ResourceConfig", "Oops"), "is not a member of ResourceConfig"),
        (("VpcConfig", "Subnets"), "has 0 entries; SageMaker needs at least 1"),
        (("VpcConfig", "SecurityGroupIds"), "has 6 entries; SageMaker allows at most 5"),
        (("RetryStrategy", "MaximumRetryAttempts"), "is 31; SageMaker allows at most 30"),
        (("EnableNetworkIsolation",), "expected true or false, got str"),
    }


def test_the_validator_names_values_of_the_wrong_kind_and_checks_map_keys():
    from rlvr_cli.cloud.sagemaker.service_model import validate

    def problems(request: dict) -> set:
        return {
            (p.path, p.message) for p in validate("CreateTrainingJob", request) if p.message != "is required"
        }

    assert problems(
        {
            "ResourceConfig": "ml.g5.xlarge",
            "Tags": {"team": "rl"},
            "Environment": ["A=1"],
            "HyperParameters": {f"k{i}": "v" for i in range(101)},
            "InputDataConfig": [{"ChannelName": "train", "ShuffleConfig": {"Seed": "7"}}],
        }
    ) == {
        (("ResourceConfig",), "expected a structure, got str"),
        (("Tags",), "expected a list, got dict"),
        (("Environment",), "expected a map, got list"),
        (("HyperParameters",), "has 101 entries; SageMaker allows at most 100"),
        (("InputDataConfig", 0, "ShuffleConfig", "Seed"), "expected an integer, got str"),  # a long
    }
    assert problems({"Environment": {"A" * 513: "v", "1BAD": "v", "GOOD": "v"}}) == {
        (("Environment", "A" * 513), "is 513 characters; SageMaker allows at most 512"),
        (("Environment", "1BAD"), "does not match SageMaker's pattern [a-zA-Z_][a-zA-Z0-9_]*"),
    }


def test_refusals_count_what_rlvr_adds_to_a_full_list_and_include_the_settings():
    from rlvr_cli.cloud.sagemaker.request_checks import refusals
    from rlvr_cli.config.loading import load_recipe

    tags = [{"Key": f"k{i}", "Value": "v"} for i in range(49)]
    tags += [{"Key": "rlvr:recipe", "Value": "x"}, {"Key": "rlvr:data", "Value": "y"}]
    environment = {**{f"E{i}": "v" for i in range(100)}, "RLVR_HF_TOKEN_SECRET": "hf"}
    recipe = load_recipe(None, ["remote.use_spot=true"]).recipe
    request = {"Tags": tags, "Environment": environment}
    lines = [line for line in refusals(request, recipe) if "is required" not in line]
    assert lines == [
        "remote.tags (Tags): has 51 entries; SageMaker allows at most 50 (rlvr adds 2: rlvr:recipe, rlvr:data)",
        "remote.environment (Environment): has 101 entries; SageMaker allows at most 100 (rlvr adds 1: "
        "RLVR_HF_TOKEN_SECRET)",
        "remote.use_spot: spot training without a checkpoint location starts over after every interruption; "
        "set remote.s3_checkpoints or remote.s3_prefix",
    ]
    # The user's own 51 tags, one with a key too long: named by the recipe's key, nothing said of rlvr's.
    tags = [{"Key": f"k{i}", "Value": "v"} for i in range(50)] + [{"Key": "x" * 129, "Value": "v"}]
    lines = [
        line for line in refusals({"Tags": tags}, load_recipe(None, []).recipe) if "required" not in line
    ]
    assert lines == [
        "remote.tags (Tags): has 51 entries; SageMaker allows at most 50",
        f"remote.tags.{'x' * 129} (Tags[50].Key): is 129 characters; SageMaker allows at most 128",
    ]


def test_every_pattern_of_the_request_is_checked():
    """No pattern reachable from CreateTrainingJob is skipped as untranslatable Java regex."""
    from rlvr_cli.cloud.sagemaker.service_model import python_pattern, service_model

    model = service_model()
    patterns = {s["pattern"] for s in model["shapes"].values() if "pattern" in s}
    assert len(patterns) > 20
    assert [p for p in patterns if python_pattern(p, "x") is None] == []
    tag = model["shapes"]["TagKey"]["pattern"]
    assert python_pattern(tag, "Équipe 42").fullmatch("Équipe 42")
    assert not python_pattern(tag, "a;b").fullmatch("a;b")
    assert not python_pattern(tag, "x\x00").fullmatch("x\x00")


# --- item 5: secrets ---------------------------------------------------------------------------------------

HF = "hf_" + "AbCdEfGhIjKlMnOpQrStUvWxYz01234567"
AKIA = "AKIA" + "ABCDEFGHIJKLMNOP"
GHP = "ghp_" + "a" * 36
PAT = "github_pat_" + "B" * 30


@pytest.mark.parametrize(
    ("override", "secret", "where"),
    [
        ("remote.environment.HF_TOKEN=x", None, "remote.environment.HF_TOKEN (Environment.HF_TOKEN): the name looks like a secret (the word TOKEN)"),
        ("remote.environment.GITHUB_TOKEN=x", None, "the word TOKEN"),
        ("remote.environment.WANDB_API_KEY=x", None, "the word API_KEY"),
        ("remote.environment.DB_PASSWORD=x", None, "the word PASSWORD"),
        ("remote.tags.apiToken=x", None, "remote.tags.apiToken (Tags[4].Key): the tag key looks like a secret (the word TOKEN)"),
        ("remote.tags.hf-token=x", None, "the word TOKEN"),
        (f"remote.environment.HUB={HF}", HF, "remote.environment.HUB (Environment.HUB): holds a Hugging Face token"),
        (f"remote.environment.X={AKIA}", AKIA, "holds an AWS access key id"),
        (f"remote.tags.owner={GHP}", GHP, "remote.tags.owner (Tags[4].Value): holds a GitHub token"),
        (f"remote.environment.X={PAT}", PAT, "holds a GitHub token"),
        ("mlflow_tracking_uri=https://alice:s3cr3t-pw@mlflow.example.com", "s3cr3t-pw",
         "mlflow_tracking_uri (HyperParameters.mlflow_tracking_uri): holds a URL with a password"),
        ("remote.environment.DB=postgresql://u:pw-xyz@db:5432/x", "pw-xyz", "holds a URL with a password"),
        (f"run_name=run-{HF}", HF, "run_name (HyperParameters.run_name): holds a Hugging Face token"),
    ],
)  # fmt: skip
def test_secrets_are_refused_without_echoing_them(cli, reference: Path, aws: str, override, secret, where):
    result = dry_run(cli, reference, override)
    assert result.code == 2 and result.out == ""
    assert any(where in line for line in errors(result)), result.err
    assert "not shown" in result.err or secret is None
    if secret:
        assert secret not in result.err
    assert no_job_submitted()


@pytest.mark.parametrize(
    "override",
    [
        "remote.environment.TOKENIZERS_PARALLELISM=false",
        "remote.environment.HF_HUB_ENABLE_HF_TRANSFER=1",
        "remote.tags.tokenizer=qwen",
        "remote.hf_token_secret=rlvr/hf-token",  # a secret's name, which rlvr sends as RLVR_HF_TOKEN_SECRET
        f"mlflow_tracking_uri={MLFLOW}",
        "mlflow_tracking_uri=https://mlflow.example.com:5000",
    ],
)
def test_names_with_token_inside_a_word_are_fine(cli, reference: Path, aws: str, override: str):
    result = dry_run(cli, reference, override)
    assert result.code == 0, result.err
    # Sent as given: a secret-looking name is not dropped or masked.
    key, value = override.split("=", 1)
    request = result.json()["request"]
    sent = {
        **request.get("Environment", {}),
        **{t["Key"]: t["Value"] for t in request.get("Tags", [])},
        **request.get("HyperParameters", {}),
    }
    name = key.rsplit(".", 1)[-1]
    expected = {
        "hf_token_secret": ("RLVR_HF_TOKEN_SECRET", value),
        "mlflow_tracking_uri": ("mlflow_tracking_uri", json.dumps(value)),  # a hyperparameter, as JSON
    }
    name, value = expected.get(name, (name, value))
    assert sent.get(name) == value, sorted(sent)


# --- item 10: spot without checkpoints, regions ---------------------------------------------------------------


def test_spot_without_a_checkpoint_location_is_refused(cli, tmp_path: Path, aws: str):
    data = yaml.safe_load(REFERENCE.read_text())
    path = tmp_path / "spot.yaml"
    data["remote"] = {
        "role_arn": ROLE,
        "image_uri": IMAGE,
        "s3_data": "s3://rlvr-test/data",
        "s3_output": "s3://rlvr-test/out",
        "use_spot": True,
    }
    path.write_text(yaml.safe_dump(data))
    result = dry_run(cli, path)
    assert result.code == 2
    assert errors(result) == [
        "error: remote.use_spot: spot training without a checkpoint location starts over after every "
        "interruption; set remote.s3_checkpoints or remote.s3_prefix"
    ]
    fixed = dry_run(cli, path, "remote.s3_checkpoints=s3://rlvr-test/ckpt")
    assert fixed.code == 0, fixed.err
    assert fixed.json()["request"]["CheckpointConfig"]["S3Uri"] == "s3://rlvr-test/ckpt/rlvr-dry"
    no_saves = dry_run(cli, path, "remote.s3_checkpoints=s3://rlvr-test/ckpt", "save_strategy=no")
    assert no_saves.code == 2 and "save_strategy 'no' saves no checkpoint" in no_saves.err


def test_an_image_in_another_region_is_refused_before_any_call(cli, reference: Path, bucket: str):
    image = f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/rlvr-train:abc123"
    for extra in ([], ["--dry-run"]):
        result = cli("train", "--remote", *extra, "--config", reference, "--set", f"remote.image_uri={image}")
        assert result.code == 2
        assert errors(result) == [
            "error: remote.image_uri: the image is in eu-west-1, the job in us-east-1; push the image to "
            "us-east-1 (make push with AWS_REGION=us-east-1) or run the job in eu-west-1 (--region)"
        ]
    assert no_job_submitted()


def test_a_bucket_in_another_region_is_refused_on_submit(cli, reference: Path, bucket: str):
    boto("s3", "eu-west-1").create_bucket(
        Bucket="rlvr-eu", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    output = ["--set", "remote.s3_output=s3://rlvr-eu/out"]
    dry = cli("train", "--remote", "--dry-run", "--config", reference, *output)
    assert dry.code == 0 and "buckets' regions are checked on submit" in dry.err  # no S3 call in a dry run
    result = cli("train", "--remote", "--config", reference, *output)
    assert result.code == 2
    assert errors(result) == [
        "error: remote.s3_output: bucket rlvr-eu is in eu-west-1, the job in us-east-1; use a bucket in "
        "us-east-1 or run the job in eu-west-1 (--region)"
    ]
    missing = cli(
        "train", "--remote", "--config", reference, "--set", "remote.s3_output=s3://no-such-bucket/out"
    )
    assert missing.code == 1 and "bucket no-such-bucket does not exist" in missing.err
    assert no_job_submitted()
    assert cli("train", "--remote", "--config", reference, "--job-name", "rlvr-ok").code == 0


def test_region_problems_name_each_location_by_the_key_that_set_it():
    """The image first, then each bucket once, named by the first recipe key that uses it; a bucket
    whose region is unknown (no access to ask) or the job's is no problem."""
    from rlvr_cli.cloud.sagemaker.request_checks import image_region, region_problems

    image = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/rlvr:1"
    request = {
        "AlgorithmSpecification": {"TrainingImage": image},
        "InputDataConfig": [
            {"DataSource": {"S3DataSource": {"S3Uri": f"s3://{name}/data/{c}"}}}
            for name, c in (("shared", "train"), ("other", "val"), ("unknown", "recipe"))
        ],
        "OutputDataConfig": {"S3OutputPath": "s3://shared/out"},
        "CheckpointConfig": {"S3Uri": "s3://ckpt/run"},
    }
    regions = {"shared": "eu-west-1", "other": "us-east-1", "ckpt": "ap-south-1"}
    assert region_problems(request, "us-east-1", regions) == [
        "remote.image_uri: the image is in eu-west-1, the job in us-east-1; push the image to us-east-1 "
        "(make push with AWS_REGION=us-east-1) or run the job in eu-west-1 (--region)",
        "remote.s3_data: bucket shared is in eu-west-1, the job in us-east-1; use a bucket in us-east-1 or "
        "run the job in eu-west-1 (--region)",
        "remote.s3_checkpoints: bucket ckpt is in ap-south-1, the job in us-east-1; use a bucket in "
        "us-east-1 or run the job in ap-south-1 (--region)",
    ]
    del request["CheckpointConfig"]
    assert region_problems(request, "eu-west-1", regions) == [
        "remote.s3_data: bucket other is in us-east-1, the job in eu-west-1; use a bucket in eu-west-1 or "
        "run the job in us-east-1 (--region)"
    ]
    # An output bucket of its own is named by its key; a request without input channels has none.
    own = {"AlgorithmSpecification": {"TrainingImage": "ghcr.io/acme/rlvr:1"}}
    own["OutputDataConfig"] = {"S3OutputPath": "s3://out/x"}
    assert region_problems(own, "us-east-1", {"out": "eu-west-1"}) == [
        "remote.s3_output: bucket out is in eu-west-1, the job in us-east-1; use a bucket in us-east-1 or "
        "run the job in eu-west-1 (--region)"
    ]
    assert image_region("123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com/x:1") == "us-gov-west-1"
    assert image_region("ghcr.io/acme/rlvr:1") is None and image_region("") is None


def test_secret_looking_names_are_found_word_by_word():
    from rlvr_cli.cloud.sagemaker.request_checks import secret_word

    names = ["HF_TOKEN", "hfToken", "db.password", "TOKENIZERS_PARALLELISM", "API_KEY", "SECRET_ACCESS_KEY"]
    names += ["AWS_ACCESS_KEY_ID", "KEY", "MONKEY", "KEYBOARD_LAYOUT"]
    assert [secret_word(n) for n in names] == [
        "TOKEN", "TOKEN", "PASSWORD", None, "API_KEY", "SECRET", "ACCESS_KEY", None, None, None
    ]  # fmt: skip


def test_secrets_in_names_tag_keys_and_values_are_refused_without_the_value():
    from rlvr_cli.cloud.sagemaker.request_checks import SECRETS_FIX, secret_problems

    token = "hf_" + "a1" * 17
    request = {
        "Environment": {
            "RLVR_HF_TOKEN_SECRET": "hf-token",  # rlvr's own: the secret's name, not the secret
            "HF_TOKEN": "x",
            "TOKENIZERS_PARALLELISM": "false",
            "DATABASE_URL": "postgres://rl:pw@db.internal/runs",
        },
        "Tags": [{"Key": "team", "Value": "rl"}, {"Key": "api-token", "Value": "x"}],
        "HyperParameters": {"note": f"use {token}"},
    }
    lines = secret_problems(request)
    assert lines == [
        "remote.environment.HF_TOKEN (Environment.HF_TOKEN): the name looks like a secret (the word TOKEN); "
        + SECRETS_FIX,
        "remote.tags.api-token (Tags[1].Key): the tag key looks like a secret (the word TOKEN); tags are shown "
        "to anyone who can list them; rename the tag",
        "remote.environment.DATABASE_URL (Environment.DATABASE_URL): holds a URL with a password (not shown); "
        + SECRETS_FIX,
        f"note (HyperParameters.note): holds a Hugging Face token (hf_...) (not shown); {SECRETS_FIX}",
    ]
    assert not any(token in line or ":pw@" in line for line in lines)
    assert (
        secret_problems({"Environment": {"TOKENIZERS_PARALLELISM": "false"}, "Tags": [{"Key": "team"}]}) == []
    )
    assert secret_problems({}) == []
    # A value in a list (a tag's): found, and named by the tag.
    assert secret_problems({"Tags": [{"Key": "team", "Value": "rl"}, {"Key": "note", "Value": token}]}) == [
        f"remote.tags.note (Tags[1].Value): holds a Hugging Face token (hf_...) (not shown); {SECRETS_FIX}"
    ]


def test_reserved_and_repeated_tag_keys_are_refused_each_at_its_index():
    from rlvr_cli.cloud.sagemaker.request_checks import tag_problems

    keys = ["AWS:team", "team", "team", "rlvr:recipe", "rlvr:recipe", "aws-team"]
    assert tag_problems({"Tags": [{"Key": k, "Value": "v"} for k in keys]}) == [
        "remote.tags.AWS:team (Tags[0].Key): the prefix aws: is reserved for AWS; rename the tag",
        "remote.tags.team (Tags[2].Key): the tag key appears twice; remove one",
        "remote.tags.rlvr:recipe (Tags[4].Key): the tag key appears twice; rlvr sets it; choose another key",
    ]
    assert tag_problems({}) == []


def test_settings_that_cannot_work_together_are_each_one_line():
    from rlvr_cli.cloud.sagemaker.request_checks import setting_problems
    from rlvr_cli.config.loading import load_recipe

    def problems(request: dict, *overrides: str) -> list[str]:
        return setting_problems(request, load_recipe(None, list(overrides)).recipe)

    isolated = ("remote.enable_network_isolation=true", "report_to=[mlflow]")
    assert problems(
        {},
        "remote.use_spot=true",
        "save_strategy=no",
        "remote.volume_kms_key_id=alias/k",
        "remote.instance_type=ml.p4d.24xlarge",
        "remote.hf_token_secret=hf",
        "mlflow_tracking_uri=https://mlflow.example.com",
        *isolated,
    ) == [
        "remote.use_spot: spot training without a checkpoint location starts over after every interruption; "
        "set remote.s3_checkpoints or remote.s3_prefix",
        "remote.use_spot: save_strategy 'no' saves no checkpoint, so an interruption starts over; set "
        "save_strategy: steps (with save_steps)",
        "remote.volume_kms_key_id: ml.p4d.24xlarge has local NVMe storage, which the instance encrypts itself, "
        "and SageMaker refuses VolumeKmsKeyId for it; remove volume_kms_key_id",
        "remote.hf_token_secret: with enable_network_isolation the container cannot reach Secrets Manager (nor "
        "the Hub); remove one of them",
        "remote.enable_network_isolation: the container cannot reach the MLflow server; drop mlflow_tracking_uri "
        "(the default store is saved with the job's output) or enable_network_isolation",
    ]
    # Each alone, and the same settings where they can work.
    assert problems({"CheckpointConfig": {"S3Uri": "s3://b/c"}}, "remote.use_spot=true") == []
    assert problems({}, "remote.volume_kms_key_id=alias/k", "remote.instance_type=ml.p3.2xlarge") == []
    assert problems({}, "remote.hf_token_secret=hf") == []
    arn = "arn:aws:sagemaker:us-east-1:123456789012:mlflow-tracking-server/x"
    assert len(problems({}, f"remote.environment={{MLFLOW_TRACKING_URI: {arn}}}", *isolated)) == 1
    assert len(problems({}, "mlflow_tracking_uri=http://10.0.0.5:5000", *isolated)) == 1  # plain HTTP too
    assert problems({}, "mlflow_tracking_uri=file:///tmp/mlruns", *isolated) == []
    no_mlflow = (
        "mlflow_tracking_uri=https://mlflow.example.com",
        "remote.enable_network_isolation=true",
        "report_to=none",
    )
    assert problems({}, *no_mlflow) == []


def test_network_isolation_warns_that_a_hub_model_cannot_be_downloaded(reference: Path):
    from rlvr_cli.cloud.sagemaker.request_checks import setting_warnings
    from rlvr_cli.config.loading import load_recipe

    recipe = load_recipe(reference, ["remote.enable_network_isolation=true"]).recipe
    assert setting_warnings(recipe) == [
        f"remote.enable_network_isolation: the container cannot download {recipe.model_name_or_path} from "
        "the Hub; put the model in the image and set model_name_or_path to its path"
    ]
    local = load_recipe(reference, ["remote.enable_network_isolation=true", "model_name_or_path=/opt/model"])
    assert setting_warnings(local.recipe) == []
    assert setting_warnings(load_recipe(reference).recipe) == []


# --- power-user settings ------------------------------------------------------------------------------------


POWER = [
    "remote.instance_type=ml.p3.2xlarge",  # no local NVMe: a volume KMS key is allowed
    "remote.instance_count=2",
    "remote.subnets=[subnet-0123abcd, subnet-4567ef01]",
    "remote.security_group_ids=[sg-0123abcd]",
    "remote.volume_kms_key_id=arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    "remote.output_kms_key_id=alias/rlvr-output",
    "remote.enable_network_isolation=true",
    "remote.encrypt_inter_container_traffic=true",
    "remote.keep_alive_seconds=1800",
    "remote.max_pending_seconds=7200",
    "remote.max_retry_attempts=3",
    f"remote.training_plan_arn=arn:aws:sagemaker:{REGION}:{ACCOUNT}:training-plan/rlvr-plan",
]


def test_power_user_settings_reach_the_request(cli, reference: Path, bucket: str):
    dry = dry_run(cli, reference, *POWER)
    assert dry.code == 0, dry.err
    request = dry.json()["request"]
    assert request["VpcConfig"] == {
        "Subnets": ["subnet-0123abcd", "subnet-4567ef01"],
        "SecurityGroupIds": ["sg-0123abcd"],
    }
    assert request["ResourceConfig"] == {
        "InstanceType": "ml.p3.2xlarge",
        "InstanceCount": 2,
        "VolumeSizeInGB": 100,
        "VolumeKmsKeyId": "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        "KeepAlivePeriodInSeconds": 1800,
        "TrainingPlanArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:training-plan/rlvr-plan",
    }
    assert request["OutputDataConfig"]["KmsKeyId"] == "alias/rlvr-output"
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 86400, "MaxPendingTimeInSeconds": 7200}
    assert request["RetryStrategy"] == {"MaximumRetryAttempts": 3}
    assert (
        request["EnableNetworkIsolation"] is True and request["EnableInterContainerTrafficEncryption"] is True
    )
    assert "cannot download Qwen/Qwen2.5-0.5B from the Hub" in dry.err  # network isolation's consequence

    # The warm pool's cost: keep_alive x price x count, as an upper bound, in the cost line.
    estimate = dry.json()["estimate"]
    assert estimate["max_warm_pool_cost_usd"] == pytest.approx(0.5 * 3.825 * 2, abs=0.01)
    assert "warm pool up to $3.83" in dry.err and "as of 2025" in dry.err

    submitted = cli("train", "--remote", "--config", reference, "--job-name", "rlvr-power", *sets(POWER))
    assert submitted.code == 0, submitted.err
    job = boto("sagemaker").describe_training_job(TrainingJobName="rlvr-power")
    assert job["ResourceConfig"] == request["ResourceConfig"]
    assert job["VpcConfig"] == request["VpcConfig"]
    assert job["StoppingCondition"] == request["StoppingCondition"]
    assert job["OutputDataConfig"]["KmsKeyId"] == "alias/rlvr-output"
    assert job["EnableNetworkIsolation"] is True and job["EnableInterContainerTrafficEncryption"] is True


def test_a_managed_mlflow_arn_goes_into_mlflow_config(cli, reference: Path, aws: str):
    request = dry_run(cli, reference, f"mlflow_tracking_uri={MLFLOW}", "run_name=exp-1").json()["request"]
    assert request["MlflowConfig"] == {
        "MlflowResourceArn": MLFLOW,
        "MlflowExperimentName": "rlvr",
        "MlflowRunName": "exp-1",
    }
    assert json.loads(request["HyperParameters"]["mlflow_tracking_uri"]) == MLFLOW
    no_mlflow = dry_run(cli, reference, f"mlflow_tracking_uri={MLFLOW}", "report_to=none").json()["request"]
    assert "MlflowConfig" not in no_mlflow
    assert "MlflowConfig" not in dry_run(cli, reference).json()["request"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["remote.subnets=[subnet-0123abcd]"], "remote: a VPC needs both subnets and security_group_ids: subnets is set, add security_group_ids"),
        (["remote.security_group_ids=[sg-0123abcd]"], "a VPC needs both subnets and security_group_ids: security_group_ids is set, add subnets"),
        (["remote.subnets=[subnet-xyz]", "remote.security_group_ids=[sg-0123abcd]"], "--set remote.subnets: not subnet ids (subnet-0123abcd...): subnet-xyz"),
        (["remote.keep_alive_seconds=21601"], "--set remote.keep_alive_seconds: Input should be less than or equal to 21600"),
        (["remote.max_pending_seconds=60"], "--set remote.max_pending_seconds: Input should be greater than or equal to 1800"),
        (["remote.max_retry_attempts=31"], "--set remote.max_retry_attempts: Input should be less than or equal to 30"),
        (["remote.volume_kms_key_id=my key"], "--set remote.volume_kms_key_id: must be a KMS key id"),
        (["remote.training_plan_arn=plan-1"], "--set remote.training_plan_arn: must look like arn:aws:sagemaker:REGION:ACCOUNT:training-plan/NAME"),
        (["remote.enable_network_isolation=maybe"], "--set remote.enable_network_isolation: Input should be a valid boolean"),
    ],
)  # fmt: skip
def test_power_user_settings_are_checked_in_the_recipe(cli, reference: Path, overrides, message: str):
    result = cli("validate", reference, *sets(overrides))
    assert result.code == 2
    lines = errors(result)
    assert len(lines) == 1 and message in lines[0], result.err


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["remote.volume_kms_key_id=alias/ebs"], "remote.volume_kms_key_id: ml.p4d.24xlarge has local NVMe storage"),
        (["remote.enable_network_isolation=true", "remote.hf_token_secret=rlvr/hf"], "remote.hf_token_secret: with enable_network_isolation the container cannot reach Secrets Manager"),
        (["remote.enable_network_isolation=true", f"mlflow_tracking_uri={MLFLOW}"], "the container cannot reach the MLflow server"),
    ],
)  # fmt: skip
def test_settings_that_cannot_work_are_refused(cli, reference: Path, aws: str, overrides, message: str):
    result = dry_run(cli, reference, *overrides)
    assert result.code == 2 and any(message in line for line in errors(result)), result.err
