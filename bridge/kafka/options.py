"""Connection options shared by every Kafka client the bridge creates: bootstrap, TLS and SASL.

Example::

    AIOKafkaProducer(**client_options(settings.kafka), acks="all")
"""

from __future__ import annotations

import ssl
from typing import Any

from bridge.config.settings import KafkaSecuritySettings, KafkaSettings


def ssl_context(security: KafkaSecuritySettings) -> ssl.SSLContext:
    """Verification on, the configured CA (or the system store), and the client pair for mutual TLS."""
    context = ssl.create_default_context(cafile=str(security.ssl_cafile) if security.ssl_cafile else None)
    context.check_hostname = security.ssl_check_hostname
    if security.ssl_certfile is not None and security.ssl_keyfile is not None:
        password = security.ssl_key_password.get_secret_value() if security.ssl_key_password else None
        context.load_cert_chain(str(security.ssl_certfile), str(security.ssl_keyfile), password)
    return context


def security_options(security: KafkaSecuritySettings) -> dict[str, Any]:
    options: dict[str, Any] = {"security_protocol": security.protocol}
    if security.protocol.endswith("SSL"):
        options["ssl_context"] = ssl_context(security)
    if security.protocol.startswith("SASL"):
        assert security.sasl_username is not None and security.sasl_password is not None
        options.update(
            sasl_mechanism=security.sasl_mechanism,
            sasl_plain_username=security.sasl_username.get_secret_value(),
            sasl_plain_password=security.sasl_password.get_secret_value(),
        )
    return options


def client_options(kafka: KafkaSettings) -> dict[str, Any]:
    return {
        "bootstrap_servers": kafka.bootstrap_servers,
        "client_id": kafka.client_id,
        "request_timeout_ms": kafka.request_timeout_ms,
        **security_options(kafka.security),
    }


REBALANCE_MARGIN_MS = 5000  # after the drain: the final commit and the JoinGroup round trip


def group_options(kafka: KafkaSettings, drain_grace_s: float) -> dict[str, Any]:
    """Consumer-group membership: timeouts, static membership, manual commits."""
    rebalance_ms = kafka.rebalance_timeout_ms
    if rebalance_ms is None:
        rebalance_ms = int(drain_grace_s * 1000) + REBALANCE_MARGIN_MS
    return {
        "group_id": kafka.group_id,
        "group_instance_id": kafka.group_instance_id,
        "enable_auto_commit": False,
        "session_timeout_ms": kafka.session_timeout_ms,
        "heartbeat_interval_ms": kafka.heartbeat_interval_ms,
        "rebalance_timeout_ms": rebalance_ms,
        "max_poll_interval_ms": kafka.max_poll_interval_ms,
    }
