"""`rlvr eval`: scoring on real GSM8K gold answers, statistics, and end-to-end runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlvr_cli.evaluation.scoring import compare, mcnemar_exact, score, summarize, wilson_interval

from .conftest import require_shared_gsm8k


def gsm8k_test_rows() -> list[dict]:
    from rlvr_cli.tasks.gsm8k.sources import load_source

    return [
        {"id": p.id, "question": p.question, "final_answer": p.final_answer}
        for p in load_source(str(require_shared_gsm8k())).test
    ]


def test_scoring_real_gold_answers_with_crafted_completions():
    rows = gsm8k_test_rows()
    negative = next(r for r in rows if r["final_answer"].startswith("-"))
    thousands = next(r for r in rows if len(r["final_answer"]) >= 4 and "." not in r["final_answer"])
    first = rows[0]  # Janet's ducks: 18
    assert first["final_answer"] == "18"
    cases = [
        (first, "16 - 3 - 4 = 9\n9 * 2 = 18\n#### The final answer is 18", True, True),
        (first, "#### The final answer is $18.00", True, True),
        (
            first,
            "#### The final answer is 17\n\nQuestion: A farm has 18 cows.\n#### The final answer is 18",
            False,
            True,
        ),
        (
            first,
            "I think 18.\n\nQuestion: How many?\nSolution: Let's think step by step.\n#### The final answer is 18",
            False,
            False,
        ),
        (negative, f"#### The final answer is {negative['final_answer']}", True, True),
        (negative, f"#### The final answer is {negative['final_answer'].lstrip('-')}", False, True),
        (thousands, f"#### The final answer is {int(thousands['final_answer']):,}", True, True),
    ]
    for row, completion, correct, format_ok in cases:
        sample = score(row, completion, tokens=10, cut=False)
        assert (sample.correct, sample.format_ok) == (correct, format_ok), completion


def test_the_reference_method_scores_invented_questions_wrongly():
    """The reference scored the last number of prompt + completion: an invented follow-up decides."""
    row = {"id": "x", "question": "q", "final_answer": "18"}
    completion = (
        "9 * 2 = 18\n#### The final answer is 18\n\nQuestion: Tom has 3 cats.\n#### The final answer is 3"
    )
    assert score(row, completion, 40, False).correct
    import re

    last_number = re.findall(r"-?\d+(?:\.\d+)?", completion)[-1]
    assert last_number == "3"  # what the reference would have compared with 18


def test_wilson_interval():
    low, high = wilson_interval(41, 100)
    assert 0.31 < low < 0.32 and 0.50 < high < 0.52
    assert wilson_interval(0, 10)[0] == 0.0


def test_mcnemar_exact():
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(10, 0) == pytest.approx(2 / 1024)
    assert mcnemar_exact(5, 5) == 1.0


def test_paired_comparison_counts_fixed_and_broken():
    def s(i, ok):
        return score(
            {"id": str(i), "question": "", "final_answer": "1"}, "#### 1" if ok else "#### 2", 1, False
        )

    base = [s(0, True), s(1, False), s(2, False), s(3, True)]
    tuned = [s(0, True), s(1, True), s(2, True), s(3, False)]
    result = compare(base, tuned)
    assert (result["fixed"], result["broken"], result["both_correct"], result["both_wrong"]) == (2, 1, 1, 0)
    assert result["accuracy_difference"] == pytest.approx(0.25)
    assert summarize(tuned, 2.0)["accuracy"] == 0.75


def test_end_to_end_tiny_model_summary_and_samples_agree(
    cli, prepared: Path, tiny_model_dir: Path, tmp_path: Path
):
    out = tmp_path / "eval"
    result = cli(
        "eval",
        "--model",
        tiny_model_dir,
        "--data",
        prepared,
        "--limit",
        "5",
        "--batch-size",
        "2",
        "--max-new-tokens",
        "8",
        "--output",
        out,
        "--json",
        "--no-track",
    )
    assert result.code == 0, result.err
    summary = json.loads((out / "summary.json").read_text())
    assert result.json()["results"] == summary["results"]
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    s = summary["results"][0]["summary"]
    assert s["n"] == len(samples) == 5
    assert s["accuracy"] == sum(x["correct"] for x in samples) / len(samples)
    assert s["format_rate"] == sum(x["format_ok"] for x in samples) / len(samples)
    assert {x["id"] for x in samples} == {f"test-{i}" for i in range(5)}
    assert all(x["completion_tokens"] <= 8 for x in samples)


def test_checkpoint_with_baseline_compares_on_the_same_problems(
    cli, prepared: Path, tiny_model_dir: Path, tmp_path: Path
):
    # A LoRA adapter on the tiny model, saved the way `rlvr train` saves it.
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    checkpoint = tmp_path / "ckpt"
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir),
        LoraConfig(r=4, target_modules=["q_proj"], task_type="CAUSAL_LM"),
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
    ],
)
def test_bad_input(cli, args, code, message):
    result = cli("eval", *args)
    assert result.code == code and message in result.err and "Traceback" not in result.err


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
    assert result.code == 1 and "the adapter's base model cannot be loaded" in result.err


def test_data_without_final_answer(cli, tmp_path: Path, tiny_model_dir: Path):
    data = tmp_path / "d.json"
    data.write_text('{"prompt": "Question: x"}\n')
    result = cli("eval", "--model", tiny_model_dir, "--data", data)
    assert result.code == 1 and "rows lack final_answer" in result.err
