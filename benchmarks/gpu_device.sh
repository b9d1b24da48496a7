#!/usr/bin/env bash
# The GPU check on a machine without network, from the repo root with .whl/ (make gpu-bundle) beside it:
#   bash benchmarks/gpu_device.sh OUT_DIR
# Installs the carried wheels over the machine's PyTorch image (its torch stays), then runs
# benchmarks/gpu_check.py; gpu.json, RESULTS.md, the log and nvidia-smi's line end up in OUT_DIR.
set -euo pipefail
out="${1:?usage: bash benchmarks/gpu_device.sh OUT_DIR}"
mkdir -p "$out"
site="${RLVR_GPU_SITE:-/tmp/rlvr-site}"
python3 -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl
export PYTHONPATH="$site" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >"$out/nvidia-smi.txt" 2>&1 || true
python3 benchmarks/gpu_check.py --gsm8k .whl/gsm8k --tokenizer .whl/tokenizer --out "$out" "${@:2}" 2>&1 | tee "$out/log.txt"
