"""The GPU check (benchmarks/gpu_check.py, `make gpu-check`) runs in one go on a machine with a GPU,
where there is no time to debug it: its CPU run, on the tiny shape, keeps the script working."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .conftest import REPO


def test_the_gpu_checks_run_on_the_cpu_and_write_their_json(
    tmp_path: Path, smol_dir: Path, gsm8k_fixture: Path
):
    results = tmp_path / "gpu.json"
    result = subprocess.run(
        [
            sys.executable, "benchmarks/gpu_check.py", "--gsm8k", str(gsm8k_fixture), "--tokenizer", str(smol_dir),
            "--tiny", "--only", "attention", "greedy", "decode", "--results", str(results),
        ],
        capture_output=True, text=True, cwd=REPO, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(results.read_text())
    assert data["errors"] == {}, data["errors"]
    env = data["environment"]
    assert env["versions"]["torch"] and env["versions"]["transformers"] and env["commit"] and env["date"]
    attention = data["checks"]["attention"]
    assert set(attention) == {"float32_1_level", "float32_2_level"}
    assert all(check["passed"] for check in attention.values()), attention
    greedy = data["checks"]["greedy"]
    # In float32 rlvr's decoding is generate's: from the fixed buffers a GPU replays, and eagerly.
    assert greedy["identical"] == greedy["eager_identical"] == greedy["rows"] == 8
    assert greedy["graphs_equal_eager"] == 8 and greedy["cuda_graphs"] is False
    decode = data["checks"]["decode"]
    assert decode["tokens_per_s"] > 0 and decode["eager"]["tokens_per_s"] > 0
    assert "sigterm" not in data["checks"] and data["parts"] == {}  # --only
