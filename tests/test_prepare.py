"""`rlvr prepare`: sources, prompts, splits, determinism, refusing to clobber, bad input."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from rlvr_cli.data.build import prepare
from rlvr_cli.tasks.gsm8k.sources import clean_solution, load_source


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_prepare_writes_three_sets_and_a_manifest(cli, gsm8k_fixture: Path, tmp_path: Path):
    result = cli("prepare", "--shots", "2", "--source", gsm8k_fixture, "--output", tmp_path / "d", "--json")
    assert result.code == 0, result.err
    manifest = result.json()
    assert manifest == json.loads((tmp_path / "d" / "manifest.json").read_text())
    # 42 usable train rows (one has no ####), 2 exemplars out, 10 % (rounded up) to val.
    assert manifest["counts"] == {"train": 36, "val": 4, "test": 12}
    assert manifest["skipped"] == {"train": 1, "test": 0}
    for split in ("train", "val", "test"):
        data = rows(tmp_path / "d" / split / "dataset.json")
        assert len(data) == manifest["counts"][split]
        assert set(data[0]) == {"id", "question", "answer", "final_answer", "prompt"}
    import hashlib

    for rel, info in manifest["files"].items():
        assert hashlib.sha256((tmp_path / "d" / rel).read_bytes()).hexdigest() == info["sha256"]


def test_datasets_load_with_hf_datasets(gsm8k_fixture: Path, tmp_path: Path, cli):
    assert cli("prepare", "--shots", "1", "--source", gsm8k_fixture, "--output", tmp_path / "d").code == 0
    import datasets

    ds = datasets.load_dataset(
        "json", data_files=str(tmp_path / "d" / "test" / "dataset.json"), split="train"
    )
    assert len(ds) == 12 and "final_answer" in ds.column_names


def test_gold_answers_keep_sign_and_decimals_and_drop_commas(prepared: Path):
    golds = {r["question"]: r["final_answer"] for r in rows(prepared / "test" / "dataset.json")}
    assert golds["Ann has 1,000 stickers and gets 234 more. How many now?"] == "1234"
    assert golds["It was 2 degrees and fell by 9. What is it now?"] == "-7"
    assert golds["Half of 7 is?"] == "3.5"


def test_prompt_layout_follows_the_reference(gsm8k_fixture: Path):
    """The prompt `prepare` writes: exemplars in the reference layout, then the question."""
    source = load_source(str(gsm8k_fixture))
    prepared = prepare(source, shots=2, val_fraction=0.1, seed=42)
    exemplars = {p.id: p for p in source.train}
    row = prepared.rows["test"][0]
    blocks = row["prompt"].split("\n\n")
    assert len(blocks) == 3
    for block, exemplar_id in zip(blocks, prepared.manifest.exemplar_ids, strict=False):
        exemplar = exemplars[exemplar_id]
        steps = exemplar.answer[: exemplar.answer.rfind("####")].strip()
        import re

        steps = re.sub(r"<<[^<>]*>>", "", steps)
        assert block == (
            f"Question: {exemplar.question.strip()}\nSolution: Let's think step by step. {steps}\n"
            f"#### The final answer is {exemplar.final_answer}"
        )
    assert blocks[-1] == f"Question: {row['question'].strip()}\nSolution: Let's think step by step."
    assert "<<" not in row["prompt"]


def test_calculator_annotations_are_removed():
    assert clean_solution("48/2 = <<48/2=24>>24 clips") == "48/2 = 24 clips"


def test_exemplars_are_removed_from_train_and_val(gsm8k_fixture: Path):
    prepared = prepare(load_source(str(gsm8k_fixture)), shots=3, val_fraction=0.1, seed=7)
    exemplars = set(prepared.manifest.exemplar_ids)
    used = {r["id"] for split in ("train", "val") for r in prepared.rows[split]}
    assert len(exemplars) == 3 and not exemplars & used
    # No prompt contains its own solved question as an exemplar.
    for r in prepared.rows["train"]:
        assert r["prompt"].count(f"Question: {r['question']}") == 1


def test_zero_shots_works(gsm8k_fixture: Path):
    prepared = prepare(load_source(str(gsm8k_fixture)), shots=0, val_fraction=0.1, seed=42)
    assert prepared.rows["test"][0]["prompt"].startswith("Question: Ann has")


def test_same_inputs_give_byte_identical_files(cli, gsm8k_fixture: Path, tmp_path: Path):
    for out in ("a", "b"):
        assert cli("prepare", "--shots", "2", "--source", gsm8k_fixture, "--output", tmp_path / out).code == 0
    for rel in ("train/dataset.json", "val/dataset.json", "test/dataset.json", "manifest.json"):
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()


def test_refuses_to_overwrite_a_different_dataset_without_force(cli, gsm8k_fixture: Path, tmp_path: Path):
    out = tmp_path / "d"
    assert cli("prepare", "--shots", "2", "--source", gsm8k_fixture, "--output", out).code == 0
    before = (out / "train" / "dataset.json").read_bytes()
    refused = cli("prepare", "--shots", "3", "--source", gsm8k_fixture, "--output", out)
    assert refused.code == 1 and "pass --force" in refused.err
    assert (out / "train" / "dataset.json").read_bytes() == before
    same = cli("prepare", "--shots", "2", "--source", gsm8k_fixture, "--output", out)
    assert same.code == 0 and "unchanged" in same.err
    forced = cli("prepare", "--shots", "3", "--source", gsm8k_fixture, "--output", out, "--force")
    assert forced.code == 0 and json.loads((out / "manifest.json").read_text())["shots"] == 3


def test_rows_without_answer_line_fail_in_strict_mode(cli, gsm8k_fixture: Path, tmp_path: Path):
    result = cli("prepare", "--source", gsm8k_fixture, "--output", tmp_path / "d", "--strict", "--shots", "1")
    assert result.code == 1
    assert "train.jsonl:41: answer has no readable '#### N' line" in result.err
    assert not (tmp_path / "d").exists()


def test_malformed_json_line_is_reported_with_file_and_line(cli, tmp_path: Path, gsm8k_fixture: Path):
    source = tmp_path / "src"
    source.mkdir()
    lines = (gsm8k_fixture / "train.jsonl").read_text().splitlines()
    lines[4] = '{"question": "broken'
    (source / "train.jsonl").write_text("\n".join(lines) + "\n")
    (source / "test.jsonl").write_text((gsm8k_fixture / "test.jsonl").read_text())
    result = cli("prepare", "--source", source, "--output", tmp_path / "d")
    assert result.code == 1 and f"{source / 'train.jsonl'}:5: malformed JSON line" in result.err


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85"])
def test_line_separators_inside_json_strings_stay_inside_their_row(
    cli, tmp_path: Path, gsm8k_fixture: Path, separator: str
):
    """JSON allows U+2028/U+2029 (and other characters str.splitlines splits at) raw in a string."""
    import json

    source = tmp_path / "src"
    source.mkdir()
    rows = [json.loads(line) for line in (gsm8k_fixture / "train.jsonl").read_text().splitlines()]
    rows[4]["question"] = f"Tom has 6 apples{separator}and buys 7 more. How many apples does he have now?"
    text = "\n".join(json.dumps(row, ensure_ascii=False) for row in rows) + "\n"
    assert separator in text  # raw, not escaped
    (source / "train.jsonl").write_text(text, encoding="utf-8")
    (source / "test.jsonl").write_text((gsm8k_fixture / "test.jsonl").read_text())
    result = cli("prepare", "--source", source, "--output", tmp_path / "d", "--shots", "1", "--json")
    assert result.code == 0, result.err
    prepared = [
        json.loads(line)
        for split in ("train", "val")
        for line in (tmp_path / "d" / split / "dataset.json").read_text(encoding="utf-8").split("\n")
        if line
    ]
    manifest = result.json()
    # Every source row is one row (or the exemplar): none was split in two or lost.
    assert len(prepared) == len(rows) - manifest["skipped"]["train"] - len(manifest["exemplar_ids"])
    prompts = [row["prompt"] for row in prepared]
    assert sum(rows[4]["question"] in prompt for prompt in prompts) >= 1


def test_a_data_file_that_is_not_utf8_is_one_line(cli, tmp_path: Path, gsm8k_fixture: Path):
    source = tmp_path / "src"
    source.mkdir()
    (source / "train.jsonl").write_bytes(
        (gsm8k_fixture / "train.jsonl").read_bytes() + b'{"question": "caf\xe9"}\n'
    )
    (source / "test.jsonl").write_text((gsm8k_fixture / "test.jsonl").read_text())
    result = cli("prepare", "--source", source, "--output", tmp_path / "d")
    assert result.code == 2 and "Traceback" not in result.err
    assert result.err.strip().startswith(
        f"error: {source / 'train.jsonl'}: the data file is not UTF-8 text (byte 0xe9"
    )
    assert result.err.strip().endswith("save it as UTF-8")
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--shots", "33"], "--shots 33: must be between 0 and 32"),
        (["--shots", "-1"], "--shots -1: must be between 0 and 32"),
        (["--val-fraction", "1.0"], "--val-fraction 1.0: must be strictly between 0 and 1"),
        (["--val-fraction", "0"], "--val-fraction 0.0: must be strictly between 0 and 1"),
        (["--source", "reasoning-gym:chain_sum", "--size", "0"], "--size 0: must be at least 1"),
    ],
)
def test_out_of_range_options_are_usage_errors_before_any_data_is_loaded(cli, tmp_path: Path, args, message):
    # The default source is the Hub, unreachable here: the range error comes first, not the Hub's.
    result = cli("prepare", "--output", tmp_path / "d", *args)
    assert result.code == 2 and result.err.strip().startswith(f"error: {message}"), result.err
    assert not (tmp_path / "d").exists()


def test_a_directory_without_split_files_is_explained(cli, tmp_path: Path):
    (tmp_path / "empty").mkdir()
    result = cli("prepare", "--source", tmp_path / "empty", "--output", tmp_path / "d")
    assert result.code == 2 and "no train or test file" in result.err


def test_unreachable_hub_names_the_offline_sources(cli, tmp_path: Path):
    result = cli("prepare", "--source", "openai/gsm8k", "--output", tmp_path / "d")
    assert result.code == 1
    assert "could not load openai/gsm8k from the Hugging Face Hub" in result.err
    assert "--source reasoning-gym" in result.err and "--source DIR" in result.err


def test_offline_generator_source(cli, tmp_path: Path):
    result = cli(
        "prepare",
        "--source",
        "reasoning-gym",
        "--size",
        "60",
        "--shots",
        "2",
        "--output",
        tmp_path / "d",
        "--json",
    )
    assert result.code == 0, result.err
    manifest = result.json()
    assert manifest["source"]["name"] == "reasoning-gym:gsm_symbolic"
    assert manifest["counts"]["test"] == 50
    row = rows(tmp_path / "d" / "train" / "dataset.json")[0]
    assert float(row["final_answer"]) == float(row["answer"].rsplit("####", 1)[1])


def test_full_gsm8k_at_eight_shots_matches_the_reference_split(cli, shared_gsm8k: Path, tmp_path: Path):
    result = cli("prepare", "--shots", "8", "--source", shared_gsm8k, "--output", tmp_path / "d", "--json")
    assert result.code == 0, result.err
    manifest = result.json()
    # The reference: 7,473 train rows, 10 % for validation (6,725 / 748) before removing exemplars.
    assert manifest["counts"] == {"train": 6718, "val": 747, "test": 1319}
    assert manifest["longest_prompt"]["chars"] > 4000


def test_longest_prompt_is_counted_in_tokens_with_a_recipe(
    cli, gsm8k_fixture: Path, tmp_path: Path, tiny_model_dir: Path
):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"model_name_or_path: {tiny_model_dir}\n")
    result = cli(
        "prepare",
        "--shots",
        "1",
        "--source",
        gsm8k_fixture,
        "--output",
        tmp_path / "d",
        "--config",
        recipe,
        "--json",
    )
    assert result.code == 0, result.err
    longest = result.json()["longest_prompt"]
    assert longest["tokens"] > 20 and longest["tokenizer"] == str(tiny_model_dir)


# --- building the sets, piece by piece -----------------------------------------------------------------


def _problems(n: int):
    from rlvr_cli.tasks.base import Problem

    return [
        Problem(id=f"train-{i}", question=f"q{i}", answer=f"#### {i}", final_answer=str(i)) for i in range(n)
    ]


def test_split_takes_exemplars_out_and_rounds_validation_up():
    from rlvr_cli.data.build import split_problems

    exemplars, train, val = split_problems(_problems(21), shots=3, val_fraction=0.1, seed=1)
    assert len(exemplars) == 3 and len(val) == 2 and len(train) == 16  # ceil(18 * 0.1) = 2
    ids = [p.id for p in exemplars + train + val]
    assert len(set(ids)) == 21  # every problem once
    assert [p.id for p in exemplars] == sorted((p.id for p in exemplars), key=lambda x: int(x.split("-")[1]))
    assert split_problems(_problems(21), shots=3, val_fraction=0.1, seed=1) == (exemplars, train, val)
    assert split_problems(_problems(21), shots=3, val_fraction=0.1, seed=2) != (exemplars, train, val)


@pytest.mark.parametrize(
    ("n", "shots", "fraction", "message"),
    [
        (5, 6, 0.1, "--shots 6: the source has only 5 usable train rows"),
        # Too few rows for any fraction: the rows are named, not --val-fraction.
        (3, 3, 0.1, "the source has 3 usable train rows, 3 of them for exemplars: too few to split"),
        (0, 0, 0.1, "the source has 0 usable train rows, 0 of them for exemplars: too few to split"),
        (3, 2, 0.1, "the source has 3 usable train rows, 2 of them for exemplars: too few"),
        (3, 0, 0.99, "--val-fraction 0.99: leaves 0 train and 3 val rows; both must be non-empty"),
    ],
)
def test_split_refuses_what_leaves_a_set_empty(n, shots, fraction, message):
    from rlvr_cli.core.errors import UsageError
    from rlvr_cli.data.build import split_problems

    with pytest.raises(UsageError, match=message.replace("(", r"\(")):
        split_problems(_problems(n), shots=shots, val_fraction=fraction, seed=0)


def test_the_smallest_source_splits_into_one_exemplar_one_train_and_one_val_row():
    from rlvr_cli.data.build import split_problems

    exemplars, train, val = split_problems(_problems(3), shots=1, val_fraction=0.1, seed=0)
    assert (len(exemplars), len(train), len(val)) == (1, 1, 1)


def test_longest_prompts_by_characters():
    from rlvr_cli.data.build import longest_by_chars

    prompts = ["a" * n for n in (3, 9, 1, 7)]
    assert longest_by_chars(prompts, k=2) == ["a" * 9, "a" * 7]
    assert len(longest_by_chars(prompts * 30)) == 64


@pytest.mark.parametrize(
    ("shots", "fraction", "message"),
    [(33, 0.1, "--shots 33: must be between 0 and 32"), (-1, 0.1, "between 0 and 32"), (1, 0.0, "strictly between 0 and 1"), (1, 1.0, "strictly between")],
)  # fmt: skip
def test_prepare_checks_its_arguments(shots, fraction, message):
    from rlvr_cli.core.errors import UsageError
    from rlvr_cli.tasks.base import SourceData

    source = SourceData(name="s", kind="local", train=_problems(40), test=_problems(2))
    with pytest.raises(UsageError, match=message):
        prepare(source, shots=shots, val_fraction=fraction, seed=0)


def test_prepare_reports_progress_counts_tokens_and_keeps_metadata():
    from rlvr_cli import __version__
    from rlvr_cli.core.errors import RlvrError
    from rlvr_cli.tasks.base import Problem, SourceData

    train = _problems(1200)
    train[7].question = "!" * 30  # the most tokens (counted as "!" below), not the most characters
    metadata = {"k": [1], "b": "é"}
    test = [Problem(id="test-0", question="long " * 50, answer="#### 1", final_answer="1", metadata=metadata)]
    calls = []
    prepared = prepare(
        SourceData(name="s", kind="local", train=train, test=test),
        shots=1,
        val_fraction=0.5,
        seed=0,
        count_tokens=lambda prompts: [p.count("!") for p in prompts],
        tokenizer_name="bangs",
        progress=lambda stage, done, total: calls.append((stage, done, total)),
    )
    assert calls == [
        ("building prompts", 500, 1200),
        ("building prompts", 1000, 1200),
        ("building prompts", 1200, 1200),
    ]
    assert prepared.manifest.longest_prompt == {
        "id": "train-7",  # by tokens, among the longest by characters
        "chars": len(prepared.rows["test"][0]["prompt"]),  # of the longest by characters
        "tokens": 30,
        "tokenizer": "bangs",
    }
    assert prepared.rows["test"][0]["metadata"] == '{"b": "é", "k": [1]}'  # one JSON string, keys sorted
    assert "metadata" not in prepared.rows["train"][0]
    assert prepared.payloads["test/dataset.json"].decode("utf-8").count("é") == 1  # UTF-8, not escaped
    manifest = prepared.manifest
    assert manifest.rlvr_version == __version__
    assert manifest.source == {"name": "s", "kind": "local", "files": {}}
    assert manifest.files["test/dataset.json"] == {
        "sha256": hashlib.sha256(prepared.payloads["test/dataset.json"]).hexdigest(),
        "bytes": len(prepared.payloads["test/dataset.json"]),
        "rows": 1,
    }
    with pytest.raises(RlvrError, match="s: the test split has no usable rows"):
        prepare(SourceData(name="s", kind="local", train=train, test=[]), shots=1, val_fraction=0.5, seed=0)


def test_existing_files_that_differ_are_named(tmp_path: Path):
    from rlvr_cli.data.build import existing_differs

    (tmp_path / "a").write_bytes(b"same")
    (tmp_path / "b").write_bytes(b"diff")
    (tmp_path / "c").write_bytes(b"longer")
    payloads = {"a": b"same", "b": b"DIFF", "c": b"short", "missing": b"x"}
    assert existing_differs(tmp_path, payloads) == ["b", "c"]


def test_thirty_two_shots_are_allowed():
    from rlvr_cli.tasks.base import SourceData

    prepared = prepare(
        SourceData("s", "local", _problems(40), _problems(1)), shots=32, val_fraction=0.1, seed=0
    )
    assert len(prepared.manifest.exemplar_ids) == 32


def test_the_manifest_is_written_last(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A manifest on disk always describes complete files: it is renamed into place after them."""
    import os

    import rlvr_cli.core.files as files
    import rlvr_cli.data.build as build
    from rlvr_cli.tasks.base import SourceData

    renamed = []
    real = os.replace

    def recording(src, dst):
        renamed.append(Path(dst).relative_to(tmp_path).as_posix())
        return real(src, dst)

    monkeypatch.setattr(files.os, "replace", recording)
    prepared = prepare(
        SourceData("s", "local", _problems(20), _problems(2)), shots=1, val_fraction=0.2, seed=0
    )
    build.write_prepared(tmp_path, prepared)
    assert renamed[-1] == "manifest.json"
    assert sorted(renamed[:-1]) == ["test/dataset.json", "train/dataset.json", "val/dataset.json"]


@pytest.mark.parametrize("failing", [1, 2, 4])
def test_a_failed_write_leaves_the_old_set_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: int
):
    # --force over a prepared set, and the disk fills as the FAILING-th file is synced (the first,
    # one between, the manifest): the old files and manifest stay, no temp file is left.
    import errno

    import rlvr_cli.core.files as files
    import rlvr_cli.data.build as build
    from rlvr_cli.tasks.base import SourceData

    def prepared(n: int):
        source = SourceData("s", "local", _problems(n), _problems(2))
        return prepare(source, shots=1, val_fraction=0.2, seed=0)

    build.write_prepared(tmp_path, prepared(20))
    before = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    real, synced = files.os.fsync, []

    def full_disk(fd):
        synced.append(fd)
        if len(synced) == failing:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd)

    monkeypatch.setattr(files.os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left"):
        build.write_prepared(tmp_path, prepared(30))
    after = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before


# An --output that a prepared set cannot fill is refused before any data is loaded, nothing written.
@pytest.mark.parametrize(
    ("in_the_way", "message"),
    [
        ("", "{out}: a file, where the prepared set needs a directory"),
        ("val", "{out}/val: a file, where the prepared set needs a directory"),
        (
            "train/dataset.json/",
            "{out}/train/dataset.json: a directory, where the prepared set writes a file",
        ),
    ],
)
def test_prepare_refuses_an_output_it_cannot_fill_before_loading(
    cli, tmp_path: Path, gsm8k_fixture: Path, in_the_way: str, message: str
):
    out = tmp_path / "out"
    blocker = out / in_the_way if in_the_way else out
    if in_the_way.endswith("/"):
        blocker.mkdir(parents=True)
    else:
        blocker.parent.mkdir(parents=True, exist_ok=True)
        blocker.write_text("mine")
    result = cli("prepare", "--source", gsm8k_fixture, "--shots", "1", "--output", out)
    assert result.code == 2
    assert (
        result.err.strip()
        == "error: " + message.format(out=out) + "; move it or pass --output another directory"
    )
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()) == (
        [] if in_the_way.endswith("/") else [blocker.relative_to(tmp_path).as_posix()]
    )
