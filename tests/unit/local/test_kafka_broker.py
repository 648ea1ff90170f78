"""The Apache Kafka launcher's pieces, and what an operator sees when the Kafka run cannot start.

The broker itself is started by the integration fixtures (``make test-kafka``); these tests need
neither Java nor the jars.
"""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from bridge.local import kafka_broker
from bridge.local.kafka_broker import KafkaUnavailable, cluster_id, kafka_available, server_properties

ROOT = Path(__file__).resolve().parents[3]


def properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines())


def test_server_properties_describe_a_single_combined_node_on_loopback(tmp_path: Path) -> None:
    found = properties(server_properties(tmp_path, 9092, 9093, 9092))

    assert found["process.roles"] == "broker,controller"
    assert found["listeners"] == "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert found["advertised.listeners"] == "PLAINTEXT://127.0.0.1:9092"
    assert found["controller.quorum.bootstrap.servers"] == "127.0.0.1:9093"
    assert found["log.dirs"] == str(tmp_path / "data")
    # like production: a topic nobody created is an error, not a new topic
    assert found["auto.create.topics.enable"] == "false"
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
    ):
        assert found[key] == "1", key
    assert found["group.initial.rebalance.delay.ms"] == "0"
    assert int(found["log.cleaner.backoff.ms"]) <= 1000  # compaction is observable within a test


def test_a_proxy_port_is_what_clients_are_told(tmp_path: Path) -> None:
    found = properties(server_properties(tmp_path, 9092, 9093, 19092))
    assert found["listeners"].startswith("PLAINTEXT://127.0.0.1:9092,")
    assert found["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"


def test_cluster_ids_are_16_random_bytes_in_url_safe_base64() -> None:
    first, second = cluster_id(), cluster_id()
    assert first != second and len(first) == 22 and "=" not in first
    assert len(base64.urlsafe_b64decode(first + "==")) == 16


def test_no_cluster_id_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    """The storage tool would take it for an option and fail to format (seen: exit 1 in a test run)."""
    dashed = uuid.UUID(bytes=base64.urlsafe_b64decode("-" + "A" * 21 + "=="))
    plain = uuid.UUID(bytes=base64.urlsafe_b64decode("B" * 21 + "A=="))
    draws = iter([dashed, dashed, plain])
    monkeypatch.setattr(uuid, "uuid4", lambda: next(draws))
    assert cluster_id() == "B" * 21 + "A"


def test_missing_jars_say_how_to_fetch_them(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(kafka_broker.JARS_ENV, str(tmp_path))
    assert kafka_available() == f"no Kafka broker jars in {tmp_path}: run `make kafka-jars` (needs mvn)"
    with pytest.raises(KafkaUnavailable, match="make kafka-jars"):
        kafka_broker.kafka_jars()


def test_missing_java_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(kafka_broker.JAVA_ENV, str(tmp_path / "no-java-here"))
    message = kafka_available()
    assert message is not None and "Java 17" in message


def run_pytest(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_kafka_run_without_jars_stops_with_one_line_not_a_traceback(tmp_path: Path) -> None:
    done = run_pytest(
        "tests/integration/test_topics_admin.py",
        "-k",
        "dry_run",
        "--broker",
        "kafka",
        BRIDGE_KAFKA_JARS=str(tmp_path),
    )
    output = done.stdout + done.stderr
    assert done.returncode == 4, output
    assert f"--broker kafka: no Kafka broker jars in {tmp_path}: run `make kafka-jars`" in output
    assert "Traceback" not in output and " passed" not in output


def test_an_unknown_broker_in_the_environment_is_a_usage_error() -> None:
    done = run_pytest(
        "tests/unit/local/test_kafka_broker.py", "-k", "cluster_ids", BRIDGE_TEST_BROKER="rabbitmq"
    )
    output = done.stdout + done.stderr
    assert done.returncode == 4, output
    assert "BRIDGE_TEST_BROKER must be one of tansu, kafka" in output
    assert "Traceback" not in output


def test_make_test_without_java_or_maven_skips_the_kafka_run_with_one_line(tmp_path: Path) -> None:
    make = subprocess.run(["which", "make"], capture_output=True, text=True, check=True).stdout.strip()
    done = subprocess.run(
        [make, "-s", "-C", str(ROOT), "kafka-if-available"],
        env={**os.environ, "PATH": str(tmp_path)},  # a PATH with neither java nor mvn
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("SKIPPED the integration suite on Apache Kafka"), lines
    assert "make test-kafka" in lines[0]


FAILING_JAVA = """#!/bin/sh
case "$*" in *StorageTool*) exit 0;; esac
echo "FATAL the broker refuses to start"; exit 1
"""


def test_a_broker_that_fails_to_start_leaves_the_log_the_error_names(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Its storage is removed, its log (beside it, not inside) is kept: the error points at it."""
    jars, java = tmp_path / "jars", tmp_path / "java"
    jars.mkdir()
    (jars / "kafka_2.13-4.4.0.jar").write_bytes(b"")
    java.write_text(FAILING_JAVA)
    java.chmod(0o755)
    monkeypatch.setenv(kafka_broker.JARS_ENV, str(jars))
    monkeypatch.setenv(kafka_broker.JAVA_ENV, str(java))
    with pytest.raises(RuntimeError, match=r"see (\S+\.log)") as failed:
        asyncio.run(kafka_broker.start_kafka_broker())
    log = Path(str(failed.value).rsplit("see ", 1)[1])
    assert "FATAL the broker refuses to start" in log.read_text()
    assert not log.with_suffix("").exists()  # the storage directory is gone
    log.unlink()
