"""A command held by its circuit (``circuit.mode: hold``) waits without polling (issue 26.1): once
``open_s`` is over and another call is the probe, it sleeps until the probe's answer (the breaker's
``news``), its deadline or its bulkhead's pressure, not in 50 ms naps."""

from __future__ import annotations

import asyncio
import time

from bridge.messages.outcomes import ErrorKind, Status
from bridge.observability.metrics import Metrics
from bridge.observability.redact import Redactor
from bridge.pipeline.executor import Executor
from bridge.testing import FakeTransport
from tests.unit.pipeline.test_executor import OK, command, runtime


def counted() -> tuple[list[float], Executor]:
    naps: list[float] = []

    async def sleep(seconds: float) -> None:
        naps.append(seconds)
        await asyncio.sleep(seconds)

    return naps, Executor(FakeTransport.scripted([OK]), Metrics(), Redactor(), 256, sleep=sleep)


async def test_a_command_held_while_the_probe_is_out_sleeps_until_the_probes_answer() -> None:
    target = runtime(circuit={"failure_threshold": 1, "open_s": 0.2}, retry={"max_attempts": 1})
    naps, run = counted()
    target.breaker.trip()
    await asyncio.sleep(0.25)  # open_s is over
    assert target.breaker.wait_s() == 0  # another command's call is the probe, under way
    held = asyncio.create_task(run.execute(target, command(id="c-2"), deadline=time.monotonic() + 10))
    await asyncio.sleep(0.5)
    assert not held.done()
    assert len(naps) == 1  # one wait, to its deadline or the probe's answer: asking every 50 ms took 10
    target.breaker.record_success()  # the probe's answer: the circuit closes
    decision = await asyncio.wait_for(held, 0.5)
    assert decision.status is Status.QUEUED


async def test_a_command_held_while_the_probe_is_out_gives_up_at_its_deadline() -> None:
    target = runtime(circuit={"failure_threshold": 1, "open_s": 0.05}, retry={"max_attempts": 1})
    naps, run = counted()
    target.breaker.trip()
    await asyncio.sleep(0.1)
    assert target.breaker.wait_s() == 0  # the probe, whose answer never comes
    began = time.monotonic()
    decision = await run.execute(target, command(id="c-2"), deadline=began + 0.3)
    assert decision.error is not None and decision.error.kind is ErrorKind.CIRCUIT_OPEN
    assert 0.25 <= time.monotonic() - began < 1.0 and len(naps) == 1
