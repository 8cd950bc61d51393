# Two entry points: `make run` (the main job on the bundled data) and `make test`. Both create the environment first.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DO_NOT_TRACK := true
export MLFLOW_DISABLE_TELEMETRY := true
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DVC_NO_ANALYTICS := 1
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 120
export OMP_WAIT_POLICY := PASSIVE

.PHONY: help install run test test-slow test-long test-all test-gpu lint format bench-matrix repro clean

help: ## Show the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-14s %s\n", $$1, $$2}'

$(STAMP): requirements.txt pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first and pinned exactly: a bare or newer torch pulls a multi-GB CUDA build
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

install: $(STAMP) ## Create .venv with the pinned stack

run: $(STAMP) ## Run the main job on the bundled digits data
	$(BIN)/mixunlearn run --example

# One test tier: pytest with a marker expression. pytest exits 5 when the expression selects no test; an empty tier
# is a failure (a renamed marker would otherwise pass CI by running nothing), so it says so and keeps the status.
define pytest_tier
$(BIN)/python -m pytest -q -m "$(1)"; status=$$?; \
if [ $$status -eq 5 ]; then echo "make $@: no test selected by -m \"$(1)\" (pytest exit 5); an empty tier fails" >&2; fi; \
exit $$status
endef

test: $(STAMP) ## Fast tier: unit tests of every component, no slow or GPU test (under 2 min on 2 cores)
	$(call pytest_tier,not slow and not gpu)

test-slow: $(STAMP) ## Slow tier: the flow end to end, CLI runs, DVC stages, bench and tuning runs (CPU)
	$(call pytest_tier,slow and not long and not gpu)

test-long: $(STAMP) ## Long tier: real Prefect workers, a served deployment's latency, the remaining SIGKILL points
	$(call pytest_tier,long and not gpu)

test-all: $(STAMP) ## Every CPU test, all three tiers
	$(call pytest_tier,not gpu)

test-gpu: $(STAMP) ## GPU tests (tests/components/test_cuda.py); they skip with a reason without CUDA
	$(call pytest_tier,gpu)

lint: $(STAMP) ## ruff check and format check
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: $(STAMP) ## ruff format and autofix
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

bench-matrix: $(STAMP) ## Run the benchmark matrix and regenerate docs/benchmarks.md
	$(BIN)/python -m components.bench.matrix

clean: ## Remove caches and outputs (keeps .venv)
	rm -rf artifacts .pytest_cache .ruff_cache

repro: $(STAMP) ## Reproduce the latest deletion batch's stages with DVC (after `make run`); commits dvc.lock
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/dvc repro
	git add dvc.lock
	git diff --cached --quiet -- dvc.lock || git commit -q -m "dvc.lock: dvc repro of the latest batch (data $$(git log -1 --format=%h -- data.dvc))" -- dvc.lock
