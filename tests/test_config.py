"""Recipes: every shipped file validates; errors are one clear line each; overrides are typed."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlvr_cli.config.loading import load_recipe
from rlvr_cli.config.recipe import Recipe
from rlvr_cli.config.reference import reference_table
from rlvr_cli.core.errors import UsageError

from .conftest import REPO

CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


def test_configs_exist():
    assert {p.name for p in CONFIGS} >= {"qwen2.5-0.5b-grpo.yaml", "smoke-cpu.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_recipe_validates(path: Path):
    loaded = load_recipe(path)
    assert loaded.recipe.reward_funcs
    # Each recipe opens with a comment giving the command that runs it.
    head = path.read_text().splitlines()[:12]
    assert any("rlvr train --config configs/" + path.name in line for line in head)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_recipe_validates_from_the_cli(cli, path: Path):
    result = cli("validate", path)
    assert result.code == 0, result.err
    assert "model_name_or_path:" in result.out


def test_reference_recipe_holds_the_reference_values():
    r = load_recipe(REPO / "configs" / "qwen2.5-0.5b-grpo.yaml").recipe
    assert (r.model_name_or_path, r.torch_dtype, r.attn_implementation, r.bf16, r.tf32, r.load_in_4bit) == (
        "Qwen/Qwen2.5-0.5B",
        "bfloat16",
        "sdpa",
        True,
        True,
        True,
    )
    assert (r.lora_r, r.lora_alpha) == (16, 16)
    assert set(r.lora_target_modules) == {
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "up_proj",
        "down_proj",
        "gate_proj",
    }
    assert r.lora_modules_to_save == ["lm_head", "embed_tokens"]
    assert (r.num_train_epochs, r.per_device_train_batch_size, r.gradient_accumulation_steps) == (2, 16, 2)
    assert r.gradient_checkpointing and r.gradient_checkpointing_kwargs == {"use_reentrant": True}
    assert (r.learning_rate, r.lr_scheduler_type, r.warmup_ratio, r.logging_steps, r.seed) == (
        1.84e-4,
        "cosine",
        0.1,
        5,
        42,
    )
    assert (r.report_to, r.max_seq_length) == (["mlflow"], 2048)
    assert r.remote.instance_type == "ml.p4d.24xlarge"


def test_reference_style_yaml_runs_unchanged_with_notices(tmp_path: Path):
    recipe = tmp_path / "reference.yaml"
    recipe.write_text(
        "model_name_or_path: Qwen/Qwen2.5-0.5B\ntorch_dtype: bfloat16\nbf16: true\nmax_seq_length: 2048\n"
        'packing: false\nsave_strategy: "no"\nreport_to: mlflow\n'
    )
    loaded = load_recipe(recipe)
    assert loaded.recipe.save_strategy == "no"
    assert any(n.startswith("packing:") for n in loaded.notices)
    assert any(n.startswith("max_seq_length:") for n in loaded.notices)


def test_errors_are_reported_all_at_once_one_line_each_with_file_lines(tmp_path: Path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(
        "lora_rr: 16\nlearning_rate: -1\nreward_funcs: [format, accuracy]\nremote:\n  role_arn: nope\n"
    )
    with pytest.raises(UsageError) as err:
        load_recipe(recipe)
    lines = err.value.message.splitlines()
    assert lines == [
        f"{recipe}:1: lora_rr: unknown key; did you mean 'lora_r'?",
        f"{recipe}:2: learning_rate: Input should be greater than 0",
        f"{recipe}:3: reward_funcs: unknown reward 'accuracy'; valid rewards: format, correctness (or a custom one as package.module:function)",
        f"{recipe}:5: remote.role_arn: must look like arn:aws:iam::123456789012:role/NAME",
    ]


def test_cli_prints_one_line_per_error_exit_2_and_no_traceback(cli, tmp_path: Path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("lora_rr: 16\nloss_type: ppo\n")
    result = cli("validate", recipe)
    assert result.code == 2
    assert "Traceback" not in result.err
    assert [line for line in result.err.splitlines() if line.startswith("error:")] == [
        f"error: {recipe}:1: lora_rr: unknown key; did you mean 'lora_r'?",
        f"error: {recipe}:2: loss_type: 'ppo' is not a loss TRL supports: grpo, dr_grpo, dapo, bnpo, cispo, sapo, luspo, vespo",
    ]


def test_unknown_remote_key_suggests_the_closest(tmp_path: Path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("remote:\n  instance_typ: ml.g5.xlarge\n")
    with pytest.raises(
        UsageError, match=r"r.yaml:2: remote.instance_typ: unknown key; did you mean 'instance_type'\?"
    ):
        load_recipe(recipe)


@pytest.mark.parametrize(
    ("remote", "message"),
    [
        ("instance_type: p4d.24xlarge", "prefix 'ml.'"),
        ("s3_prefix: http://bucket/x", "must be an S3 URI"),
        (
            "use_spot: true\n  max_runtime_seconds: 7200\n  max_wait_seconds: 3600",
            "must be >= max_runtime_seconds",
        ),
        ("max_wait_seconds: 9000", "spot training only"),
        ("environment: {HF_TOKEN: x, 1BAD: y}", "invalid environment variable name"),
    ],
)
def test_remote_section_is_validated(tmp_path: Path, remote: str, message: str):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"remote:\n  {remote}\n")
    with pytest.raises(UsageError, match=message):
        load_recipe(recipe)


def test_overrides_are_typed_by_the_recipe():
    loaded = load_recipe(
        REPO / "configs" / "smoke-cpu.yaml",
        [
            "learning_rate=1e-5",
            "lora_target_modules=[q_proj, v_proj]",
            "run_name=123",
            "remote.tags.team=42",
            "remote.use_spot=true",
            "remote.max_wait_seconds=100000",
        ],
    )
    r = loaded.recipe
    assert r.learning_rate == 1e-5
    assert r.lora_target_modules == ["q_proj", "v_proj"]
    assert r.run_name == "123"  # a string field keeps the text as written
    assert r.remote.tags == {"team": "42"}
    assert r.remote.use_spot and r.remote.max_wait_seconds == 100000


def test_string_choices_are_not_read_as_yaml_booleans():
    # YAML reads a bare `no` as False; save_strategy's choices are strings, so `no` stays "no".
    recipe = load_recipe(None, ["save_strategy=no", "eval_strategy=no"]).recipe
    assert (recipe.save_strategy, recipe.eval_strategy) == ("no", "no")


def test_bad_overrides_name_the_override(tmp_path: Path):
    with pytest.raises(UsageError) as err:
        load_recipe(None, ["lora_r=abc", "remot.region=x", "nokey"])
    assert err.value.message.splitlines() == [
        "--set remot: unknown key; did you mean 'remote'?",
        "--set nokey: expected key=value, e.g. --set learning_rate=1e-5",
    ]
    with pytest.raises(UsageError, match=r"^--set lora_r: Input should be a valid integer"):
        load_recipe(None, ["lora_r=abc"])
    # An override below a key of the file (it made the value a mapping) is named, not the file's line.
    with pytest.raises(UsageError) as err:
        load_recipe(REPO / "configs" / "smoke-cpu.yaml", ["learning_rate.x=1"])
    assert err.value.message == "--set learning_rate.x: Input should be a valid number"
    # ... but not for a check of the whole value that the override did not make fail.
    recipe = tmp_path / "vpc.yaml"
    recipe.write_text("remote:\n  subnets: [subnet-0123abcd]\n")
    with pytest.raises(UsageError) as err:
        load_recipe(recipe, ["remote.tags.team=ml"])
    assert err.value.message.startswith(
        f"{recipe}:1: remote: a VPC needs both subnets and security_group_ids"
    )


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("seed=-1", "--set seed: Input should be greater than or equal to 0"),
        ("seed=4294967296", "--set seed: Input should be less than or equal to 4294967295"),
        ("output_dir=", "--set output_dir: String should have at least 1 character"),
        ("train_dataset_path=", "--set train_dataset_path: String should have at least 1 character"),
        ("learning_rate=.inf", "--set learning_rate: Input should be a finite number"),
        (
            "lr_scheduler_type=cosin",
            "--set lr_scheduler_type: 'cosin' is not a transformers scheduler; did you mean 'cosine'? "
            "valid: linear, cosine, cosine_with_restarts, polynomial,",
        ),
    ],
)
def test_values_training_would_fail_on_after_loading_are_refused_by_the_recipe(override: str, message: str):
    # numpy/transformers refuse a seed outside [0, 2**32); an empty output_dir would be the current
    # directory. Both used to pass `rlvr validate` and fail after the model had loaded.
    with pytest.raises(UsageError) as err:
        load_recipe(None, [override])
    assert err.value.message.startswith(message)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "lora_target_modules=5",
            "expected module names (a list, or a comma-separated string) or all-linear, got 5",
        ),
        ("lora_target_modules=null", "or all-linear, got None"),
        ("lora_modules_to_save=5", "expected module names (a list, or a comma-separated string), got 5"),
    ],
)
def test_a_wrong_kind_of_module_list_is_one_message(override: str, message: str):
    with pytest.raises(UsageError) as err:
        load_recipe(None, [override])
    (line,) = err.value.message.splitlines()  # not one per member of the union
    assert line.startswith(f"--set {override.split('=')[0]}: ") and line.endswith(message)


def test_invalid_yaml_names_line_and_column(tmp_path: Path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("lora_r: 16\nlora_alpha: [1, 2\n")
    with pytest.raises(UsageError, match=r"r.yaml:3:1: invalid YAML"):
        load_recipe(recipe)


def test_duplicate_keys_are_errors(tmp_path: Path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("lora_r: 16\nlora_r: 32\n")
    with pytest.raises(UsageError, match=r"r.yaml:2: lora_r: duplicate key"):
        load_recipe(recipe)


def test_missing_recipe_file_is_a_usage_error(cli):
    result = cli("validate", "no/such.yaml")
    assert result.code == 2 and "recipe not found" in result.err


def test_a_recipe_that_is_not_utf8_is_one_line(cli, tmp_path: Path):
    recipe = tmp_path / "latin1.yaml"
    recipe.write_bytes("run_name: café\n".encode("latin-1"))
    for command in (["validate", recipe], ["train", "--config", recipe]):
        result = cli(*command)
        assert result.code == 2 and "Traceback" not in result.err, command
        assert result.err.strip() == (
            f"error: {recipe}: the recipe is not UTF-8 text (byte 0xe9 at offset 13); save it as UTF-8"
        )


def test_reward_weights_must_match_rewards():
    with pytest.raises(UsageError, match="give one weight per reward"):
        load_recipe(None, ["reward_weights=[1.0]"])


def test_configuration_reference_matches_the_model():
    readme = (REPO / "docs" / "configuration.md").read_text()
    start, end = "<!-- config-reference:start -->", "<!-- config-reference:end -->"
    section = readme.split(start, 1)[1].split(end, 1)[0].strip().splitlines()
    assert section[2:] == reference_table(), "regenerate with: python scripts/readme_reference.py"


def test_defaults_are_a_valid_recipe():
    assert Recipe().model_name_or_path == "Qwen/Qwen2.5-0.5B"
