"""Verifiable rewards: the reference's semantics with its flaws fixed (see ../shared/GUIDE.md)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlvr_cli.tasks.gsm8k.answers import extract_answer, normalize_gold, parse_number
from rlvr_cli.tasks.gsm8k.rewards import REWARDS, correctness_reward, format_reward
from rlvr_cli.tasks.rewards import get_reward_funcs

from .conftest import require_shared_gsm8k


def rewards(completion, gold: str) -> tuple[float, float | None]:
    return format_reward([completion])[0], correctness_reward([completion], final_answer=[gold])[0]


def test_well_formed_correct_answer_gets_both_rewards():
    assert rewards("48 / 2 = 24\n24 + 48 = 72\n#### The final answer is 72", "72") == (0.5, 1.0)


@pytest.mark.parametrize(
    ("completion", "gold"),
    [
        ("3 - 8 = -5\n#### The final answer is -5", "-5"),
        ("#### The final answer is −5", "-5"),  # U+2212 minus sign
        ("#### The final answer is 1,234", "1234"),
        ("#### The final answer is $1,234.50", "1234.5"),
        ("#### The final answer is 2.5", "2.50"),
        ("#### The final answer is $-3", "-3"),
        ("#### The final answer is 0.5.", ".5"),
    ],
)
def test_negatives_decimals_separators_and_dollars_are_read(completion: str, gold: str):
    assert rewards(completion, gold) == (0.5, 1.0)


def test_wrong_number_gets_format_only():
    assert rewards("#### The final answer is 71", "72") == (0.5, 0.0)


def test_plain_gsm8k_answer_line_is_correct_but_not_well_formed():
    assert rewards("so 72\n#### 72", "72") == (0.0, 1.0)


def test_invented_follow_up_question_cannot_change_the_score():
    answer = "#### The final answer is 18\n\n"
    invented = "Question: How many eggs?\nSolution: Let's think step by step. 5\n#### The final answer is 5\n"
    assert rewards(answer + invented, "18") == (0.5, 1.0)
    assert rewards(answer + invented, "5") == (0.5, 0.0)


def test_answer_inside_an_invented_question_earns_nothing():
    completion = "I am not sure.\n\nQuestion: What is 2 + 3?\nSolution: Let's think step by step.\n#### The final answer is 5"
    assert rewards(completion, "5") == (0.0, 0.0)


def test_conflicting_answer_lines_are_judged_by_the_first():
    completion = "#### The final answer is 3\n#### The final answer is 4\n#### The final answer is 5"
    assert [rewards(completion, g)[1] for g in ("3", "4", "5")] == [1.0, 0.0, 0.0]


def test_an_answer_line_with_two_numbers_is_ambiguous():
    assert rewards("#### The final answer is 3 or 5", "3") == (0.0, 0.0)


def test_marker_spam_is_not_an_answer():
    assert rewards("#### #### #### The final answer is 7", "7") == (0.0, 0.0)


def test_unparseable_gold_answer_is_skipped_not_zero():
    assert correctness_reward(["#### The final answer is 7"], final_answer=["seven"]) == [None]


def test_conversational_completions_work():
    completion = [{"role": "assistant", "content": "2 + 2 = 4\n#### The final answer is 4"}]
    assert rewards(completion, "4") == (0.5, 1.0)


def test_rewards_sum_to_the_reference_maximum():
    assert (
        format_reward(["#### The final answer is 1"])[0]
        + correctness_reward(["#### The final answer is 1"], ["1"])[0]
        == 1.5
    )


def test_registry_rejects_unknown_names_listing_valid_ones():
    with pytest.raises(ValueError, match="valid rewards: format, correctness"):
        get_reward_funcs(["format", "accuracy"])
    assert set(REWARDS) == {"format", "correctness"}


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("#### " * 200_000, (0.0, 0.0)),  # ~1 MB: quadratic in the reference's regex; no answer line
        ("1" * 1_000_000, (0.0, 0.0)),
        ("#### The final answer is " + "9" * 999_000, (0.0, 0.0)),  # an answer line past the length cap
        ("Question: x\n" * 80_000 + "#### The final answer is 9", (0.0, 0.0)),  # inside invented questions
        ("#" * 1_000_000, (0.0, 0.0)),
        ("\n" * 1_000_000, (0.0, 0.0)),
        ("x" * 1_000_000 + "\n#### The final answer is 9", (0.5, 1.0)),  # the answer after a megabyte
        ("#### The final answer is 9\n" + "#### " * 200_000, (0.5, 1.0)),  # the answer before the spam
        ("#### Step 1\n" * 80_000 + "#### The final answer is 9", (0.5, 1.0)),  # after 80,000 headings
    ],
    ids=[
        "marker-spam",
        "digits",
        "huge-number",
        "questions",
        "hashes",
        "newlines",
        "answer-after-a-megabyte",
        "answer-before-spam",
        "answer-after-headings",
    ],
)
def test_adversarial_megabyte_completions_are_scored(completion: str, expected: tuple[float, float]):
    # Speed is measured in benchmarks/bench_prepare_rewards.py; here the rewards must be exactly right.
    assert rewards(completion, "9") == expected


# Text made of the pieces the reader looks for, so the examples reach every branch of it.
PIECES = st.sampled_from(
    ["####", "#### ", "The final answer is", "The final answer is:", "Question:", " Question 2:", "**Question",
     "\n", " ", "-", "\u2212", "$", ",", ".", "1", "42", "1,234", "3.5", "x", "\r", "\t", "#", ".."]
)  # fmt: skip
COMPLETIONS = st.one_of(
    st.text(),
    st.lists(PIECES | st.text(max_size=3), max_size=40).map("".join),
    st.lists(st.dictionaries(st.sampled_from(["role", "content"]), st.text())),
    st.lists(st.fixed_dictionaries({"content": st.lists(PIECES, max_size=20).map("".join)})),
    st.none(),
    st.integers(),
)


@settings(max_examples=500, deadline=None)
@given(COMPLETIONS)
def test_extraction_never_raises(completion):
    """`extract_answer` itself never raises (it catches nothing: a reader that raised would fail here)."""
    answer = extract_answer(completion)
    assert isinstance(answer.format_ok, bool)
    assert answer.value is None or isinstance(answer.value, float)
    assert answer.text is None or isinstance(answer.text, str)
    assert not answer.format_ok or answer.value is not None  # well-formed means a number was read
    assert format_reward([completion]) in ([0.0], [0.5])
    assert correctness_reward([completion], final_answer=["1"]) in ([0.0], [1.0])


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=-(10**9), max_value=10**9), st.text(alphabet=" \n.abcdefQ#:", max_size=40))
def test_any_integer_answer_round_trips(number: int, noise: str):
    completion = f"{noise}\n#### The final answer is {number:,}\n{noise}"
    if "####" in noise:  # an earlier answer line would be the one that counts
        return
    assert extract_answer(completion).value == number


def test_gold_answers_of_the_whole_gsm8k_are_read():
    shared = require_shared_gsm8k()
    golds = []
    for split in ("train", "test"):
        for line in (shared / f"{split}.jsonl").read_text().splitlines():
            gold = normalize_gold(json.loads(line)["answer"])
            assert gold is not None
            golds.append(gold)
    assert len(golds) == 7473 + 1319
    assert any(g.startswith("-") for g in golds)  # GSM8K has negative answers
    assert all(parse_number(g) is not None for g in golds)
    # The reference's own format, written with each gold answer, is rewarded in full.
    assert all(rewards(f"#### The final answer is {g}", g) == (0.5, 1.0) for g in golds)


# --- reading numbers, piece by piece --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gold", "value"),
    [
        ("1,234", 1234.0),
        ("-5", -5.0),
        ("\u22125", -5.0),
        ("$3.50", 3.5),
        ("-$3", -3.0),
        ("$-3", -3.0),
        (".5", 0.5),
        ("  7  ", 7.0),
        ("12,34", None),  # not a thousands separator: two numbers
        ("3 or 4", None),
        ("seven", None),
        ("", None),
        (7, 7.0),
        (2.5, 2.5),
        (True, None),
        (float("inf"), None),
        (float("nan"), None),
        (None, None),
        ("1" * 300, None),  # longer than an answer line
        (" " * 250 + "123456", 123456.0),  # 256 characters: still one
    ],
)
def test_parse_number(gold, value):
    assert parse_number(gold) == value


def test_answers_are_equal_within_the_reference_tolerance():
    from rlvr_cli.tasks.gsm8k.answers import TOLERANCE, is_correct

    assert TOLERANCE == 1e-3
    assert is_correct(2.0, 2.0) and is_correct(2.0005, 2.0) and is_correct(1.9995, 2.0)
    assert is_correct(0.001, 0.0)  # the tolerance itself is within
    assert not is_correct(2.002, 2.0) and not is_correct(1.998, 2.0)
    assert not is_correct(None, 2.0) and not is_correct(2.0, None) and not is_correct(None, None)


@pytest.mark.parametrize(
    ("field", "gold"),
    [
        ("48 / 2 = 24\n#### 1,234", "1234"),
        ("#### -3", "-3"),
        ("#### \u22123", "-3"),
        ("#### 0.5", "0.5"),
        ("#### $18.00", "18.00"),
        ("first #### 1\nthen #### 2", "2"),  # the last marker is the gold line
        ("#### 3 or 4", None),
        ("no marker 5", None),
        ("####", None),
        (None, None),
        (5, None),
    ],
)
def test_normalize_gold(field, gold):
    assert normalize_gold(field) == gold


@pytest.mark.parametrize(
    ("completion", "value", "text", "format_ok"),
    [
        ("#### The final answer is 72", 72.0, "72", True),
        ("#### The final answer is: 72", 72.0, "72", True),
        ("####   The final answer is   72.  ", 72.0, "72", True),
        ("#### The final answer is 72 apples", 72.0, "72", True),
        ("#### 72", 72.0, "72", False),
        ("#### The answer is 72", None, None, False),  # a word other than the phrase: a heading
        ("#### The final answer is -0.5", -0.5, "-0.5", True),
        ("#### The final answer is \u22124", -4.0, "-4", True),
        ("#### The final answer is x", None, None, False),
        ("#### The final answer is 3, 4", None, None, False),
        ("#### #### 5", None, None, False),
        ("#### The final answer is " + "1" * 300, None, None, False),
        ("#### The final answer is 5" + " " * 234 + "\n", 5.0, "5", True),  # 256 characters: still read
    ],
)
def test_the_answer_line_as_read(completion, value, text, format_ok):
    answer = extract_answer(completion)
    assert (answer.value, answer.text, answer.format_ok) == (value, text, format_ok)


def test_rewards_by_name_and_by_import_path():
    from rlvr_cli.tasks import get_task
    from rlvr_cli.tasks.rewards import BUILTIN_REWARDS, check_reward_names, import_reward

    assert BUILTIN_REWARDS == ("format", "correctness")
    funcs = get_reward_funcs(["correctness", "format", "tests.rewards_for_tests:spread_reward"])
    assert [f.__name__ for f in funcs] == ["correctness_reward", "format_reward", "spread_reward"]
    assert funcs[0] is REWARDS["correctness"]  # GSM8K's own when no task is given
    custom = get_reward_funcs(["format"], get_task("custom", {"compare": "exact"}))
    assert custom[0](["#### The final answer is Yes"]) == [0.5]
    check_reward_names(["format", "pkg.mod:fn"])  # names only: nothing is imported
    with pytest.raises(ValueError, match=r"cannot import reward 'nonexistent_pkg.mod:fn' \(No module named"):
        import_reward("nonexistent_pkg.mod:fn")
    with pytest.raises(ValueError, match=r"cannot import reward 'tests\.rewards_for_tests:nothing'"):
        import_reward("tests.rewards_for_tests:nothing")
    with pytest.raises(ValueError, match="reward 'json:decoder' is not a function"):
        import_reward("json:decoder")


def test_a_task_without_a_reward_says_which_it_offers():
    from rlvr_cli.tasks import get_task

    class Only(type(get_task("gsm8k"))):
        def rewards(self):
            return {"format": REWARDS["format"]}

    with pytest.raises(ValueError, match="task gsm8k offers no reward 'correctness'; it offers format"):
        get_reward_funcs(["format", "correctness"], Only())


def test_gsm8k_correctness_scores_every_completion_against_its_own_gold():
    assert correctness_reward(["#### 1", "#### 2", "#### 3"], final_answer=["seven", "2", "4"]) == [
        None,
        1.0,
        0.0,
    ]
    with pytest.raises(ValueError):  # a gold answer per completion, never a silent shift
        correctness_reward(["#### 1", "#### 2"], final_answer=["1"])


def test_reward_name_errors_list_every_name():
    from rlvr_cli.tasks import get_task
    from rlvr_cli.tasks.rewards import check_reward_names

    with pytest.raises(ValueError) as caught:
        check_reward_names(["format", "accuracy", "speed"])
    assert str(caught.value) == (
        "unknown reward 'accuracy', 'speed'; valid rewards: format, correctness "
        "(or a custom one as package.module:function)"
    )

    class Neither(type(get_task("gsm8k"))):
        def rewards(self):
            return {"a": REWARDS["format"], "b": REWARDS["format"]}

    with pytest.raises(ValueError) as caught:
        get_reward_funcs(["format", "correctness"], Neither())
    assert str(caught.value) == "task gsm8k offers no reward 'format', 'correctness'; it offers a, b"


@pytest.mark.parametrize(
    ("completion", "value", "text"),
    [
        ("3 + 4 = 7, so she has $1,070.", 1070.0, "$1,070."),
        ("so she pays $3.50.", 3.5, "$3.50."),  # the sentence's full stop after a decimal
        ("The answer is 5...", 5.0, "5..."),
        ("Half a cup is .5 of a cup", 0.5, ".5"),  # a leading point is a decimal point
        ("-3 degrees", -3.0, "-3"),
        ("Version 1.2.3", None, "1.2.3"),  # not a number: read, but no value
        ("So " + "9" * 400, None, "9" * 400),  # beyond a float: no value, not infinity
        ("no number here", None, None),
    ],
)
def test_the_lenient_reading_is_the_last_number(completion, value, text):
    """lm-eval's flexible-extract, reported beside the strict score: never well formed."""
    from rlvr_cli.tasks.gsm8k.answers import last_number

    assert last_number(completion) == (value, text, False)
