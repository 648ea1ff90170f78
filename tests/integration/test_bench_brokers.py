"""The benchmarks on both brokers in one run (``--broker both``): the embedded Tansu, then Apache Kafka.

Marked for the Kafka run of the suite: they start both brokers themselves, and need Kafka's jars.
"""

from __future__ import annotations

import json

import pytest

from tests.integration.test_bench_smoke import run_module

pytestmark = [pytest.mark.integration, pytest.mark.only_broker("kafka")]


def test_bench_smoke_on_both_brokers_gives_every_command_exactly_one_outcome() -> None:
    output = run_module("bench.run", "--smoke", "--broker", "both", timeout_s=240)
    assert output.count("smoke: OK") == 2, output[-3000:]
    assert "| smoke | bridge | 1 |" in output  # the Kafka / Tansu comparison


def test_ledger_restore_after_kafka_compacted_the_ledger_topic() -> None:
    output = run_module("bench.ledger", "--ids", "10000", "--broker", "both", timeout_s=300)
    tansu, kafka = json.loads(output[output.index("[\n  {") : output.rindex("]") + 1])
    assert (tansu["broker"], kafka["broker"]) == ("tansu", "kafka")
    assert tansu["ids"] == kafka["ids"] == 10000
    assert tansu["records_read"] == tansu["records_written"] == 20000  # Tansu does not compact
    # the log cleaner removed the dispatched entries from every closed segment (the active one stays)
    assert kafka["cleaned_up_to_offset"] >= 20000 - 10000
    assert kafka["records_read"] < 15000
