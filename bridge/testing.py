"""In-memory test doubles that ship with the bridge, for its own tests and for its users' tests.

:class:`FakeTransport` stands where the HTTP client stands (like httpx's ``MockTransport``): give it a
function from :class:`~bridge.http.Call` to :class:`~bridge.http.Response` (or an exception to
raise) and it records every call::

    transport = FakeTransport(lambda call: Response(200, {}, b'{"id": "run-1"}'))
    executor = Executor(transport, Metrics(), Redactor(), 2048)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from bridge.errors import ProviderCallError
from bridge.http import Call, Response

Answer = Response | ProviderCallError
Route = Callable[[Call], Answer]


@dataclass
class FakeTransport:
    """Answers calls with ``route``; ``calls`` lists what was sent, in order."""

    route: Route
    calls: list[Call] = field(default_factory=list)

    @classmethod
    def scripted(cls, answers: Iterable[Answer]) -> FakeTransport:
        """Answers in order, one per call; a call beyond the script is a test failure."""
        queue = list(answers)

        def next_answer(call: Call) -> Answer:
            if not queue:
                raise AssertionError(f"unexpected extra call: {call.method} {call.url}")
            return queue.pop(0)

        return cls(next_answer)

    async def __call__(self, call: Call) -> Response:
        self.calls.append(call)
        answer = self.route(call)
        if isinstance(answer, ProviderCallError):
            raise answer
        return answer


def json_response(status: int, body: bytes = b"{}", **headers: str) -> Response:
    return Response(status, {"Content-Type": "application/json", **headers}, body)
