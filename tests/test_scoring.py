"""Scoring evaluation samples: real GSM8K gold answers, the statistics reported with them. Pure Python."""

from __future__ import annotations

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


def test_an_invented_follow_up_question_does_not_decide_the_score():
    """The reference scored the last number of prompt + completion, so an invented follow-up with
    its own answer decided; rlvr reads the first answer line, both ways round."""
    row = {"id": "x", "question": "q", "final_answer": "18"}
    follow_up = "\n\nQuestion: Tom has 3 cats.\n#### The final answer is {}"
    right_first = score(row, "9 * 2 = 18\n#### The final answer is 18" + follow_up.format(3), 40, False)
    assert (right_first.extracted, right_first.correct) == ("18", True)
    wrong_first = score(row, "9 * 2 = 17\n#### The final answer is 17" + follow_up.format(18), 40, False)
    assert (wrong_first.extracted, wrong_first.correct) == ("17", False)


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


def test_wilson_interval_values():
    assert wilson_interval(41, 100) == pytest.approx((0.3187, 0.5080), abs=1e-4)
    assert wilson_interval(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    assert wilson_interval(20, 20)[1] == 1.0  # rounding takes it to 1.0000000000000002: clipped
    assert wilson_interval(5, 10, z=1.0) == pytest.approx((0.3492, 0.6508), abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 0.0)


def test_mcnemar_exact_values():
    assert mcnemar_exact(3, 1) == pytest.approx(0.625)
    assert mcnemar_exact(1, 3) == pytest.approx(0.625)
    assert mcnemar_exact(7, 0) == pytest.approx(2 / 128)


def _sample(i, correct=True, format_ok=True, tokens=10, cut=False):
    completion = "#### The final answer is 1" if format_ok else "#### 1"
    if not correct:
        completion = completion.replace("1", "2")
    return score({"id": i, "question": "q", "final_answer": "1"}, completion, tokens, cut)


def test_summary_of_samples():
    samples = [
        _sample(0),
        _sample(1, correct=False, tokens=30, cut=True),
        _sample(2, format_ok=False, tokens=20),
    ]
    summary = summarize(samples, 4.0)
    assert summary == {
        "n": 3,
        "correct": 2,
        "accuracy": pytest.approx(2 / 3),
        "accuracy_ci95": pytest.approx(list(wilson_interval(2, 3))),
        "flexible_accuracy": pytest.approx(2 / 3),
        "flexible_accuracy_ci95": pytest.approx(list(wilson_interval(2, 3))),
        "format_rate": pytest.approx(2 / 3),
        "cut_rate": pytest.approx(1 / 3),
        "mean_completion_tokens": 20.0,
        "wall_seconds": 4.0,
        "problems_per_second": 0.75,
        "tokens_per_second": 15.0,
    }
    empty = summarize([], 0.0)
    assert {k: v for k, v in empty.items() if not k.endswith("ci95") and not k.startswith("flexible")} == {
        "n": 0,
        "correct": 0,
        "accuracy": 0.0,
        "format_rate": 0.0,
        "cut_rate": 0.0,
        "mean_completion_tokens": 0.0,
        "wall_seconds": 0.0,
        "problems_per_second": 0.0,
        "tokens_per_second": 0.0,
    }
    assert summarize(samples, 0.0)["tokens_per_second"] == 0.0
    fast = summarize(samples, 0.5)
    assert (fast["problems_per_second"], fast["tokens_per_second"]) == (6.0, 120.0)


def test_comparison_pairs_by_id_only():
    base = [_sample(0, correct=False), _sample(1), _sample(2, correct=False), _sample(9)]
    tuned = [_sample(0), _sample(1), _sample(2, correct=False), _sample(5)]  # 9 and 5 have no partner
    result = compare(base, tuned)
    assert result == {
        "n": 3,
        "accuracy_difference": pytest.approx(1 / 3),
        "fixed": 1,
        "broken": 0,
        "both_correct": 1,
        "both_wrong": 1,
        "mcnemar_p": 1.0,
    }
    assert compare([], [])["n"] == 0 and compare([], [])["accuracy_difference"] == 0.0


def test_a_sample_keeps_what_was_read():
    sample = score(
        {"id": 7, "question": "q", "final_answer": "1,000"}, "#### The final answer is 1000", 5, True
    )
    assert sample.as_dict() == {
        "id": "7",
        "question": "q",
        "gold": "1,000",
        "completion": "#### The final answer is 1000",
        "extracted": "1000",
        "correct": True,
        "format_ok": True,
        "completion_tokens": 5,
        "cut": True,
        "flexible": "1000",
        "flexible_correct": True,
    }
    bare = score({"final_answer": "3"}, "#### 3", 1, False)  # rows without id or question
    assert (bare.id, bare.question) == ("", "")


def test_flexible_reads_the_last_number_as_lm_eval_does_and_strict_the_answer_line():
    row = {"id": 1, "question": "q", "final_answer": "1,070"}
    unformatted = score(row, "She spends 30 and keeps $1,070.", 9, False)
    assert (unformatted.correct, unformatted.extracted) == (False, None)  # no answer line: strict says no
    assert (unformatted.flexible_correct, unformatted.flexible) == (True, "$1,070.")
    wrong_last = score(row, "#### The final answer is 1070\n(1000 + 70)", 9, False)
    assert (wrong_last.correct, wrong_last.flexible_correct) == (True, False)  # the last number is 70
    summary = summarize([unformatted, wrong_last], 1.0)
    assert (summary["accuracy"], summary["flexible_accuracy"]) == (0.5, 0.5)

    # A task without numbers: the answer line, else the last line.
    from rlvr_cli.tasks import get_task

    exact = get_task("custom", {"compare": "exact"})
    lenient = score({"final_answer": "blue"}, "I think so.\nblue", 3, False, exact)
    assert (lenient.correct, lenient.flexible_correct, lenient.flexible) == (False, True, "blue")


def test_pass_at_k_and_majority_over_sampled_completions():
    from rlvr_cli.evaluation.scoring import pass_at_k, summarize_sampled

    def group(answers, gold="1"):
        rows = {"id": "p", "question": "q", "final_answer": gold}
        return [score(rows, f"#### The final answer is {a}" if a else "no answer", 5, False) for a in answers]

    groups = [group(["1", "2", "2", "3"]), group(["2", "2", "1", None]), group(["1", "1", "1", "1"])]
    out = summarize_sampled(groups, 0.8)
    assert out["samples_per_problem"] == 4 and out["temperature"] == 0.8 and out["n"] == 3
    assert out["pass@1"] == pytest.approx((0.25 + 0.25 + 1.0) / 3)
    assert out["pass@4"] == pytest.approx(1.0)
    assert out["pass@2"] == pytest.approx((pass_at_k(4, 1, 2) * 2 + 1.0) / 3)
    assert out["maj@4"] == pytest.approx(1 / 3)  # the vote is 2, 2 and 1: only the last is right
    low, high = out["pass@1_ci95"]
    assert 0.0 <= low < out["pass@1"] < high <= 1.0
    assert out["maj@4_ci95"] == pytest.approx(list(wilson_interval(1, 3)))
    assert [k for k in out if k.startswith("pass@") and not k.endswith("ci95")] == [
        f"pass@{k}" for k in range(1, 5)
    ]


def test_a_task_scores_with_the_rows_metadata():
    """A task's checker gets the row's metadata (a JSON string in prepared data), as the reward does."""
    from rlvr_cli.tasks import get_task

    class ByMetadata(type(get_task("custom", {"compare": "exact"}))):
        def check(self, answer, gold, metadata):
            return metadata == {"accept": answer.text}

    task = ByMetadata({"compare": "exact"})
    row = {"id": "1", "question": "q", "final_answer": "x", "metadata": '{"accept": "blue"}'}
    assert score(row, "#### The final answer is blue", 3, False, task).correct
    assert not score(row, "#### The final answer is red", 3, False, task).correct


def _graded(answers, gold="1"):
    """One problem's sampled completions, each answering `a` (None: no answer line)."""
    row = {"id": "p", "question": "q", "final_answer": gold}
    return [score(row, f"#### The final answer is {a}" if a else "no answer", 5, False) for a in answers]


def test_pass_at_k_counts_draws_without_replacement():
    from rlvr_cli.evaluation.scoring import pass_at_k

    # One right among four: k draws include it with chance k/4; three right: any two draws do.
    assert [pass_at_k(4, 1, k) for k in (1, 2, 3, 4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert pass_at_k(4, 3, 2) == 1.0 and pass_at_k(4, 0, 4) == 0.0
    assert pass_at_k(5, 2, 3) == pytest.approx(1 - 1 / 10)  # C(3,3) / C(5,3) draws miss both
    assert pass_at_k(2, 1, 3) == 1.0  # more draws than samples, one right: every draw set holds it


def test_pass_at_k_interval_is_the_mean_plus_or_minus_two_standard_errors():
    """Per-problem pass@1 of 1/4, 1/4 and 1: mean 1/2, sample sd sqrt(0.1875), standard error 1/4."""
    from rlvr_cli.evaluation.scoring import summarize_sampled

    groups = [_graded(["1", "2", "2", "3"]), _graded(["2", "2", "1", None]), _graded(["1"] * 4)]
    out = summarize_sampled(groups, 1.0)
    assert out["pass@1_ci95"] == pytest.approx([0.5 - 1.959964 / 4, 0.5 + 1.959964 / 4])
    assert out["pass@3"] == pytest.approx((0.75 + 0.75 + 1.0) / 3)


def test_pass_at_k_interval_of_one_problem_is_its_value_and_is_clipped_to_0_1():
    from rlvr_cli.evaluation.scoring import summarize_sampled

    one = summarize_sampled([_graded(["1", "2"])], 0.5)
    assert (one["pass@1"], one["pass@1_ci95"]) == (0.5, [0.5, 0.5])  # no spread from one problem
    assert (one["pass@2"], one["pass@2_ci95"]) == (1.0, [1.0, 1.0])
    # One problem always right, one never: mean 1/2 +- 0.98, clipped to the possible range.
    two = summarize_sampled([_graded(["1", "1"]), _graded(["2", "2"])], 0.5)
    assert (two["pass@1"], two["pass@1_ci95"]) == (0.5, [0.0, 1.0])


def test_sampled_summary_of_no_problems_is_all_zero():
    from rlvr_cli.evaluation.scoring import summarize_sampled

    assert summarize_sampled([], 0.7) == {
        "samples_per_problem": 0,
        "temperature": 0.7,
        "n": 0,
        "maj@0": 0.0,
        "maj@0_ci95": [0.0, 0.0],
    }


def test_flexible_accuracy_of_no_samples_is_zero():
    empty = summarize([], 1.0)
    assert (empty["flexible_accuracy"], empty["flexible_accuracy_ci95"]) == (0.0, [0.0, 0.0])


def test_the_flexible_reading_is_checked_with_the_rows_metadata_too():
    from rlvr_cli.tasks import get_task

    class ByMetadata(type(get_task("custom", {"compare": "exact"}))):
        def check(self, answer, gold, metadata):
            return metadata == {"accept": answer.text}

    task = ByMetadata({"compare": "exact"})
    row = {"id": "1", "question": "q", "final_answer": "x", "metadata": '{"accept": "blue"}'}
    sample = score(row, "I would say\nblue", 3, False, task)  # no answer line: strict reads nothing
    assert (sample.correct, sample.flexible, sample.flexible_correct) == (False, "blue", True)
