"""``bridge local``'s own judgements: which port is taken, what a bridge that ended says, which
log lines the screen leaves out."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from argparse import Namespace

import pytest

from bridge.local.broker import free_port
from bridge.local.stack import LocalError, _bridge_ended, check_ports, quiet_logs


def ports(**given: int) -> Namespace:
    return Namespace(**{"broker_port": 0, "sandbox_port": 0, "metrics_port": 0, **given})


@pytest.mark.parametrize("part", ["broker", "sandbox", "metrics"])
def test_a_taken_port_names_its_part_and_its_flag(part: str):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(LocalError, match=rf"^the {part} port {port} is taken .* --{part}-port N$"):
            check_ports(ports(**{f"{part}_port": port}))


def test_free_and_unset_ports_pass():
    check_ports(ports(broker_port=free_port(), metrics_port=free_port()))


async def ended(exc: BaseException | None) -> asyncio.Task[None]:
    async def run() -> None:
        if exc is not None:
            raise exc

    task = asyncio.create_task(run())
    await asyncio.wait([task])
    return task


async def test_a_bridge_that_ended_says_why_in_one_line():
    taken = OSError(errno.EADDRINUSE, "address already in use")
    assert (
        _bridge_ended(await ended(taken))
        == "the bridge stopped: a port it needs is taken (address already in use)"
    )
    assert (
        _bridge_ended(await ended(ValueError("bad\nsecond line"))) == "the bridge stopped (ValueError): bad"
    )
    assert _bridge_ended(await ended(None)) == "the bridge stopped on its own; run with --verbose to see why"


def test_quiet_logs_leave_out_what_the_screen_shows_and_restore_the_loggers(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO)
    with quiet_logs(verbose=False):
        logging.getLogger("bridge.dlq").warning("dead letter from t/0@1: invalid_json")
        logging.getLogger("bridge.outcome").info("outcome x queued")
        logging.getLogger("bridge.app").warning(
            "readiness: %s (%s)", "NOT ready", "connecting to the Kafka broker"
        )
        logging.getLogger("bridge.app").warning("readiness: %s (%s)", "NOT ready", "broker unreachable")
    logging.getLogger("bridge.dlq").warning("after")
    assert [r.getMessage() for r in caplog.records] == ["readiness: NOT ready (broker unreachable)", "after"]
