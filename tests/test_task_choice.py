"""One rule decides a run's task from the prepared data's manifest and the recipe
(`rlvr_cli.data.task_choice`): the same for local training, the SageMaker job (at submit and in the
container, which reads the manifest from its own channel) and evaluation."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from .conftest import upload_prepared

REGION, ACCOUNT = "us-east-1", "123456789012"
MISMATCH = "the recipe's task is gsm8k but {data} was prepared for reasoning-gym; prepare the data with --task gsm8k, or drop `task` from the recipe"


@pytest.fixture
def chain_sum(cli, tmp_path: Path) -> Path:
    data = tmp_path / "rg"
    result = cli(
        "prepare", "--source", "reasoning-gym:chain_sum", "--option", "max_digits=1",
        "--size", "60", "--shots", "1", "--output", data,
    )  # fmt: skip
    assert result.code == 0, result.err
    return data


def recipe(tmp_path: Path, data: Path, **extra: object) -> Path:
    import yaml

    path = tmp_path / "r.yaml"
    remote = {
        "role_arn": f"arn:aws:iam::{ACCOUNT}:role/R",
        "image_uri": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/rlvr:1",
        "s3_prefix": "s3://rlvr-task/rlvr",
    }
    body = {"train_dataset_path": str(data / "train" / "dataset.json"), "remote": remote, **extra}
    path.write_text(yaml.safe_dump(body))
    return path


def train_task(recipe_path: Path, train_file: Path):
    from rlvr_cli.config.loading import load_recipe
    from rlvr_cli.training.run import resolve_task

    return resolve_task(load_recipe(recipe_path).recipe, train_file)


def test_the_data_names_the_task_for_every_caller(cli, chain_sum: Path, tmp_path: Path, aws: str):
    import boto3

    expected = {"name": "reasoning-gym", "options": {"dataset": "chain_sum", "max_digits": 1}}
    path = recipe(tmp_path, chain_sum)
    # Local training.
    assert train_task(path, chain_sum / "train" / "dataset.json").describe() == expected
    # The container: the channels as SageMaker lays them out, the manifest in its own.
    channels = tmp_path / "opt_ml" / "input" / "data"
    for split in ("train", "val"):
        shutil.copytree(chain_sum / split, channels / split)
    (channels / "manifest").mkdir()
    shutil.copy(chain_sum / "manifest.json", channels / "manifest" / "manifest.json")
    assert train_task(path, channels / "train" / "dataset.json").describe() == expected
    # Evaluation.
    from rlvr_cli.evaluation.problems import load_problems

    assert load_problems(str(chain_sum), None).task.describe() == expected
    # The job: submitted as the recipe says (no task smuggled into it); the manifest is a channel.
    boto3.client("s3", region_name=REGION).create_bucket(Bucket="rlvr-task")
    upload_prepared(chain_sum, "s3://rlvr-task/rlvr/data")
    sent = cli("train", "--remote", "--config", path, "--json")
    assert sent.code == 0, sent.err
    request = sent.json()["request"]
    assert request["HyperParameters"]["task"] == "null"
    assert request["InputDataConfig"][-1]["ChannelName"] == "manifest"


def test_a_recipe_that_contradicts_the_data_is_refused_by_every_caller(
    cli, chain_sum: Path, tmp_path: Path, aws: str
):
    import boto3

    from rlvr_cli.core.errors import UsageError

    path = recipe(tmp_path, chain_sum, task="gsm8k")
    with pytest.raises(UsageError) as local:
        train_task(path, chain_sum / "train" / "dataset.json")
    assert str(local.value) == MISMATCH.format(data=chain_sum)
    trained = cli("train", "--config", path)
    assert trained.code == 2 and trained.err.strip().endswith(MISMATCH.format(data=chain_sum))

    boto3.client("s3", region_name=REGION).create_bucket(Bucket="rlvr-task")
    upload_prepared(chain_sum, "s3://rlvr-task/rlvr/data")
    for args in (["--dry-run"], []):  # the local manifest on a dry run, the uploaded one on submit
        refused = cli("train", "--remote", "--config", path, *args)
        data = chain_sum if args else "s3://rlvr-task/rlvr/data"
        assert refused.code == 2 and refused.err.strip() == f"error: {MISMATCH.format(data=data)}", args
    assert boto3.client("sagemaker", region_name=REGION).list_training_jobs()["TrainingJobSummaries"] == []


def test_data_that_names_no_task_is_scored_as_gsm8k_with_a_note(prepared: Path, tmp_path: Path):
    from rlvr_cli.data.task_choice import choose_task

    choice = choose_task(None, None, None, data=str(prepared))
    assert (choice.name, choice.options) == ("gsm8k", {})
    assert choice.note == (
        f"{prepared} does not say which task it was prepared for: scored as gsm8k "
        "(set `task` in the recipe to choose)"
    )
    assert choose_task(None, "math", {"x": 1}, data="d") == choose_task({}, "math", {"x": 1}, data="d")
