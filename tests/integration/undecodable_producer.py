"""Another Kafka client's record that aiokafka cannot decode: a header key that is not UTF-8.

Run as a script (``python -m tests.integration.undecodable_producer BOOTSTRAP TOPIC JSON...``): it
produces the given values to partition 0 in one batch, the second one with the bad header key. It
uses aiokafka's pure-Python record builder, whose header-key encoding a ``str`` subclass can replace;
a Java or Go client can write such bytes directly.
"""

from __future__ import annotations

import asyncio
import os
import sys

os.environ["AIOKAFKA_NO_EXTENSIONS"] = "1"  # the pure-Python builder, before aiokafka is imported

from aiokafka import AIOKafkaProducer


class NotUtf8(str):
    __slots__ = ()

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return b"\xff\xfe-not-utf8"


async def produce_batch(bootstrap: str, topic: str, values: list[bytes], bad_header_at: int | None) -> None:
    """``values`` to partition 0 in one batch, the one at ``bad_header_at`` with the bad header key."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, linger_ms=100)
    await producer.start()
    try:
        pending = []
        for i, value in enumerate(values):
            headers = [(NotUtf8("x"), b"v")] if i == bad_header_at else []
            pending.append(await producer.send(topic, value, key=b"k", partition=0, headers=headers))
        for sent in pending:
            await sent
    finally:
        await producer.stop()


def main(bad_header_at: int | None) -> None:
    asyncio.run(produce_batch(sys.argv[1], sys.argv[2], [v.encode() for v in sys.argv[3:]], bad_header_at))


if __name__ == "__main__":
    main(bad_header_at=1)
