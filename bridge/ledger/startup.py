"""Start-up check: the ledger topic exists and is co-partitioned with the command topics."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from bridge.errors import ConfigError
from bridge.kafka_options import security_options
from bridge.settings import Settings
from bridge.topics_admin import partition_counts


def partition_problems(
    counts: Mapping[str, int], command_topics: Iterable[str], ledger_topic: str
) -> list[str]:
    """Pure: why the ledger cannot be used with these topics ([] when it can)."""
    ledger = counts.get(ledger_topic)
    if ledger is None:
        return [
            f"ledger topic '{ledger_topic}' does not exist: create it with `bridge topics apply` "
            "(as many partitions as the command topics), or set ledger.enabled: false"
        ]
    return [
        f"ledger topic '{ledger_topic}' has {ledger} partition(s) but command topic '{topic}' has "
        f"{counts[topic]}: they must be equal, because command partition p keeps its ledger in ledger "
        "partition p"
        for topic in command_topics
        if topic in counts and counts[topic] != ledger
    ]


async def verify_partitions(settings: Settings) -> None:
    """Raise :class:`ConfigError` when the ledger is not co-partitioned with the command topics."""
    topics = settings.topics
    commands = [topics.run_commands, topics.control_commands]
    counts = await partition_counts(
        settings.kafka.bootstrap_servers,
        [*commands, topics.ledger],
        security_options(settings.kafka.security),
    )
    problems = partition_problems(counts, commands, topics.ledger)
    if problems:
        raise ConfigError("; ".join(problems))
