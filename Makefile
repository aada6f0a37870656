PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-all lint format clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# the CPU build first: a bare torch requirement would pull a multi-GB CUDA build
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/codax demo

test: $(STAMP)
	$(VENV)/bin/ruff check codax tests benchmarks
	$(VENV)/bin/ruff format --check codax tests benchmarks
	$(PY) -m pytest -q -m "not slow"

# everything, including the long random sweeps marked slow
test-all: $(STAMP)
	$(PY) -m pytest -q

lint:
	$(VENV)/bin/ruff check codax tests benchmarks
	$(VENV)/bin/ruff format --check codax tests benchmarks

format:
	$(VENV)/bin/ruff format codax tests benchmarks
	$(VENV)/bin/ruff check --fix codax tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .codax_cache
