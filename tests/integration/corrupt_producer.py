"""A record batch whose CRC does not match its bytes, as a failing disk or a buggy client leaves it.

Run as a script (``python -m tests.integration.corrupt_producer BOOTSTRAP TOPIC JSON...``): it
produces the given values to partition 0 in one batch and flips the batch's last byte after the CRC
was computed. The embedded Tansu broker stores and serves the batch as it came (a Kafka broker would
refuse it with CorruptRecordException); aiokafka's consumer then fails that batch's CRC check.
"""

from __future__ import annotations

from typing import Any

from aiokafka.producer import message_accumulator

from tests.integration import undecodable_producer

_build = message_accumulator.BatchBuilder._build


def corrupted(self: Any) -> bytearray:
    buffer: bytearray = _build(self)
    if not getattr(self, "corrupted", False):  # _build is called again on a retry: flip once
        buffer[-1] ^= 0xFF
        self.corrupted = True
    return buffer


if __name__ == "__main__":
    message_accumulator.BatchBuilder._build = corrupted  # type: ignore[method-assign]
    undecodable_producer.main(bad_header_at=None)
