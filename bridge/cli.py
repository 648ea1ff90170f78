"""Command line: ``bridge run | local | sandbox | send | tail | check-config | topics | dlq | redrive``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from bridge.config.loading import load_settings, secret_values
from bridge.config.settings import Settings
from bridge.errors import ConfigError
from bridge.kafka.topics import add_topics_cli, run_topics_cli
from bridge.observability.logs import configure_logging
from bridge.observability.redact import Redactor
from bridge.redrive.cli import add_redrive_cli, run_redrive_cli


def _config_arg(parser: argparse.ArgumentParser, required: bool = False) -> None:
    parser.add_argument("--config", type=Path, required=required, help="YAML configuration file")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bridge", description="Kafka command bridge to SaaS workflow APIs")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the bridge")
    _config_arg(run, required=True)
    run.add_argument("--dev", action="store_true", help="human-readable logs")

    local = sub.add_parser("local", help="embedded broker + sandbox + bridge + example commands")
    local.add_argument("--no-examples", action="store_true", help="do not send the example commands")
    local.add_argument("--broker-port", type=int, default=0)
    local.add_argument("--sandbox-port", type=int, default=0)
    local.add_argument("--metrics-port", type=int, default=9464)
    local.add_argument(
        "--exit-after",
        type=float,
        default=None,
        help="stop after this many seconds (default: run until Ctrl-C)",
    )

    sandbox = sub.add_parser("sandbox", help="serve the sandbox providers")
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--port", type=int, default=8080)

    send = sub.add_parser("send", help="publish a command (JSON) to the right command topic")
    _config_arg(send)
    send.add_argument("--bootstrap", help="overrides kafka.bootstrap_servers")
    send.add_argument("--key", help="Kafka key (commands with one key run in order); default: the command id")
    send.add_argument(
        "source", metavar="COMMAND", nargs="?", default="-", help="JSON text, @file.json, or - for stdin"
    )

    tail = sub.add_parser(
        "tail", help="print outcome events, lifecycle events and dead letters as they arrive"
    )
    _config_arg(tail)
    tail.add_argument("--bootstrap", help="overrides kafka.bootstrap_servers")
    tail.add_argument("--from-beginning", action="store_true")
    tail.add_argument("--count", type=int, default=None, help="exit after this many events")
    tail.add_argument("--timeout", type=float, default=None, help="exit after this many idle seconds")
    tail.add_argument("--json", action="store_true", help="print raw events")

    check = sub.add_parser("check-config", help="validate a configuration file and exit")
    _config_arg(check, required=True)
    add_topics_cli(sub)
    add_redrive_cli(sub)
    return parser


def _settings(path: Path | None, bootstrap: str | None = None) -> Settings:
    settings = load_settings(path) if path else Settings()
    if bootstrap:
        settings = settings.model_copy(
            update={"kafka": settings.kafka.model_copy(update={"bootstrap_servers": bootstrap})}
        )
    return settings


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except ConfigError as exc:
        print(f"bridge: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "run":
        return _run(args)
    if args.command == "check-config":
        settings = load_settings(args.config)
        names = ", ".join(sorted(settings.targets))
        print(f"configuration OK: {len(settings.targets)} target(s)" + (f": {names}" if names else ""))
        return 0
    if args.command == "sandbox":
        from bridge.local.commands import serve_sandbox

        return asyncio.run(serve_sandbox(args.host, args.port))
    if args.command == "local":
        from bridge.local.stack import run_local

        configure_logging("INFO", "text", Redactor())
        return asyncio.run(run_local(args))
    if args.command == "send":
        from bridge.local.commands import send_command

        return asyncio.run(send_command(_settings(args.config, args.bootstrap), args.source, args.key))
    if args.command == "tail":
        from bridge.local.commands import tail_outcomes

        return asyncio.run(tail_outcomes(_settings(args.config, args.bootstrap), args))
    if args.command == "topics":
        return run_topics_cli(args)
    if args.command in ("dlq", "redrive"):
        return run_redrive_cli(args, _settings(args.config, args.bootstrap))
    raise AssertionError(args.command)


def _run(args: argparse.Namespace) -> int:
    from bridge.app import Bridge

    settings = load_settings(args.config)
    obs = settings.observability
    configure_logging(
        obs.log_level, "text" if args.dev else obs.log_format, Redactor(secret_values(settings))
    )

    async def main() -> None:
        bridge = Bridge(settings)
        bridge.install_signal_handlers()
        await bridge.run()

    asyncio.run(main())
    logging.getLogger("bridge").info("bridge exited cleanly")
    return 0


if __name__ == "__main__":
    sys.exit(main())
