"""``bridge status ID [--key KEY] [--json]``: a command's story, read from the bridge's topics.

Exit codes: 0 the id was found (whatever became of it), 3 unknown id (no topic holds it in the
partitions its key maps to), 1 the broker could not be read, 2 a configuration mistake.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import orjson

from bridge.config.settings import Settings
from bridge.errors import ConfigError
from bridge.status.admin import read_token
from bridge.status.hints import Hint, Recaller, ask_member
from bridge.status.lookup import find, parse_since
from bridge.status.scan import LookupError_
from bridge.status.story import Phase, assemble, render, story_json

UNKNOWN_EXIT = 3


def add_status_cli(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    status = subparsers.add_parser(
        "status", help="what became of one command: its whole story, by command id"
    )
    status.add_argument("command_id", metavar="ID", help="the command id")
    status.add_argument("--key", help="the Kafka key it was sent with (default: the id, as `bridge send`)")
    status.add_argument("--json", action="store_true", help="print the story as JSON")
    status.add_argument("--payload", action="store_true", help="with --json: include the command's payload")
    status.add_argument(
        "--since",
        help="read only records from this time on: 30m, 2h, 1d ago, or an ISO 8601 time "
        "(an old id is found without reading the whole partition)",
    )
    status.add_argument(
        "--admin",
        metavar="URL",
        help="a member's admin listener to ask what its ledger knows about the id (default: the "
        "configuration's admin listener, if it has a port); unreachable: the topics alone are read",
    )
    status.add_argument(
        "--full", action="store_true", help="read every record of the partitions, not asking any ledger"
    )
    status.add_argument("--config", type=Path, help="YAML configuration file")
    status.add_argument("--bootstrap", help="overrides kafka.bootstrap_servers")


def run_status_cli(args: argparse.Namespace, settings: Settings) -> int:
    key = args.key.encode() if args.key is not None else None
    if not args.command_id:
        print("bridge status: give a command id", file=sys.stderr)
        return 2
    try:
        since_ms = parse_since(args.since, time.time()) if args.since else None
    except ValueError as exc:
        print(f"bridge status: --since: {exc}", file=sys.stderr)
        return 2
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # a broker it cannot reach: our one line
    recall = None if args.full else _member(settings, args.admin, args.command_id)
    try:
        facts = asyncio.run(find(settings, args.command_id, key, since_ms, recall))
    except LookupError_ as exc:
        print(f"bridge status: {exc}", file=sys.stderr)
        return 1
    story = assemble(facts)
    if args.json:
        print(orjson.dumps(story_json(story, payload=args.payload)).decode())
    else:
        print(render(story))
    return UNKNOWN_EXIT if story.phase is Phase.UNKNOWN else 0


def admin_url(settings: Settings) -> str | None:
    """The configuration's own admin listener, as a client reaches it; None when it has no port."""
    admin = settings.admin
    if not admin.port:
        return None
    host = "127.0.0.1" if admin.host in ("0.0.0.0", "::", "") else admin.host  # noqa: S104 - listen-all
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{admin.port}"


def _member(settings: Settings, given: str | None, command_id: str) -> Recaller | None:
    """What asks the member's ledger; None when there is no member to ask. The token file is the
    configuration's (``admin.token_file``): unreadable, it is an error only for an explicit --admin."""
    url = given or admin_url(settings)
    if url is None:
        return None
    try:
        token = read_token(settings)
    except ConfigError:
        if given:
            raise
        return None

    async def recall(partitions: Mapping[str, int]) -> dict[str, Hint]:
        return await ask_member(url, token, command_id, partitions)

    return recall
