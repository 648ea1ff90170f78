"""Configuration errors name their source, and environment overrides reach the place they name."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.config.loading import fold, override
from bridge.errors import ConfigError
from bridge.providers.settings import load_settings, parse_settings

ENV = {"ZID": "id", "ZSECRET": "secret"}


def zuora(**extra: object) -> dict[str, object]:
    return {
        "provider": "zuora",
        "base_url": "https://rest.eu.zuora.com",
        "client_id": {"env": "ZID"},
        "client_secret": {"env": "ZSECRET"},
        **extra,
    }


@pytest.mark.parametrize(
    ("name", "folded"), [("zuora-eu", "zuora_eu"), ("ZUORA_EU", "zuora_eu"), ("eu.zuora-1", "eu_zuora_1")]
)
def test_fold(name: str, folded: str) -> None:
    assert fold(name) == folded


def test_the_readmes_example_reaches_the_target_with_a_dash() -> None:
    env = {**ENV, "BRIDGE__TARGETS__ZUORA_EU__RETRY__MAX_ATTEMPTS": "3"}

    settings = parse_settings({"targets": {"zuora-eu": zuora()}}, env)

    assert list(settings.targets) == ["zuora-eu"]
    assert settings.targets["zuora-eu"].retry.max_attempts == 3


def test_a_dotted_target_and_an_exact_match_win_over_folding() -> None:
    raw = {"targets": {"eu.zuora": zuora(), "zuora_eu": zuora()}}
    env = {"BRIDGE__TARGETS__EU_ZUORA__TIMEOUT_S": "7", "BRIDGE__TARGETS__zuora_eu__TIMEOUT_S": "9"}

    merged = override(raw, env)

    assert merged.raw["targets"]["eu.zuora"]["timeout_s"] == 7
    assert merged.raw["targets"]["zuora_eu"]["timeout_s"] == 9
    assert merged.origins[("targets", "eu.zuora", "timeout_s")] == "BRIDGE__TARGETS__EU_ZUORA__TIMEOUT_S"


def test_two_targets_that_fold_alike_are_refused_naming_both() -> None:
    raw = {"targets": {"zuora-eu": zuora(), "zuora.eu": zuora()}}
    with pytest.raises(ConfigError) as caught:
        override(raw, {"BRIDGE__TARGETS__ZUORA_EU__TIMEOUT_S": "3"})
    assert str(caught.value) == (
        "environment variable BRIDGE__TARGETS__ZUORA_EU__TIMEOUT_S: zuora_eu matches zuora-eu and zuora.eu: "
        "rename one so that their names differ in more than case, '-' and '.'"
    )


def test_an_unknown_name_still_adds_a_key_in_lower_case() -> None:
    merged = override({}, {"BRIDGE__KAFKA__BOOTSTRAP_SERVERS": "k:9092"})
    assert merged.raw == {"kafka": {"bootstrap_servers": "k:9092"}}


def test_a_validation_error_from_an_override_names_the_variable_not_the_file() -> None:
    env = {**ENV, "BRIDGE__TARGETS__ZUORA_EU__RETRY__MAX_ATTEMPTS": "many"}
    with pytest.raises(ConfigError) as caught:
        parse_settings({"targets": {"zuora-eu": zuora()}}, env, "config.yaml")
    lines = str(caught.value).splitlines()
    assert lines[0] == (
        "invalid configuration from environment variable BRIDGE__TARGETS__ZUORA_EU__RETRY__MAX_ATTEMPTS:"
    )
    assert lines[1].startswith("  - targets.zuora-eu.retry.max_attempts: Input should be a valid integer")
    assert lines[1].endswith("(set by BRIDGE__TARGETS__ZUORA_EU__RETRY__MAX_ATTEMPTS)")
    assert "config.yaml" not in str(caught.value)


def test_an_override_that_creates_a_broken_target_is_blamed_on_its_variable() -> None:
    env = {**ENV, "BRIDGE__TARGETS__NOPE__TIMEOUT_S": "3"}
    with pytest.raises(ConfigError, match=r"targets\.nope: .*\(set by BRIDGE__TARGETS__NOPE__TIMEOUT_S\)"):
        parse_settings({"targets": {"zuora-eu": zuora()}}, env, "config.yaml")


def test_errors_from_both_sources_name_both() -> None:
    env = {**ENV, "BRIDGE__ENGINE__MAX_IN_FLIGHT": "many"}
    with pytest.raises(ConfigError) as caught:
        parse_settings({"engine": {"nonsense": 1}}, env, "config.yaml")
    head, *lines = str(caught.value).splitlines()
    assert head == (
        "invalid configuration in config.yaml and environment variable BRIDGE__ENGINE__MAX_IN_FLIGHT:"
    )
    assert "  - engine.nonsense: Extra inputs are not permitted" in lines


def test_an_override_that_is_not_yaml_names_the_variable() -> None:
    expected = "environment variable BRIDGE__KAFKA__ACKS is not a valid YAML value"
    with pytest.raises(ConfigError, match=expected):
        parse_settings({}, {"BRIDGE__KAFKA__ACKS": "[oops"})


def test_a_yaml_syntax_error_names_the_file_and_the_line(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("kafka:\n  bootstrap_servers: k:9092\n  acks: [all\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config, {})
    message = str(caught.value)
    assert message.startswith(f"config file {config} is not valid YAML at line 4, column 1: ")
    assert "<unicode string>" not in message
    assert message.endswith("(while parsing a flow sequence at line 3, column 9)")


def test_an_error_on_a_target_the_file_wrote_names_the_file_and_the_variable_inside_it() -> None:
    env = {**ENV, "BRIDGE__TARGETS__ZUORA_EU__RETRY__MAX_ATTEMPTS": "3"}
    raw = {"targets": {"zuora-eu": zuora(base_url="http://rest.eu.zuora.com")}}
    with pytest.raises(ConfigError) as caught:
        parse_settings(raw, env, "config.yaml")
    head, line = str(caught.value).splitlines()
    assert head.startswith("invalid configuration in config.yaml and environment variable ")
    assert line.startswith("  - targets.zuora-eu: Value error, base_url uses plain http")
    assert line.endswith(
        "(in config.yaml, with BRIDGE__TARGETS__ZUORA_EU__RETRY__MAX_ATTEMPTS overriding a field in it)"
    )
