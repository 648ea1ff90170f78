"""Every configured credential is known to the redactor: targets' keys and secrets, Kafka SASL."""

from __future__ import annotations

from bridge.config.loading import secret_values
from bridge.observability.redact import Redactor
from bridge.providers.settings import parse_settings

ENV = {
    "ZU_ID": "zuora-client-id-1",
    "ZU_SECRET": "zuora-client-secret-2",
    "WF_KEY": "workfloo-api-key-3",
    "SASL_USER": "kafka-user-4",
    "SASL_PASS": "kafka-password-5",
}
RAW = {
    "kafka": {
        "security": {
            "protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": {"env": "SASL_USER"},
            "sasl_password": {"env": "SASL_PASS"},
        }
    },
    "targets": {
        "billing": {
            "provider": "zuora",
            "base_url": "https://rest.zuora.example",
            "client_id": {"env": "ZU_ID"},
            "client_secret": {"env": "ZU_SECRET"},
        },
        "loans": {"provider": "workfloo", "base_url": "https://wf.example", "api_key": {"env": "WF_KEY"}},
    },
}


def test_every_credential_of_every_target_and_of_kafka_is_collected() -> None:
    assert sorted(secret_values(parse_settings(RAW, ENV))) == sorted(ENV.values())


def test_a_line_with_any_of_them_is_scrubbed() -> None:
    redactor = Redactor(secret_values(parse_settings(RAW, ENV)))
    line = "auth failed for " + " and ".join(ENV.values())
    assert not any(value in redactor.scrub(line) for value in ENV.values())


def test_no_credentials_configured_means_nothing_to_scrub() -> None:
    assert secret_values(parse_settings({}, {})) == []
