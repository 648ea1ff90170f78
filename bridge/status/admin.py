"""The admin listener: ``GET /v1/commands/{id}`` and its OpenAPI document, ``GET /v1/openapi.json``.

Separate from the health and metrics port: loopback-only by default; bound anywhere else it needs a
bearer token, read from ``admin.token_file`` when the bridge starts (a missing or empty file stops
it with one line). Every member answers from the topics; the member that owns the command's
partition adds what only it knows (:mod:`bridge.status.live`). The command's payload is returned
only when asked (``?payload=true``) and allowed (``admin.show_payload``).

Example::

    runner = await start_admin(settings, owner)
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from bridge.config.settings import Settings
from bridge.errors import ConfigError
from bridge.status.hints import hint_json, parse_partitions
from bridge.status.live import OwnerView
from bridge.status.lookup import find, parse_since
from bridge.status.scan import LookupError_
from bridge.status.story import Phase, assemble, story_json

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_ID = 200
MAX_LOOKUPS = 4  # at once per member: each reads several partitions over connections of its own


def read_token(settings: Settings) -> str | None:
    path = settings.admin.token_file
    if path is None:
        return None
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"admin.token_file {path}: cannot read it ({exc.strerror})") from exc
    if not token:
        raise ConfigError(f"admin.token_file {path} is empty")
    return token


def build_admin_app(settings: Settings, owner: OwnerView | None, token: str | None) -> web.Application:
    app = web.Application(middlewares=[_bearer(token)] if token else [])
    lookups = asyncio.Semaphore(MAX_LOOKUPS)  # more wait their turn: the broker is not flooded

    async def command(request: web.Request) -> web.Response:
        command_id = request.match_info["command_id"]
        if not 0 < len(command_id) <= MAX_ID:
            return _error(400, f"a command id has 1-{MAX_ID} characters")
        want_payload = request.query.get("payload", "false").lower() in ("1", "true", "yes")
        if want_payload and not settings.admin.show_payload:
            return _error(403, "payloads are not shown: admin.show_payload is false")
        key = request.query.get("key")
        try:
            since = parse_since(request.query["since"], time.time()) if "since" in request.query else None
        except ValueError as exc:
            return _error(400, f"since: {exc}")
        full = request.query.get("full", "false").lower() in ("1", "true", "yes")
        recall = owner.recaller(command_id) if owner is not None and not full else None
        call = owner.call(command_id) if owner is not None else None  # no newer than what is read next
        try:
            async with lookups:
                raw_key = key.encode() if key is not None else None
                facts = await find(settings, command_id, raw_key, since, recall)
        except LookupError_ as exc:
            return _error(503, str(exc))
        story = assemble(facts)
        if owner is not None and story.record is not None:
            seen = next((c for c in facts.commands if c.where == story.record), None)
            target = seen.target if seen else None
            live = owner.live(story.record, facts.key, target, call)
            story = assemble(facts, live) if live is not None else story
        body = story_json(story, payload=want_payload)
        return web.json_response(body, status=404 if story.phase is Phase.UNKNOWN else 200)

    async def ledger(request: web.Request) -> web.Response:
        """What this member's ledger knows about the id in the partitions asked for that it holds."""
        command_id = request.match_info["command_id"]
        if not 0 < len(command_id) <= MAX_ID:
            return _error(400, f"a command id has 1-{MAX_ID} characters")
        partitions = parse_partitions(request.query.getall("partition", []))
        if partitions is None:
            return _error(400, "partition: give TOPIC:N (repeatable)")
        hints = owner.hints(command_id, partitions) if owner is not None else {}
        member = owner.member if owner is not None else None
        return web.json_response({"member": member, "partitions": [hint_json(h) for h in hints.values()]})

    async def openapi(_: web.Request) -> web.Response:
        return web.json_response(OPENAPI)

    app.router.add_get("/v1/commands/{command_id}", command)
    app.router.add_get("/v1/ledger/{command_id}", ledger)
    app.router.add_get("/v1/openapi.json", openapi)
    return app


def _bearer(token: str) -> Any:
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            response = _error(401, "a bearer token is required (Authorization: Bearer <token>)")
            response.headers["WWW-Authenticate"] = 'Bearer realm="workflow-bridge admin"'
            return response
        return await handler(request)

    return check


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def start_admin(settings: Settings, owner: OwnerView | None) -> tuple[web.AppRunner, int]:
    """The admin listener, started; and the port it listens on."""
    token = read_token(settings)
    runner = web.AppRunner(build_admin_app(settings, owner, token), access_log=None)
    await runner.setup()
    admin = settings.admin
    try:
        await web.TCPSite(runner, admin.host, admin.port).start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(
            f"admin listener cannot listen on {admin.host}:{admin.port}: {exc.strerror}"
        ) from exc
    port = runner.addresses[0][1] if runner.addresses else admin.port
    return runner, int(port or 0)


_STEP = {
    "type": "object",
    "description": "One event of the command's story; fields beyond these depend on kind.",
    "required": ["at", "kind", "text"],
    "properties": {
        "at": {"type": ["string", "null"], "format": "date-time"},
        "kind": {
            "type": "string",
            "enum": [
                "received",
                "not_consumed",
                "duplicate_absorbed",
                "dispatched",
                "released",
                "parked",
                "answered",
                "dead_lettered",
                "id_reused",
                "lifecycle",
            ],
        },
        "text": {"type": "string"},
    },
}
_STORY = {
    "type": "object",
    "required": ["command_id", "key", "state", "summary", "record", "steps"],
    "properties": {
        "command_id": {"type": "string"},
        "key": {"type": "string", "description": "The Kafka key whose partitions were read."},
        "state": {"type": "string", "enum": [phase.value for phase in Phase]},
        "summary": {"type": "string"},
        "record": {
            "type": ["object", "null"],
            "description": "The command record the state is about.",
            "properties": {
                "topic": {"type": "string"},
                "partition": {"type": "integer"},
                "offset": {"type": "integer"},
            },
        },
        "workflow": {"type": ["string", "null"], "description": "The last lifecycle status, if tracked."},
        "steps": {"type": "array", "items": _STEP},
        "owner": {
            "type": "object",
            "description": "Present when the member answering owns the command's partition.",
            "properties": {
                "member": {"type": "string"},
                "queued_behind": {"type": ["integer", "null"]},
                "in_flight": {"type": "boolean"},
                "attempt": {"type": ["integer", "null"]},
                "next_attempt_at": {"type": ["string", "null"], "format": "date-time"},
                "circuit": {"type": ["string", "null"], "enum": ["closed", "open", "half_open", None]},
            },
        },
        "payload": {"type": ["object", "null"], "description": "Only with ?payload=true and show_payload."},
        "notes": {
            "type": "array",
            "items": {"type": "string"},
            "description": "What the lookup did not read, and what stood in for it (the owner's ledger).",
        },
    },
}
_LEDGER = {
    "type": "object",
    "required": ["member", "partitions"],
    "properties": {
        "member": {"type": ["string", "null"]},
        "partitions": {
            "type": "array",
            "description": "Only the partitions asked for whose ledger this member holds.",
            "items": {
                "type": "object",
                "properties": {
                    "topic": {"type": "string"},
                    "partition": {"type": "integer"},
                    "remembered": {"type": "boolean"},
                    "last_write_ms": {
                        "type": ["integer", "null"],
                        "description": "Start of the minute of the id's last ledger entry (Unix ms).",
                    },
                    "horizon_ms": {
                        "type": "integer",
                        "description": "Every admitted id whose last entry is this recent is remembered.",
                    },
                },
            },
        },
    },
}
_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}


def _reply(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "workflow-bridge admin", "version": "1"},
    "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    "security": [{}, {"bearer": []}],
    "paths": {
        "/v1/commands/{command_id}": {
            "get": {
                "summary": "What became of a command: its story, by command id",
                "parameters": [
                    {"name": "command_id", "in": "path", "required": True, "schema": {"type": "string"}},
                    {
                        "name": "key",
                        "in": "query",
                        "required": False,
                        "description": "The Kafka key it was sent with (default: the id).",
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "since",
                        "in": "query",
                        "required": False,
                        "description": "Read only records from then on: 30m, 2h, 1d ago, or an ISO 8601 time",
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "payload",
                        "in": "query",
                        "required": False,
                        "description": "Include the command's payload (needs admin.show_payload).",
                        "schema": {"type": "boolean", "default": False},
                    },
                    {
                        "name": "full",
                        "in": "query",
                        "required": False,
                        "description": "Read every record, not only what the owner's ledger cannot answer.",
                        "schema": {"type": "boolean", "default": False},
                    },
                ],
                "responses": {
                    "200": _reply("The command's story.", _STORY),
                    "400": _reply("Not a command id, or since is neither a duration nor a time.", _ERROR),
                    "401": _reply("Missing or wrong bearer token.", _ERROR),
                    "403": _reply("Payload asked for, not allowed by configuration.", _ERROR),
                    "404": _reply("Unknown id: no topic holds it (state unknown).", _STORY),
                    "503": _reply("The broker could not be read.", _ERROR),
                },
            }
        },
        "/v1/ledger/{command_id}": {
            "get": {
                "summary": "What this member's ledger knows about a command id (bridge status asks it)",
                "parameters": [
                    {"name": "command_id", "in": "path", "required": True, "schema": {"type": "string"}},
                    {
                        "name": "partition",
                        "in": "query",
                        "required": True,
                        "description": "TOPIC:N, a command partition; repeatable.",
                        "schema": {"type": "array", "items": {"type": "string"}},
                        "explode": True,
                    },
                ],
                "responses": {
                    "200": _reply("The partitions asked for that this member holds.", _LEDGER),
                    "400": _reply("Not a command id, or a partition not given as TOPIC:N.", _ERROR),
                    "401": _reply("Missing or wrong bearer token.", _ERROR),
                },
            }
        },
        "/v1/openapi.json": {
            "get": {"summary": "This document", "responses": {"200": {"description": "OK"}}}
        },
    },
}
