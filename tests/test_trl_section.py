"""The recipe's `trl:` section: any GRPOConfig field rlvr does not set, checked at `rlvr validate`
time against the installed TRL's fields, passed on to GRPOConfig, and sent with a SageMaker job."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

GSPO = {"importance_sampling_level": "sequence", "epsilon_high": 0.28}


def write(path: Path, **data: object) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_the_shipped_field_table_is_the_installed_trls():
    from rlvr_cli.config.trl import TABLE

    from .conftest import load_script

    script = load_script("trl_fields")
    assert json.loads(TABLE.read_text()) == script.table(), "regenerate: python scripts/trl_fields.py"


def test_every_loss_type_rlvr_accepts_is_one_trls_trainer_computes():
    import trl.trainer.grpo_trainer as trainer

    from rlvr_cli.config.trl import loss_types

    source = Path(trainer.__file__).read_text()
    assert {"grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo"} <= set(loss_types())
    for name in loss_types():
        assert f'"{name}"' in source, name


def test_validate_accepts_gspo_and_clip_higher(cli, tmp_path: Path):
    result = cli("validate", write(tmp_path / "r.yaml", model_name_or_path="m", trl=GSPO), "--json")
    assert result.code == 0, result.err
    assert result.json()["trl"] == GSPO
    cispo = cli("validate", write(tmp_path / "c.yaml", loss_type="cispo"))
    assert cispo.code == 0, cispo.err


def test_bad_trl_fields_are_one_line_each_with_their_file_line(cli, tmp_path: Path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(
        "model_name_or_path: m\n"
        "trl:\n"
        "  epsilon_hihg: 0.28\n"
        "  top_entropy_quantile: high\n"
        "  learning_rate: 1.0e-5\n"
        "  output_dir: /elsewhere\n"
        "  use_cpu: true\n"
        "loss_type: gspo\n"
    )
    result = cli("validate", recipe)
    assert result.code == 2 and "Traceback" not in result.err
    assert result.err.strip().splitlines() == [
        f"error: {recipe}:8: loss_type: 'gspo' is not a loss TRL supports: "
        "grpo, dr_grpo, dapo, bnpo, cispo, sapo, luspo, vespo",
        f"error: {recipe}:3: trl.epsilon_hihg: not a field of TRL 1.16.0's GRPOConfig; did you mean 'epsilon_high'?",
        f"error: {recipe}:4: trl.top_entropy_quantile: expects float, got str",
        f"error: {recipe}:5: trl.learning_rate: rlvr sets it from the recipe key `learning_rate`: set that instead",
        f"error: {recipe}:6: trl.output_dir: rlvr sets it from the recipe key `checkpoint_dir`: set that instead",
        f"error: {recipe}:7: trl.use_cpu: rlvr sets it itself (training/grpo_args.py); it cannot be changed",
    ]
    plain = write(tmp_path / "plain.yaml", model_name_or_path="m")
    override = cli("validate", plain, "--set", "trl.epsilon_hihg=0.3")
    assert override.code == 2
    assert override.err.strip() == (
        "error: --set trl.epsilon_hihg: not a field of TRL 1.16.0's GRPOConfig; did you mean 'epsilon_high'?"
    )
    assert cli("validate", plain, "--set", "trl.epsilon_high=0.3").code == 0  # typed as YAML: a float


def test_the_values_reach_grpoconfig_in_a_training_run(
    cli, tmp_path: Path, prepared: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    from rlvr_cli.training import grpo_args

    from .test_train import write_recipe

    made = []
    build = grpo_args.grpo_config

    def recording(*args, **kwargs):
        made.append(build(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(grpo_args, "grpo_config", recording)
    recipe = write_recipe(
        tmp_path / "r.yaml", tiny_model_dir, prepared, tmp_path / "out",
        max_steps=2, report_to="none", save_strategy="no", trl=GSPO,
    )  # fmt: skip
    result = cli("train", "--config", recipe, "--json")
    assert result.code == 0, result.err
    (config,) = made
    assert (config.importance_sampling_level, config.epsilon_high) == ("sequence", 0.28)
    assert result.json()["global_step"] == 2
    assert result.json()["recipe"]["trl"] == GSPO  # in the run record too


def test_the_section_travels_to_a_sagemaker_job_explicit_nulls_included(cli, tmp_path: Path, aws: str):
    remote = {
        "role_arn": "arn:aws:iam::123456789012:role/R",
        "image_uri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/rlvr:1",
        "s3_prefix": "s3://rlvr-trl/rlvr",
    }
    section = {**GSPO, "vllm_importance_sampling_cap": None}
    recipe = write(tmp_path / "r.yaml", trl=section, remote=remote)
    dry = cli("train", "--remote", "--dry-run", "--config", recipe, "--json")
    assert dry.code == 0, dry.err
    sent = dry.json()["request"]["HyperParameters"]["trl"]
    assert json.loads(sent) == section

    from rlvr_cli.container.entry import _decode

    assert _decode(sent) == section  # what the container reads back
