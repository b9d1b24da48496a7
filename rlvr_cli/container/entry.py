"""The SageMaker training-container contract, adapted to `rlvr_cli.training.run` (SageMaker runs `train`).

    /opt/ml/input/config/hyperparameters.json   the recipe, one JSON-encoded string per key
    /opt/ml/input/config/resourceconfig.json    hosts of this job (multi-instance)
    /opt/ml/input/data/recipe/*.yaml            optional: a recipe file; hyperparameters override it
    /opt/ml/input/data/{train,val}/             the prepared datasets (channels)
    /opt/ml/model/                              the trained adapter and run manifest (uploaded at the end)
    /opt/ml/checkpoints/                        checkpoints, synced with S3; present after a spot restart
    /opt/ml/output/failure                      why the job failed, shown as its FailureReason

`RLVR_SM_ROOT` moves `/opt/ml`, so tests run this entry on a host against a temporary tree.

With more than one GPU, or several instances, this process starts one rank per GPU with torchrun
(`rlvr_cli.container.launcher`), each rank being this same module with RLVR_RANK_RECIPE set. A stop
or spot interruption (SIGTERM) reaches every rank, which finishes its step and saves within
RLVR_STOP_GRACE_S (torchrun's --shutdown-timeout); only global rank 0 writes /opt/ml/model; every
rank resumes from /opt/ml/checkpoints. On failure the first failing rank's one-line error becomes
the FailureReason.

Environment (documented in the README): RLVR_PROCS_PER_HOST (ranks per host, default the GPU
count), RLVR_STOP_GRACE_S (seconds from SIGTERM to SIGKILL, default 110), MASTER_PORT.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import traceback
from pathlib import Path
from typing import Any

from rlvr_cli.container.launcher import Layout, launch, write_rank_exit, write_rank_failure
from rlvr_cli.core.errors import ExitCode, RlvrError, one_line
from rlvr_cli.data.layout import PreparedDir

MASTER_PORT = 29500  # several hosts: rank 0's rendezvous port on the first host
# SIGTERM to SIGKILL: SageMaker allows 120 s after a stop or spot notice; the rest is the margin
# for this process to write the failure file and exit.
STOP_GRACE_S = 110.0
GRACE_ENV = "RLVR_STOP_GRACE_S"
PROCS_ENV = "RLVR_PROCS_PER_HOST"
# Set by `_run_ranks` for the ranks it starts: the resolved recipe, and whether to resume.
RANK_RECIPE_ENV = "RLVR_RANK_RECIPE"
RANK_RESUME_ENV = "RLVR_RANK_RESUME"
# EFA: the instance types on which SageMaker's PyTorch launcher (sagemaker-training-toolkit, the
# SageMaker SDK's torchrun driver) sets FI_PROVIDER=efa, and those where it also turns on RDMA.
EFA_INSTANCES = frozenset(
    {
        "ml.g4dn.8xlarge",
        "ml.g4dn.12xlarge",
        "ml.g4dn.16xlarge",
        "ml.g5.48xlarge",
        "ml.p3dn.24xlarge",
        "ml.p4d.24xlarge",
        "ml.p4de.24xlarge",
        "ml.p5.48xlarge",
        "ml.p5e.48xlarge",
        "ml.p5en.48xlarge",
        "ml.p6-b200.48xlarge",
    }
)
EFA_RDMA_INSTANCES = frozenset({"ml.p4d.24xlarge", "ml.p4de.24xlarge"})


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
    # The channels are directories of a prepared layout (rlvr_cli.data.layout).
    data["train_dataset_path"] = str(PreparedDir(paths.data).split("train"))
    val = PreparedDir(paths.data).split("val")
    data["test_dataset_path"] = str(val) if val.is_file() else None
    if not val.is_file():
        data["eval_strategy"] = "no"
    data["output_dir"] = str(paths.model)
    data["checkpoint_dir"] = str(paths.checkpoints)
    data.pop("remote", None)
    return data


def resource_config(paths: Paths) -> dict[str, Any]:
    resource = paths.config / "resourceconfig.json"
    return json.loads(resource.read_text(encoding="utf-8")) if resource.is_file() else {}


def hosts(paths: Paths) -> tuple[list[str], str]:
    config = resource_config(paths)
    return list(config.get("hosts") or ["algo-1"]), config.get("current_host") or "algo-1"


def _env_number(name: str, default: float) -> float:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        return float(value)
    except ValueError as exc:
        raise RlvrError(f"{name}={value!r} is not a number; set it to a number or unset it") from exc


def procs_per_host() -> int:
    """One process per GPU; RLVR_PROCS_PER_HOST overrides (the tests stand CPU processes in for GPUs)."""
    if os.environ.get(PROCS_ENV):
        return max(1, int(_env_number(PROCS_ENV, 1)))
    try:
        import torch

        return max(1, torch.cuda.device_count())
    except ImportError:  # pragma: no cover - the image has torch
        return 1


def layout(paths: Paths, procs: int) -> Layout:
    """Ranks of this host: node rank = index of current_host in `hosts`, master = the first host."""
    host_list, current = hosts(paths)
    if len(host_list) == 1:  # one host: rendezvous on loopback, on a port nothing else holds
        return Layout(procs_per_node=procs, master_port=int(_env_number("MASTER_PORT", _free_port())))
    if current not in host_list:
        raise RlvrError(f"resourceconfig.json: current_host {current!r} is not one of hosts {host_list}")
    return Layout(
        procs_per_node=procs,
        nnodes=len(host_list),
        node_rank=host_list.index(current),
        master_addr=host_list[0],
        master_port=int(_env_number("MASTER_PORT", MASTER_PORT)),
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def network_env(resource: dict[str, Any]) -> dict[str, str]:
    """NCCL and EFA settings, as SageMaker's own PyTorch launcher sets them for the instance type."""
    env = {"NCCL_PROTO": "simple"}
    if resource.get("network_interface_name"):
        env["NCCL_SOCKET_IFNAME"] = str(resource["network_interface_name"])
    instance_type = resource.get("current_instance_type")
    if instance_type in EFA_INSTANCES:
        env["FI_PROVIDER"] = "efa"
    if instance_type in EFA_RDMA_INSTANCES:
        env.update(FI_EFA_USE_DEVICE_RDMA="1", RDMAV_FORK_SAFE="1")
    return env


def _load_hf_token() -> None:
    """Read a Hugging Face token from Secrets Manager into HF_TOKEN, never into logs or hyperparameters."""
    secret = os.environ.get("RLVR_HF_TOKEN_SECRET")
    if not secret or os.environ.get("HF_TOKEN"):
        return
    from rlvr_cli.cloud.sagemaker.client import aws_errors, client

    with aws_errors(f"reading secret {secret}"):
        value = client("secretsmanager").get_secret_value(SecretId=secret)["SecretString"]
    os.environ["HF_TOKEN"] = _token_in_secret(secret, value)


def _token_in_secret(secret: str, value: str) -> str:
    """The token from a secret that holds it bare, as a JSON string, or as {"HF_TOKEN": ...}."""
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        return value
    if isinstance(parsed, dict):
        token = parsed.get("HF_TOKEN")
        if not isinstance(token, str) or not token:
            raise RlvrError(
                f'secret {secret} is a JSON object without an "HF_TOKEN" string; '
                'store the token itself, or {"HF_TOKEN": "hf_..."}'
            )
        return token
    return parsed if isinstance(parsed, str) else value


def _write_failure(path: Path, message: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(message[:1000] + "\n", encoding="utf-8")  # SageMaker shows ~1 KB of it


def _run_ranks(paths: Paths, recipe_file: Path, resume: bool, ranks: Layout) -> int:
    """Several GPUs or hosts: this process starts the ranks and stays to forward signals."""
    env = {**network_env(resource_config(paths)), **os.environ}  # the job's Environment wins
    env.update({RANK_RECIPE_ENV: str(recipe_file), RANK_RESUME_ENV: "1" if resume else "0"})
    grace = _env_number(GRACE_ENV, STOP_GRACE_S)
    print(
        f"starting {ranks.procs_per_node} ranks on host {ranks.node_rank + 1} of {ranks.nnodes} "
        f"(world size {ranks.world_size}, master {ranks.master_addr}:{ranks.master_port})",
        file=sys.stderr,
        flush=True,
    )
    outcome = launch([sys.executable, "-u", "-m", "rlvr_cli.container.entry"], env, ranks, grace_s=grace)
    if outcome.failure:
        _write_failure(paths.failure, outcome.failure)
        print(f"error: {outcome.failure}", file=sys.stderr)
    return outcome.code


def _train(loaded: Any, resume: bool) -> int:
    """Train here (this process is a rank, or the only one); a resumed run may replace its output."""
    from rlvr_cli.core import console
    from rlvr_cli.training.run import run_training

    result = run_training(loaded, resume=resume, force=not resume)
    outcome = result.outcome()
    if outcome:
        console.info(outcome)
    return result.exit_code


def _rank_main() -> int:
    """One rank, started by torchrun from `_run_ranks`: train; on failure leave the one-line reason
    in the rank's error file; always leave the exit code (`rlvr_cli.container.launcher`)."""
    code = 1
    try:
        from rlvr_cli.config.loading import load_recipe

        resume = os.environ.get(RANK_RESUME_ENV) == "1"
        code = _train(load_recipe(Path(os.environ[RANK_RECIPE_ENV])), resume)
    except RlvrError as exc:
        write_rank_failure(exc.message)
        print(f"error: {exc.message}", file=sys.stderr)
        code = int(exc.code) or 1
    except KeyboardInterrupt:  # a second Ctrl-C: abort without saving
        code = int(ExitCode.INTERRUPTED)
    except Exception as exc:
        write_rank_failure(one_line(exc))
        traceback.print_exc()
        code = 1
    write_rank_exit(code)
    return code


def main() -> int:
    if os.environ.get(RANK_RECIPE_ENV):
        return _rank_main()
    paths = Paths(Path(os.environ.get("RLVR_SM_ROOT", "/opt/ml")))
    # The metric lines SageMaker's regexes read (rlvr_cli.core.metrics), in this job and its ranks.
    os.environ.setdefault("RLVR_METRICS_LINES", "1")
    try:
        from rlvr_cli.config.loading import load_recipe, recipe_to_yaml
        from rlvr_cli.core.files import write_text
        from rlvr_cli.training.output_dir import checkpoints

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
        ranks = layout(paths, procs_per_host())
        if ranks.world_size > 1:
            return _run_ranks(paths, recipe_file, resume, ranks)
        return _train(loaded, resume)
    except RlvrError as exc:
        _write_failure(paths.failure, exc.message)
        print(f"error: {exc.message}", file=sys.stderr)
        return int(exc.code) or 1
    except Exception as exc:
        _write_failure(paths.failure, one_line(exc))
        traceback.print_exc()
        return 1


if __name__ == "__main__":
    sys.exit(main())
