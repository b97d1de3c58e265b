# crossfade: every target creates or refreshes the virtual environment it needs.
# `make` alone lists the targets with their descriptions.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.8
STAMP := $(VENV)/.installed
LOCK := requirements.lock
export CROSSFADE_DATA_ROOT ?= $(CURDIR)/.crossfade
export PREFECT_HOME ?= $(CROSSFADE_DATA_ROOT)/prefect
export OPENBLAS_NUM_THREADS ?= 1
export MPLBACKEND ?= Agg
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
# The first start of a fresh Prefect home migrates its database: allow for a busy machine.
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 180
UI_HOST := 127.0.0.1

.DEFAULT_GOAL := help
.PHONY: help install run serve stop test lint format typecheck doctor ui bench clean lock

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "; printf "crossfade make targets:\n"} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): $(LOCK) requirements-nodeps.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip sync --python $(BIN)/python $(LOCK)
	$(BIN)/uv pip install --python $(BIN)/python --no-deps -r requirements-nodeps.txt
	$(BIN)/uv pip install --python $(BIN)/python --no-deps -e .
	@touch $(STAMP)

install: $(STAMP) ## Create .venv from the lock file (no-op when up to date)

lock: ## Re-pin requirements.lock from pyproject.toml (no index URLs recorded)
	@test -x $(BIN)/uv || { $(PYTHON) -m venv $(VENV) && $(BIN)/python -m pip install --quiet uv==$(UV_VERSION); }
	$(BIN)/uv pip compile pyproject.toml --extra dev --no-emit-index-url --python-version 3.11 -o $(LOCK)

run: $(STAMP) ## The main job: the whole lifecycle twice on the embedded default (local profile)
	@mkdir -p $(PREFECT_HOME)
	$(BIN)/crossfade run

serve: $(STAMP) ## Start gateway, blue, green and shadow recommenders on loopback; Ctrl-C stops
	@mkdir -p $(PREFECT_HOME)
	$(BIN)/python -m deployments.serve

stop: $(STAMP) ## Stop the serving stack that `make run` left serving
	$(BIN)/crossfade stop

test: $(STAMP) ## Run the whole test suite (unit, integration, drills)
	$(BIN)/python -m pytest tests --durations=20

lint: $(STAMP) ## Ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP) ## Apply ruff fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: $(STAMP) ## mypy on the core package
	$(BIN)/mypy

doctor: $(STAMP) ## Show stack versions, active profile and whether its endpoints answer
	$(BIN)/crossfade doctor

ui: $(STAMP) ## Browse flow runs (Prefect UI :4200) and experiments (MLflow UI :5000); Ctrl-C stops
	@mkdir -p $(CROSSFADE_DATA_ROOT)
	@echo "Prefect UI: http://$(UI_HOST):4200   MLflow UI: http://$(UI_HOST):5000"
	@trap 'kill 0' INT TERM EXIT; \
	$(BIN)/prefect server start --host $(UI_HOST) --port 4200 & \
	$(BIN)/mlflow ui --host $(UI_HOST) --port 5000 \
		--backend-store-uri sqlite:///$(CROSSFADE_DATA_ROOT)/mlflow.db & \
	wait

bench: $(STAMP) ## Run the benchmarks and rewrite docs/benchmarks.md
	$(BIN)/python -m benchmarks.run

clean: ## Remove generated data, caches and the virtual environment
	rm -rf $(VENV) .crossfade .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info
