"""What the owning member adds to a lookup (bridge/status/live.py, through the admin app): never
newer than the topics the same lookup read."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import TopicPartition

from bridge.kafka.partitions import Partition
from bridge.local.stack import local_settings
from bridge.messages.records import Incoming
from bridge.pipeline.calls import CallsInFlight
from bridge.status import admin
from bridge.status.facts import CommandSeen, Where
from bridge.status.live import OwnerView
from bridge.status.story import Facts, Progress

CID = "cmd-1"


async def test_an_attempt_that_fails_while_the_topics_are_read_is_shown_as_before_the_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = local_settings("127.0.0.1:9", "http://127.0.0.1:9")
    topic = settings.topics.run_commands
    partition = Partition(TopicPartition(topic, 2))
    partition.keys[CID.encode()] = deque([Incoming(topic, 2, 100, CID.encode(), b"{}")])
    calls = CallsInFlight()
    call = calls.begin(CID)
    call.attempt = 1  # under way: its dispatched entry may not be acknowledged yet

    async def find(*_: Any) -> Facts:
        # meanwhile the attempt is answered 429: the executor waits, its dispatched entry written
        # after this read of the ledger began
        call.next_attempt_at = time.time() + 12
        facts = Facts(CID, CID.encode(), {topic: 2})
        facts.commands.append(CommandSeen(Where(topic, 2, 100), 1, CID.encode(), "z", "zilliant.queue_job"))
        facts.progress = {(topic, 2): Progress(topic, 2, None, 101)}
        return facts

    monkeypatch.setattr(admin, "find", find)
    owned = OwnerView("pod-1", lambda t, p: partition if (t, p) == (topic, 2) else None, dict, calls)
    async with TestClient(TestServer(admin.build_admin_app(settings, owned, None))) as client:
        resp = await client.get(f"/v1/commands/{CID}")
        body = await resp.json()
    assert body["state"] == "in_flight", body
    assert body["owner"]["attempt"] == 1 and body["owner"]["next_attempt_at"] is None, body
