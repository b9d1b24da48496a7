"""The container entry's decisions, in this process: which recipe, paths and ranks a job gets, and
what a failure leaves behind (the FailureReason SageMaker shows, a rank's error and exit files).
tests/test_container.py runs the same entry end to end in subprocesses; these run in milliseconds,
so mutation testing (benchmarks/MUTATION.md) runs them against every change to the entry."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from rlvr_cli.container import entry
from rlvr_cli.container.launcher import EXIT_DIR_ENV, Layout, Outcome
from rlvr_cli.core.errors import ExitCode, RlvrError, UsageError
from rlvr_cli.data.layout import split_file

from .test_container import hyperparameters, opt_ml  # noqa: F401 (hyperparameters is a fixture)


@pytest.fixture(autouse=True)
def entry_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        entry.RANK_RECIPE_ENV,
        entry.RANK_RESUME_ENV,
        entry.PROCS_ENV,
        entry.GRACE_ENV,
        "MASTER_PORT",
        "RLVR_METRICS_LINES",
        "RLVR_HF_TOKEN_SECRET",
        "TORCHELASTIC_ERROR_FILE",
        EXIT_DIR_ENV,
        "RANK",
    ):
        monkeypatch.delenv(name, raising=False)


def write_config(root: Path, name: str, data: object) -> None:
    (root / "input" / "config").mkdir(parents=True, exist_ok=True)
    (root / "input" / "config" / name).write_text(json.dumps(data))


def test_the_recipe_is_the_channel_file_under_the_hyperparameters_with_the_containers_paths(tmp_path: Path):
    root = tmp_path / "ml"
    channel = root / "input" / "data" / "recipe"
    channel.mkdir(parents=True)
    (channel / "b.yaml").write_text("learning_rate: 0.5\n")
    (channel / "a.yml").write_text("learning_rate: 0.1\nmax_steps: 7\nrun_name: from-file\nremote: {x: 1}\n")
    (channel / "0.txt").write_text("not: a recipe\n")
    write_config(root, "hyperparameters.json", {"run_name": '"from-console"', "lora_r": 16, "seed": "[1, 2]"})
    val = root / "input" / "data" / split_file("val")
    val.parent.mkdir(parents=True)
    val.write_text("[]")

    data = entry.recipe_data(entry.Paths(root))

    assert data == {
        "learning_rate": 0.1,  # the first YAML file by name (.yml counts, .txt does not)
        "max_steps": 7,
        "run_name": "from-console",  # JSON-decoded, and over the file's value
        "lora_r": 16,  # not a string: as it came
        "seed": [1, 2],
        "train_dataset_path": str(root / "input" / "data" / split_file("train")),
        "test_dataset_path": str(val),
        "output_dir": str(root / "model"),
        "checkpoint_dir": str(root / "checkpoints"),
    }


def test_without_a_val_channel_there_is_no_evaluation(tmp_path: Path):
    root = tmp_path / "ml"
    channel = root / "input" / "data" / "recipe"
    channel.mkdir(parents=True)
    (channel / "recipe.yaml").write_text("")  # empty: no keys, not an error
    data = entry.recipe_data(entry.Paths(root))
    assert data["test_dataset_path"] is None and data["eval_strategy"] == "no"
    assert set(data) == {
        "train_dataset_path",
        "test_dataset_path",
        "eval_strategy",
        "output_dir",
        "checkpoint_dir",
    }


def test_hosts_default_to_one_named_algo_1(tmp_path: Path):
    assert entry.hosts(entry.Paths(tmp_path)) == (["algo-1"], "algo-1")
    write_config(tmp_path, "resourceconfig.json", {"hosts": ["algo-2", "algo-1"], "current_host": "algo-1"})
    assert entry.hosts(entry.Paths(tmp_path)) == (["algo-2", "algo-1"], "algo-1")


def test_one_host_rendezvous_on_loopback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    ranks = entry.layout(entry.Paths(tmp_path), 3)
    assert (ranks.procs_per_node, ranks.nnodes, ranks.node_rank, ranks.master_addr) == (3, 1, 0, "127.0.0.1")
    assert 1024 <= ranks.master_port <= 65535 and ranks.master_port != entry.MASTER_PORT
    monkeypatch.setenv("MASTER_PORT", "4321")
    assert entry.layout(entry.Paths(tmp_path), 3).master_port == 4321


def test_several_hosts_rendezvous_on_the_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    write_config(
        tmp_path, "resourceconfig.json", {"hosts": ["algo-1", "algo-2", "algo-3"], "current_host": "algo-3"}
    )
    assert entry.layout(entry.Paths(tmp_path), 8) == Layout(
        procs_per_node=8, nnodes=3, node_rank=2, master_addr="algo-1", master_port=29500
    )
    monkeypatch.setenv("MASTER_PORT", "4321")
    assert entry.layout(entry.Paths(tmp_path), 8).master_port == 4321


def test_a_host_missing_from_the_host_list_is_one_error(tmp_path: Path):
    write_config(tmp_path, "resourceconfig.json", {"hosts": ["algo-1", "algo-2"], "current_host": "algo-9"})
    with pytest.raises(RlvrError) as caught:
        entry.layout(entry.Paths(tmp_path), 1)
    assert caught.value.message == (
        "resourceconfig.json: current_host 'algo-9' is not one of hosts ['algo-1', 'algo-2']"
    )


def test_ranks_per_host_are_the_gpus_unless_set(monkeypatch: pytest.MonkeyPatch):
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert entry.procs_per_host() == 1  # a CPU host still runs one rank
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    assert entry.procs_per_host() == 8
    monkeypatch.setenv(entry.PROCS_ENV, "2")
    assert entry.procs_per_host() == 2
    monkeypatch.setenv(entry.PROCS_ENV, "0")
    assert entry.procs_per_host() == 1


@pytest.mark.parametrize("value", ["", None])
def test_an_unset_number_is_the_default(monkeypatch: pytest.MonkeyPatch, value: str | None):
    if value is None:
        monkeypatch.delenv(entry.GRACE_ENV, raising=False)
    else:
        monkeypatch.setenv(entry.GRACE_ENV, value)
    assert entry._env_number(entry.GRACE_ENV, 110.0) == 110.0


def test_a_number_that_is_not_one_is_an_error_naming_it(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(entry.GRACE_ENV, "2.5")
    assert entry._env_number(entry.GRACE_ENV, 110.0) == 2.5
    monkeypatch.setenv(entry.GRACE_ENV, "soon")
    with pytest.raises(RlvrError) as caught:
        entry._env_number(entry.GRACE_ENV, 110.0)
    assert caught.value.message == "RLVR_STOP_GRACE_S='soon' is not a number; set it to a number or unset it"


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        ({}, {"NCCL_PROTO": "simple"}),
        (
            {"network_interface_name": "eth0", "current_instance_type": "ml.g5.2xlarge"},
            {"NCCL_PROTO": "simple", "NCCL_SOCKET_IFNAME": "eth0"},
        ),
        (
            {"current_instance_type": "ml.p5.48xlarge"},
            {"NCCL_PROTO": "simple", "FI_PROVIDER": "efa"},
        ),
        (
            {"network_interface_name": "ens5", "current_instance_type": "ml.p4d.24xlarge"},
            {
                "NCCL_PROTO": "simple",
                "NCCL_SOCKET_IFNAME": "ens5",
                "FI_PROVIDER": "efa",
                "FI_EFA_USE_DEVICE_RDMA": "1",
                "RDMAV_FORK_SAFE": "1",
            },
        ),
    ],
)
def test_network_settings_follow_the_instance_type(resource: dict, expected: dict):
    assert entry.network_env(resource) == expected


def test_the_failure_reason_is_one_kilobyte_at_most(tmp_path: Path):
    path = tmp_path / "output" / "failure"
    entry._write_failure(path, "x" * 1500)
    assert path.read_text() == "x" * 1000 + "\n"
    entry._write_failure(path, "short")
    assert path.read_text() == "short\n"


@pytest.fixture
def job(tmp_path: Path, prepared: Path, hyperparameters: dict, monkeypatch: pytest.MonkeyPatch) -> Path:  # noqa: F811
    root = opt_ml(tmp_path / "ml", prepared, hyperparameters)
    monkeypatch.setenv("RLVR_SM_ROOT", str(root))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(entry.PROCS_ENV, "1")
    return root


def test_a_job_trains_its_resolved_recipe_in_output_data(job: Path, monkeypatch: pytest.MonkeyPatch):
    seen = {}

    def train(loaded, resume: bool) -> int:
        seen.update(
            recipe=loaded.recipe, resume=resume, cwd=Path.cwd(), metrics=os.environ["RLVR_METRICS_LINES"]
        )
        return 0

    monkeypatch.setattr(entry, "_train", train)
    assert entry.main() == 0
    assert seen["resume"] is False
    assert seen["cwd"] == job / "output" / "data"
    assert seen["metrics"] == "1"
    assert seen["recipe"].output_dir == str(job / "model") and seen["recipe"].max_steps == 2
    saved = yaml.safe_load((job / "output" / "data" / "recipe.yaml").read_text())
    assert saved["output_dir"] == str(job / "model") and saved["train_dataset_path"].startswith(str(job))
    assert (job / "model").is_dir() and (job / "checkpoints").is_dir()
    assert not (job / "output" / "failure").exists()


def test_a_restarted_job_resumes_from_its_checkpoints(job: Path, monkeypatch: pytest.MonkeyPatch):
    (job / "checkpoints" / "checkpoint-3").mkdir(parents=True)
    (job / "checkpoints" / "checkpoint-3" / "trainer_state.json").write_text("{}")
    seen = []
    monkeypatch.setattr(entry, "_train", lambda loaded, resume: seen.append(resume) or 0)
    assert entry.main() == 0
    assert seen == [True]


def test_several_ranks_are_started_with_the_recipe_and_resume_flag(
    job: Path, monkeypatch: pytest.MonkeyPatch
):
    started = []
    monkeypatch.setenv(entry.PROCS_ENV, "2")
    monkeypatch.setenv(entry.GRACE_ENV, "7")
    monkeypatch.setenv("NCCL_PROTO", "LL")  # the job's own Environment wins over rlvr's defaults

    def launch(command, env, ranks, *, grace_s):
        started.append((command, env, ranks, grace_s))
        return Outcome(code=0)

    monkeypatch.setattr(entry, "launch", launch)
    monkeypatch.setattr(entry, "_train", lambda *a: pytest.fail("the launcher process trained"))
    assert entry.main() == 0
    [(command, env, ranks, grace)] = started
    assert command[1:] == ["-u", "-m", "rlvr_cli.container.entry"]
    assert env[entry.RANK_RECIPE_ENV] == str(job / "output" / "data" / "recipe.yaml")
    assert env[entry.RANK_RESUME_ENV] == "0"
    assert env["NCCL_PROTO"] == "LL" and env["NCCL_SOCKET_IFNAME"] == "eth0"
    assert (ranks.procs_per_node, ranks.world_size, grace) == (2, 2, 7.0)


def test_the_first_failing_ranks_error_becomes_the_failure_reason(
    job: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    monkeypatch.setenv(entry.PROCS_ENV, "2")
    monkeypatch.setattr(entry, "launch", lambda *a, **k: Outcome(code=3, failure="rank 1: out of memory"))
    assert entry.main() == 3
    assert (job / "output" / "failure").read_text() == "rank 1: out of memory\n"
    assert "error: rank 1: out of memory" in capsys.readouterr().err


def test_a_bad_recipe_is_the_failure_reason_and_its_exit_code(
    job: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    hyper = job / "input" / "config" / "hyperparameters.json"
    hyper.write_text(json.dumps({**json.loads(hyper.read_text()), "lora_r": '"many"'}))
    monkeypatch.setattr(entry, "_train", lambda *a: pytest.fail("trained a bad recipe"))
    assert entry.main() == int(ExitCode.USAGE)
    reason = (job / "output" / "failure").read_text()
    assert "lora_r" in reason and reason.count("\n") == 1
    assert f"error: {reason.strip()}" in capsys.readouterr().err


def test_an_unexpected_error_is_one_line_of_reason_and_a_traceback(
    job: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    def crash(loaded, resume):
        raise ValueError("\nthe first line\nthe second line")

    monkeypatch.setattr(entry, "_train", crash)
    assert entry.main() == 1
    assert (job / "output" / "failure").read_text() == "ValueError: the first line\n"
    assert "Traceback" in capsys.readouterr().err


def test_an_error_with_exit_code_zero_still_fails(job: Path, monkeypatch: pytest.MonkeyPatch):
    def fail(loaded, resume):
        raise RlvrError("odd", code=ExitCode.OK)

    monkeypatch.setattr(entry, "_train", fail)
    assert entry.main() == 1
    assert (job / "output" / "failure").read_text() == "odd\n"


@pytest.fixture
def rank(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """This process as rank 1 of a job, as torchrun starts it from `_run_ranks`."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("max_steps: 3\n")
    monkeypatch.setenv(entry.RANK_RECIPE_ENV, str(recipe))
    monkeypatch.setenv("TORCHELASTIC_ERROR_FILE", str(tmp_path / "errors" / "error.json"))
    monkeypatch.setenv(EXIT_DIR_ENV, str(tmp_path))
    monkeypatch.setenv("RANK", "1")
    return SimpleNamespace(
        error=lambda: json.loads((tmp_path / "errors" / "error.json").read_text())["message"]["message"],
        has_error=lambda: (tmp_path / "errors" / "error.json").exists(),
        exit=lambda: (tmp_path / "rank-1.exit").read_text(),
    )


@pytest.mark.parametrize("resume", ["1", "0", None])
def test_a_rank_trains_the_recipe_it_was_given(rank, monkeypatch: pytest.MonkeyPatch, resume: str | None):
    if resume is not None:
        monkeypatch.setenv(entry.RANK_RESUME_ENV, resume)
    seen = []
    monkeypatch.setattr(
        entry, "_train", lambda loaded, resume: seen.append((loaded.recipe.max_steps, resume)) or 0
    )
    assert entry.main() == 0
    assert seen == [(3, resume == "1")]
    assert rank.exit() == "0" and not rank.has_error()


@pytest.mark.parametrize(
    ("error", "code", "reason"),
    [
        (UsageError("bad value"), 2, "bad value"),
        (RlvrError("no data", code=ExitCode.OK), 1, "no data"),
        (KeyboardInterrupt(), 130, None),
        (OSError("disk\nfull"), 1, "OSError: disk"),
    ],
)
def test_a_failing_rank_leaves_its_reason_and_exit_code(
    rank, monkeypatch: pytest.MonkeyPatch, error: BaseException, code: int, reason: str | None
):
    def fail(loaded, resume):
        raise error

    monkeypatch.setattr(entry, "_train", fail)
    assert entry.main() == code
    assert rank.exit() == str(code)
    assert (rank.error() if rank.has_error() else None) == reason


def test_training_here_replaces_the_output_unless_resuming(monkeypatch: pytest.MonkeyPatch):
    from rlvr_cli.training import run

    calls = []

    def run_training(loaded, *, resume, force):
        calls.append((loaded, resume, force))
        return SimpleNamespace(outcome=lambda: "", exit_code=5)

    monkeypatch.setattr(run, "run_training", run_training)
    assert entry._train("recipe", False) == 5
    assert entry._train("recipe", True) == 5
    assert calls == [("recipe", False, True), ("recipe", True, False)]


def test_the_container_paths_are_sagemakers(monkeypatch: pytest.MonkeyPatch):
    """Without RLVR_SM_ROOT (as in a real job) the entry reads and writes SageMaker's /opt/ml tree."""
    monkeypatch.delenv("RLVR_SM_ROOT", raising=False)
    seen = []

    def recipe_data(paths):
        seen.append(paths)
        raise RlvrError("stop here")

    monkeypatch.setattr(entry, "recipe_data", recipe_data)
    monkeypatch.setattr(entry, "_write_failure", lambda path, message: seen.append((path, message)))
    assert entry.main() == 1
    [paths, failure] = seen
    assert failure == (Path("/opt/ml/output/failure"), "stop here")
    assert (paths.config, paths.data, paths.model, paths.checkpoints, paths.output) == (
        Path("/opt/ml/input/config"),
        Path("/opt/ml/input/data"),
        Path("/opt/ml/model"),
        Path("/opt/ml/checkpoints"),
        Path("/opt/ml/output"),
    )


def test_a_recipe_channel_file_may_end_in_yaml(tmp_path: Path):
    channel = tmp_path / "input" / "data" / "recipe"
    channel.mkdir(parents=True)
    (channel / "recipe.yaml").write_text("learning_rate: 0.25\n")
    assert entry.recipe_data(entry.Paths(tmp_path))["learning_rate"] == 0.25


def test_an_hf_token_in_the_jobs_environment_is_not_replaced_by_the_secret(
    aws: str, aws_calls, monkeypatch: pytest.MonkeyPatch
):
    import boto3

    boto3.client("secretsmanager", region_name="us-east-1").create_secret(
        Name="rlvr/hf", SecretString="hf_secret"
    )
    monkeypatch.setenv("RLVR_HF_TOKEN_SECRET", "rlvr/hf")
    monkeypatch.setenv("HF_TOKEN", "hf_from_the_environment")
    entry._load_hf_token()
    assert os.environ["HF_TOKEN"] == "hf_from_the_environment"
    assert aws_calls.params("GetSecretValue") == []


def test_the_model_directory_sagemaker_created_is_used(job: Path, monkeypatch: pytest.MonkeyPatch):
    (job / "model").mkdir()  # SageMaker creates /opt/ml/model before the container starts
    monkeypatch.setattr(entry, "_train", lambda loaded, resume: 0)
    assert entry.main() == 0
    assert not (job / "output" / "failure").exists()


def test_a_restarted_job_on_several_hosts_starts_its_ranks_resuming(
    job: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    (job / "checkpoints" / "checkpoint-3").mkdir(parents=True)
    (job / "checkpoints" / "checkpoint-3" / "trainer_state.json").write_text("{}")
    write_config(job, "resourceconfig.json", {"hosts": ["algo-1", "algo-2"], "current_host": "algo-2"})
    monkeypatch.setenv(entry.PROCS_ENV, "2")
    started = []

    def launch(command, env, ranks, *, grace_s):
        started.append((env, ranks, grace_s))
        return Outcome(code=0)

    monkeypatch.setattr(entry, "launch", launch)
    assert entry.main() == 0
    [(env, ranks, grace)] = started
    assert env[entry.RANK_RESUME_ENV] == "1"
    assert grace == entry.STOP_GRACE_S == 110.0  # RLVR_STOP_GRACE_S unset
    assert ranks == Layout(procs_per_node=2, nnodes=2, node_rank=1, master_addr="algo-1", master_port=29500)
    assert "starting 2 ranks on host 2 of 2 (world size 4, master algo-1:29500)\n" in capsys.readouterr().err


def test_training_here_reports_its_outcome(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    from rlvr_cli.training import run

    outcome = "trained 3 steps; the model is in /opt/ml/model"
    monkeypatch.setattr(
        run, "run_training", lambda loaded, **k: SimpleNamespace(outcome=lambda: outcome, exit_code=0)
    )
    assert entry._train("recipe", False) == 0
    assert capsys.readouterr().err == outcome + "\n"


def test_a_failing_rank_prints_its_error_line(
    rank, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    def fail(loaded, resume):
        raise UsageError("bad value")

    monkeypatch.setattr(entry, "_train", fail)
    assert entry.main() == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == ["error: bad value"] and captured.out == ""
