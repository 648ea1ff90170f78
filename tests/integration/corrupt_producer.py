"""A record batch whose CRC does not match its bytes, as a failing disk or a buggy client leaves it.

Run as a script (``python -m tests.integration.corrupt_producer BOOTSTRAP TOPIC JSON...``): it
produces the given values to partition 0 in one batch and flips the batch's last byte after the CRC
was computed. The embedded Tansu broker stores and serves the batch as it came (a Kafka broker would
refuse it with CorruptRecordException); aiokafka's consumer then fails that batch's CRC check.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.producer import message_accumulator

_build = message_accumulator.BatchBuilder._build


def corrupted(self: Any) -> bytearray:
    buffer: bytearray = _build(self)
    if not getattr(self, "corrupted", False):  # _build is called again on a retry: flip once
        buffer[-1] ^= 0xFF
        self.corrupted = True
    return buffer


async def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    message_accumulator.BatchBuilder._build = corrupted  # type: ignore[method-assign]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, linger_ms=100)
    await producer.start()
    try:
        pending = [await producer.send(topic, value, key=b"k", partition=0) for value in values]
        for sent in pending:
            await sent
    finally:
        await producer.stop()


if __name__ == "__main__":
    asyncio.run(produce(sys.argv[1], sys.argv[2], [v.encode() for v in sys.argv[3:]]))
