# Two commands set up a fresh machine:  `make demo` (install + default sweep + report), `make test`.
# Both install the exact versions the tests passed with (requirements/lock*.txt, hash-checked, resolved
# by pip from this machine's configured index); pyproject.toml keeps the compatible ranges.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STORAGE ?= sqlite:///studies/adamrag-sens.db
LOCK_PYTHON := 3.11
UV     := build/venv-lock/bin/uv

.PHONY: demo test quick test-latest install install-dev lock lock-upgrade bench findings clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml requirements/lock.txt | $(BIN)/python
	$(BIN)/python -m pip install -q --require-hashes -r requirements/lock.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml requirements/lock-dev.txt | $(BIN)/python
	$(BIN)/python -m pip install -q --require-hashes -r requirements/lock-dev.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

## The main job: the default sweep (4 optimizers x lr grid x beta1 on digits-mlp), then its report.
demo: install
	$(BIN)/adamrag-sens sweep --storage $(STORAGE)
	$(BIN)/adamrag-sens report --storage $(STORAGE) --study digits-mlp --out reports/digits-mlp

## The tests, on the locked versions, in one test process per core (pytest-xdist; `-n 0` runs them in
## this process, for a debugger). --dist loadgroup keeps the PostgreSQL tests in one process, and the
## tests of one shared report (tests/conftest.py). `make quick` is the quick loop.
test: install-dev
	$(BIN)/python -m pytest -q -n auto --dist loadgroup

quick: install-dev
	$(BIN)/python -m pytest -q -m "not slow" -n auto --dist loadgroup

## The tests against the newest releases pyproject.toml's ranges allow, in a throwaway venv
## (build/venv-latest), so that a new upstream release is found on purpose. CI stays on the lock.
test-latest:
	rm -rf build/venv-latest
	$(PYTHON) -m venv build/venv-latest
	build/venv-latest/bin/python -m pip install -q --upgrade pip
	build/venv-latest/bin/python -m pip install -q --upgrade --upgrade-strategy eager -e '.[dev]'
	build/venv-latest/bin/python scripts/lock_drift.py requirements/lock-dev.txt
	build/venv-latest/bin/python -m pytest -q -n auto --dist loadgroup

## Re-resolve the locks from pyproject.toml's ranges, keeping every pin that still fits (uv, universal:
## one lock for every platform, platform-only packages behind markers). `make lock-upgrade` takes the
## newest releases instead: run `make test-latest` first, then `make lock-upgrade test`.
$(UV):
	$(PYTHON) -m venv build/venv-lock
	build/venv-lock/bin/python -m pip install -q uv
lock: | $(UV)
	$(UV) pip compile -q --universal --python-version $(LOCK_PYTHON) --generate-hashes $(UPGRADE) \
	  pyproject.toml -o requirements/lock.txt
	$(UV) pip compile -q --universal --python-version $(LOCK_PYTHON) --generate-hashes $(UPGRADE) \
	  pyproject.toml --extra dev -o requirements/lock-dev.txt
lock-upgrade:
	$(MAKE) lock UPGRADE=--upgrade

## The findings (docs/findings/README.md): sweep every CPU findings study (studies/findings-*.toml) into
## FINDINGS_STORAGE, resuming what is stored, then write their reports, importance, convergence and
## compare outputs into docs/findings/ (hours on 2 CPU cores; FINDINGS_ARGS="--only digits-mlp" for one).
FINDINGS_STORAGE ?= sqlite:///studies/findings.db
FINDINGS_ARGS ?=
findings: install
	$(BIN)/python scripts/findings.py --storage $(FINDINGS_STORAGE) $(FINDINGS_ARGS)

## Optimizer step time, AdamRAG vs torch Adam, on this machine's device.
bench: install
	$(BIN)/adamrag-sens bench optimizer

clean:
	rm -rf $(VENV) reports/digits-mlp build/venv-latest build/venv-lock
