# Two commands set up a fresh machine:  `make demo` (install + default sweep + report), `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STORAGE ?= sqlite:///studies/adamrag-sens.db

.PHONY: demo test install install-dev bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

## The main job: the default sweep (4 optimizers x lr grid x beta1 on digits-mlp), then its report.
demo: install
	$(BIN)/adamrag-sens sweep --storage $(STORAGE)
	$(BIN)/adamrag-sens report --storage $(STORAGE) --study digits-mlp --out reports/digits-mlp

## The tests (about 3.5 minutes on 2 quiet CPU cores; `pytest -m "not slow"` is the quick loop, about 1 minute).
test: install-dev
	$(BIN)/python -m pytest -q

## Optimizer step time, AdamRAG vs torch Adam, on this machine's device.
bench: install
	$(BIN)/adamrag-sens bench optimizer

clean:
	rm -rf $(VENV) reports/digits-mlp
