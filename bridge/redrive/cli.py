"""Arguments of ``bridge dlq list|show|replay`` and ``bridge redrive``, and their dispatch."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from bridge.config.loading import secret_values
from bridge.config.settings import Settings
from bridge.messages.outcomes import Status
from bridge.observability.logs import configure_logging
from bridge.observability.redact import Redactor
from bridge.redrive import kafka
from bridge.redrive.dlq import ReplayOptions, list_dead_letters, replay_dead_letters, show_dead_letter
from bridge.redrive.outcomes import RedriveOptions, redrive
from bridge.redrive.report import Report, dead_letter_json, dead_letter_line, describe_record
from bridge.redrive.select import DEFAULT_REPLAY_LIMIT, DeadLetterFilter, OutcomeFilter, time_range

REDRIVE_STATUSES = [s.value for s in (Status.ERROR, Status.CONFLICT, Status.REJECTED)]


def _connection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="bridge config: topics, bootstrap, TLS and SASL")
    parser.add_argument("--bootstrap", help="overrides kafka.bootstrap_servers")


def _window(parser: argparse.ArgumentParser, since_required: bool = False) -> None:
    when = "RFC 3339 time (2026-12-01T08:00:00Z) or an age (90s, 15m, 2h, 1d)"
    parser.add_argument("--since", required=since_required, help=f"records from this {when}")
    parser.add_argument("--until", help=f"records before this {when}")


def _dead_letter_filters(parser: argparse.ArgumentParser) -> None:
    _connection(parser)
    parser.add_argument("--reason", action="append", default=[], help="dlq.reason to select (repeatable)")
    parser.add_argument("--source-topic", action="append", default=[], help="source topic (repeatable)")
    _window(parser)


def _replay_options(parser: argparse.ArgumentParser, group: str) -> None:
    parser.add_argument("--max", type=int, default=None, help="put back at most this many records")
    parser.add_argument("--dry-run", action="store_true", help="print what would be put back; change nothing")
    parser.add_argument(
        "--replay-limit",
        type=int,
        default=DEFAULT_REPLAY_LIMIT,
        help="quarantine (leave in place, report) a record already put back this many times",
    )
    parser.add_argument("--group", default=group, help=f"consumer group that remembers progress ({group})")
    parser.add_argument("--metrics-file", type=Path, help="write bridge_replays_total here (Prometheus text)")


def add_redrive_cli(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``bridge dlq list|show|replay`` and ``bridge redrive``."""
    dlq = subparsers.add_parser("dlq", help="list, show and replay dead letters")
    actions = dlq.add_subparsers(dest="dlq_command", required=True)
    listing = actions.add_parser("list", help="dead letters with reason, source and age")
    _dead_letter_filters(listing)
    listing.add_argument("--max", type=int, default=None, help="list at most this many")
    listing.add_argument("--json", action="store_true", help="one JSON object per dead letter")
    show = actions.add_parser("show", help="one dead letter with its headers and value")
    _connection(show)
    show.add_argument("offset", type=int)
    show.add_argument("--partition", type=int, default=0)
    replay = actions.add_parser("replay", help="put selected dead letters back on their source topic")
    _dead_letter_filters(replay)
    _replay_options(replay, kafka.DLQ_GROUP)
    again = subparsers.add_parser("redrive", help="re-submit the commands whose outcome had a status")
    _connection(again)
    again.add_argument("--status", required=True, choices=REDRIVE_STATUSES)
    _window(again, since_required=True)
    again.add_argument("--target", action="append", default=[], help="only this target (repeatable)")
    _replay_options(again, kafka.REDRIVE_GROUP)


def run_redrive_cli(args: argparse.Namespace, settings: Settings) -> int:

    configure_logging("INFO", "json", Redactor(secret_values(settings)))
    try:
        window = time_range(getattr(args, "since", None), getattr(args, "until", None))
    except ValueError as exc:
        print(f"bridge: --since/--until: {exc}", file=sys.stderr)
        return 2
    if args.command == "redrive":
        return _redrive(settings, OutcomeFilter(args.status, frozenset(args.target), window), args)
    if args.dlq_command == "show":
        return _show(settings, args.partition, args.offset)
    selection = DeadLetterFilter(frozenset(args.reason), frozenset(args.source_topic), window)
    if args.dlq_command == "list":
        return _list(settings, selection, args)
    options = ReplayOptions(selection, args.replay_limit, args.max, args.dry_run, args.group)
    return _finish(args, asyncio.run(replay_dead_letters(settings, options, Report("dlq", args.dry_run))))


def _redrive(settings: Settings, selection: OutcomeFilter, args: argparse.Namespace) -> int:
    options = RedriveOptions(selection, args.replay_limit, args.max, args.dry_run, args.group)
    return _finish(args, asyncio.run(redrive(settings, options, Report("redrive", args.dry_run))))


def _list(settings: Settings, selection: DeadLetterFilter, args: argparse.Namespace) -> int:
    now_ms = int(time.time() * 1000)
    for view in asyncio.run(list_dead_letters(settings, selection, args.max)):
        print(dead_letter_json(view) if args.json else dead_letter_line(view, now_ms))
    return 0


def _show(settings: Settings, partition: int, offset: int) -> int:
    record = asyncio.run(show_dead_letter(settings, partition, offset))
    if record is None:
        print(
            f"bridge: no dead letter at {settings.topics.dead_letter}/{partition}/{offset}", file=sys.stderr
        )
        return 1

    # a record's headers can carry an upstream's credentials: mask them as the logs would
    print(Redactor(secret_values(settings)).scrub(describe_record(record, int(time.time() * 1000))))
    return 0


def _finish(args: argparse.Namespace, report: Report) -> int:
    print(report.summary())
    if args.metrics_file is not None:
        report.metrics.write(args.metrics_file)
    return 0
