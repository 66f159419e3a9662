# Every target installs what it needs into .venv first, so each works on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
GE2E_DATA ?= ../shared/data
EXTRAS := plot,train,diarization,serve,export,test

.PHONY: install sysdeps demo test lint bench mutate dist clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch is pinned first so that pip takes the local CPU build rather than a multi-GB CUDA wheel.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[$(EXTRAS)]"
	touch $@

install: $(VENV)/.installed

# System tools the tests run: espeak-ng (synthetic speech), ffmpeg (m4a decoding), nginx and openssl (the reverse
# proxy example, deploy/nginx, over TLS). Installed with apt-get when missing and this is root on Debian, as on CI;
# elsewhere a note is printed and their tests skip (fail under CI=true).
# command[:Debian package] of each system tool some tests run
SYSTEM_TOOLS := espeak-ng ffmpeg nginx openssl chromium chromedriver:chromium-driver

sysdeps:
	@missing=""; for t in $(SYSTEM_TOOLS); do command -v $${t%%:*} >/dev/null 2>&1 || missing="$$missing $${t#*:}"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	else \
		echo "sysdeps: missing$$missing (apt-get install$$missing); the tests that need them will skip"; \
	fi

demo: install
	$(BIN)/ge2e demo --data "$(GE2E_DATA)"

lint: install
	$(BIN)/ruff check src tests benchmarks recipes
	$(BIN)/lint-imports

test: lint sysdeps
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/pip install -q -e ".[bench]"
	$(BIN)/python benchmarks/loss.py

# Mutation testing of the method's core (docs/testing.md); not part of CI. Audio decoding and VAD are left out
# to keep a run near 40 minutes on 2 cores; MUTANTS='...' selects other mutant name patterns.
MUTANTS ?= ge2e.similarity.* ge2e.loss.* ge2e.metrics.* ge2e.scoring.* ge2e.data.sampler.* ge2e.inference.* \
	ge2e.audio.x__hz_to_mel* ge2e.audio.x__mel_to_hz* ge2e.audio.x_mel_frequencies* ge2e.audio.x__mel_filterbank* \
	ge2e.audio.x__hann_window* ge2e.audio.x_log_mel* ge2e.audio.x_normalize_volume* ge2e.audio.x_peak_dbfs*
MUTATE_JOBS ?= 1

mutate: install
	rm -rf mutants
	set -f; OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/mutmut run --max-children $(MUTATE_JOBS) $(MUTANTS)
	$(BIN)/python tests/mutation_report.py

# A wheel with the bundled model inside (dist/ge2e-*.whl): `pip install torch==2.13.0 dist/ge2e-*.whl` in any venv
# gives a `ge2e` that runs offline.
dist: | $(BIN)/python
	$(BIN)/pip install -q build
	$(BIN)/python -m build --wheel --outdir dist

clean:
	rm -rf dist $(VENV) build src/*.egg-info .pytest_cache .ruff_cache
