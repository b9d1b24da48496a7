"""The Task seam: GSM8K's reading fixed where it was wrong, reasoning-gym, math, custom data, plugins."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import ClassVar

import pytest

from rlvr_cli.tasks import get_task, task_for_source
from rlvr_cli.tasks.base import STOP_STRINGS, Answer, StopRule, find_answer_line
from rlvr_cli.tasks.gsm8k.answers import extract_answer
from rlvr_cli.tasks.gsm8k.rewards import correctness_reward, format_reward
from rlvr_cli.tasks.reasoning_gym import config_fields

FIXTURES = Path(__file__).parent / "fixtures"


def stops_after(text: str, pieces: int = 3) -> str | None:
    """Feed `text` to a stop rule a few characters at a time; the text up to where it stopped."""
    rule = StopRule()
    for i in range(0, len(text), pieces):
        if rule.feed(text[i : i + pieces]):
            return rule.text
    return None


# --- GSM8K's reading: the defects found when it was probed -----------------------------------------


def test_a_markdown_heading_is_not_the_answer_line():
    completion = "#### Step 1: add\n3 + 4 = 7\n#### Step 2\n#### The final answer is 7\n"
    answer = extract_answer(completion)
    assert (answer.value, answer.format_ok) == (7.0, True)
    assert correctness_reward([completion], final_answer=["7"]) == [1.0]
    assert format_reward([completion]) == [0.5]


def test_generation_does_not_stop_after_a_heading():
    completion = "#### Step 1: add\n3 + 4 = 7\n#### The final answer is 7\nQuestion: more"
    assert stops_after(completion) == "#### Step 1: add\n3 + 4 = 7\n#### The final answer is 7\n"


@pytest.mark.parametrize(
    "opener",
    ["Question:", " Question:", "**Question:**", "Question 2:", "### Question 3:", "> Question:"],
)
def test_invented_questions_in_any_common_form_earn_nothing(opener: str):
    completion = f"I am not sure.\n{opener} What is 2 + 3?\nSolution: 5\n#### The final answer is 5\n"
    assert format_reward([completion]) == [0.0]
    assert correctness_reward([completion], final_answer=["5"]) == [0.0]
    stopped = stops_after(completion)  # as soon as the opener is complete, before its answer
    assert stopped is not None and stopped.startswith(f"I am not sure.\n{opener.rstrip('*')}")
    assert len(stopped) <= len(f"I am not sure.\n{opener}") + 3


def test_a_line_that_merely_mentions_a_question_is_not_an_invented_one():
    completion = "The question asks for a sum.\nQuestions remain: none\n#### The final answer is 5\n"
    assert format_reward([completion]) == [0.5]
    assert stops_after(completion) == completion


def test_vllm_stops_only_at_an_invented_question_not_at_a_blank_line():
    assert "\n\n" not in STOP_STRINGS
    reasoning = "First, 3 + 4 = 7.\n\nThen 7 * 2 = 14.\n#### The final answer is 14"
    assert not any(s in reasoning for s in STOP_STRINGS)
    assert any(s in reasoning + "\nQuestion: next" for s in STOP_STRINGS)


def test_answer_line_search_is_linear_on_adversarial_text():
    import time

    text = "#### Step\n" * 100_000 + "Question " * 10_000
    start = time.perf_counter()
    assert find_answer_line(text) is None
    # Linear reads this in milliseconds, quadratic would take minutes: the bound leaves a loaded
    # 2-core machine a wide margin and still tells them apart.
    assert time.perf_counter() - start < 20.0


# --- task selection --------------------------------------------------------------------------------


def test_unknown_task_lists_the_valid_ones(cli, gsm8k_fixture: Path):
    result = cli("prepare", "--task", "gsm9k", "--source", gsm8k_fixture, "--output", "d")
    assert result.code == 2
    assert result.err.strip().splitlines() == [
        "error: unknown task 'gsm9k'; valid tasks: gsm8k, reasoning-gym, math, custom"
    ]
    assert not Path("d").exists()


def test_a_reasoning_gym_source_implies_its_task():
    assert task_for_source("reasoning-gym:chain_sum", None, {"max_digits": 2}) == (
        "reasoning-gym",
        {"dataset": "chain_sum", "max_digits": 2},
    )
    assert task_for_source("reasoning-gym", None, {}) == ("gsm8k", {})  # GSM-style, scored as GSM8K


def test_gsm8k_prepared_files_are_unchanged_and_name_their_task(cli, gsm8k_fixture: Path):
    result = cli("prepare", "--shots", "2", "--source", gsm8k_fixture, "--output", "d", "--json")
    assert result.code == 0, result.err
    assert result.json()["task"] == {"name": "gsm8k", "options": {}}
    row = json.loads(Path("d/test/dataset.json").read_text().splitlines()[0])
    assert set(row) == {"id", "question", "answer", "final_answer", "prompt"}


# --- reasoning-gym ---------------------------------------------------------------------------------


def test_reasoning_gym_prepare_with_generator_options(cli):
    result = cli(
        "prepare",
        "--source",
        "reasoning-gym:chain_sum",
        "--option",
        "min_digits=1",
        "--option",
        "max_digits=1",
        "--option",
        "max_terms=2",
        "--size",
        "100",
        "--shots",
        "2",
        "--output",
        "rg",
        "--json",
    )
    assert result.code == 0, result.err
    manifest = result.json()
    assert manifest["task"] == {
        "name": "reasoning-gym",
        "options": {"dataset": "chain_sum", "min_digits": 1, "max_digits": 1, "max_terms": 2},
    }
    rows = [json.loads(x) for x in Path("rg/test/dataset.json").read_text().splitlines()]
    assert len(rows) == 50
    for row in rows:  # one-digit operands, as the options asked
        expression = json.loads(row["metadata"])["metadata"]["expression"]
        assert all(len(term) == 1 for term in expression.replace("-", "+").split(" + "))


def test_unknown_generator_option_suggests_the_closest(cli):
    result = cli("prepare", "--source", "reasoning-gym:chain_sum", "--option", "max_digit=2", "-o", "rg")
    assert result.code == 2
    assert "unknown option 'max_digit'; did you mean 'max_digits'?" in result.err
    assert "Traceback" not in result.err


def test_reasoning_gym_string_answers_are_checked_by_its_verifier():
    task = get_task("reasoning-gym", {"dataset": "word_sorting"})
    problem = task.load("reasoning-gym:word_sorting", size=50, seed=1, strict=False).test[0]
    rewards = task.rewards()
    right = f"Sorting them.\n#### The final answer is {problem.final_answer}\n"
    wrong = "Sorting them.\n#### The final answer is zebra, apple\n"
    kwargs = {"final_answer": [problem.final_answer] * 2, "metadata": [json.dumps(problem.metadata)] * 2}
    assert rewards["correctness"]([right, wrong], **kwargs) == [1.0, 0.0]
    assert rewards["format"]([right, "no answer line"]) == [0.5, 0.0]


def test_the_demos_chain_sum_reward_is_reasoning_gyms_verdict(monkeypatch: pytest.MonkeyPatch):
    """`make demo`'s task: two 1-2 digit terms, checked by reasoning-gym's own score_answer."""
    options = {"dataset": "chain_sum", "min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 2}
    task = get_task("reasoning-gym", options)
    problems = task.load("reasoning-gym:chain_sum", size=40, seed=3, strict=False).test[:6]
    correctness = task.rewards()["correctness"]
    for problem in problems:
        gold = int(problem.final_answer)
        answers = [gold, gold + 1, -gold if gold else 1]
        completions = [f"Adding up.\n#### The final answer is {a}\n" for a in answers]
        kwargs = {"final_answer": [problem.final_answer] * 3, "metadata": [json.dumps(problem.metadata)] * 3}
        assert correctness(completions, **kwargs) == [1.0, 0.0, 0.0], problem.question

    # A verifier that raises must not stop training: that completion is scored wrong.
    def broken(self, answer, entry):
        raise KeyError("metadata")

    problem = problems[0]
    task._scorer = None
    monkeypatch.setattr(type(task._create(size=1, seed=0)), "score_answer", broken)
    right = f"#### The final answer is {problem.final_answer}\n"
    assert correctness(
        [right], final_answer=[problem.final_answer], metadata=[json.dumps(problem.metadata)]
    ) == [0.0]


def test_reasoning_gym_task_errors_name_what_is_missing_or_wrong(monkeypatch: pytest.MonkeyPatch):
    from rlvr_cli.core.errors import RlvrError, UsageError

    def refused(options: dict) -> str:
        with pytest.raises(RlvrError) as caught:
            get_task("reasoning-gym", options)
        return caught.value.message

    assert refused({}) == "the reasoning-gym task needs a dataset: --source reasoning-gym:NAME"
    assert refused({"dataset": "decimal_arithmetics"}) == (
        "reasoning-gym has no dataset 'decimal_arithmetics'; "
        "did you mean decimal_arithmetic, complex_arithmetic, calendar_arithmetic?"
    )
    assert refused({"dataset": "zzzzqqq"}) == (
        "reasoning-gym has no dataset 'zzzzqqq'; see reasoning_gym.factory.DATASETS"
    )
    # The split's seed and size are rlvr's to set, not generator options.
    for option in ("seed", "size"):
        assert refused({"dataset": "chain_sum", option: 3}) == (
            f"task reasoning-gym: unknown option {option!r}; valid options: "
            "dataset, min_terms, max_terms, min_digits, max_digits, allow_negation"
        )
    task = get_task("reasoning-gym", {"dataset": "chain_sum", "min_terms": 5, "max_terms": 2})
    with pytest.raises(UsageError) as caught:
        task.load("reasoning-gym:chain_sum", size=10, seed=0, strict=False)
    assert caught.value.message == "reasoning-gym:chain_sum: bad options (max_terms must be >= min_terms)"
    # Options the config accepts but the generator cannot draw from are refused before anything is
    # written, naming the options to change: aiw's task types without their weights.
    task = get_task("reasoning-gym", {"dataset": "aiw", "task_types": ["siblings"], "max_entities": 4})
    with pytest.raises(UsageError) as caught:
        task.load("reasoning-gym:aiw", size=10, seed=0, strict=False)
    assert caught.value.message == (
        "reasoning-gym:aiw: the generator fails on these options (ValueError: The number of weights "
        'does not match the population); change --option task_types=["siblings"] --option max_entities=4 '
        "(task_type_weights is left at its default of 3: give it 1 item like task_types)"
    )
    # Both lists given, with different lengths: the options to change are those named, no hint.
    task = get_task(
        "reasoning-gym", {"dataset": "aiw", "task_types": ["siblings"], "task_type_weights": [1, 0]}
    )
    with pytest.raises(UsageError) as caught:
        task.load("reasoning-gym:aiw", size=10, seed=0, strict=False)
    assert caught.value.message.endswith(
        'change --option task_types=["siblings"] --option task_type_weights=[1, 0]'
    ), caught.value.message
    assert refused({"dataset": "aiw", "task_types": ["siblings", "cousins"]}) == (
        "reasoning-gym:aiw: option task_types: 'cousins' is not one of siblings, friends, colleagues"
    )
    monkeypatch.setitem(sys.modules, "reasoning_gym", None)  # as if not installed
    assert refused({"dataset": "chain_sum"}) == (
        "the reasoning-gym task needs the reasoning-gym package: pip install 'rlvr[train]' (reasoning-gym)"
    )


def test_reasoning_gym_enum_options_are_given_by_their_values():
    # aiw's task_types and word_sorting's transformation are enums in reasoning-gym; on the command
    # line they are strings, by value or by name.
    from reasoning_gym.logic.aiw import TaskType

    assert config_fields("aiw")["task_types"] == [TaskType.SIBLINGS, TaskType.FRIENDS, TaskType.COLLEAGUES]
    task = get_task(
        "reasoning-gym",
        {"dataset": "aiw", "task_types": ["siblings", "FRIENDS"], "task_type_weights": [1, 0]},
    )
    assert task.options["task_types"] == ["siblings", "FRIENDS"]  # the manifest keeps what was written
    data = task.load("reasoning-gym:aiw", size=20, seed=0, strict=False)
    assert all(" sisters" in p.question and "friends" not in p.question for p in data.train + data.test)
    task = get_task("reasoning-gym", {"dataset": "word_sorting", "transformation": "uppercase"})
    data = task.load("reasoning-gym:word_sorting", size=5, seed=0, strict=False)
    assert all(p.final_answer.isupper() for p in data.train)
    first = data.train[0]
    assert task.check(
        Answer(value=None, text=first.final_answer, format_ok=True), first.final_answer, first.metadata
    )


def test_enum_options_are_matched_by_value_or_name_whatever_their_order():
    import enum

    from rlvr_cli.core.errors import UsageError
    from rlvr_cli.tasks.reasoning_gym import as_enums

    class Shape(enum.Enum):  # values unlike their names, unlike aiw's
        ROUND = "o"
        SQUARE = "[]"

    defaults = {"count": 3, "shapes": [Shape.ROUND], "shape": Shape.SQUARE}
    given = {"count": 5, "shapes": ["o", "square"], "shape": "round"}  # an ordinary option first
    assert as_enums("toy", given, defaults) == {
        "count": 5,
        "shapes": [Shape.ROUND, Shape.SQUARE],
        "shape": Shape.ROUND,
    }
    assert as_enums("toy", {"shape": Shape.ROUND}, defaults) == {"shape": Shape.ROUND}
    with pytest.raises(UsageError) as caught:
        as_enums("toy", {"shape": "triangle"}, defaults)
    assert caught.value.message == "reasoning-gym:toy: option shape: 'triangle' is not one of o, []"


def test_reasoning_gym_splits_are_reproducible_and_a_tenth_for_test():
    task = get_task("reasoning-gym", {"dataset": "chain_sum", "max_terms": 2})
    assert task.title == "reasoning-gym:chain_sum"
    data = task.load("reasoning-gym:chain_sum", size=1005, seed=7, strict=False)
    assert (data.name, data.kind, data.skipped) == (
        "reasoning-gym:chain_sum",
        "generator",
        {"train": 0, "test": 0},
    )
    assert (len(data.train), len(data.test)) == (1005, 100)  # a tenth, rounded down, at least 50
    assert [p.id for p in data.train[:2]] == ["train-0", "train-1"] and data.test[-1].id == "test-99"
    again = task.load("reasoning-gym:chain_sum", size=1005, seed=7, strict=False)
    assert (again.train, again.test) == (data.train, data.test)
    other = task.load("reasoning-gym:chain_sum", size=1005, seed=8, strict=False)
    assert [p.question for p in other.train] != [p.question for p in data.train]
    assert [p.question for p in data.test] != [p.question for p in data.train[:100]]  # another seed
    first = data.train[0]
    assert first.metadata["question"] == first.question and first.metadata["answer"] == first.final_answer


def test_reasoning_gym_problems_keep_the_worked_solution_without_its_answer_line(
    monkeypatch: pytest.MonkeyPatch,
):
    import datetime

    from rlvr_cli.tasks.base import Problem

    task = get_task("reasoning-gym", {"dataset": "chain_sum"})
    items = [
        {
            "question": "What is 2 + 3?",
            "answer": 5,
            "metadata": {"answer_cot": "2 + 3 = 5\n#### 5", "when": datetime.date(2024, 1, 2), "t": (1, 2)},
        },
        {"question": "Q2", "answer": "x", "metadata": {"answer_cot": "step one"}},
        {"question": "Q3", "answer": "y", "metadata": {"answer_cot": 3}},  # not text: no steps
        {"question": "Q4", "answer": "z"},
    ]
    monkeypatch.setattr(task, "_create", lambda size, seed: items)
    train = task.load("reasoning-gym:chain_sum", size=4, seed=0, strict=False).train
    assert train[0] == Problem(
        id="train-0",
        question="What is 2 + 3?",
        answer="2 + 3 = 5",
        final_answer="5",
        metadata={
            "question": "What is 2 + 3?",
            "answer": 5,
            "metadata": {"answer_cot": "2 + 3 = 5\n#### 5", "when": "2024-01-02", "t": [1, 2]},
        },
    )
    assert [p.answer for p in train] == ["2 + 3 = 5", "step one", "", ""]
    assert train[3].metadata == {"question": "Q4", "answer": "z", "metadata": {}}


def test_reasoning_gym_checks_against_the_gold_answer_when_the_row_has_no_answer_in_metadata():
    task = get_task("reasoning-gym", {"dataset": "chain_sum"})
    correctness = task.rewards()["correctness"]
    completions = ["#### The final answer is 12", "#### The final answer is 13", "no answer line"]
    assert correctness(completions, final_answer=["12"] * 3) == [1.0, 0.0, 0.0]
    metadata = [json.dumps({"metadata": {}})] * 3
    assert correctness(completions, final_answer=["12"] * 3, metadata=metadata) == [1.0, 0.0, 0.0]


# --- custom data -----------------------------------------------------------------------------------


def test_custom_task_with_exact_comparison(cli):
    result = cli(
        "prepare",
        "--task",
        "custom",
        "--compare",
        "exact",
        "--source",
        FIXTURES / "custom",
        "--shots",
        "1",
        "--output",
        "c",
        "--json",
    )
    assert result.code == 0, result.err
    manifest = result.json()
    assert manifest["task"] == {"name": "custom", "options": {"compare": "exact"}}
    assert manifest["skipped"] == {"train": 1, "test": 0}  # the row with an empty answer
    task = get_task("custom", {"compare": "exact"})
    check = task.rewards()["correctness"]
    assert check(
        ["#### The final answer is Date, kiwi, lime.", "#### The final answer is kiwi, date, lime"],
        final_answer=["date, kiwi, lime"] * 2,
    ) == [1.0, 0.0]


def test_custom_file_without_the_needed_columns_names_the_line(cli, tmp_path: Path):
    source = tmp_path / "mine"
    source.mkdir()
    (source / "train.jsonl").write_text('{"question": "q1", "answer": "1"}\n{"q": "q2", "answer": "2"}\n')
    (source / "test.jsonl").write_text('{"question": "q3", "answer": "3"}\n')
    result = cli("prepare", "--task", "custom", "--source", source, "--output", "c")
    assert result.code == 1
    assert result.err.strip() == (
        f"error: {source / 'train.jsonl'}:2: missing column 'question or prompt'; rows need 'question' (or 'prompt') and 'answer'"
    )


def test_custom_unreadable_gold_is_skipped_or_fails_with_strict(cli, tmp_path: Path):
    source = tmp_path / "mine"
    source.mkdir()
    (source / "train.jsonl").write_text(
        "".join(json.dumps({"question": f"q{i}", "answer": str(i)}) + "\n" for i in range(5))
        + '{"question": "q", "answer": "many"}\n'
    )
    (source / "test.jsonl").write_text('{"question": "q3", "answer": "3"}\n')
    result = cli("prepare", "--task", "custom", "--source", source, "--shots", "1", "-o", "c", "--json")
    assert result.code == 0, result.err
    assert result.json()["skipped"]["train"] == 1  # "many" is not a number (compare: numeric)
    result = cli("prepare", "--task", "custom", "--source", source, "-o", "c2", "--strict")
    assert result.code == 1 and f"{source / 'train.jsonl'}:6:" in result.err


def test_bad_comparison_is_refused(cli):
    result = cli("prepare", "--task", "custom", "--compare", "fuzzy", "--source", FIXTURES / "custom")
    assert result.code == 2
    assert "--compare fuzzy: choose one of numeric, exact, math-verify" in result.err


def write_source(tmp_path: Path, train: list[dict], test: list[dict]) -> Path:
    """A local source directory: train.jsonl and test.jsonl holding `train` and `test` rows."""
    source = tmp_path / "src"
    source.mkdir()
    for split, rows in (("train", train), ("test", test)):
        (source / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return source


def test_custom_rows_become_problems_with_ids_solutions_and_verbatim_prompts(tmp_path: Path):
    from rlvr_cli.tasks.base import Problem

    source = write_source(
        tmp_path,
        train=[
            {"id": "a", "question": "Capital of France?", "answer": " Paris ", "solution": "It is Paris."},
            {"prompt": "Reply with yes.", "answer": "yes"},
            {"question": "No answer given", "answer": None},
            {"id": 5, "question": "Q5", "prompt": "P5", "answer": "ok"},
        ],
        test=[{"question": "Q", "prompt": "  ", "answer": "no"}],
    )
    task = get_task("custom", {"compare": "exact"})
    data = task.load(str(source), size=0, seed=0, strict=False)
    verbatim = {"verbatim_prompt": True}
    assert data.train == [
        Problem(id="a", question="Capital of France?", answer="It is Paris.", final_answer="Paris"),
        Problem(id="train-1", question="Reply with yes.", answer="", final_answer="yes", metadata=verbatim),
        Problem(id="5", question="P5", answer="", final_answer="ok", metadata=verbatim),  # prompt wins
    ]
    assert data.test == [Problem(id="test-0", question="Q", answer="", final_answer="no")]  # blank prompt
    assert data.skipped == {"train": 1, "test": 0}  # a null answer is no answer, not the text "None"
    # A prompt is used as written; a question goes into the few-shot layout.
    assert task.prompt_text(data.train[1]) == "Reply with yes."
    assert (
        task.prompt_text(data.train[0]) == "Question: Capital of France?\nSolution: Let's think step by step."
    )


def test_custom_row_without_an_answer_names_the_column(tmp_path: Path):
    from rlvr_cli.core.errors import RlvrError

    source = write_source(tmp_path, train=[{"question": "q"}], test=[])
    with pytest.raises(RlvrError) as caught:
        get_task("custom", {"compare": "exact"}).load(str(source), size=0, seed=0, strict=False)
    assert caught.value.message == (
        f"{source / 'train.jsonl'}:1: missing column 'answer'; rows need 'question' (or 'prompt') and 'answer'"
    )


@pytest.mark.parametrize(
    ("answer", "gold", "right"),
    [
        ("Paris", "Paris.", True),  # a final period on the gold answer is ignored too
        ("paris", "Paris .", True),
        ("New  York", "new york", True),
        ("Pari", "Paris.", False),
        ("P", "Paris.", False),
        ("Paris", "Paris", True),
    ],
)
def test_custom_exact_comparison_ignores_case_spacing_and_a_final_period(answer, gold, right):
    task = get_task("custom", {"compare": "exact"})
    reward = task.rewards()["correctness"]
    assert reward([f"#### The final answer is {answer}"], final_answer=[gold]) == [1.0 if right else 0.0]


def test_custom_numeric_comparison_reads_numbers_within_the_tolerance():
    task = get_task("custom")  # numeric is the default
    assert task.read("#### The final answer is $1,234.00") == extract_answer(
        "#### The final answer is $1,234.00"
    )
    assert task.read("#### The final answer is $1,234.00").value == 1234.0
    reward = task.rewards()["correctness"]
    completions = [
        "#### The final answer is $1,234.00",
        "#### The final answer is 1234.0004",  # within 1e-3
        "#### The final answer is 1233",
        "no answer line",
    ]
    assert reward(completions, final_answer=["1234"] * 4) == [1.0, 1.0, 0.0, 0.0]
    assert reward(["#### The final answer is 7"], final_answer=["seven"]) == [None]  # not a number
    # The lenient reading is the last number, as lm-eval's flexible-extract.
    assert task.read_flexible("So she has $1,234 left. Done") == (1234.0, "$1,234", False)


def test_custom_math_verify_comparison_checks_equivalent_expressions():
    pytest.importorskip("math_verify")
    task = get_task("custom", {"compare": "math-verify"})
    reward = task.rewards()["correctness"]
    completions = ["#### The final answer is 0.5", "#### The final answer is 1/3", "no answer"]
    assert reward(completions, final_answer=["\\frac{1}{2}"] * 3) == [1.0, 0.0, 0.0]
    assert reward(["#### The final answer is 1"], final_answer=["$"]) == [None]  # unreadable gold


def test_custom_math_verify_without_math_verify_fails_when_the_task_is_made(
    monkeypatch: pytest.MonkeyPatch,
):
    from rlvr_cli.core.errors import RlvrError

    monkeypatch.setitem(sys.modules, "math_verify", None)  # as if not installed
    with pytest.raises(RlvrError) as caught:
        get_task("custom", {"compare": "math-verify"})
    assert caught.value.message == "the math task needs math-verify: pip install 'rlvr[math]' (math-verify)"
    numeric = get_task("custom", {"compare": "numeric"})  # the other comparisons do not need it
    assert numeric.rewards()["correctness"](["#### The final answer is 3"], final_answer=["3"]) == [1.0]


# --- math ------------------------------------------------------------------------------------------


def test_math_task_boxed_answers_compared_by_math_verify(cli):
    result = cli(
        "prepare", "--task", "math", "--source", FIXTURES / "math", "--shots", "1", "-o", "m", "--json"
    )
    assert result.code == 0, result.err
    manifest = result.json()
    assert manifest["skipped"] == {"train": 1, "test": 0}  # the row with no boxed answer
    row = json.loads(Path("m/test/dataset.json").read_text().splitlines()[0])
    assert "#### The final answer is \\boxed{" in row["prompt"]
    task = get_task("math")
    rewards = task.rewards()
    completions = [
        "#### The final answer is \\boxed{0.5}",  # equal to 1/2
        "#### The final answer is \\boxed{\\frac{2}{4}}",
        "#### The final answer is \\boxed{\\frac{1}{3}}",
        "#### The final answer is 1/2",  # right, but not boxed: no format reward
    ]
    assert rewards["correctness"](completions, final_answer=["\\frac{1}{2}"] * 4) == [1.0, 1.0, 0.0, 1.0]
    assert rewards["format"](completions) == [0.5, 0.5, 0.5, 0.0]


def test_math_verify_missing_names_the_extra(cli, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "math_verify", None)  # as if not installed
    result = cli("prepare", "--task", "math", "--source", FIXTURES / "math", "-o", "m")
    assert result.code == 1
    assert (
        result.err.strip() == "error: the math task needs math-verify: pip install 'rlvr[math]' (math-verify)"
    )


def test_math_rows_become_problems_with_the_given_or_the_boxed_answer(tmp_path: Path):
    pytest.importorskip("math_verify")
    from rlvr_cli.tasks.base import Problem

    source = write_source(
        tmp_path,
        train=[
            {"question": "What is 1+1?", "solution": "So \\boxed{3} is wrong; \\boxed{2}.", "answer": "2"},
            {"problem": "Half of 1?", "solution": "It is $\\boxed{\\frac{1}{2}}$.", "answer": ""},
            {"problem": "Square of x?", "answer": "x^2"},
            {"problem": "Nothing to check", "solution": "No box."},
        ],
        test=[{"problem": "P", "solution": "\\boxed{7}", "answer": "7.0"}],
    )
    data = get_task("math").load(str(source), size=0, seed=0, strict=False)
    assert data.train == [
        Problem("train-0", "What is 1+1?", "So \\boxed{3} is wrong; \\boxed{2}.", "2"),
        Problem("train-1", "Half of 1?", "It is $\\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}"),  # the last box
        Problem("train-2", "Square of x?", "", "x^2"),
    ]
    assert data.test == [Problem("test-0", "P", "\\boxed{7}", "7.0")]  # the answer column, not the box
    assert data.skipped == {"train": 1, "test": 0}


def test_math_rows_that_cannot_be_read_fail_with_strict_or_name_the_columns(tmp_path: Path):
    pytest.importorskip("math_verify")
    from rlvr_cli.core.errors import RlvrError

    unboxed = write_source(tmp_path, train=[{"problem": "p", "solution": "no box"}], test=[])
    with pytest.raises(RlvrError) as caught:
        get_task("math").load(str(unboxed), size=0, seed=0, strict=True)
    assert caught.value.message.startswith(f"{unboxed / 'train.jsonl'}:1: the gold answer cannot be read")
    nameless = tmp_path / "nameless"
    nameless.mkdir()
    (nameless / "train.jsonl").write_text('{"answer": "1"}\n')
    (nameless / "test.jsonl").write_text("")
    with pytest.raises(RlvrError) as caught:
        get_task("math").load(str(nameless), size=0, seed=0, strict=False)
    assert caught.value.message == (
        f"{nameless / 'train.jsonl'}:1: missing column 'problem or question'; "
        "rows need 'problem' (or 'question') and 'answer' (or a boxed 'solution')"
    )


def test_math_exemplars_box_the_answer_after_the_worked_solution():
    pytest.importorskip("math_verify")
    from rlvr_cli.tasks.base import Problem

    task = get_task("math")
    assert task.exemplar_text(Problem("p", " Half of 1? ", " Divide by 2. ", "\\frac{1}{2}")) == (
        "Question: Half of 1?\nSolution: Let's think step by step. Divide by 2.\n"
        "#### The final answer is \\boxed{\\frac{1}{2}}"
    )
    assert task.exemplar_text(Problem("p", "Q", "  ", "3")) == (
        "Question: Q\nSolution: Let's think step by step.\n#### The final answer is \\boxed{3}"
    )


@pytest.mark.parametrize(
    ("completion", "text", "format_ok"),
    [
        ("#### The final answer is \\boxed{\\frac{1}{2}}", "\\frac{1}{2}", True),
        ("#### The final answer is \\boxed{1} or rather \\boxed{2}", "2", True),  # the last box
        ("#### The final answer is \\boxed{12", "\\boxed{12", False),  # unbalanced: no box
        ("#### The final answer is 1/2", "1/2", False),
        ("no answer line", None, False),
    ],
)
def test_math_reads_the_last_box_of_the_answer_line(completion, text, format_ok):
    pytest.importorskip("math_verify")
    answer = get_task("math").read(completion)
    assert (answer.text, answer.format_ok) == (text, format_ok)


def test_math_checks_expressions_intervals_and_empty_boxes():
    pytest.importorskip("math_verify")
    correctness = get_task("math").rewards()["correctness"]
    completions = [
        "#### The final answer is \\boxed{\\frac{\\sqrt{2}}{2}}",
        "#### The final answer is \\boxed{x^{2}}",
        "#### The final answer is \\boxed{(1, 2]}",
        "#### The final answer is \\boxed{}",  # an empty box is no answer
        "no answer line",
    ]
    golds = ["\\sqrt{2}/2", "x^2", "(1,2]", "1", "1"]
    assert correctness(completions, final_answer=golds) == [1.0, 1.0, 1.0, 0.0, 0.0]


def test_a_box_cut_off_at_the_token_limit_is_still_read():
    """`\\boxed{\\frac{1}{2}` without its closing brace (the completion hit max_completion_length):
    math-verify reads the box as it stands; it is not wrapped in `$...$` as plain LaTeX."""
    pytest.importorskip("math_verify")
    from rlvr_cli.tasks.math import equivalent

    assert equivalent("\\boxed{\\frac{1}{2}", "\\frac{1}{2}")
    assert not equivalent("\\boxed{\\frac{1}{3}", "\\frac{1}{2}")


def test_math_answers_are_checked_outside_the_main_thread_too():
    """TRL or a server may score in a worker thread, where math-verify's SIGALRM timeout cannot run."""
    pytest.importorskip("math_verify")
    import threading

    correctness = get_task("math").rewards()["correctness"]
    got: list = []
    worker = threading.Thread(
        target=lambda: got.append(
            correctness(["#### The final answer is \\boxed{0.5}"], final_answer=["\\frac{1}{2}"])
        )
    )
    worker.start()
    worker.join()
    assert got == [[1.0]]


# --- train and eval read the task ------------------------------------------------------------------


def test_train_refuses_a_recipe_task_other_than_the_datas(cli, prepared: Path):
    result = cli(
        "train",
        "--data",
        prepared,
        "--set",
        "task=math",
        "--set",
        "model_name_or_path=smollm2-135m",
        "--output",
        "o",
    )
    assert result.code == 2
    assert f"the recipe's task is math but {prepared} was prepared for gsm8k" in (result.err)


def test_eval_scores_with_the_task_the_data_names(cli):
    from rlvr_cli.evaluation.problems import load_problems
    from rlvr_cli.evaluation.scoring import score

    assert (
        cli(
            "prepare",
            "--task",
            "custom",
            "--compare",
            "exact",
            "--source",
            FIXTURES / "custom",
            "--shots",
            "1",
            "-o",
            "c",
        ).code
        == 0
    )
    problems = load_problems("c", None)
    rows, task = problems.rows, problems.task
    assert task.name == "custom" and task.compare == "exact"
    sample = score(rows[0], "#### The final answer is date, kiwi, lime\n", 9, False, task)
    assert (sample.correct, sample.format_ok, sample.extracted) == (True, True, "date, kiwi, lime")


# --- plugins ---------------------------------------------------------------------------------------


def test_a_task_from_another_package_registers_through_an_entry_point(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    site = tmp_path / "site"
    (site / "rlvr_demo_plugin").mkdir(parents=True)
    (site / "rlvr_demo_plugin" / "__init__.py").write_text(
        "from rlvr_cli.tasks.custom import CustomTask\n\n"
        "class Shout(CustomTask):\n"
        "    name = 'shout'\n"
        "    title = 'SHOUT'\n"
        "    def prompt_text(self, problem):\n"
        "        return 'SHOUT: ' + super().prompt_text(problem)\n"
    )
    dist = site / "rlvr_demo_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: rlvr-demo-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[rlvr.tasks]\nshout = rlvr_demo_plugin:Shout\n")
    monkeypatch.syspath_prepend(str(site))
    result = cli(
        "prepare",
        "--task",
        "shout",
        "--source",
        FIXTURES / "custom",
        "--compare",
        "exact",
        "--shots",
        "0",
        "-o",
        "p",
        "--json",
    )
    assert result.code == 0, result.err
    assert result.json()["task"]["name"] == "shout"
    row = json.loads(Path("p/test/dataset.json").read_text().splitlines()[0])
    assert row["prompt"].startswith("SHOUT: Question: Sort these words")
    assert "shout" in cli("prepare", "--task", "nope", "--source", "x").err


# --- the answer-reading seam, piece by piece ---------------------------------------------------------


@pytest.mark.parametrize(
    ("completion", "text"),
    [
        ("plain", "plain"),
        ({"role": "assistant", "content": "one message"}, "one message"),
        ([{"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}], "ab"),
        (({"content": "in a tuple"},), "in a tuple"),
        (
            [{"content": [{"type": "text", "text": "multi"}, {"type": "image"}, {"text": "modal"}]}],
            "multimodal",
        ),
        (["bare", " strings"], "bare strings"),
        ([{"content": 3}, {"content": None}], ""),
        ([{"content": ["raw", {"text": "kept"}, {"text": 5}]}], "kept"),  # only text parts count
        (None, ""),
        (42, ""),
    ],
)
def test_completion_text_reads_every_form_trl_passes(completion, text):
    from rlvr_cli.tasks.base import completion_text

    assert completion_text(completion) == text


@pytest.mark.parametrize(
    ("rest", "answer"),
    [
        (" The final answer is 4", True),
        ("The final answer is 4", True),
        (" the final answer is 4", True),
        (" 42", True),
        (" -3", True),
        (" $5", True),
        (" \\frac{1}{2}", True),
        ("", True),  # a bare marker: an answer line with nothing readable on it
        (" Step 1", False),
        (" a1", False),  # a word, however short
        (" X2 plan", False),
        ("# Deeper heading", False),
        ("\t Final thoughts", False),
    ],
)
def test_what_follows_the_marker_decides_an_answer_line(rest, answer):
    from rlvr_cli.tasks.base import is_answer_line

    assert is_answer_line(rest) is answer


def test_the_answer_line_span_is_exact():
    text = "work\n#### Step 2\nmore\n#### The final answer is 7\ntail"
    start, end = find_answer_line(text)
    assert text[start:end] == " The final answer is 7"
    assert find_answer_line("#### 5") == (4, 6)  # to the end of a text without a newline
    assert find_answer_line("no marker at all") is None
    long_line = "#### " + "9" * 400
    start, end = find_answer_line(long_line)
    assert end - start == 257  # capped one past MAX_ANSWER_LINE: the reader refuses such a line
    start, end = find_answer_line(long_line + "\nrest")
    assert end - start == 257  # the newline is not looked for past the cap either
    exactly = "#### " + "9" * 255 + "\n"  # 256 characters after the marker: still a line
    assert find_answer_line(exactly) == (4, 260)
    # An invented question before the answer, on the first line, after a heading, after a blank line:
    for text in ("Question: x\n#### 5", "#### Step 1\nQuestion: x\n#### 5", "\nQuestion: x\n#### 5"):
        assert find_answer_line(text) is None, text


@pytest.mark.parametrize(
    ("text", "stopped_at"),
    [
        ("2 + 2 = 4\n#### The final answer is 4\nQuestion: next", "2 + 2 = 4\n#### The final answer is 4\n"),
        ("#### 4\n\nmore", "#### 4\n"),
        ("thinking\nQuestion: invented", "thinking\nQuestion:"),
        ("**Question 2:** invented", "**Question 2:"),
        ("#### Step 1\nstill working\n#### 9\n", "#### Step 1\nstill working\n#### 9\n"),
        ("a question: not an opener\nok", None),
        ("\n#### 4\nmore", "\n#### 4\n"),  # after a leading blank line
        ("#### Step #### 5\nnext", None),  # a heading line, whatever follows on it
        ("#### The final answer is 4 with no newline yet", None),
    ],
)
def test_the_stop_rule_ends_after_the_answer_line_or_an_invented_question(text, stopped_at):
    for size in (1, 2, 5, len(text)):  # however the text is cut into tokens
        got = stops_after(text, size)
        if stopped_at is None:
            assert got is None, size
        else:
            # It stops on the piece that completes the line or the opener: at most a piece more.
            assert got is not None and got.startswith(stopped_at) and len(got) < len(stopped_at) + size, size


def test_a_stopped_rule_stays_stopped():
    rule = StopRule()
    assert rule.stopped is False
    assert not rule.feed("#### 4")
    assert rule.feed("\n")
    assert rule.feed("anything") and rule.stopped is True
    assert rule.text == "#### 4\n"  # nothing is added after the stop
    invented = StopRule()
    assert invented.feed("Question:") and invented.stopped is True
    assert invented.feed("\n#### 5\n") and invented.text == "Question:"


@pytest.mark.parametrize(
    ("completion", "text", "format_ok"),
    [
        ("#### The final answer is \\boxed{1/2}", "\\boxed{1/2}", True),
        ("#### The final answer is: yes.", "yes", True),
        ("#### The final answer is Xmas.", "Xmas", True),
        ("#### The final answer is BOX", "BOX", True),
        ("#### The final answer is yes .", "yes", True),
        (
            "#### the final answer is maybe",
            "the final answer is maybe",
            False,
        ),  # only the exact phrase counts
        ("#### The final answer is kiwi, lime.\n", "kiwi, lime", True),
        ("#### kiwi\n", None, False),  # a word other than the phrase after the marker: a heading
        ("#### The final answer is wait..", "wait..", True),  # an ellipsis is kept
        ("#### 3/4", "3/4", False),
        ("#### The final answer is   \r", None, False),
        ("#### ", None, False),
        ("no answer line", None, False),
    ],
)
def test_read_answer_text_for_non_numeric_tasks(completion, text, format_ok):
    from rlvr_cli.tasks.base import read_answer_text

    answer = read_answer_text(completion)
    assert (answer.text, answer.format_ok, answer.value) == (text, format_ok, None)


@pytest.mark.parametrize(
    ("completion", "answer"),
    [
        ("#### The final answer is blue\nor maybe red", (None, "blue", True)),  # the answer line first
        ("I think so.\nblue\n\nred  \n", (None, "red", False)),  # else the last non-empty line
        ("one\ntwo\nthree", (None, "three", False)),
        ("  \n\n", (None, None, False)),
        ("", (None, None, False)),
    ],
)
def test_the_lenient_reading_of_a_text_task_is_the_answer_line_or_the_last_line(completion, answer):
    assert get_task("custom", {"compare": "exact"}).read_flexible(completion) == answer


def test_a_task_writes_the_few_shot_layout_and_refuses_unknown_options():
    from rlvr_cli.core.errors import UsageError
    from rlvr_cli.tasks.base import Problem

    task = get_task("custom", {"compare": "exact"})
    problem = Problem(id="p", question="  What?  ", answer="  Because.  ", final_answer="yes")
    assert task.exemplar_text(problem) == (
        "Question: What?\nSolution: Let's think step by step. Because.\n#### The final answer is yes"
    )
    assert (
        task.exemplar_text(Problem("p", "Q", "", "1")).splitlines()[1]
        == "Solution: Let's think step by step."
    )
    assert task.prompt_text(problem) == "Question: What?\nSolution: Let's think step by step."
    assert task.describe() == {"name": "custom", "options": {"compare": "exact"}}
    with pytest.raises(UsageError, match="unknown option 'compar'; did you mean 'compare'"):
        get_task("custom", {"compar": "exact"})
    with pytest.raises(UsageError, match="unknown option 'x'; valid options: none"):
        get_task("gsm8k", {"x": 1})

    class TwoOptions(type(task)):
        options_help: ClassVar[dict[str, str]] = {"alpha": "first", "beta": "second"}

    with pytest.raises(UsageError) as caught:
        TwoOptions({"zzz": 1})
    assert caught.value.message == "task custom: unknown option 'zzz'; valid options: alpha, beta"


def test_a_tasks_rewards_read_metadata_and_skip_unreadable_gold():
    custom = get_task("custom", {"compare": "exact"})

    class NeedsMetadata(type(custom)):  # a checker that decides by the row's metadata too
        def check(self, answer, gold, metadata):
            verdict = super().check(answer, gold, metadata)
            return verdict if verdict is None else verdict and (metadata or {}).get("k") == 1

    task = NeedsMetadata({"compare": "exact"})
    rewards = task.rewards()
    assert list(rewards) == ["format", "correctness"]
    yes = "#### The final answer is yes"
    completions = ["#### The final answer is Yes.", "#### no", yes, yes]
    assert rewards["format"](completions) == [0.5, 0.0, 0.5, 0.5]
    got = rewards["correctness"](
        completions, final_answer=["yes", "yes", "  ", "yes"], metadata=['{"k": 1}', None, None, '{"k": 2}']
    )
    # Each row's own metadata reaches the checker; an unreadable (empty) gold answer is not scored.
    assert got == [1.0, 0.0, None, 0.0]
    assert rewards["format"].__doc__ == "0.5 for a well-formed first answer line (custom)."
    assert rewards["correctness"].__doc__ == "1.0 when the first answer is right (custom)."
    with pytest.raises(ValueError):  # one gold answer per completion, or an error: never a silent shift
        rewards["correctness"](completions, final_answer=["yes"])


def test_metadata_travels_as_a_json_string():
    from rlvr_cli.tasks.base import _metadata

    assert _metadata('{"a": [1, 2]}') == {"a": [1, 2]}
    assert _metadata({"a": 1}) == {"a": 1}
    assert _metadata("not json") is None
    assert _metadata(None) is None and _metadata(3) is None


def test_paired_lists_name_the_list_left_at_its_default():
    from rlvr_cli.tasks.reasoning_gym import config_fields, paired_lists

    defaults = config_fields("aiw")  # task_types and task_type_weights: 3 items each by default
    hint = "task_type_weights is left at its default of 3: give it {} like task_types"
    assert paired_lists({"task_types": ["siblings"]}, defaults) == [hint.format("1 item")]
    # A scalar option before it does not stop the search; two items are items.
    assert paired_lists({"max_entities": 4, "task_types": ["siblings", "friends"]}, defaults) == [
        hint.format("2 items")
    ]
    # The default length kept, both lists given, or a list where the default is a number: no hint.
    assert paired_lists({"task_types": ["siblings", "friends", "colleagues"]}, defaults) == []
    assert paired_lists({"task_types": ["siblings"], "task_type_weights": [1]}, defaults) == []
    assert paired_lists({"max_entities": [4, 5]}, defaults) == []
