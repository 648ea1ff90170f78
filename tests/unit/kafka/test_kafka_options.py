"""Kafka TLS and SASL wiring. (Tansu 0.6 here cannot serve TLS or create SASL users, so the options
handed to aiokafka are checked instead; the TLS context is built from real certificate files.)"""

import asyncio
import ssl

import pytest
from aiokafka.errors import KafkaConnectionError
from pydantic import ValidationError

from bridge.app import Bridge
from bridge.config.settings import KafkaSettings
from bridge.errors import ConfigError
from bridge.kafka.clients import started
from bridge.kafka.options import REBALANCE_MARGIN_MS, client_options, group_options
from bridge.local.stack import local_settings
from bridge.providers.settings import parse_settings
from tests.certs import issue, make_ca

ENV = {"KAFKA_USER": "bridge-svc", "KAFKA_PASSWORD": "kafka-pass-123", "KEY_PASSWORD": "key-pass"}


def kafka(security, env=ENV):
    return parse_settings({"kafka": {"bootstrap_servers": "k1:9093", "security": security}}, env).kafka


def test_plaintext_is_the_default():
    options = client_options(parse_settings({}, {}).kafka)
    assert options["security_protocol"] == "PLAINTEXT"
    assert "ssl_context" not in options and "sasl_mechanism" not in options


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_over_tls_passes_credentials_from_secrets(mechanism):
    options = client_options(
        kafka(
            {
                "protocol": "SASL_SSL",
                "sasl_mechanism": mechanism,
                "sasl_username": {"env": "KAFKA_USER"},
                "sasl_password": {"env": "KAFKA_PASSWORD"},
            }
        )
    )
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == mechanism
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == (
        "bridge-svc",
        "kafka-pass-123",
    )
    context = options["ssl_context"]
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname


@pytest.mark.parametrize(
    ("security", "fragment"),
    [
        ({"protocol": "SASL_SSL"}, "needs sasl_mechanism"),
        ({"protocol": "SSL", "sasl_mechanism": "PLAIN"}, "use SASL_SSL"),
        ({"protocol": "PLAINTEXT", "ssl_cafile": "/ca.pem"}, "use SSL or SASL_SSL"),
        ({"protocol": "SSL", "ssl_certfile": "/c.pem"}, "both ssl_certfile and ssl_keyfile"),
        (
            {
                "protocol": "SASL_SSL",
                "sasl_mechanism": "PLAIN",
                "sasl_username": "inline",
                "sasl_password": "x",
            },
            "inline secrets are not allowed",
        ),
    ],
)
def test_inconsistent_security_is_refused_with_the_field(security, fragment):
    with pytest.raises(ConfigError, match=r"kafka\.security") as info:
        kafka(security)
    assert fragment in str(info.value)


@pytest.fixture
def certificates(tmp_path):
    make_ca(tmp_path)
    issue(tmp_path, "client", "bridge", key_password="key-pass")
    return tmp_path


def test_mutual_tls_loads_the_ca_and_the_encrypted_client_key(certificates):
    options = client_options(
        kafka(
            {
                "protocol": "SSL",
                "ssl_cafile": str(certificates / "ca.crt"),
                "ssl_certfile": str(certificates / "client.crt"),
                "ssl_keyfile": str(certificates / "client.key"),
                "ssl_key_password": {"env": "KEY_PASSWORD"},
                "ssl_check_hostname": False,
            }
        )
    )
    context = options["ssl_context"]
    assert not context.check_hostname
    assert any(cert["subject"] == ((("commonName", "test-ca"),),) for cert in context.get_ca_certs())


def test_a_wrong_key_password_fails_at_start_up(certificates):
    with pytest.raises(ssl.SSLError):
        client_options(
            kafka(
                {
                    "protocol": "SSL",
                    "ssl_certfile": str(certificates / "client.crt"),
                    "ssl_keyfile": str(certificates / "client.key"),
                    "ssl_key_password": {"env": "KEY_PASSWORD"},
                },
                {**ENV, "KEY_PASSWORD": "wrong"},
            )
        )


def test_the_rebalance_timeout_outlasts_the_drain_unless_set():
    derived = group_options(KafkaSettings(), drain_grace_s=20)
    assert derived["rebalance_timeout_ms"] == 20_000 + REBALANCE_MARGIN_MS
    assert derived["enable_auto_commit"] is False and derived["group_instance_id"] is None
    chosen = group_options(KafkaSettings(rebalance_timeout_ms=9000, group_instance_id="bridge-0"), 20)
    assert chosen["rebalance_timeout_ms"] == 9000 and chosen["group_instance_id"] == "bridge-0"


def test_a_group_instance_id_is_a_kafka_name():
    with pytest.raises(ValidationError):
        KafkaSettings(group_instance_id="bridge 0/evil")


class _Client:
    """Stands in for an aiokafka client: ``start`` takes ``start_s`` and fails the way it is told to."""

    def __init__(self, start_error: BaseException | None = None, start_s: float = 0.0) -> None:
        self.start_error = start_error
        self.start_s = start_s
        self.connected = False
        self.stopped = 0

    async def start(self) -> None:
        await asyncio.sleep(self.start_s)
        if self.start_error is not None:
            raise self.start_error
        self.connected = True

    async def stop(self) -> None:
        self.stopped += 1


@pytest.mark.parametrize("error", [asyncio.CancelledError(), KafkaConnectionError("refused")])
async def test_a_client_whose_start_fails_or_is_cancelled_is_still_stopped(error: BaseException) -> None:
    client = _Client(error)
    with pytest.raises(type(error)):
        async with started(client):  # type: ignore[type-var]
            pytest.fail("the body must not run when the start failed")
    assert client.stopped == 1  # else its connections leak (aiokafka warns: Unclosed AIOKafkaConsumer)


async def test_a_started_client_is_stopped_once_after_its_body() -> None:
    client = _Client()
    async with started(client) as same:  # type: ignore[type-var]
        assert same is client and client.stopped == 0
    assert client.stopped == 1


async def test_a_cancel_while_connecting_lets_the_connect_finish_then_stops_the_client() -> None:
    client, entered = _Client(start_s=0.05), []

    async def user() -> None:
        async with started(client):  # type: ignore[type-var]
            entered.append(True)

    task = asyncio.create_task(user())
    await asyncio.sleep(0.01)  # it is connecting
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled() and entered == []  # the cancel still ends it, before its body
    assert client.connected and client.stopped == 1  # the connect was not cut half-way; then stopped


@pytest.mark.parametrize("error", [None, RuntimeError("not a Kafka error")])
async def test_the_bridge_stopped_while_a_client_connects_stops_that_client(error: Exception | None) -> None:
    """A cancel mid-connect lets the connect finish, then stops it; a failure that is no KafkaError
    stops it too: aiokafka leaks a client never stopped (seen as Unclosed AIOKafkaConnection in CI)."""
    bridge = Bridge(local_settings("127.0.0.1:9", "http://127.0.0.1:9", metrics_port=None))
    client = _Client(error, start_s=0.05)
    starting = asyncio.create_task(bridge._start_client(lambda: client, "consumer"))  # type: ignore[arg-type,return-value]
    if error is None:
        await asyncio.sleep(0.01)  # connecting
        starting.cancel()
    with pytest.raises(asyncio.CancelledError if error is None else RuntimeError):
        await starting
    assert client.connected == (error is None) and client.stopped == 1
