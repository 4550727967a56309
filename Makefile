# Two commands for a fresh machine: `make run` (the Space on the embedded zoo) and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test test-heavy lint assets bench screenshots clean

# The package itself, editable, with its pinned dependencies (pyproject.toml, equal to
# requirements.txt) and the cluster extra: `fhe-audit` is on the venv's PATH.
$(VENV)/.runtime: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dask]'
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

run: $(VENV)/.runtime
	$(PY) app.py

# A known crash (SIGSEGV of the pytest process in the browser tests when they run after the
# rest of the suite in one process; 3 of 6 full runs on 2026-12-06, cause not found yet; each
# part alone passed): the browser tests run in a process of their own, and a run that dies by a
# signal is run once more, loudly. A failing test still fails.
BROWSER_TESTS := tests/test_browser.py tests/test_browser_second_visit.py tests/test_browser_visitors.py
PYTEST_ONCE_MORE = || { status=$$?; test $$status -gt 128 || exit $$status; \
	  echo "pytest died by signal $$((status - 128)); running it once more"; $(1); }

test: $(VENV)/.dev
	$(PY) -m ruff check .
	$(PY) -m pytest -q $(BROWSER_TESTS:%=--ignore=%) $(call PYTEST_ONCE_MORE,$(PY) -m pytest -q $(BROWSER_TESTS:%=--ignore=%))
	$(PY) -m pytest -q $(BROWSER_TESTS) $(call PYTEST_ONCE_MORE,$(PY) -m pytest -q $(BROWSER_TESTS))

# Real FHE at benchmark scale (sealed audits on whole benchmarks, the 1,000-sample bias audit)
# and the timed checks of the Space's estimates: tens of minutes on 2 cores.
test-heavy: $(VENV)/.dev
	$(PY) -m pytest -q -m "heavy or timing"

lint: $(VENV)/.dev
	$(PY) -m ruff check .

# Rebuild the embedded zoo (models + benchmarks) with fixed seeds, then the demo challenge.
# SOURCE_DATE_EPOCH: the manifests' created_at is the last commit's time, so two builds of one
# commit are byte-identical.
assets: $(VENV)/.runtime
	SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct 2>/dev/null || echo 0) $(PY) -m fhe_backend.owner.zoo_build
	$(PY) -m fhe_backend bench --model all --sealed --record
	$(PY) -m fhe_backend.challenge.demo

# Per-sample FHE latency of every zoo model; prints the README's table.
bench: $(VENV)/.runtime
	$(PY) -m fhe_backend bench --model all --limit 5

# The README's pictures of the Space (Chromium + Playwright, as the browser tests).
screenshots: $(VENV)/.dev
	$(PY) tests/screenshots.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
