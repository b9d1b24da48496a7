"""The real offline model, SmolLM2-135M-Instruct, through the smoke recipe: training and evaluation
as a new user runs them. A few minutes on 2 cores; the full demo is marked slow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import FIXTURE_GSM8K, REPO, SHARED_GSM8K


@pytest.fixture
def smoke_data(cli, tmp_path: Path) -> Path:
    source = SHARED_GSM8K if SHARED_GSM8K.is_dir() else FIXTURE_GSM8K
    assert (
        cli("prepare", "--shots", "2", "--source", source, "--output", tmp_path / "data" / "smoke").code == 0
    )
    return tmp_path / "data" / "smoke"


def test_smoke_recipe_trains_smollm2(cli, smol_dir: Path, smoke_data: Path, tmp_path: Path):
    # The recipe as shipped (its relative data paths resolve in this working directory), two steps.
    result = cli("train", "--config", REPO / "configs" / "smoke-cpu.yaml", "--set", "max_steps=2", "--json")
    assert result.code == 0, result.err[-3000:]
    run = result.json()
    assert run["status"] == "completed" and run["global_step"] == 2
    assert run["model"]["kind"] == "offline"
    assert {"reward", "accuracy", "format_rate", "kl", "completions/mean_length"} <= set(run["final_metrics"])
    # Generation stops after the answer: some completions end before the recipe's 160-token cap
    # (every one would run to it if neither EOS nor the answer stop ended them).
    metrics = run["final_metrics"]
    assert metrics["completions/cut_at_max_ratio"] < 1 and metrics["completions/mean_length"] < 160
    out = tmp_path / "outputs" / "smoke-cpu"
    assert (out / "adapter_model.safetensors").is_file() and (out / "reward_curves.png").is_file()


def test_smollm2_eval_summary_and_samples_agree(cli, smol_dir: Path, smoke_data: Path, tmp_path: Path):
    out = tmp_path / "eval"
    result = cli(
        "eval",
        "--model",
        "smollm2-135m",
        "--data",
        smoke_data,
        "--limit",
        "4",
        "--batch-size",
        "4",
        "--max-new-tokens",
        "96",
        "--output",
        out,
        "--no-track",
    )
    assert result.code == 0, result.err[-3000:]
    summary = json.loads((out / "summary.json").read_text())["results"][0]["summary"]
    samples = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    assert summary["n"] == len(samples) == 4
    assert summary["accuracy"] == sum(s["correct"] for s in samples) / 4
    assert summary["mean_completion_tokens"] == sum(s["completion_tokens"] for s in samples) / 4
    # Completions end at their answer line: nothing after it is generated. Greedy decoding is
    # deterministic, so "at least one answered" holds or fails every time; without it this checks nothing.
    from rlvr_cli.tasks.base import find_answer_line

    answered = [s["completion"] for s in samples if find_answer_line(s["completion"]) is not None]
    assert answered, [s["completion"] for s in samples]
    for completion in answered:
        _, end = find_answer_line(completion)
        assert completion[end:].strip() == "", completion


@pytest.mark.slow
def test_demo_end_to_end(cli, smol_dir: Path, smoke_data: Path, tmp_path: Path):
    """What `make demo` runs: the whole smoke recipe, then evaluation against the base model."""
    assert cli("train", "--config", REPO / "configs" / "smoke-cpu.yaml").code == 0
    result = cli(
        "eval",
        "--checkpoint",
        tmp_path / "outputs" / "smoke-cpu",
        "--data",
        smoke_data,
        "--limit",
        "16",
        "--batch-size",
        "16",
        "--max-new-tokens",
        "256",
        "--baseline",
        "--output",
        tmp_path / "eval",
        "--json",
    )
    assert result.code == 0, result.err[-3000:]
    summary = result.json()
    assert [r["summary"]["n"] for r in summary["results"]] == [16, 16]
    assert summary["comparison"]["n"] == 16
    assert (
        summary["mlflow"]["run_id"]
        == json.loads((tmp_path / "outputs" / "smoke-cpu" / "rlvr_run.json").read_text())["mlflow"]["run_id"]
    )
