"""`rlvr eval` end to end on a tiny model: summaries, samples, baselines, bad input (scoring and
statistics: tests/test_scoring.py)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest


def test_end_to_end_an_answering_model_is_scored_and_stopped_at_its_answer(
    cli, prepared: Path, answering_model_dir: Path, tmp_path: Path
):
    """The model writes `#### The final answer is 3`, then invents a question: right exactly on the
    problems whose answer is 3, each completion cut after its answer line, summary = samples."""
    from .conftest import ANSWERING_ANSWER

    out = tmp_path / "eval"
    result = cli(
        "eval", "--model", answering_model_dir, "--data", prepared, "--batch-size", "4",
        "--max-new-tokens", "40", "--output", out, "--json", "--no-track",
    )  # fmt: skip
    assert result.code == 0, result.err
    summary = json.loads((out / "summary.json").read_text())
    assert result.json()["results"] == summary["results"]
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    test_rows = [json.loads(line) for line in (prepared / "test" / "dataset.json").read_text().splitlines()]
    s = summary["results"][0]["summary"]
    assert s["n"] == len(samples) == len(test_rows)
    right = {r["id"] for r in test_rows if r["final_answer"] == ANSWERING_ANSWER}
    assert right and len(right) < len(test_rows)  # some right, some wrong
    assert {x["id"] for x in samples if x["correct"]} == right
    assert s["accuracy"] == pytest.approx(len(right) / len(test_rows))
    assert s["format_rate"] == 1.0 and all(x["format_ok"] for x in samples)
    for x in samples:  # stopped after the answer line: the invented question is not generated
        assert x["completion"].rstrip().endswith("#### The final answer is 3"), x["completion"]
        assert "Question" not in x["completion"] and x["completion_tokens"] < 40


def test_samples_give_pass_at_k_and_maj_at_k_beside_strict_and_flexible_greedy(
    cli, prepared: Path, tiny_model_dir: Path, tmp_path: Path
):
    out = tmp_path / "eval"
    args = ["eval", "--model", tiny_model_dir, "--data", prepared, "--limit", "4", "--max-new-tokens", "6"]
    result = cli(*args, "--samples", "3", "--temperature", "0.8", "--output", out, "--json", "--no-track")
    assert result.code == 0, result.err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["decoding"] == {
        "greedy": True, "max_new_tokens": 6, "samples": 3, "temperature": 0.8, "top_p": 1.0, "seed": 0,
    }  # fmt: skip
    assert summary["shots"] == 1 and summary["rlvr_version"]
    (model,) = summary["results"]
    assert {"accuracy", "flexible_accuracy", "flexible_accuracy_ci95"} <= set(model["summary"])
    sampled = model["sampled"]
    assert (sampled["samples_per_problem"], sampled["n"], sampled["temperature"]) == (3, 4, 0.8)
    for name in ("pass@1", "pass@2", "pass@3", "maj@3"):
        low, high = sampled[f"{name}_ci95"]
        assert 0.0 <= low <= sampled[name] <= high <= 1.0, name
    assert sampled["pass@1"] <= sampled["pass@2"] <= sampled["pass@3"]
    assert "pass@1" in result.err and "flexible" in result.err  # the tables
    # The same seed draws the same completions: results can be reproduced.
    again = cli(*args, "--samples", "3", "--temperature", "0.8", "--json", "--no-track")
    assert again.json()["results"][0]["sampled"] == sampled
    refused = cli(*args, "--samples", "2", "--temperature", "0")
    assert refused.code == 2 and "a temperature above 0" in refused.err


@pytest.mark.parametrize(("flag", "static"), [([], None), (["--no-cuda-graphs"], False)])
def test_cuda_graphs_flag_reaches_the_decode_loop_and_the_summary(
    cli, prepared: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch, flag, static
):
    """`--no-cuda-graphs` keeps eval's decoding eager on a CUDA GPU (greedy and --samples alike);
    by default the loop decides by device. The summary says which was asked for."""
    from rlvr_cli.evaluation import generators

    seen: list[bool | None] = []
    real = generators.decode_rows

    def spy(*args, static=None, **kwargs):
        seen.append(static)
        return real(*args, static=static, **kwargs)

    monkeypatch.setattr(generators, "decode_rows", spy)
    args = ["eval", "--model", tiny_model_dir, "--data", prepared, "--limit", "2", "--max-new-tokens", "4"]
    result = cli(*args, *flag, "--samples", "2", "--json", "--no-track")
    assert result.code == 0, result.err
    assert len(seen) >= 2 and set(seen) == {static}  # the greedy and the sampled pass
    assert result.json()["cuda_graphs"] is (static is None)


def test_checkpoint_with_baseline_compares_on_the_same_problems(
    cli, prepared: Path, tiny_model_dir: Path, tmp_path: Path
):
    # A LoRA adapter on the tiny model, saved the way `rlvr train` saves it. Random B (not PEFT's
    # zeros): the adapter changes the model, so an eval that ignored it would not pass below.
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    checkpoint = tmp_path / "ckpt"
    torch.manual_seed(1)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir),
        LoraConfig(
            r=4,
            lora_alpha=64,
            target_modules=["q_proj", "v_proj"],
            init_lora_weights=False,
            task_type="CAUSAL_LM",
        ),
    )
    model.save_pretrained(checkpoint)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(checkpoint)
    out = tmp_path / "eval"
    result = cli(
        "eval",
        "--checkpoint",
        checkpoint,
        "--baseline",
        "--data",
        prepared,
        "--limit",
        "4",
        "--max-new-tokens",
        "6",
        "--output",
        out,
        "--json",
    )
    assert result.code == 0, result.err
    summary = result.json()
    assert [r["summary"]["n"] for r in summary["results"]] == [4, 4]
    assert summary["comparison"]["n"] == 4
    base = [json.loads(x) for x in (out / "baseline_samples.jsonl").read_text().splitlines()]
    tuned = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    assert [b["id"] for b in base] == [t["id"] for t in tuned]
    assert [b["completion"] for b in base] != [t["completion"] for t in tuned]  # the adapter was applied
    # A new MLflow run holds the results (the adapter has no run manifest).
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=summary["mlflow"]["tracking_uri"])
    metrics = client.get_run(summary["mlflow"]["run_id"]).data.metrics
    assert (
        metrics["eval/n"] == 4 and "eval_baseline/accuracy" in metrics and "eval_comparison/fixed" in metrics
    )


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--checkpoint", "nowhere"], 2, "--checkpoint nowhere: directory not found"),
        (["--limit", "0", "--model", "x"], 2, "--limit 0: must be at least 1"),
        ([], 2, "nothing to evaluate"),
        (
            ["--model", "x", "--generator", "tgi"],
            2,
            "--generator tgi: unknown; use one of transformers, vllm",
        ),
    ],
)
def test_bad_input(cli, args, code, message):
    result = cli("eval", *args)
    assert result.code == code and message in result.err and "Traceback" not in result.err


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(_cuda(), reason="this machine has a GPU")
def test_vllm_without_a_gpu_is_one_line(cli, prepared: Path, tiny_model_dir: Path):
    result = cli("eval", "--model", tiny_model_dir, "--data", prepared, "--generator", "vllm")
    assert result.code == 2, result.err
    assert "--generator vllm needs a CUDA GPU; use --generator transformers" in result.err
    assert "Traceback" not in result.err and "loading" not in result.err  # refused before any model loads


@pytest.mark.skipif(not _cuda() or importlib.util.find_spec("vllm") is None, reason="needs CUDA and vLLM")
def test_vllm_generator_scores_like_transformers(cli, prepared: Path, smol_dir: Path, tmp_path: Path):
    """On a GPU: vLLM and transformers evaluate the same problems, the same way (greedy, cut after
    the answer line); their completions agree on most problems (bf16 kernels differ slightly)."""
    runs = {}
    for generator in ("transformers", "vllm"):
        out = tmp_path / generator
        result = cli(
            "eval",
            "--model",
            smol_dir,
            "--data",
            prepared,
            "--generator",
            generator,
            "--limit",
            "8",
            "--no-track",
            "--output",
            out,
        )
        assert result.code == 0, result.err
        assert json.loads((out / "summary.json").read_text())["generator"] == generator
        runs[generator] = [
            json.loads(x)["completion"] for x in (out / "samples.jsonl").read_text().splitlines()
        ]
    same = sum(a == b for a, b in zip(runs["transformers"], runs["vllm"], strict=True))
    assert same >= 6, runs


def test_baseline_of_a_base_model_is_a_notice_not_an_error(cli, prepared: Path, tiny_model_dir: Path):
    result = cli(
        "eval",
        "--model",
        tiny_model_dir,
        "--data",
        prepared,
        "--limit",
        "2",
        "--max-new-tokens",
        "4",
        "--baseline",
        "--no-track",
        "--json",
    )
    assert result.code == 0, result.err
    assert "--baseline ignored" in result.err and len(result.json()["results"]) == 1


def test_a_directory_that_is_not_a_model(cli, tmp_path: Path):
    (tmp_path / "empty").mkdir()
    result = cli("eval", "--checkpoint", tmp_path / "empty")
    assert result.code == 2 and "not a model or adapter directory" in result.err


def test_adapter_whose_base_cannot_be_found(cli, tmp_path: Path, prepared: Path):
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    (checkpoint / "adapter_config.json").write_text(
        json.dumps({"base_model_name_or_path": str(tmp_path / "gone")})
    )
    result = cli("eval", "--checkpoint", checkpoint, "--data", prepared)
    # Checked before any model loads (a missing base would otherwise end a run after its first model).
    assert result.code == 2 and result.err.strip() == (
        f"error: {checkpoint}: its base model cannot be found ({tmp_path / 'gone'}: model directory not found)"
    )


def test_data_without_final_answer(cli, tmp_path: Path, tiny_model_dir: Path):
    data = tmp_path / "d.json"
    data.write_text('{"prompt": "Question: x"}\n')
    result = cli("eval", "--model", tiny_model_dir, "--data", data)
    assert result.code == 1 and "rows lack final_answer" in result.err
