"""Which generator GRPO runs (the recipe's `use_vllm`), why, and what rlvr hands TRL for it."""

from __future__ import annotations

import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest

from rlvr_cli.config.recipe import Recipe
from rlvr_cli.core.errors import RlvrError, UsageError
from rlvr_cli.training.hardware import TRL_VLLM_RANGE, choose_generator

SUPPORTED = "0.30.0+cu130"


def test_auto_is_the_recipe_default():
    assert Recipe().use_vllm == "auto"


@pytest.mark.parametrize(
    ("cuda", "load_in_4bit", "vllm", "why"),
    [
        (False, False, SUPPORTED, "no CUDA GPU"),
        (True, True, SUPPORTED, "trl#4973"),
        (True, False, None, "vLLM is not installed"),
        (True, False, "0.32.0", "vLLM 0.32.0 is outside the releases TRL supports (0.22.0 to 0.31.0)"),
        (True, False, "0.21.9", "outside the releases TRL supports"),
    ],
)
def test_auto_falls_back_to_rlvrs_generator_and_says_why(cuda, load_in_4bit, vllm, why):
    use_vllm, line = choose_generator("auto", cuda, load_in_4bit, vllm)
    assert use_vllm is False
    assert line.startswith("rlvr's generator") and why in line


@pytest.mark.parametrize("vllm", [SUPPORTED, "0.22.0", "0.31.0", "0.31.0rc1"])
def test_auto_takes_vllm_where_it_can_serve_the_recipe(vllm):
    use_vllm, line = choose_generator("auto", True, False, vllm)
    assert use_vllm is True
    assert (
        line
        == f"vLLM {vllm} colocated with training: use_vllm: auto, a CUDA GPU and a vLLM that TRL supports"
    )


def test_false_keeps_rlvrs_generator_even_where_vllm_could_run():
    assert choose_generator(False, True, False, SUPPORTED) == (
        False,
        "rlvr's generator (transformers, each shared prompt part run once, stopped after the answer): "
        "use_vllm: false; each decoding step one CUDA graph",
    )


@pytest.mark.parametrize(
    ("cuda_graphs", "steps"),
    [(True, "; each decoding step one CUDA graph"), (False, "; decoding eagerly (cuda_graphs: false)")],
)
def test_on_a_gpu_rlvrs_generator_says_whether_its_steps_are_cuda_graphs(cuda_graphs, steps):
    _, qlora = choose_generator("auto", True, True, SUPPORTED, cuda_graphs=cuda_graphs)
    assert qlora.endswith(f"load_in_4bit: false would use vLLM{steps}")
    _, chosen = choose_generator(False, True, False, SUPPORTED, cuda_graphs=cuda_graphs)
    assert chosen.endswith(f"use_vllm: false{steps}")
    # vLLM's own decoding and the CPU's eager loop say nothing about graphs
    assert "CUDA graph" not in choose_generator("auto", True, False, SUPPORTED, cuda_graphs=cuda_graphs)[1]
    assert "graph" not in choose_generator("auto", False, False, None, cuda_graphs=cuda_graphs)[1]


@pytest.mark.parametrize(
    ("cuda", "load_in_4bit", "vllm", "error", "message"),
    [
        (False, False, SUPPORTED, UsageError, "use_vllm needs a CUDA GPU; set use_vllm: auto or false"),
        (True, True, SUPPORTED, UsageError, "set load_in_4bit: false (bf16 LoRA) or use_vllm: auto"),
        (True, False, None, RlvrError, "vLLM is not installed: pip install 'rlvr[vllm]'"),
    ],
)
def test_an_explicit_true_that_cannot_be_served_is_an_error_not_a_switch(
    cuda, load_in_4bit, vllm, error, message
):
    with pytest.raises(error, match=r"^use_vllm") as raised:
        choose_generator(True, cuda, load_in_4bit, vllm)
    assert message in str(raised.value)


def test_an_explicit_true_runs_a_release_trl_does_not_list_and_says_so():
    assert choose_generator(True, True, False, "0.34.0") == (
        True,
        "vLLM 0.34.0 colocated with training, outside the releases TRL supports (0.22.0 to 0.31.0): use_vllm: true",
    )


@pytest.mark.parametrize(
    ("version", "supported"),
    [(TRL_VLLM_RANGE[0], True), (TRL_VLLM_RANGE[1], True), ("0.21.9", False), ("0.31.1", False)],
)
def test_the_range_is_the_installed_trls(monkeypatch: pytest.MonkeyPatch, version: str, supported: bool):
    from trl import import_utils

    monkeypatch.setattr(
        import_utils, "_is_package_available", lambda name, return_version=False: (True, version)
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import_utils.is_vllm_available()
    assert (not any("TRL currently supports vLLM" in str(w.message) for w in caught)) is supported
    assert choose_generator("auto", True, False, version)[0] is supported


def _env(use_vllm: bool) -> SimpleNamespace:
    return SimpleNamespace(bf16=False, tf32=None, device="cpu", use_vllm=use_vllm)


STOPS = ["\nQuestion:"]


def test_vllm_gets_colocation_the_correction_and_the_answer_stop(tmp_path: Path):
    from rlvr_cli.training.grpo_args import grpo_config

    config = grpo_config(Recipe(generation_kwargs={"stop": ["###"]}), _env(True), tmp_path, STOPS)
    assert config.use_vllm is True
    assert (config.vllm_mode, config.vllm_importance_sampling_correction) == ("colocate", True)
    assert config.generation_kwargs == {"stop": ["###", *STOPS]}


def test_the_recipes_trl_section_can_point_vllm_at_a_server(tmp_path: Path):
    from rlvr_cli.training.grpo_args import grpo_config

    config = grpo_config(Recipe(trl={"vllm_mode": "server"}), _env(True), tmp_path, STOPS)
    assert (config.use_vllm, config.vllm_mode) == (True, "server")


def test_rlvrs_generator_gets_neither_vllm_nor_stop_strings(tmp_path: Path):
    from rlvr_cli.training.grpo_args import grpo_config

    config = grpo_config(Recipe(), _env(False), tmp_path, STOPS)
    assert config.use_vllm is False
    assert config.generation_kwargs is None  # rlvr's generator stops on the answer itself


@pytest.mark.parametrize("value", ["maybe", "1"])
def test_a_wrong_value_is_one_line_naming_the_choices(cli, value: str):
    from .conftest import REPO

    result = cli("train", "--config", REPO / "configs" / "smoke-cpu.yaml", "--set", f"use_vllm={value}")
    shown = repr(value) if value == "maybe" else value  # --set reads YAML: 1 is a number
    assert result.code == 2
    assert result.err.strip() == f"error: --set use_vllm: expected true, false or auto, got {shown}"


def test_use_vllm_in_the_trl_section_points_at_the_recipe_key():
    from rlvr_cli.config.trl import check_section

    assert check_section({"use_vllm": True}) == [
        ("use_vllm", "rlvr sets it from the recipe key `use_vllm`: set that instead")
    ]
