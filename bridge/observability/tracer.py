"""The tracer seam: what the tracing hooks (:mod:`bridge.observability.tracing`) hand to a tracer, and what
they need of the things they wrap. The OpenTelemetry tracer (:mod:`bridge.observability.otel`) implements it.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from bridge.http import FormEndpoint, Response
    from bridge.messages.outcomes import ErrorKind
    from bridge.messages.records import Incoming, Outgoing

T = TypeVar("T")
Run = Callable[[], Coroutine[Any, Any, T]]


class CallRequest(Protocol):
    """What a provider-attempt span reads of the request (:class:`bridge.providers.base.HttpRequest`)."""

    @property
    def method(self) -> str: ...

    @property
    def route(self) -> str: ...


class CallVerdict(Protocol):
    """What a provider-attempt span reads of its verdict (:class:`bridge.providers.verdicts.Verdict`)."""

    @property
    def error_kind(self) -> ErrorKind | None: ...


AttemptResult = tuple[CallVerdict, "Response | None", "Mapping[str, str] | None"]
"""What one attempt gives: its verdict, the response (None when there was none), the auth headers sent."""
A = TypeVar("A", bound=AttemptResult)


class CallTarget(Protocol):
    """What a provider-attempt span reads of its target (:class:`bridge.pipeline.executor.TargetRuntime`)."""

    @property
    def name(self) -> str: ...

    @property
    def base_url(self) -> str: ...


class Tracer(Protocol):
    """What the hooks call while tracing is on (:class:`bridge.observability.otel.OtelTracer`)."""

    async def process(self, run: Run[Outgoing], record: Incoming) -> Outgoing:
        """The command span around ``run()``; adds ``traceparent`` to the returned message's headers."""

    async def attempt(self, run: Run[A], runtime: CallTarget, request: CallRequest) -> A:
        """One provider-attempt span (a child of the command span)."""

    async def token_fetch(self, run: Run[bytes], endpoint: FormEndpoint) -> bytes:
        """The token-endpoint span."""

    async def publish(self, run: Run[None], outgoing: Outgoing) -> None:
        """The publish span; the message's ``traceparent`` header becomes this span's context."""

    def cloudevent_extensions(self) -> Mapping[str, str]:
        """``traceparent`` (and ``tracestate``) of the current command span."""
