"""The service-model validator on small hand-written models: each rule at its boundary, each kind of
value, and the Java-to-Python pattern translation, without a request or a moto server. The tests in
test_remote_request.py check the same rules on SageMaker's real model, through `--dry-run`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from rlvr_cli.cloud.sagemaker import service_model as sm


@pytest.fixture
def toy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """`validate("Op", params)` against a model whose only operation takes the shape `Input`."""

    def validate(shapes: dict, params: dict) -> set[tuple[tuple, str]]:
        folder = tmp_path / "models" / "toy" / "2024-01-01"
        folder.mkdir(parents=True, exist_ok=True)
        model = {"operations": {"Op": {"input": {"shape": "Input"}}}, "shapes": shapes}
        (folder / "service-2.json").write_text(json.dumps(model), encoding="utf-8")
        sm.service_model.cache_clear()
        return {(p.path, p.message) for p in sm.validate("Op", params, service="toy")}

    monkeypatch.setattr(sm, "MODELS", tmp_path / "models")
    yield validate
    sm.service_model.cache_clear()  # the next test reads the real model again


def one_member(shape: dict) -> dict:
    return {"Input": {"type": "structure", "members": {"V": {"shape": "V"}}}, "V": shape}


@pytest.mark.parametrize("kind", ["integer", "long", "float", "double"])
def test_numbers_are_checked_inclusively_at_both_ends(toy, kind):
    shapes = one_member({"type": kind, "min": 1, "max": 30})
    assert toy(shapes, {"V": 1}) == set()
    assert toy(shapes, {"V": 30}) == set()
    assert toy(shapes, {"V": 0}) == {(("V",), "is 0; SageMaker needs at least 1")}
    assert toy(shapes, {"V": 31}) == {(("V",), "is 31; SageMaker allows at most 30")}


@pytest.mark.parametrize("kind", ["float", "double"])
def test_decimal_numbers_take_ints_and_floats_but_not_strings_or_booleans(toy, kind):
    shapes = one_member({"type": kind, "min": 0.5})
    assert toy(shapes, {"V": 2}) == set()
    assert toy(shapes, {"V": 0.75}) == set()
    assert toy(shapes, {"V": 0.25}) == {(("V",), "is 0.25; SageMaker needs at least 0.5")}
    assert toy(shapes, {"V": "1.0"}) == {(("V",), "expected a number, got str")}
    assert toy(shapes, {"V": True}) == {(("V",), "expected a number, got bool")}


def test_strings_are_checked_inclusively_at_both_ends(toy):
    shapes = one_member({"type": "string", "min": 2, "max": 4})
    assert toy(shapes, {"V": "ab"}) == set()
    assert toy(shapes, {"V": "abcd"}) == set()
    assert toy(shapes, {"V": "a"}) == {(("V",), "is 1 characters; SageMaker needs at least 2")}
    assert toy(shapes, {"V": "abcde"}) == {(("V",), "is 5 characters; SageMaker allows at most 4")}
    assert toy(shapes, {"V": 12}) == {(("V",), "expected a string, got int")}


def test_a_structure_without_members_refuses_every_key(toy):
    shapes = {
        "Input": {"type": "structure", "members": {"E": {"shape": "Empty"}}},
        "Empty": {"type": "structure"},
    }
    assert toy(shapes, {"E": {}}) == set()
    assert toy(shapes, {"E": {"x": 1}}) == {(("E", "x"), "is not a member of Empty")}


def test_an_enum_names_the_closest_values(toy):
    shapes = one_member({"type": "string", "enum": ["ml.g5.xlarge", "ml.g5.2xlarge", "ml.p4d.24xlarge"]})
    assert toy(shapes, {"V": "ml.g5.xlarge"}) == set()
    assert toy(shapes, {"V": "ml.g5.xlarg"}) == {
        (("V",), "'ml.g5.xlarg' is not one of SageMaker's values; did you mean ml.g5.xlarge, ml.g5.2xlarge, "
         "ml.p4d.24xlarge?")
    }  # fmt: skip
    assert toy(shapes, {"V": "zzz"}) == {(("V",), "'zzz' is not one of SageMaker's values")}


@pytest.mark.parametrize(
    ("java", "value", "python"),
    [
        # A category outside a class becomes a class of the value's own characters in it ...
        (r"\p{L}+", "bab", "[ab]+"),
        # ... inside a class, the characters alone; a POSIX class, its ASCII ranges.
        (r"[\p{L}\p{Alnum}_]*", "Éa", "[aÉa-zA-Z0-9_]*"),
        # Escapes pass through whole, an escaped bracket included, so the class ends where Java's does.
        (r"[\]\p{L}]\p{N}", "x1", r"[\]x][1]"),
        (r"\[\p{L}", "[a", r"\[[a]"),
        # A category none of the value's characters is in: a noncharacter the value lacks.
        (r"\p{N}*", "ab", "[\ufdd0]*"),
        # A category after a literal, outside any class: still a class of its own.
        (r"x\p{N}+", "x12", "x[12]+"),
        (r"\p{N}*", "\ufdd0", "[\ufdd1]*"),
        (r"[^\p{Z}]", "a", "[^\ufdd0]"),
    ],
)
def test_java_patterns_are_translated_for_the_value(java, value, python):
    compiled = sm.python_pattern(java, value)
    assert compiled is not None and compiled.pattern == python


def test_lists_and_maps_are_checked_inclusively_at_both_ends(toy):
    """50 tags, 100 environment variables: SageMaker's maxima are allowed, one more is not."""
    shapes = {
        "Input": {"type": "structure", "members": {"L": {"shape": "L"}, "M": {"shape": "M"}}},
        "L": {"type": "list", "member": {"shape": "S"}, "min": 1, "max": 2},
        "M": {"type": "map", "key": {"shape": "S"}, "value": {"shape": "S"}, "min": 1, "max": 2},
        "S": {"type": "string"},
    }
    assert toy(shapes, {"L": ["a", "b"], "M": {"a": "x", "b": "y"}}) == set()
    assert toy(shapes, {"L": ["a"], "M": {"a": "x"}}) == set()
    assert toy(shapes, {"L": ["a", "b", "c"]}) == {(("L",), "has 3 entries; SageMaker allows at most 2")}
    assert toy(shapes, {"M": {"a": "x", "b": "y", "c": "z"}}) == {
        (("M",), "has 3 entries; SageMaker allows at most 2")
    }
    assert toy(shapes, {"L": []}) == {(("L",), "has 0 entries; SageMaker needs at least 1")}


def test_a_boolean_is_true_or_false(toy):
    shapes = {"Input": {"type": "structure", "members": {"B": {"shape": "B"}}}, "B": {"type": "boolean"}}
    assert toy(shapes, {"B": True}) == toy(shapes, {"B": False}) == set()
    assert toy(shapes, {"B": "true"}) == {(("B",), "expected true or false, got str")}


def test_java_classes_stay_ascii_and_negated_properties_are_not_guessed():
    word = sm.python_pattern(r"\w+", "é")
    assert word is not None and word.flags & re.ASCII and not word.fullmatch("é")
    assert sm.python_pattern(r"\P{L}+", "1") is None
    assert sm.python_pattern(r"[a-", "a") is None  # does not compile: skipped, not guessed


def test_the_shipped_trimmed_model_is_what_the_installed_botocore_gives():
    """The requests are checked against rlvr's trimmed copy of botocore's SageMaker model: after a
    botocore upgrade, a stale copy would check against rules AWS no longer has (or miss new ones)."""
    from .conftest import load_script

    version, model = load_script("trim_botocore_model").trimmed()
    shipped = sm.MODELS / "sagemaker" / version / "service-2.json"
    fix = "run python scripts/trim_botocore_model.py"
    assert shipped.is_file(), f"no trimmed model for botocore's SageMaker {version}; {fix}"
    assert json.loads(shipped.read_text(encoding="utf-8")) == model, f"stale; {fix}"
