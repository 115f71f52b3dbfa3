# Two commands on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PYTHONPATH := $(CURDIR)
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export GX_ANALYTICS_ENABLED := false
export MPLBACKEND := Agg

.PHONY: run test test-slow ui home demo-data bench data-dictionary clean

$(STAMP): requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements.lock
	touch $(STAMP)

# Phony: an existing dagster.yaml gets missing settings (nux and telemetry off) merged in.
home: $(STAMP)
	$(BIN)/python -m pipelines.instance >/dev/null

run: $(STAMP) home
	$(BIN)/python -m pipelines.cli run

test: $(STAMP) home
	$(BIN)/python -m pytest -q

test-slow: $(STAMP) home
	$(BIN)/python -m pytest -q -m slow

ui: $(STAMP) home
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

demo-data: $(STAMP)
	$(BIN)/python -m analyses.demo_data --firms 10000 --out data/demo

bench: $(STAMP)
	$(BIN)/python benchmarks/did_vs_csdid.py
	$(BIN)/python benchmarks/validate_exports.py

data-dictionary: $(STAMP)
	$(BIN)/python -m analyses.contracts.dictionary > data_contracts/DATA_DICTIONARY.md

clean:
	rm -rf $(VENV) .dagster_home output warehouse data/demo
