"""The ``/_sandbox`` admin API and the middleware that records provider requests.

Routes::

    PUT    /_sandbox/faults/{provider}   set the fault entry of a provider, or ``*`` for all
    DELETE /_sandbox/faults/{provider}   clear one entry
    GET    /_sandbox/faults              the entries and their remaining ``*_next`` counts
    DELETE /_sandbox/faults              clear all entries
    GET    /_sandbox/requests            the recorded requests (``?provider=zuora`` filters)
    DELETE /_sandbox/requests            clear the log
    DELETE /_sandbox/tokens              revoke every issued Salesforce and Zuora token
    POST   /_sandbox/reset               seed state again, clear faults and the log
"""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import parse_qsl

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from pydantic import ValidationError

from bridge.sandbox.catalog import fault_keys, provider_of
from bridge.sandbox.faults import ALL, FaultBook, FaultSpec
from bridge.sandbox.state import RecordedRequest, RequestLog, json_response, parse_json

PREFIX = "/_sandbox"


async def record_of(
    request: web.Request, provider: str, status: int | None, concurrent: int = 1, arrived_at: float = 0.0
) -> RecordedRequest:
    """What the log keeps of one request; credentials are kept as sent (this is a test tool)."""
    raw = await request.read()
    body: object = None
    if raw:
        try:
            body = parse_json(raw)
        except ValueError:
            if request.content_type == "application/x-www-form-urlencoded":
                body = dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
    return RecordedRequest(
        provider=provider,
        method=request.method,
        path=request.path,
        raw_path=request.raw_path.split("?", 1)[0],
        query=dict(request.query),
        headers={k.lower(): v for k, v in request.headers.items()},
        body=body,
        status=status,
        concurrent=concurrent,
        arrived_at=arrived_at,
    )


def recording_middleware(log: RequestLog) -> Middleware:
    """Log every provider request with the status it got (None when no answer reached the client)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        provider = provider_of(request.path)
        if provider is None:
            return await handler(request)
        concurrent = log.in_progress.get(provider, 0) + 1
        log.in_progress[provider] = concurrent
        arrived_at = time.time()
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            log.add(await record_of(request, provider, exc.status, concurrent, arrived_at))
            raise
        finally:
            log.in_progress[provider] -= 1
        transport = request.transport
        delivered = transport is not None and not transport.is_closing()
        status = response.status if delivered else None
        log.add(await record_of(request, provider, status, concurrent, arrived_at))
        return response

    return middleware


class AdminApi:
    def __init__(
        self, faults: FaultBook, log: RequestLog, reset: Callable[[], None], revoke_tokens: Callable[[], None]
    ) -> None:
        self.faults = faults
        self.log = log
        self._reset = reset
        self._revoke_tokens = revoke_tokens

    def routes(self) -> list[web.RouteDef]:
        return [
            web.put(PREFIX + "/faults/{provider}", self.put_fault),
            web.delete(PREFIX + "/faults/{provider}", self.delete_fault),
            web.get(PREFIX + "/faults", self.get_faults),
            web.delete(PREFIX + "/faults", self.clear_faults),
            web.get(PREFIX + "/requests", self.get_requests),
            web.delete(PREFIX + "/requests", self.clear_requests),
            web.delete(PREFIX + "/tokens", self.revoke_tokens),
            web.post(PREFIX + "/reset", self.reset),
        ]

    async def put_fault(self, request: web.Request) -> web.Response:
        provider = request.match_info["provider"]
        known = fault_keys()  # now: a plugin's sandbox joins when its provider is loaded
        if provider != ALL and provider not in known:
            return json_response({"error": f"unknown provider {provider!r}", "providers": [*known, ALL]}, 404)
        try:
            spec = FaultSpec.model_validate_json(await request.read() or b"{}")
        except ValidationError as exc:
            details = exc.errors(include_url=False, include_context=False, include_input=False)
            return json_response({"error": "invalid fault", "details": details}, 400)
        return json_response({provider: self.faults.put(provider, spec).to_json()})

    async def delete_fault(self, request: web.Request) -> web.Response:
        self.faults.remove(request.match_info["provider"])
        return json_response(self.faults.snapshot())

    async def get_faults(self, _: web.Request) -> web.Response:
        return json_response(self.faults.snapshot())

    async def clear_faults(self, _: web.Request) -> web.Response:
        self.faults.clear()
        return json_response({})

    async def get_requests(self, request: web.Request) -> web.Response:
        entries = self.log.entries(request.query.get("provider"))
        return json_response([e.to_json() for e in entries])

    async def clear_requests(self, _: web.Request) -> web.Response:
        self.log.clear()
        return json_response([])

    async def revoke_tokens(self, _: web.Request) -> web.Response:
        self._revoke_tokens()
        return json_response({"revoked": True})

    async def reset(self, _: web.Request) -> web.Response:
        self._reset()
        return json_response({"reset": True})
