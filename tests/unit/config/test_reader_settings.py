"""``load_reader_settings``: what ``bridge status`` loads: the file without its providers and targets."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bridge.config.loading import load_reader_settings
from bridge.errors import ConfigError
from bridge.providers.settings import load_settings


def test_provider_secrets_that_do_not_resolve_do_not_stop_a_reader(tmp_path: Path) -> None:
    missing = tmp_path / "not-mounted"
    raw = {
        "kafka": {"bootstrap_servers": "broker:9092", "group_id": "g"},
        "topics": {"run_commands": "my.run.commands"},
        "targets": {
            "wf": {"provider": "workfloo", "base_url": "https://x", "api_key": {"file": str(missing)}}
        },
    }
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="not-mounted"):
        load_settings(config, {})  # what bridge run loads: the secret must resolve
    settings = load_reader_settings(config, {})
    assert (
        settings.kafka.bootstrap_servers == "broker:9092"
        and settings.topics.run_commands == "my.run.commands"
    )
    assert settings.targets == {}
    env = {"BRIDGE__KAFKA__GROUP_ID": "from-env"}
    assert load_reader_settings(config, env).kafka.group_id == "from-env"  # overrides still apply


def test_kafka_credentials_are_still_resolved(tmp_path: Path) -> None:
    raw = {
        "kafka": {
            "security": {
                "protocol": "SASL_PLAINTEXT",
                "sasl_mechanism": "PLAIN",
                "sasl_username": {"env": "KAFKA_USER"},
                "sasl_password": {"file": str(tmp_path / "not-mounted")},
            }
        }
    }
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="not-mounted"):
        load_reader_settings(config, {"KAFKA_USER": "u"})  # it connects with them: a real mistake
