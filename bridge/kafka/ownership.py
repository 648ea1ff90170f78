"""The engine's side of the fence (bridge/kafka/fence.py): how the broker is asked whether this member
still owns its partitions, and what a lost session does to them.

Example::

    fence = Ownership(consumer, partitions, commit_lock, metrics).fence
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from bridge.kafka.fence import Fence, member_generation
from bridge.kafka.partitions import Partition, known_offset, topic_name
from bridge.kafka.ports import ConsumerPort
from bridge.observability.metrics import Metrics
from bridge.observability.repeats import COLLAPSE

log = logging.getLogger("bridge.engine")
RETRY_S = 1.0


class Ownership:
    """``partitions``: the engine's assigned partitions (shared, not copied); ``commit_lock``: the
    engine's, so that a check never commits between two of the engine's own commits."""

    def __init__(
        self,
        consumer: ConsumerPort,
        partitions: dict[TopicPartition, Partition],
        commit_lock: asyncio.Lock,
        metrics: Metrics,
    ) -> None:
        self._consumer = consumer
        self._partitions = partitions
        self._lock = commit_lock
        self._metrics = metrics
        self.fence = Fence(self.owns, self.fence_all)

    async def owns(self) -> bool:
        """Whether the broker still takes this member's generation: a commit of offsets already known
        (none moves backwards) is accepted only from the group's current generation. Retried while the
        broker does not answer: until it does, nothing may start."""
        while True:
            if member_generation(self._consumer) == -1:
                return False
            offsets = {
                p.tp: offset for p in self._partitions.values() if (offset := known_offset(p)) is not None
            }
            if not offsets:
                return True  # nothing known to commit: the client's generation is all there is
            async with self._lock:
                try:
                    await self._consumer.commit(offsets)
                except CommitFailedError:
                    return False
                except KafkaError as exc:
                    log.warning("ownership check failed, retrying: %s", exc, extra=COLLAPSE)
                    await asyncio.sleep(RETRY_S)
                    continue
            return True  # the engine's next commit records progress itself (this one may repeat it)

    def fence_all(self, why: str) -> None:
        """The session is lost: every partition held now stops at once; its routines are cancelled
        when it is revoked (or stop at their next fence check, whichever comes first)."""
        fenced = [p for p in self._partitions.values() if not p.fenced]
        for p in fenced:
            p.fenced = True
            p.close()
        if fenced:
            self._metrics.fenced("partition", len(fenced))
            log.warning(
                "fenced %d partition(s) (%s): %s",
                len(fenced),
                why,
                " ".join(topic_name(p.tp) for p in fenced),
            )
