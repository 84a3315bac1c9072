# The two commands of the README. Each one sets up a fresh machine by itself:
#   make repro   -> .venv + install + `dvc repro` (the main job, offline, embedded dataset)
#   make test    -> .venv + install + the whole pytest suite (slow pipeline tests included)
# `make help` lists every target.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# DVC runs stage commands as `python src/stages/...`: put the venv's python first on PATH.
export PATH := $(abspath $(BIN)):$(PATH)
# The venv is installed without byte-compiling (see install below): Python compiles a module
# on its first import and keeps the .pyc. Where PYTHONDONTWRITEBYTECODE is set (some machine
# images set it) nothing would be kept, and every process - each DVC stage, each test
# subprocess - would compile TensorFlow and MLflow from source again: the suite took 698 s
# instead of about 400 s that way.
unexport PYTHONDONTWRITEBYTECODE
export DVC_NO_ANALYTICS := 1

.DEFAULT_GOAL := help
.PHONY: help install lock repro test test-fast lint format team-stack team-stack-down

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Exactly the locked versions (hash-checked), then the project itself without dependencies.
# --no-compile: pip would byte-compile every module of every package (TensorFlow alone has
# thousands) at install; Python compiles the few it imports on first use instead. Measured on
# 2 cores: 72.7 s against about 150 s for the locked packages.
$(VENV)/.installed: requirements.lock pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --no-compile --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

install: $(VENV)/.installed ## create .venv and install the locked packages, then the project

# pip-compile resolves through pip's own configuration (its index and find-links). Pins already
# in the lock are kept; UPGRADE=name (or "name other") moves those packages to their newest release.
lock: | $(BIN)/python ## regenerate requirements.lock from pyproject.toml (UPGRADE=package to move one)
	$(BIN)/python -m pip install --quiet "pip-tools>=7.4"
	$(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe --extra dev --extra team --strip-extras \
		--no-emit-index-url --no-emit-find-links \
		$(foreach package,$(UPGRADE),--upgrade-package $(package)) \
		-o requirements.lock pyproject.toml

repro: install ## run the pipeline: dvc repro (offline, on the embedded dataset)
	$(BIN)/dvc repro

# Two pytest workers, each taking whole test files (module fixtures are built once; tests/team
# as one unit, its stack started once), heaviest first (tests/conftest.py): on two cores they
# overlap one test's start-up, DVC and MLflow work with another's training.
TEST_WORKERS ?= 2
test: install ## the whole test suite, slow real-pipeline tests included (what CI runs)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

test-fast: install ## the quick unit tests only (skips the tests marked slow)
	$(BIN)/python -m pytest -m "not slow"

lint: install ## ruff check, ruff format --check, mypy over the package
	$(BIN)/ruff check src tests benchmarks docs
	$(BIN)/ruff format --check src tests benchmarks docs
	$(BIN)/mypy

format: install ## rewrite the code in the house style (ruff format, ruff check --fix)
	$(BIN)/ruff check --fix src tests benchmarks docs
	$(BIN)/ruff format src tests benchmarks docs

# PostgreSQL + SeaweedFS (S3) + an MLflow server on 127.0.0.1, state and data in .team-stack/
# (docs/team-setup.md; tests/team start it the same way). TEAM_STACK_DIR=dir puts it elsewhere.
TEAM_STACK_DIR ?= .team-stack
team-stack: install ## start the team stack (PostgreSQL, S3, MLflow server); prints the exports
	$(BIN)/cifar10-mlops team-stack up --dir $(TEAM_STACK_DIR)

team-stack-down: ## stop the team stack (its data stays; PURGE=1 deletes it)
	$(BIN)/cifar10-mlops team-stack down --dir $(TEAM_STACK_DIR) $(if $(PURGE),--purge)
