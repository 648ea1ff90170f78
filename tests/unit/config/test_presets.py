"""Latency and throughput presets: documented sets of kafka values under the explicit ones."""

import pytest

from bridge.config.presets import PRESETS, apply_preset
from bridge.config.settings import KafkaSettings, Settings
from bridge.errors import ConfigError
from bridge.providers.settings import parse_settings


def test_without_a_preset_the_field_defaults_stand():
    kafka = parse_settings({}, {}).kafka
    assert (kafka.fetch_max_wait_ms, kafka.linger_ms) == (50, 5)
    assert parse_settings({}, {}).preset is None


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_a_preset_sets_its_values(name):
    settings = parse_settings({"preset": name}, {})
    for key, value in PRESETS[name]["kafka"].items():
        assert getattr(settings.kafka, key) == value
        assert KafkaSettings.model_fields[key].default != value  # the preset changes something


def test_latency_holds_and_lingers_less_than_throughput():
    latency, throughput = (parse_settings({"preset": n}, {}).kafka for n in ("latency", "throughput"))
    assert latency.fetch_max_wait_ms < throughput.fetch_max_wait_ms
    assert latency.linger_ms < throughput.linger_ms


def test_an_explicit_value_wins_over_its_preset():
    settings = parse_settings({"preset": "latency", "kafka": {"linger_ms": 3}}, {})
    assert settings.kafka.linger_ms == 3
    assert settings.kafka.fetch_max_wait_ms == PRESETS["latency"]["kafka"]["fetch_max_wait_ms"]


def test_the_preset_comes_from_the_environment_too():
    settings = parse_settings({}, {"BRIDGE__PRESET": "throughput"})
    assert settings.kafka.fetch_max_wait_ms == PRESETS["throughput"]["kafka"]["fetch_max_wait_ms"]


def test_an_unknown_preset_is_a_configuration_error():
    with pytest.raises(ConfigError, match="preset"):
        parse_settings({"preset": "fast"}, {})


def test_apply_preset_leaves_its_input_alone():
    raw = {"preset": "latency", "kafka": {"linger_ms": 3}}
    merged = apply_preset(raw)
    assert raw == {"preset": "latency", "kafka": {"linger_ms": 3}}
    assert merged["kafka"] == {**PRESETS["latency"]["kafka"], "linger_ms": 3}


def test_a_model_given_explicitly_is_kept_whole():
    kafka = KafkaSettings(linger_ms=7)
    assert Settings(preset="latency", kafka=kafka).kafka == kafka
