"""Start-up check: the bridge's own co-partitioned topics (the ledger, the parking topic) exist and
have as many partitions as the command topics."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from bridge.config.settings import Settings
from bridge.errors import ConfigError
from bridge.kafka.options import security_options
from bridge.kafka.topics import partition_counts


@dataclass(frozen=True, slots=True)
class Internal:
    """One co-partitioned topic: what it is, what partition p holds, and the switch that turns it off."""

    role: str
    holds: str
    switch: str


LEDGER = Internal("ledger", "keeps its ledger in ledger partition p", "ledger.enabled")
PARKING = Internal("parking", "parks its commands in parking partition p", "parking.enabled")


def partition_problems(
    counts: Mapping[str, int], command_topics: Iterable[str], topic: str, what: Internal = LEDGER
) -> list[str]:
    """Pure: why ``topic`` cannot be used with these command topics ([] when it can)."""
    found = counts.get(topic)
    if found is None:
        return [
            f"{what.role} topic '{topic}' does not exist: create it with `bridge topics apply` "
            f"(as many partitions as the command topics), or set {what.switch}: false"
        ]
    return [
        f"{what.role} topic '{topic}' has {found} partition(s) but command topic '{command}' has "
        f"{counts[command]}: they must be equal, because command partition p {what.holds}"
        for command in command_topics
        if command in counts and counts[command] != found
    ]


def internal_topics(settings: Settings) -> dict[str, Internal]:
    """Pure: the co-partitioned topics the settings switch on."""
    topics = settings.topics
    wanted = {topics.ledger: LEDGER} if settings.ledger.enabled else {}
    return wanted | ({topics.parked: PARKING} if settings.parking.enabled else {})


async def verify_partitions(settings: Settings) -> None:
    """Raise :class:`ConfigError` when a topic of :func:`internal_topics` is missing or not co-partitioned."""
    internal = internal_topics(settings)
    if not internal:
        return
    commands = [settings.topics.run_commands, settings.topics.control_commands]
    counts = await partition_counts(
        settings.kafka.bootstrap_servers, [*commands, *internal], security_options(settings.kafka.security)
    )
    problems = [
        p for topic, what in internal.items() for p in partition_problems(counts, commands, topic, what)
    ]
    if problems:
        raise ConfigError("; ".join(problems))
