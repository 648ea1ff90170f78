"""``bridge``'s command line: what it accepts, its exit codes and its messages for bad input.

Exit codes: 0 done, 1 found a problem (drift, no such record), 2 could not run (bad arguments or
configuration), 130 interrupted. Nothing here reaches a broker: every case fails or finishes
before a Kafka client is made.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

import bridge.app
from bridge import cli
from bridge.local import commands

ZUORA_CONFIG = """\
targets:
  zuora-eu:
    provider: zuora
    base_url: https://rest.eu.zuora.com
    client_id: {env: TEST_ZUORA_ID}
    client_secret: {env: TEST_ZUORA_SECRET}
  zuora-us:
    provider: zuora
    base_url: https://rest.na.zuora.com
    client_id: {env: TEST_ZUORA_ID}
    client_secret: {env: TEST_ZUORA_SECRET}
"""


@pytest.fixture(autouse=True)
def keep_logging() -> Iterator[None]:
    """Some commands configure logging for the process; give the next test the handlers back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_ZUORA_ID", "client-id-value")
    monkeypatch.setenv("TEST_ZUORA_SECRET", "client-secret-value")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def usage_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """argparse's exit for arguments it refuses: status 2 and a message on stderr."""
    with pytest.raises(SystemExit) as exc:
        cli.main(list(argv))
    assert exc.value.code == 2
    return capsys.readouterr().err


# -- argument parsing ----------------------------------------------------------------------------------


def test_a_command_is_required(capsys):
    assert "the following arguments are required: command" in usage_error(capsys)


def test_an_unknown_command_is_refused(capsys):
    assert "invalid choice: 'serve'" in usage_error(capsys, "serve")


@pytest.mark.parametrize("command", ["run", "check-config"])
def test_run_and_check_config_need_a_config_file(capsys, command: str):
    assert "the following arguments are required: --config" in usage_error(capsys, command)


def test_defaults_of_the_local_stack():
    args = cli.build_parser().parse_args(["local"])
    assert (args.broker_port, args.sandbox_port, args.metrics_port) == (0, 0, 9464)
    assert args.exit_after is None and args.no_examples is False


def test_the_sandbox_binds_to_loopback_by_default():
    args = cli.build_parser().parse_args(["sandbox"])
    assert (args.host, args.port) == ("127.0.0.1", 8080)


def test_send_reads_standard_input_when_no_command_is_given():
    args = cli.build_parser().parse_args(["send", "--bootstrap", "k:1"])
    assert args.source == "-" and args.key is None and args.config is None


def test_tail_options():
    args = cli.build_parser().parse_args(
        ["tail", "--from-beginning", "--count", "3", "--timeout", "2.5", "--json"]
    )
    assert (args.from_beginning, args.count, args.timeout, args.json) == (True, 3, 2.5, True)


def test_a_port_must_be_a_number(capsys):
    assert "argument --port: invalid int value: 'http'" in usage_error(capsys, "sandbox", "--port", "http")


def test_topics_needs_an_action(capsys):
    assert "required: topics_command" in usage_error(capsys, "topics")


def test_dlq_needs_an_action(capsys):
    assert "required: dlq_command" in usage_error(capsys, "dlq")


def test_dlq_show_needs_an_offset(capsys):
    assert "required: offset" in usage_error(capsys, "dlq", "show")


def test_dlq_filters_repeat():
    args = cli.build_parser().parse_args(
        ["dlq", "list", "--reason", "invalid_json", "--reason", "too_large", "--source-topic", "a"]
    )
    assert args.reason == ["invalid_json", "too_large"] and args.source_topic == ["a"]


def test_redrive_needs_a_status_and_a_start(capsys):
    err = usage_error(capsys, "redrive")
    assert "--status" in err and "--since" in err


@pytest.mark.parametrize("status", ["queued", "applied", "ERROR"])
def test_redrive_only_puts_back_failures(capsys, status: str):
    err = usage_error(capsys, "redrive", "--status", status, "--since", "1h")
    assert f"invalid choice: '{status}'" in err


def test_redrive_and_replay_use_separate_consumer_groups():
    parser = cli.build_parser()
    redrive = parser.parse_args(["redrive", "--status", "error", "--since", "1h"])
    replay = parser.parse_args(["dlq", "replay"])
    assert redrive.group != replay.group
    assert redrive.dry_run is False and replay.max is None


# -- check-config ------------------------------------------------------------------------------------


def test_check_config_names_the_targets(tmp_path: Path, capsys, credentials):
    assert cli.main(["check-config", "--config", str(write(tmp_path, ZUORA_CONFIG))]) == 0
    assert capsys.readouterr().out == "configuration OK: 2 target(s): zuora-eu, zuora-us\n"


def test_check_config_never_prints_a_secret(tmp_path: Path, capsys, credentials):
    cli.main(["check-config", "--config", str(write(tmp_path, ZUORA_CONFIG))])
    captured = capsys.readouterr()
    assert "client-secret-value" not in captured.out + captured.err


def test_an_empty_file_is_the_defaults_with_a_warning(tmp_path: Path, capsys):
    config = write(tmp_path, "")
    assert cli.main(["check-config", "--config", str(config)]) == 0
    captured = capsys.readouterr()
    assert captured.out == "configuration OK: 0 target(s)\n"
    assert captured.err == (
        f"warning: {config} is empty and configures no targets, so every command would be rejected "
        "(unknown target); `bridge run` refuses to start with it\n"
    )


def test_run_refuses_a_configuration_without_targets(tmp_path: Path, capsys):
    config = write(tmp_path, "targets: {}\n")
    assert cli.main(["run", "--config", str(config)]) == 2
    assert capsys.readouterr().err == (
        f"bridge run: {config} configures no targets, so every command would be rejected (unknown target): "
        "add one under `targets:`\n"
    )


def test_a_missing_file_exits_2(tmp_path: Path, capsys):
    missing = tmp_path / "absent.yaml"
    assert cli.main(["check-config", "--config", str(missing)]) == 2
    assert (
        capsys.readouterr().err == f"bridge: cannot read config file {missing}: No such file or directory\n"
    )


def test_yaml_that_does_not_parse_exits_2(tmp_path: Path, capsys):
    assert cli.main(["check-config", "--config", str(write(tmp_path, "targets: [\n"))]) == 2
    assert "is not valid YAML" in capsys.readouterr().err


def test_a_list_at_the_top_exits_2(tmp_path: Path, capsys):
    assert cli.main(["check-config", "--config", str(write(tmp_path, "- a\n- b\n"))]) == 2
    assert "must contain a mapping at the top level" in capsys.readouterr().err


def test_an_unset_credential_is_named_with_its_place(tmp_path: Path, capsys, monkeypatch):
    monkeypatch.delenv("TEST_ZUORA_ID", raising=False)
    monkeypatch.setenv("TEST_ZUORA_SECRET", "x")

    assert cli.main(["check-config", "--config", str(write(tmp_path, ZUORA_CONFIG))]) == 2

    err = capsys.readouterr().err
    assert err.startswith(f"bridge: invalid configuration in {tmp_path / 'config.yaml'}:")
    assert "  - targets.zuora-eu.client_id: Value error, environment variable TEST_ZUORA_ID is not set" in err


def test_every_error_is_listed_not_only_the_first(tmp_path: Path, capsys, credentials):
    text = (
        ZUORA_CONFIG.replace("https://rest.eu.zuora.com", "http://rest.eu.zuora.com")
        + "engine:\n  nonsense: 1\n"
    )

    assert cli.main(["check-config", "--config", str(write(tmp_path, text))]) == 2

    err = capsys.readouterr().err
    assert "targets.zuora-eu" in err and "plain http" in err
    assert "engine.nonsense: Extra inputs are not permitted" in err


def test_an_environment_override_is_checked_too(tmp_path: Path, capsys, credentials, monkeypatch):
    monkeypatch.setenv("BRIDGE__ENGINE__MAX_IN_FLIGHT", "many")

    assert cli.main(["check-config", "--config", str(write(tmp_path, ZUORA_CONFIG))]) == 2
    assert "engine.max_in_flight" in capsys.readouterr().err


def test_run_refuses_a_bad_config_before_starting_anything(tmp_path: Path, capsys):
    assert cli.main(["run", "--config", str(tmp_path / "absent.yaml")]) == 2
    assert capsys.readouterr().err.startswith("bridge: cannot read config file")


# -- send, tail, dlq and redrive before any broker is contacted ------------------------------------


def test_send_with_an_unreadable_config_exits_2(tmp_path: Path, capsys):
    assert cli.main(["send", "--config", str(tmp_path / "absent.yaml"), "{}"]) == 2
    assert "cannot read config file" in capsys.readouterr().err


def test_send_with_an_invalid_command_exits_2(capsys):
    assert cli.main(["send", "--bootstrap", "127.0.0.1:1", '{"id": "x"}']) == 2
    assert capsys.readouterr().err.startswith("bridge send: not a valid command:")


def test_send_publishes_to_the_bootstrap_it_is_given(monkeypatch: pytest.MonkeyPatch, capsys):
    seen = []

    async def publish(settings, docs):
        seen.append((settings.kafka.bootstrap_servers, docs[0][0]))
        return True

    monkeypatch.setattr(commands, "publish_commands", publish)
    doc = '{"id": "r-1", "target": "t", "operation": "zuora.rerun_task", "task_id": "1"}'

    assert cli.main(["send", "--bootstrap", "elsewhere:9092", "--key", "k-1", doc]) == 0
    assert seen == [("elsewhere:9092", b"k-1")]


@pytest.mark.parametrize(
    "argv",
    [
        ["dlq", "list", "--since", "yesterday"],
        ["dlq", "replay", "--until", "2026-13-01T00:00:00Z"],
        ["redrive", "--status", "error", "--since", "15 minutes"],
    ],
)
def test_an_unreadable_time_window_exits_2(capsys, argv: list[str]):
    assert cli.main([*argv, "--bootstrap", "127.0.0.1:1"]) == 2
    assert capsys.readouterr().err.startswith("bridge: --since/--until: ")


def test_ctrl_c_exits_130(monkeypatch: pytest.MonkeyPatch):
    async def interrupted(host: str, port: int) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(commands, "serve_sandbox", interrupted)
    assert cli.main(["sandbox", "--port", "0"]) == 130


@pytest.mark.parametrize("command", ["send", "tail"])
def test_an_unreachable_broker_is_one_line_and_exit_1(command: str, capsys) -> None:
    doc = '{"id": "r-1", "target": "t", "operation": "zuora.rerun_task", "task_id": "1"}'
    args = (
        ["send", "--bootstrap", "127.0.0.1:1", doc]
        if command == "send"
        else ["tail", "--bootstrap", "127.0.0.1:1"]
    )
    assert cli.main(args) == 1
    err = capsys.readouterr().err
    assert f"bridge {command}: cannot reach the Kafka broker at 127.0.0.1:1" in err
    assert "Traceback" not in err


def test_the_run_process_collects_garbage_less_often(tmp_path: Path, credentials, monkeypatch):
    seen = []

    class Bridge:  # what `bridge run` does once the configuration is read, without a broker
        def __init__(self, settings: object) -> None:
            pass

        def install_signal_handlers(self) -> None:
            pass

        async def run(self) -> None:
            seen.append(gc.get_threshold())

    monkeypatch.setattr(bridge.app, "Bridge", Bridge)
    before = gc.get_threshold()
    try:
        assert cli.main(["run", "--config", str(write(tmp_path, ZUORA_CONFIG))]) == 0
    finally:
        gc.set_threshold(*before)
    assert seen == [cli.SERVICE_GC_THRESHOLDS] and seen[0] != (700, 10, 10)
