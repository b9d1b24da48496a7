"""Files rlvr reads that are damaged, hand-edited or in the way: one `error:` line naming the file
and the fix, a non-zero exit code, no traceback, and nothing written half-way."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from .conftest import rewrite_split

REPO = Path(__file__).resolve().parent.parent
SMOKE = REPO / "configs" / "smoke-cpu.yaml"


def one_error(result, code: int) -> str:
    """The single error line of a command that must fail cleanly."""
    assert result.code == code, result.err
    assert "Traceback" not in result.err
    (line,) = [x for x in result.err.strip().splitlines() if not x.startswith("note:")]
    assert line.startswith("error: ")
    return line.removeprefix("error: ")


@pytest.mark.parametrize(
    ("field", "value"),
    [("shots", "x"), ("task", "gsm8k"), ("counts", [1, 2]), ("files", {"train/dataset.json": "abc"})],
)
def test_a_manifest_with_fields_of_the_wrong_type_is_one_line(cli, prepared: Path, field, value):
    manifest = prepared / "manifest.json"
    data = json.loads(manifest.read_text())
    data[field] = value
    manifest.write_text(json.dumps(data))
    line = one_error(cli("eval", "--model", "smollm2-135m", "--data", prepared, "--no-track"), 1)
    assert line.startswith(f"{manifest}: not a manifest `rlvr prepare` wrote (")
    assert line.endswith("re-run `rlvr prepare`, or delete the file to use the data as hand-made")


def test_a_manifest_that_is_not_utf8_is_read_as_absent(prepared: Path):
    from rlvr_cli.data.layout import PreparedDir

    (prepared / "manifest.json").write_bytes(b'{"shots": "\xff"}')
    assert PreparedDir(prepared).manifest() is None  # as unreadable JSON was: hand-made data


def test_a_split_that_is_not_utf8_is_one_line(cli, prepared: Path):
    test_set = prepared / "test" / "dataset.json"
    test_set.write_bytes(test_set.read_bytes() + b"\xff\n")
    line = one_error(cli("eval", "--model", "smollm2-135m", "--data", prepared, "--no-track"), 2)
    assert line.startswith(f"{test_set}: the test set is not UTF-8 text (byte 0xff")
    assert line.endswith("save it as UTF-8")


@pytest.mark.parametrize(
    "content",
    [b'{"jobs": 5}', b'{"jobs": ["x", {"region": "us-east-1"}]}', b"\xff\xfe", b"[1, 2]"],
)
def test_a_damaged_job_history_reads_as_no_jobs(cli, isolated: Path, content: bytes):
    state = isolated / "state" / "state.json"
    state.parent.mkdir(parents=True)
    state.write_bytes(content)
    line = one_error(cli("status"), 2)
    assert line == "no job given and none submitted from here yet; pass a job name"


def test_a_job_history_keeps_what_is_well_formed(isolated: Path):
    from rlvr_cli.cloud.sagemaker import history

    state = isolated / "state" / "state.json"
    state.parent.mkdir(parents=True)
    state.write_text(json.dumps({"jobs": [{"name": "rlvr-a"}, 7, {"name": 3}], "last_data_uri": 5}))
    assert history.load() == {"jobs": [{"name": "rlvr-a"}]}
    history.record_upload("s3://b/rlvr/data")
    assert history.last_data_uri() == "s3://b/rlvr/data"
    assert history.resolve_job(None) == {"name": "rlvr-a"}


def test_a_hand_edited_run_record_is_read_as_unknown_and_resume_goes_on(tmp_path: Path):
    from rlvr_cli.config.loading import load_recipe
    from rlvr_cli.models.record import RUN_FILE, RunRecord
    from rlvr_cli.training.output_dir import check_output_dir

    output = tmp_path / "run"
    (output / "checkpoint-3").mkdir(parents=True)
    (output / "checkpoint-3" / "trainer_state.json").write_text("{}")
    (output / RUN_FILE).write_text(
        json.dumps({"recipe": ["a"], "model": 1, "task": "x", "status": "interrupted"})
    )
    record = RunRecord.read(output)
    assert record is not None and (record.recipe, record.model, record.task) == ({}, {}, {})
    (output / RUN_FILE).write_text(json.dumps({"model": {"name": 5}}))
    assert RunRecord.read(output).base_model is None  # not a name to load
    recipe = load_recipe(SMOKE, []).recipe
    assert check_output_dir(output, output, recipe, resume=True, force=False) == output / "checkpoint-3"
    (output / RUN_FILE).write_bytes(b"\xff")
    assert RunRecord.read(output) is None


def test_a_corrupt_parquet_source_is_one_line(cli, tmp_path: Path, gsm8k_fixture: Path):
    source = tmp_path / "src"
    source.mkdir()
    (source / "test.jsonl").write_text((gsm8k_fixture / "test.jsonl").read_text())
    (source / "train.parquet").write_bytes(b"not parquet")
    line = one_error(cli("prepare", "--source", source, "--shots", "1", "--output", tmp_path / "out"), 1)
    assert line.startswith(f"{source / 'train.parquet'}: not a readable parquet file (")
    assert line.endswith("replace it, or give the split as JSON lines")
    assert not (tmp_path / "out").exists()


def test_a_damaged_adapter_config_is_refused_before_any_model_loads(cli, tmp_path: Path, prepared: Path):
    checkpoint = tmp_path / "ck"
    checkpoint.mkdir()
    (checkpoint / "adapter_config.json").write_text("{")
    # rlvr train writes a run record beside the adapter, naming the base: the adapter is still read.
    (checkpoint / "rlvr_run.json").write_text(json.dumps({"model": {"name": "smollm2-135m"}}))
    line = one_error(cli("eval", "--checkpoint", checkpoint, "--data", prepared, "--no-track"), 2)
    assert line == (
        f"{checkpoint / 'adapter_config.json'}: not a JSON object; restore it from the run "
        "(rlvr train writes it with the adapter)"
    )


def test_an_os_error_no_check_foresaw_is_one_line(
    cli, tmp_path: Path, gsm8k_fixture: Path, monkeypatch: pytest.MonkeyPatch
):
    import rlvr_cli.data.prepare as prepare_module

    target = tmp_path / "out" / "train" / "dataset.json"

    def full(output, prepared):
        raise OSError(errno.ENOSPC, "No space left on device", str(target))

    monkeypatch.setattr(prepare_module, "write_prepared", full)
    line = one_error(
        cli("prepare", "--source", gsm8k_fixture, "--shots", "1", "--output", tmp_path / "out"), 1
    )
    assert line == (f"{target}: No space left on device; check the path and its permissions")


def test_train_refuses_an_output_that_is_a_file(cli, tmp_path: Path, prepared: Path):
    taken = tmp_path / "taken"
    taken.write_text("mine")
    line = one_error(cli("train", "--config", SMOKE, "--data", prepared, "--output", taken), 1)
    assert line == f"{taken}: a file, not a directory; give --output a directory (new or a run's)"
    assert taken.read_text() == "mine"


# --- inputs that used to fail only after a model had loaded ----------------------------------------


def test_train_refuses_a_local_model_that_is_not_there_before_loading_torch(
    cli, tmp_path: Path, prepared: Path
):
    gone = tmp_path / "no-model"
    result = cli(
        "train", "--config", SMOKE, "--data", prepared, "--output", tmp_path / "o",
        "--set", f"model_name_or_path={gone}",
    )  # fmt: skip
    assert one_error(result, 1) == f"{gone}: model directory not found"
    assert "loading torch" not in result.err
    assert not (tmp_path / "o").exists()


def test_eval_checks_every_base_model_before_evaluating_any(cli, tmp_path: Path, prepared: Path):
    # (an adapter whose base directory is gone: tests/test_eval.py)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    line = one_error(cli("eval", "--checkpoint", adapter, "--data", prepared, "--no-track"), 2)
    assert line == (
        f"{adapter}: adapter_config.json names no base model; set its base_model_name_or_path to the "
        "model the adapter was trained from"
    )

    full = tmp_path / "full"  # a full model with no run record: nothing says what it was trained from
    full.mkdir()
    (full / "config.json").write_text("{}")
    line = one_error(cli("eval", "--checkpoint", full, "--data", prepared, "--baseline", "--no-track"), 2)
    assert line == (
        f"{full}: its base model is unknown (no rlvr_run.json or adapter config); "
        "pass --model BASE instead of --baseline"
    )


def test_eval_refuses_an_output_that_is_a_file_before_evaluating(cli, tmp_path: Path, prepared: Path):
    taken = tmp_path / "taken"
    taken.write_text("mine")
    result = cli("eval", "--model", "smollm2-135m", "--data", prepared, "--no-track", "--output", taken)
    assert one_error(result, 2) == f"--output {taken}: a file, not a directory; give --output a directory"
    assert taken.read_text() == "mine"


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ({"prompt": None, "final_answer": "3"}, "'prompt' must be non-empty text, got null"),
        ({"prompt": 5, "final_answer": "3"}, "'prompt' must be non-empty text, got 5"),
        ({"prompt": "Q: 1+2?", "final_answer": None}, "'final_answer' must be text or a number, got null"),
        ({"prompt": "Q: 1+2?", "final_answer": [3]}, "'final_answer' must be text or a number, got [3]"),
    ],
)
def test_a_row_whose_prompt_or_answer_is_not_text_is_one_line(cli, prepared: Path, row: dict, problem: str):
    good = {"prompt": "Q: 2+2?", "final_answer": 4}  # a number is fine: it is compared as text
    path = rewrite_split(prepared, "test", json.dumps(good) + "\n" + json.dumps(row) + "\n")
    line = one_error(cli("eval", "--model", "smollm2-135m", "--data", prepared, "--no-track"), 1)
    assert line == f"{path}:2: {problem}; re-run `rlvr prepare` (it writes both as text)"


def test_training_keeps_metadata_when_the_first_row_has_none(tmp_path: Path):
    from rlvr_cli.training.run import training_rows

    path = tmp_path / "train.jsonl"
    rows = [{"prompt": "a", "final_answer": "1"}, {"prompt": "b", "final_answer": "2", "metadata": "{}"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert [r.get("metadata") for r in training_rows(path, "train")] == [None, "{}"]


@pytest.mark.parametrize(
    ("reward", "message"),
    [
        (
            "nonexistent_pkg.mod:fn",
            "reward_funcs: cannot import reward 'nonexistent_pkg.mod:fn' (No module named",
        ),
        (
            "tests.rewards_for_tests:nothing",
            "reward_funcs: cannot import reward 'tests.rewards_for_tests:nothing'",
        ),
    ],
)
def test_train_refuses_a_reward_it_cannot_import_before_loading_torch(
    cli, tmp_path: Path, prepared: Path, reward: str, message: str
):
    result = cli(
        "train", "--config", SMOKE, "--data", prepared, "--output", tmp_path / "o",
        "--set", f"reward_funcs=[format, '{reward}']",
    )  # fmt: skip
    assert one_error(result, 2).startswith(message)
    assert "loading torch" not in result.err


def test_an_interrupted_write_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path):
    from rlvr_cli.core.files import atomic_write, write_text

    path = tmp_path / "summary.json"
    write_text(path, "old")
    with pytest.raises(RuntimeError), atomic_write(path) as fh:
        fh.write("new, half")
        raise RuntimeError("interrupted")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]
    write_text(path, "new")
    umask = os.umask(0)
    os.umask(umask)
    assert path.read_text() == "new" and path.stat().st_mode & 0o777 == 0o666 & ~umask  # as open() makes
