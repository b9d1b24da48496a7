"""The SageMaker training-container contract, adapted to `rlvr_cli.train` (SageMaker runs `train`).

    /opt/ml/input/config/hyperparameters.json   the recipe, one JSON-encoded string per key
    /opt/ml/input/config/resourceconfig.json    hosts of this job (multi-instance)
    /opt/ml/input/data/recipe/*.yaml            optional: a recipe file; hyperparameters override it
    /opt/ml/input/data/{train,val}/             the prepared datasets (channels)
    /opt/ml/model/                              the trained adapter and run manifest (uploaded at the end)
    /opt/ml/checkpoints/                        checkpoints, synced with S3; present after a spot restart
    /opt/ml/output/failure                      why the job failed, shown as its FailureReason

`RLVR_SM_ROOT` moves `/opt/ml`, so tests run this entry on a host against a temporary tree. With
more than one GPU (or instance) the entry re-launches itself under `accelerate launch` with one
process per GPU; SIGTERM (a stop or spot interruption) is forwarded, and the trainer saves a
checkpoint before exiting.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

from rlvr_cli.errors import ExitCode, RlvrError

MAIN_PROCESS_PORT = 29500


class Paths:
    def __init__(self, root: Path):
        self.root = root
        self.config = root / "input" / "config"
        self.data = root / "input" / "data"
        self.model = root / "model"
        self.checkpoints = root / "checkpoints"
        self.output = root / "output"
        self.failure = self.output / "failure"


def _decode(value: Any) -> Any:
    """Hyperparameters arrive as strings; rlvr sends JSON, humans in the console may not."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def recipe_data(paths: Paths) -> dict[str, Any]:
    import yaml

    data: dict[str, Any] = {}
    recipe_channel = paths.data / "recipe"
    if recipe_channel.is_dir():
        files = sorted(p for p in recipe_channel.iterdir() if p.suffix in (".yaml", ".yml"))
        if files:
            data = yaml.safe_load(files[0].read_text(encoding="utf-8")) or {}
    hyperparameters = paths.config / "hyperparameters.json"
    if hyperparameters.is_file():
        data.update(
            {k: _decode(v) for k, v in json.loads(hyperparameters.read_text(encoding="utf-8")).items()}
        )
    # Paths belong to the container, whatever the recipe said.
    data["train_dataset_path"] = str(paths.data / "train" / "dataset.json")
    val = paths.data / "val" / "dataset.json"
    data["test_dataset_path"] = str(val) if val.is_file() else None
    if not val.is_file():
        data["eval_strategy"] = "no"
    data["output_dir"] = str(paths.model)
    data["checkpoint_dir"] = str(paths.checkpoints)
    data.pop("remote", None)
    return data


def hosts(paths: Paths) -> tuple[list[str], str]:
    resource = paths.config / "resourceconfig.json"
    if not resource.is_file():
        return ["algo-1"], "algo-1"
    config = json.loads(resource.read_text(encoding="utf-8"))
    return list(config.get("hosts") or ["algo-1"]), config.get("current_host") or "algo-1"


def gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except ImportError:  # pragma: no cover - the image has torch
        return 0


def _load_hf_token() -> None:
    """Read a Hugging Face token from Secrets Manager into HF_TOKEN, never into logs or hyperparameters."""
    secret = os.environ.get("RLVR_HF_TOKEN_SECRET")
    if not secret or os.environ.get("HF_TOKEN"):
        return
    from rlvr_cli.aws import aws_errors, client

    with aws_errors(f"reading secret {secret}"):
        value = client("secretsmanager").get_secret_value(SecretId=secret)["SecretString"]
    with contextlib.suppress(
        json.JSONDecodeError, AttributeError
    ):  # a JSON secret {"HF_TOKEN": ...} or the bare token
        value = json.loads(value).get("HF_TOKEN", value)
    os.environ["HF_TOKEN"] = value


def _write_failure(paths: Paths, message: str) -> None:
    paths.output.mkdir(parents=True, exist_ok=True)
    paths.failure.write_text(message[:1000] + "\n", encoding="utf-8")  # SageMaker shows ~1 KB of it


def _launch_distributed(
    recipe_file: Path, resume: bool, world: int, host_list: list[str], current: str
) -> int:
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        str(world),
        "--num_machines",
        str(len(host_list)),
        "--machine_rank",
        str(host_list.index(current)),
        "--main_process_ip",
        host_list[0],
        "--main_process_port",
        str(MAIN_PROCESS_PORT),
        "--mixed_precision",
        "no",  # the recipe decides precision
        "-m",
        "rlvr_cli",
        "train",
        "--config",
        str(recipe_file),
        "--force",
    ]
    if resume:
        command.append("--resume")
    process = subprocess.Popen(command)

    def forward(signum: int, frame: Any) -> None:
        process.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    return process.wait()


def main() -> int:
    paths = Paths(Path(os.environ.get("RLVR_SM_ROOT", "/opt/ml")))
    try:
        from rlvr_cli.config import load_recipe, recipe_to_yaml
        from rlvr_cli.fsutil import write_text
        from rlvr_cli.runs import checkpoints

        data = recipe_data(paths)
        paths.model.mkdir(parents=True, exist_ok=True)
        paths.checkpoints.mkdir(parents=True, exist_ok=True)
        recipe_file = paths.output / "data" / "recipe.yaml"
        import yaml

        write_text(recipe_file, yaml.safe_dump(data, sort_keys=False))
        loaded = load_recipe(recipe_file)
        write_text(recipe_file, recipe_to_yaml(loaded.recipe))
        resume = bool(checkpoints(paths.checkpoints))  # a spot restart finds its checkpoints here
        _load_hf_token()
        # Working directory for the run: MLflow's embedded store lands in output/data (uploaded with the job).
        work = paths.output / "data"
        work.mkdir(parents=True, exist_ok=True)
        os.chdir(work)
        host_list, current = hosts(paths)
        world = max(gpu_count(), 1) * len(host_list)
        if world > 1:
            code = _launch_distributed(recipe_file, resume, world, host_list, current)
            if code not in (0, int(ExitCode.INTERRUPTED)):
                _write_failure(paths, f"training exited with code {code}; see the job's CloudWatch logs")
            return code
        from rlvr_cli.train import run_training

        result = run_training(loaded, resume=resume, force=not resume)
        return int(result.get("exit_code", 0))
    except RlvrError as exc:
        _write_failure(paths, exc.message)
        print(f"error: {exc.message}", file=sys.stderr)
        return int(exc.code) or 1
    except Exception as exc:
        _write_failure(paths, f"{type(exc).__name__}: {exc}")
        traceback.print_exc()
        return 1


if __name__ == "__main__":
    sys.exit(main())
