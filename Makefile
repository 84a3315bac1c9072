# The two commands of the README. Each one sets up a fresh machine by itself:
#   make repro   -> .venv + install + `dvc repro` (the main job, offline, embedded dataset)
#   make test    -> .venv + install + the whole pytest suite (slow pipeline tests included)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# DVC runs stage commands as `python src/stages/...`: put the venv's python first on PATH.
export PATH := $(abspath $(BIN)):$(PATH)
export DVC_NO_ANALYTICS := 1

.PHONY: install repro test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

repro: install
	$(BIN)/dvc repro

test: install
	$(BIN)/python -m pytest
