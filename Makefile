# Two commands for a fresh machine: `make run` (the Space on the embedded zoo) and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test lint assets bench clean

$(VENV)/.runtime: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

run: $(VENV)/.runtime
	$(PY) app.py

test: $(VENV)/.dev
	$(PY) -m ruff check .
	$(PY) -m pytest -q

lint: $(VENV)/.dev
	$(PY) -m ruff check .

# Rebuild the embedded zoo (models + benchmarks) with fixed seeds, then the demo challenge.
assets: $(VENV)/.runtime
	$(PY) -m fhe_backend.zoo_build
	$(PY) -m fhe_backend.challenge.demo

# Per-sample FHE latency of every zoo model; prints the README's table.
bench: $(VENV)/.runtime
	$(PY) -m fhe_backend bench --model all --limit 5

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
