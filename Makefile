# Every target installs what it needs into .venv first, so each works on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
GE2E_DATA ?= ../shared/data
EXTRAS := plot,train,diarization,serve,export,test

.PHONY: install demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch is pinned first so that pip takes the local CPU build rather than a multi-GB CUDA wheel.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[$(EXTRAS)]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/ge2e demo --data "$(GE2E_DATA)"

lint: install
	$(BIN)/ruff check src tests benchmarks recipes

test: lint
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/pip install -q -e ".[bench]"
	$(BIN)/python benchmarks/loss.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .ruff_cache
