"""`rlvr train` on a CPU: real TRL GRPO steps on a tiny model with a real tokenizer."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import REPO


def write_recipe(path: Path, model: Path, data: Path, output: Path, **extra) -> Path:
    recipe = {
        "model_name_or_path": str(model),
        # GPU settings on purpose: on a CPU each falls back with one warning.
        "torch_dtype": "bfloat16",
        "attn_implementation": "flash_attention_2",
        "bf16": True,
        "load_in_4bit": True,
        "lora_r": 8,
        "lora_alpha": 16,
        "lora_target_modules": ["q_proj", "v_proj"],
        "lora_modules_to_save": None,
        "max_steps": 2,
        "per_device_train_batch_size": 4,
        "gradient_accumulation_steps": 1,
        "gradient_checkpointing": False,
        "learning_rate": 1e-2,
        "lr_scheduler_type": "constant",
        "warmup_ratio": 0.0,
        "logging_steps": 1,
        "num_generations": 4,
        "max_completion_length": 12,
        "beta": 0.04,
        "train_dataset_path": str(data / "train" / "dataset.json"),
        "test_dataset_path": str(data / "val" / "dataset.json"),
        "output_dir": str(output),
        "save_strategy": "steps",
        "save_steps": 1,
        "report_to": "mlflow",
        "mlflow_experiment_name": "rlvr-test",
        # The built-in rewards plus a custom one by import path, which gives a random model a signal.
        "reward_funcs": ["format", "correctness", "tests.rewards_for_tests:spread_reward"],
    }
    recipe.update(extra)
    import yaml

    path.write_text(yaml.safe_dump(recipe))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path):
    """One real training run shared by the assertions below (a run takes a while on CPU)."""
    from rlvr_cli.data.build import prepare, write_prepared
    from rlvr_cli.tasks.gsm8k.sources import load_source

    from .conftest import FIXTURE_GSM8K

    work = tmp_path_factory.mktemp("train")
    data = work / "data"
    write_prepared(data, prepare(load_source(str(FIXTURE_GSM8K)), shots=1, val_fraction=0.1, seed=42))
    recipe = write_recipe(work / "recipe.yaml", tiny_model_dir, data, work / "out")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    result = subprocess.run(
        [sys.executable, "-m", "rlvr_cli", "train", "--config", str(recipe)],
        capture_output=True,
        text=True,
        cwd=work,
        env={**env, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)},
        timeout=900,
    )
    return work, result


def test_training_completes_and_writes_the_output(trained):
    work, result = trained
    assert result.returncode == 0, result.stderr[-3000:]
    out = work / "out"
    for name in (
        "adapter_model.safetensors",
        "adapter_config.json",
        "tokenizer.json",
        "recipe.yaml",
        "rlvr_run.json",
        "reward_curves.png",
    ):
        assert (out / name).is_file(), name
    run = json.loads((out / "rlvr_run.json").read_text())
    assert run["status"] == "completed" and run["global_step"] == 2
    assert run["versions"]["trl"] and run["versions"]["torch"]
    assert (
        run["data"]["train_sha256"]
        == run["data"]["prepare_manifest"]["files"]["train/dataset.json"]["sha256"]
    )


def test_gpu_settings_fall_back_on_cpu_with_one_warning_each(trained):
    work, result = trained
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert sum("load_in_4bit needs CUDA" in w for w in warnings) == 1
    assert sum("flash_attention_2 needs CUDA: using sdpa" in w for w in warnings) == 1
    env = json.loads((work / "out" / "rlvr_run.json").read_text())["environment"]
    assert (env["device"], env["load_in_4bit"], env["attn_implementation"], env["dtype"], env["bf16"]) == (
        "cpu",
        False,
        "sdpa",
        "float32",
        False,
    )


def test_the_run_says_which_generator_ran_and_why(trained):
    work, result = trained
    why = (
        "rlvr's generator (transformers, each shared prompt part run once, stopped after the answer): "
        "no CUDA GPU, which vLLM needs"
    )
    assert f"generator: {why}" in " ".join(result.stderr.split())  # as printed, whatever the wrapping
    env = json.loads((work / "out" / "rlvr_run.json").read_text())["environment"]
    assert (env["use_vllm"], env["generator"]) == (False, why)


def test_lora_weights_changed(trained):
    from safetensors.torch import load_file

    work, _ = trained
    weights = load_file(str(work / "out" / "adapter_model.safetensors"))
    lora_b = [t for name, t in weights.items() if "lora_B" in name]
    assert lora_b, list(weights)[:5]
    # LoRA starts with B = 0: any non-zero B was learned.
    assert any(float(t.abs().sum()) > 0 for t in lora_b)


def test_output_reloads_with_peft(trained):
    from peft import AutoPeftModelForCausalLM

    work, _ = trained
    model = AutoPeftModelForCausalLM.from_pretrained(str(work / "out"))
    assert model.peft_config["default"].r == 8


def test_metrics_and_artifacts_reach_mlflow(trained):
    import mlflow

    work, _ = trained
    run_info = json.loads((work / "out" / "rlvr_run.json").read_text())["mlflow"]
    client = mlflow.MlflowClient(tracking_uri=run_info["tracking_uri"])
    run = client.get_run(run_info["run_id"])
    assert run.info.status == "FINISHED"
    metrics = run.data.metrics
    for key in (
        "reward",
        "rewards/format_reward/mean",
        "rewards/correctness_reward/mean",
        "accuracy",
        "format_rate",
        "completions/mean_length",
        "completions/cut_at_max_ratio",
        "kl",
        "loss",
        "learning_rate",
    ):
        assert key in metrics, key
    assert run.data.params["recipe.num_generations"] == "4"
    assert run.data.params["effective.attn_implementation"] == "sdpa"
    artifacts = {a.path for a in client.list_artifacts(run_info["run_id"])}
    assert {"rlvr_run.json", "recipe.yaml", "reward_curves.png", "completions"} <= artifacts
    tables = client.list_artifacts(run_info["run_id"], "completions")
    table = json.loads(
        Path(client.download_artifacts(run_info["run_id"], tables[0].path, str(work))).read_text()
    )
    assert {"completion", "format_reward", "correctness_reward"} <= set(table["columns"])


def test_interrupted_run_checkpoints_and_resumes_with_the_step_counter_continuing(
    tmp_path: Path, prepared: Path, tiny_model_dir: Path
):
    recipe = write_recipe(
        tmp_path / "r.yaml",
        tiny_model_dir,
        prepared,
        tmp_path / "out",
        max_steps=6,
        save_steps=100,
        report_to="none",
        load_in_4bit=False,
        attn_implementation="sdpa",
        bf16=False,
        torch_dtype="float32",
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-m", "rlvr_cli", "train", "--config", str(recipe)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert process.stderr is not None
    seen = []
    deadline = time.time() + 600
    for line in process.stderr:
        seen.append(line)
        if line.startswith("step ") and int(line.split()[1]) >= 1:
            process.send_signal(signal.SIGTERM)
            break
        assert time.time() < deadline, "".join(seen)
    rest = process.stderr.read()
    assert process.wait(timeout=600) == 130, "".join(seen) + rest
    assert "checkpoint saved" in rest
    run = json.loads((tmp_path / "out" / "rlvr_run.json").read_text())
    assert run["status"] == "interrupted" and run["interrupted_by"] == "SIGTERM"
    stopped_at = run["global_step"]
    assert 1 <= stopped_at < 6
    assert (tmp_path / "out" / f"checkpoint-{stopped_at}").is_dir()

    refused = subprocess.run(
        [sys.executable, "-m", "rlvr_cli", "train", "--config", str(recipe)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert refused.returncode == 1 and "pass --resume" in refused.stderr

    resumed = subprocess.run(
        [sys.executable, "-m", "rlvr_cli", "train", "--config", str(recipe), "--resume"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
        env=env,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    run = json.loads((tmp_path / "out" / "rlvr_run.json").read_text())
    assert run["status"] == "completed" and run["global_step"] == 6
    assert run["resumed_from"].endswith(f"checkpoint-{stopped_at}")
    logged = [int(line.split()[1]) for line in resumed.stderr.splitlines() if line.startswith("step ")]
    assert logged and min(logged) == stopped_at + 1 and max(logged) == 6


# --- bad input: one clear line, non-zero exit, nothing started --------------------------------------


def test_missing_data_dir(cli, tmp_path: Path, tiny_model_dir: Path):
    result = cli(
        "train",
        "--config",
        write_recipe(tmp_path / "r.yaml", tiny_model_dir, tmp_path / "nowhere", tmp_path / "o"),
    )
    assert result.code == 1 and "train set not found; run `rlvr prepare` first" in result.err


def test_data_without_required_columns(cli, tmp_path: Path, tiny_model_dir: Path):
    data = tmp_path / "data"
    (data / "train").mkdir(parents=True)
    (data / "train" / "dataset.json").write_text('{"question": "q", "answer": "#### 1"}\n')
    result = cli("train", "--config", write_recipe(tmp_path / "r.yaml", tiny_model_dir, data, tmp_path / "o"))
    assert result.code == 1 and "rows lack prompt, final_answer" in result.err


def test_empty_dataset(cli, tmp_path: Path, tiny_model_dir: Path):
    data = tmp_path / "data"
    (data / "train").mkdir(parents=True)
    (data / "train" / "dataset.json").write_text("")
    result = cli("train", "--config", write_recipe(tmp_path / "r.yaml", tiny_model_dir, data, tmp_path / "o"))
    assert result.code == 1 and "is empty" in result.err


def test_num_generations_must_divide_the_generation_batch(
    cli, tmp_path: Path, prepared: Path, tiny_model_dir: Path
):
    recipe = write_recipe(
        tmp_path / "r.yaml", tiny_model_dir, prepared, tmp_path / "o", per_device_train_batch_size=3
    )
    result = cli("train", "--config", recipe)
    assert result.code == 2
    assert "= 3 completions per step is not a multiple of num_generations (4)" in result.err
    assert "per_device_train_batch_size to a multiple of 4" in result.err


def test_output_dir_holding_another_run_is_refused(cli, tmp_path: Path, prepared: Path, tiny_model_dir: Path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "rlvr_run.json").write_text('{"status": "completed"}')
    result = cli("train", "--config", write_recipe(tmp_path / "r.yaml", tiny_model_dir, prepared, out))
    assert result.code == 1 and "already holds another run" in result.err and "--force" in result.err


def test_resume_without_checkpoint(cli, tmp_path: Path, prepared: Path, tiny_model_dir: Path):
    result = cli(
        "train",
        "--config",
        write_recipe(tmp_path / "r.yaml", tiny_model_dir, prepared, tmp_path / "o"),
        "--resume",
    )
    assert result.code == 1 and "no checkpoint to resume from" in result.err


def test_vllm_without_cuda_is_refused(cli, tmp_path: Path, prepared: Path, tiny_model_dir: Path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    recipe = write_recipe(tmp_path / "r.yaml", tiny_model_dir, prepared, tmp_path / "o", use_vllm=True)
    result = cli("train", "--config", recipe)
    assert result.code == 2 and "use_vllm needs a CUDA GPU" in result.err


def test_prompt_too_long_for_the_limits_is_refused_not_truncated(
    cli, tmp_path: Path, prepared: Path, tiny_model_dir: Path
):
    recipe = write_recipe(tmp_path / "r.yaml", tiny_model_dir, prepared, tmp_path / "o", max_seq_length=64)
    result = cli("train", "--config", recipe)
    assert result.code == 2 and "exceeds max_seq_length (64)" in result.err and "fewer --shots" in result.err


def test_smoke_recipe_points_at_the_demo_data():
    from rlvr_cli.config.loading import load_recipe

    recipe = load_recipe(REPO / "configs" / "smoke-cpu.yaml").recipe
    assert (
        recipe.model_name_or_path == "smollm2-135m"
        and recipe.train_dataset_path == "data/smoke/train/dataset.json"
    )


@pytest.mark.parametrize(
    ("checkpointing", "shared_passes"),
    [(False, {"policy", "reference"}), (True, {"reference"})],
    ids=["plain", "gradient-checkpointing"],
)
def test_forward_passes_run_each_prompt_once_where_they_can(
    cli,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    prepared: Path,
    tiny_model_dir: Path,
    checkpointing,
    shared_passes,
):
    """The policy pass shares prompts unless gradient checkpointing drops the cache; the reference always can."""
    import torch

    import rlvr_cli.training.trainer as trainer_module

    seen: set[str] = set()
    real = trainer_module.shared_prefix_logps

    def spy(*args, **kwargs):
        seen.add("policy" if torch.is_grad_enabled() else "reference")
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "shared_prefix_logps", spy)
    recipe = write_recipe(
        tmp_path / "recipe.yaml",
        tiny_model_dir,
        prepared,
        tmp_path / "out",
        max_steps=1,
        save_strategy="no",
        report_to=["none"],
        gradient_checkpointing=checkpointing,
    )
    result = cli("train", "--config", recipe)
    assert result.code == 0, result.err[-2000:]
    assert seen == shared_passes


def test_every_grpo_argument_rlvr_sets_is_one_of_trls():
    """A TRL upgrade that renames an argument fails here, not in the middle of a run."""
    import dataclasses

    from trl import GRPOConfig

    from rlvr_cli.config import trl as grpo_args
    from rlvr_cli.config.recipe import Recipe

    trl_fields = {f.name for f in dataclasses.fields(GRPOConfig)}
    names = [*grpo_args.SAME_NAME, *grpo_args.RENAMED, *grpo_args.FIXED, *grpo_args.DERIVED]
    assert sorted(set(names) - trl_fields) == []
    assert len(names) == len(set(names))  # each argument is set in one place
    recipe_keys = [*grpo_args.SAME_NAME, *grpo_args.RENAMED.values()]
    assert sorted(set(recipe_keys) - set(Recipe.model_fields)) == []


def test_a_failure_while_saving_marks_the_run_failed(
    cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, prepared: Path, tiny_model_dir: Path
):
    """The run record never stays "running" after an error, also one after training (here: the plot)."""

    def disk_full(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr("rlvr_cli.tracking.plots.reward_curves", disk_full)
    recipe = write_recipe(
        tmp_path / "recipe.yaml",
        tiny_model_dir,
        prepared,
        tmp_path / "out",
        max_steps=1,
        save_strategy="no",
        report_to=["none"],
    )
    result = cli("train", "--config", recipe)
    assert result.code == 1  # one line, no traceback
    assert result.err.strip().splitlines()[-1] == "error: No space left on device (RLVR_DEBUG=1 shows where)"
    run = json.loads((tmp_path / "out" / "rlvr_run.json").read_text())
    assert run["status"] == "failed" and run["error"] == "OSError: No space left on device"
    assert run["global_step"] == 1  # trained, then failed while saving
    assert "reward_curves" not in run


def test_the_run_record_file_names_only_what_happened(tmp_path: Path):
    from rlvr_cli.models.record import STATUSES, RunRecord

    record = RunRecord(rlvr_version="x", recipe={"seed": 1}, model={"name": "smollm2-135m"})
    record.write(tmp_path)
    started = json.loads((tmp_path / "rlvr_run.json").read_text())
    assert started["status"] == "running"
    assert not {"global_step", "final_metrics", "error", "reward_curves", "merged"} & set(started)
    record.ended(3, [2.0, 4.0], [{"step": 3, "reward": 0.5, "note": "text"}])
    record.fail(ValueError(""))  # an empty message is still one line: the type
    record.write(tmp_path)
    failed = json.loads((tmp_path / "rlvr_run.json").read_text())
    assert (failed["status"], failed["error"], failed["global_step"]) == ("failed", "ValueError", 3)
    assert failed["seconds_per_step"] == 3.0 and failed["final_metrics"] == {"step": 3, "reward": 0.5}
    assert RunRecord.read(tmp_path).to_dict() == failed  # read back unchanged
    assert set(RunRecord.from_dict({"status": "completed"}).to_dict(complete=True)) == set(
        record.to_dict(complete=True)
    )
    assert STATUSES == ("running", "completed", "interrupted", "failed", "aborted")


def test_modules_to_save_are_trained_saved_merged_and_evaluated_alike(
    cli, tmp_path: Path, prepared: Path, tiny_model_dir: Path
):
    """The reference recipe trains lm_head and embed_tokens in full (tied in the tiny model, as in
    Qwen2.5-0.5B): they are saved with the adapter, `--merge` bakes them in, and the adapter and
    the merged model generate the same completions."""
    import torch
    from safetensors.torch import load_file

    out = tmp_path / "out"
    recipe = write_recipe(
        tmp_path / "r.yaml", tiny_model_dir, prepared, out, max_steps=2, report_to="none", save_strategy="no",
        lora_modules_to_save=["lm_head", "embed_tokens"],
    )  # fmt: skip
    result = cli("train", "--config", recipe, "--merge", "--json")
    assert result.code == 0, result.err
    assert result.json()["merged"] == str(out / "merged")
    saved = load_file(out / "adapter_model.safetensors")
    embeddings = [k for k in saved if "embed_tokens" in k]
    assert embeddings and any("lora_" in k for k in saved)
    base = load_file(tiny_model_dir / "model.safetensors")["model.embed_tokens.weight"]
    assert not torch.equal(saved[embeddings[0]], base)  # trained, not a copy of the base

    def completions(*model_args) -> list[str]:
        where = tmp_path / f"eval-{len(list(tmp_path.glob('eval-*')))}"
        args = ["eval", *model_args, "--data", prepared, "--limit", "4", "--max-new-tokens", "8"]
        assert cli(*args, "--no-track", "--output", where).code == 0
        return [json.loads(x)["completion"] for x in (where / "samples.jsonl").read_text().splitlines()]

    adapter = completions("--checkpoint", out)
    assert adapter == completions("--model", out / "merged")
    assert adapter != completions("--model", tiny_model_dir)  # the training changed what it writes
