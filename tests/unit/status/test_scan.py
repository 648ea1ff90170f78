"""The bounds of a partition a lookup reads: a probe answered without the partition is a slow read
(Tansu leaves out what it could not gather within the fetch's wait), never an empty partition."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from bridge.config.settings import KafkaSettings
from bridge.status import scan
from bridge.status.scan import LookupError_, Scanner


@dataclass
class Answer:
    """A Fetch v11 response as aiokafka parses it."""

    topics: list[tuple[str, list[tuple[Any, ...]]]]
    API_VERSION: int = 11


def partition_part(partition: int, high: int, log_start: int) -> tuple[Any, ...]:
    # partition, error, high watermark, last stable offset, log start, aborted, preferred replica, records
    return (partition, 0, high, high, log_start, [], -1, b"")


@dataclass
class Cluster:
    def leader_for_partition(self, tp: object) -> int:
        return 1


@dataclass
class Broker:
    """Answers each fetch with the next of ``answers`` (the last one again when they run out)."""

    answers: list[Answer]
    waits: list[int] = field(default_factory=list)
    cluster: Cluster = field(default_factory=Cluster)

    async def send(self, node: int, request: Any) -> Answer:
        self.waits.append(request._max_wait_ms)
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]

    async def force_metadata_update(self) -> bool:
        raise AssertionError("a slow answer is no reason to ask for metadata")


def scanner(broker: Broker) -> Scanner:
    return Scanner(broker, KafkaSettings())  # type: ignore[arg-type]


async def test_a_probe_left_unanswered_is_asked_again_with_a_longer_wait() -> None:
    broker = Broker([Answer([]), Answer([]), Answer([("t", [partition_part(3, high=120, log_start=7)])])])
    node, start, high = await scanner(broker)._bounds(broker, "t", 3)  # type: ignore[arg-type]
    assert (node, start, high) == (1, 7, 120)  # not (1, 0, 0): the partition is not empty
    assert broker.waits[0] == scan.PROBE_WAIT_MS and broker.waits[0] < broker.waits[1] < broker.waits[2]


async def test_an_empty_partition_is_answered_with_its_end_at_once() -> None:
    broker = Broker([Answer([("t", [partition_part(0, high=0, log_start=0)])])])
    assert await scanner(broker)._bounds(broker, "t", 0) == (1, 0, 0)  # type: ignore[arg-type]
    assert len(broker.waits) == 1


async def test_a_partition_never_answered_fails_the_lookup_saying_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(scan, "LEADER_WAIT_S", 0.3)
    broker = Broker([Answer([])])
    with pytest.raises(LookupError_, match=r"cannot fetch t\[2\]: no answer within \d+ ms"):
        await scanner(broker)._bounds(broker, "t", 2)  # type: ignore[arg-type]
