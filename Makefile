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

# The project itself goes on the venv's path through a .pth file naming this checkout, so that
# `.venv/bin/python` imports it from any folder without PYTHONPATH. (An editable install would need
# `wheel`, which is not in the lock; the .pth downloads nothing.) The Makefile is a prerequisite so
# that venvs made before this rule get the file too.
$(STAMP): requirements.lock Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements.lock
	$(BIN)/python -c 'import pathlib, sys, sysconfig; pathlib.Path(sysconfig.get_path("purelib"), "export_impact.pth").write_text(sys.argv[1] + "\n")' "$(CURDIR)"
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
	$(BIN)/python benchmarks/executors.py

data-dictionary: $(STAMP)
	$(BIN)/python -m analyses.contracts.dictionary > data_contracts/DATA_DICTIONARY.md

clean:
	rm -rf $(VENV) .dagster_home output warehouse data/demo
