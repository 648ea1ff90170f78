import pytest

from bridge.errors import ConfigError
from bridge.providers.settings import load_settings, parse_settings

ENV = {"ZUORA_ID": "client-123", "ZUORA_SECRET": "very-secret-value"}


def zuora_target(**extra):
    return {
        "provider": "zuora",
        "base_url": "https://rest.sandbox.na.zuora.com",
        "client_id": {"env": "ZUORA_ID"},
        "client_secret": {"env": "ZUORA_SECRET"},
        **extra,
    }


def test_secrets_resolve_from_env_and_file(tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-file\n")
    s = parse_settings({"targets": {"z": zuora_target(client_secret={"file": str(secret_file)})}}, ENV)
    target = s.targets["z"]
    assert target.client_id.get_secret_value() == "client-123"
    assert target.client_secret.get_secret_value() == "from-file"
    assert "client-123" not in repr(s)


@pytest.mark.parametrize(
    ("target", "env", "fragment"),
    [
        (
            zuora_target(client_secret="inline"),
            ENV,
            "targets.z.client_secret: Value error, inline secrets",
        ),
        (zuora_target(), {"ZUORA_ID": "x"}, "ZUORA_SECRET is not set"),
        (zuora_target(client_id={"env": "A", "file": "/x"}), ENV, "exactly one"),
        (zuora_target(client_id={"file": "/nonexistent/secret"}), ENV, "cannot read secret file"),
        (zuora_target(base_url="ftp://x"), ENV, "base_url"),
        (zuora_target(base_url="http://plain"), ENV, "allow_http"),
        (zuora_target(timeouts={"total_s": -1}), ENV, "timeouts.total_s"),
        ({"provider": "nope", "base_url": "https://x"}, ENV, "provider"),
    ],
)
def test_bad_targets_name_the_field(target, env, fragment):
    with pytest.raises(ConfigError) as info:
        parse_settings({"targets": {"z": target}}, env)
    assert fragment in str(info.value)
    assert "very-secret-value" not in str(info.value)


def test_plain_http_needs_explicit_permission():
    s = parse_settings(
        {"targets": {"z": zuora_target(base_url="http://127.0.0.1:1/zuora", allow_http=True)}}, ENV
    )
    assert s.targets["z"].effective_token_url == "http://127.0.0.1:1/zuora/oauth/token"


def test_env_overrides_nested_fields_with_types():
    env = {
        **ENV,
        "BRIDGE__KAFKA__BOOTSTRAP_SERVERS": "k:9093",
        "BRIDGE__ENGINE__MAX_IN_FLIGHT": "7",
        "BRIDGE__KAFKA__ENABLE_IDEMPOTENCE": "false",
        "BRIDGE__TARGETS__Z__RETRY__MAX_ATTEMPTS": "2",
    }
    s = parse_settings({"targets": {"z": zuora_target()}}, env)
    assert s.kafka.bootstrap_servers == "k:9093"
    assert s.engine.max_in_flight == 7
    assert s.kafka.enable_idempotence is False
    assert s.targets["z"].retry.max_attempts == 2


def test_load_settings_reports_yaml_and_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path / "missing.yaml", {})
    bad = tmp_path / "bad.yaml"
    bad.write_text("kafka: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(bad, {})
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_settings(listed, {})


def test_unknown_keys_are_refused():
    with pytest.raises(ConfigError, match=r"kafka\.bootstrap: Extra inputs"):
        parse_settings({"kafka": {"bootstrap": "x"}}, {})


def test_command_limit_must_leave_room_for_dead_letters():
    with pytest.raises(ConfigError, match="so that dead letters can be sent"):
        parse_settings({"engine": {"max_message_bytes": 1_048_576}}, {})
    parse_settings({"engine": {"max_message_bytes": 2_000_000}, "kafka": {"max_request_size": 4_000_000}}, {})


def test_on_unknown_defaults_per_provider_and_read_before_write_needs_a_status_read():
    from bridge.local.stack import local_settings

    targets = local_settings("127.0.0.1:1", "http://127.0.0.1:2").targets
    assert {t.provider: t.on_unknown for t in targets.values()} == {
        "zilliant": "report",
        "zuora": "retry",
        "workfloo": "report",
        "8x8": "read_before_write",
    }
    with pytest.raises(ConfigError, match="read_before_write needs a status read"):
        parse_settings({"targets": {"z": zuora_target(on_unknown="read_before_write")}}, ENV)
    assert (
        parse_settings({"targets": {"z": zuora_target(on_unknown="report")}}, ENV).targets["z"].on_unknown
        == "report"
    )


def test_a_horizon_equal_to_the_retention_is_accepted():
    s = parse_settings({"targets": {"z": zuora_target()}}, ENV)
    assert s.targets["z"].tracking.horizon_s == s.ledger.retention_s == 604_800


@pytest.mark.parametrize(
    ("raw", "offending"),
    [
        ({"ledger": {"retention_s": 86_400}, "targets": {"z": zuora_target()}}, "z"),  # the default horizon
        (
            {
                "ledger": {"retention_s": 86_400},
                "targets": {
                    "short": zuora_target(tracking={"horizon_s": 3_600}),
                    "long": zuora_target(tracking={"horizon_s": 90_000}),
                },
            },
            "long",
        ),
    ],
)
def test_a_horizon_beyond_the_ledger_retention_is_rejected_naming_both_settings(raw, offending):
    with pytest.raises(ConfigError) as info:
        parse_settings(raw, ENV)
    message = str(info.value)
    assert f"targets.{offending}.tracking.horizon_s" in message
    assert "exceeds ledger.retention_s (86400)" in message
    assert f"lower targets.{offending}.tracking.horizon_s or raise ledger.retention_s" in message
    assert "targets.short" not in message


@pytest.mark.parametrize(
    "raw",
    [
        {"ledger": {"retention_s": 86_400}, "targets": {"z": zuora_target(tracking={"horizon_s": 86_400})}},
        {"ledger": {"retention_s": 86_400}, "targets": {"z": zuora_target(tracking={"enabled": False})}},
        {"ledger": {"retention_s": 86_400, "enabled": False}, "targets": {"z": zuora_target()}},
    ],
    ids=["within", "target-not-tracked", "ledger-off-so-nothing-tracked"],
)
def test_horizons_are_checked_only_where_a_workflow_is_tracked(raw):
    assert parse_settings(raw, ENV).ledger.retention_s == 86_400


def test_the_horizon_check_applies_to_environment_overrides():
    env = {**ENV, "BRIDGE__LEDGER__RETENTION_S": "3600"}
    with pytest.raises(ConfigError, match=r"targets\.z\.tracking\.horizon_s \(604800\) exceeds"):
        parse_settings({"targets": {"z": zuora_target()}}, env)
