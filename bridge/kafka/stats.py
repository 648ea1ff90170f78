"""What the engine reports about itself: read by readiness, the gauges and the tests."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from aiokafka import TopicPartition


@dataclass
class EngineStats:
    """Progress counters for health checks and tests."""

    accepted: int = 0
    finished: int = 0
    commits: int = 0
    last_commit_at: float = 0.0
    last_progress_at: float = field(default_factory=time.monotonic)
    assigned: frozenset[TopicPartition] = frozenset()
    broker_ok: bool = False
    lag: int = 0
    in_flight: int = 0  # accepted and not finished: the engine's own count, read by readiness
    publish_error: str | None = None
    drained: int = 0  # key routines waited for at revocations and shutdown
    restoring: int = 0  # assigned partitions whose state is still being restored
