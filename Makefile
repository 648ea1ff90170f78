# One task runner; CI runs `make test` through .ci/run.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LINT_PATHS := bridge tests $(wildcard bench) $(wildcard helm/*.py)

.PHONY: install run test lint typecheck format unit integration bench bench-smoke clean

$(STAMP): pyproject.toml plugins/workflow-bridge-airflow/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip install --quiet --no-deps -e plugins/workflow-bridge-airflow  # the example provider plugin (issue 29)
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)  ## embedded broker + sandbox + bridge + example commands; Ctrl-C to stop
	$(BIN)/bridge local

lint: $(STAMP)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)

typecheck: $(STAMP)
	$(BIN)/mypy bridge helm/check.py

format: $(STAMP)
	$(BIN)/ruff format $(LINT_PATHS)
	$(BIN)/ruff check --fix $(LINT_PATHS)

unit: $(STAMP)
	$(BIN)/pytest tests/unit -q

integration: $(STAMP)
	$(BIN)/pytest tests/integration -q

test: lint typecheck  ## everything CI runs
	$(BIN)/pytest -q

bench: $(STAMP)  ## the throughput suite (minutes; prints ratios against the baselines)
	$(BIN)/python -m bench.run --suite

bench-smoke: $(STAMP)  ## a few hundred commands: every command gets exactly one outcome
	$(BIN)/python -m bench.run --smoke

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .local
