"""Command line: ``bridge run | local | sandbox | send | tail | status | check-config | providers | topics |
dlq | redrive``."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from bridge.config.loading import load_reader_settings, read_yaml, secret_values
from bridge.config.settings import Settings
from bridge.contracts.cli import add_topics_cli, run_topics_cli
from bridge.errors import ConfigError, StartupError
from bridge.observability import build
from bridge.observability.logs import configure_logging
from bridge.observability.redact import Redactor
from bridge.providers.plugins import enable, render
from bridge.providers.settings import load_settings
from bridge.redrive.cli import add_redrive_cli, run_redrive_cli
from bridge.status.cli import add_status_cli, run_status_cli


def _config_arg(parser: argparse.ArgumentParser, required: bool = False) -> None:
    parser.add_argument("--config", type=Path, required=required, help="YAML configuration file")


def _positive(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {number}")
    return number


class _Version(argparse.Action):
    """``--version``: asks for the revision only when given (argparse's own action formats it up front)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help=str(kwargs.get("help", "")))

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        print(build.describe())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bridge", description="Kafka command bridge to SaaS workflow APIs")
    parser.add_argument("--version", action=_Version, help="print the version and git revision, and exit")
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
    local.add_argument("--traces", action="store_true", help="tracing on: one line per trace")
    local.add_argument("--verbose", action="store_true", help="info logs too (default: warnings and up)")

    sandbox = sub.add_parser("sandbox", help="serve the sandbox providers")
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--port", type=int, default=8080)
    sandbox.add_argument(
        "--plugin", action="append", default=[], metavar="KIND", help="also serve this plugin's sandbox"
    )

    send = sub.add_parser("send", help="publish a command (JSON) to the right command topic")
    _config_arg(send)
    send.add_argument("--bootstrap", help="overrides kafka.bootstrap_servers")
    send.add_argument(
        "--key",
        help="Kafka key (commands with one key run in order); default: the command id, none with --raw",
    )
    send.add_argument(
        "--raw",
        action="store_true",
        help="publish the bytes as given, unchecked (try the dead-letter path); to --topic",
    )
    send.add_argument("--topic", help="with --raw: the topic to publish to (default: topics.run_commands)")
    send.add_argument(
        "source", metavar="COMMAND", nargs="?", default="-", help="JSON text, @file, or - for stdin (default)"
    )

    tail = sub.add_parser(
        "tail", help="print outcome events, lifecycle events and dead letters in time order"
    )
    _config_arg(tail)
    tail.add_argument("--bootstrap", help="overrides kafka.bootstrap_servers")
    tail.add_argument("--from-beginning", action="store_true")
    tail.add_argument("--count", type=_positive, default=None, help="exit after printing exactly N events")
    tail.add_argument("--timeout", type=float, default=None, help="exit after this many idle seconds")
    tail.add_argument(
        "--json", action="store_true", help="one JSON object per line (events as published, dead letters too)"
    )
    for flag, what in (("--id", "command id"), ("--target", "target"), ("--status", "status")):
        tail.add_argument(
            flag,
            action="append",
            metavar=what.upper().replace(" ", "_"),
            help=f"only this {what} (repeatable)",
        )

    check = sub.add_parser("check-config", help="validate a configuration file and exit")
    _config_arg(check, required=True)
    providers = sub.add_parser("providers", help="the providers this bridge has and the plugins installed")
    listing = providers.add_subparsers(dest="providers_command", required=True)
    _config_arg(
        listing.add_parser("list", help="built-in, loaded (providers.plugins) and available providers")
    )
    add_topics_cli(sub)
    add_redrive_cli(sub)
    add_status_cli(sub)
    return parser


def _settings(path: Path | None, bootstrap: str | None = None, *, reader: bool = False) -> Settings:
    """``reader``: a command that only reads the topics (load_reader_settings: no provider secrets)."""
    settings = (load_reader_settings(path) if reader else load_settings(path)) if path else Settings()
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


ONE_SHOT = frozenset({"send", "tail", "topics", "dlq", "redrive"})


def _dispatch(args: argparse.Namespace) -> int:
    if args.command in ONE_SHOT:
        # a one-shot command reports a broker it cannot reach in one line of its own
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    if args.command == "run":
        return _run(args)
    if args.command == "check-config":
        return _check_config(args.config)
    if args.command == "sandbox":
        from bridge.local.commands import serve_sandbox

        enable(args.plugin)
        return asyncio.run(serve_sandbox(args.host, args.port))
    if args.command == "providers":
        if args.config:
            load_settings(args.config)  # loads the plugins it allows
        print(render())
        return 0
    if args.command == "local":
        from bridge.local.stack import SANDBOX_ENV, run_local

        configure_logging("INFO" if args.verbose else "WARNING", "text", Redactor(SANDBOX_ENV.values()))
        return asyncio.run(run_local(args))
    if args.command == "send":
        return _send(args)
    if args.command == "tail":
        from bridge.local.tail import tail_events

        return asyncio.run(tail_events(_settings(args.config, args.bootstrap), args))
    if args.command == "topics":
        return run_topics_cli(args)
    if args.command == "status":
        return run_status_cli(args, _settings(args.config, args.bootstrap, reader=True))
    if args.command in ("dlq", "redrive"):
        return run_redrive_cli(args, _settings(args.config, args.bootstrap))
    raise AssertionError(args.command)


def _send(args: argparse.Namespace) -> int:
    from bridge.local.commands import send_command, send_raw

    settings = _settings(args.config, args.bootstrap)
    if args.raw:
        return asyncio.run(send_raw(settings, args.source, args.key, args.topic))
    if args.topic:
        print("bridge send: --topic goes with --raw; a command's operation picks its topic", file=sys.stderr)
        return 2
    return asyncio.run(send_command(settings, args.source, args.key))


NO_TARGETS = "configures no targets, so every command would be rejected (unknown target)"


def _check_config(path: Path) -> int:
    """0 when the configuration loads (a warning when it has no targets); 2 when it does not."""
    settings = load_settings(path)
    names = ", ".join(sorted(settings.targets))
    print(f"configuration OK: {len(settings.targets)} target(s)" + (f": {names}" if names else ""))
    if not settings.targets:
        empty = "is empty and " if not read_yaml(path) else ""
        print(
            f"warning: {path} {empty}{NO_TARGETS}; `bridge run` refuses to start with it",
            file=sys.stderr,
        )
    return 0


# Python's defaults (700, 10, 10) scan the service's many long-lived objects (tasks, futures, the
# configuration's models) over and over: about a fifth of its CPU per command; (10_000, 20, 50) still
# left 8-11 % of it in the youngest generation's collections (docs/performance.md).
# Set for the `bridge run` process only, not for a Bridge embedded in another program.
SERVICE_GC_THRESHOLDS = (50_000, 20, 50)


def _run(args: argparse.Namespace) -> int:
    from bridge.app import Bridge

    settings = load_settings(args.config)
    if not settings.targets:
        print(f"bridge run: {args.config} {NO_TARGETS}: add one under `targets:`", file=sys.stderr)
        return 2
    obs = settings.observability
    configure_logging(
        obs.log_level, "text" if args.dev else obs.log_format, Redactor(secret_values(settings))
    )

    async def main() -> None:
        bridge = Bridge(settings)
        bridge.install_signal_handlers()
        gc.set_threshold(*SERVICE_GC_THRESHOLDS)
        await bridge.run()

    try:
        asyncio.run(main())
    except StartupError as exc:
        print(f"bridge run: {exc}", file=sys.stderr)
        return 2
    logging.getLogger("bridge").info("bridge exited cleanly")
    return 0


if __name__ == "__main__":
    sys.exit(main())
