"""Which delivery the bridge runs with: Kafka transactions (exactly one visible outcome per command for
a ``read_committed`` reader) or at-least-once. Decided once at start by asking the broker, never by
its name: a broker that grants a transactional producer id (FindCoordinator for a transaction, then
InitProducerId with a transactional id) has transactions; the embedded Tansu answers with an error.

Example::

    transactional = await choose_delivery(settings.kafka)  # ConfigError for "on" without transactions
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaClient
from aiokafka.errors import KafkaError, for_code
from aiokafka.protocol.transaction import InitProducerIdRequest

from bridge.config.settings import KafkaSettings, Settings
from bridge.errors import ConfigError
from bridge.kafka.clients import settle_before_cancel
from bridge.kafka.options import client_options

log = logging.getLogger("bridge.engine")

TRANSACTION_COORDINATOR = 1  # FindCoordinator key type
NO_ERROR = 0
RETRY_FOR_S = 20.0  # a broker just started answers "coordinator loading" for a few seconds


def probe_id(kafka: KafkaSettings) -> str:
    """The transactional id the probe initialises: never used for a transaction."""
    return f"{kafka.group_id}.transactions-probe"


def transactional_id(group_id: str, topic: str, partition: int) -> str:
    """One per command partition, so that the next owner of the partition fences the last one."""
    return f"{group_id}.{topic}.{partition}"


async def transactions_granted(client: AIOKafkaClient, txn_id: str, timeout_ms: int) -> tuple[bool, str]:
    """(whether the broker grants a transactional producer, why not)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + RETRY_FOR_S
    while True:
        try:
            node = await client.coordinator_lookup(TRANSACTION_COORDINATOR, txn_id)
            request = InitProducerIdRequest(transactional_id=txn_id, transaction_timeout_ms=timeout_ms)
            response = await client.send(node, request)
            code = int(response.error_code)
        except KafkaError as exc:  # a broker without the API may answer with an error or close the connection
            if not exc.retriable or loop.time() > deadline:
                return False, f"{type(exc).__name__}"
            await asyncio.sleep(0.2)
            continue
        if code == NO_ERROR:
            return True, ""
        error = for_code(code)
        if not error.retriable or loop.time() > deadline:
            return False, error.__name__
        await asyncio.sleep(0.2)


async def choose_delivery(kafka: KafkaSettings) -> bool:
    """True: transactions. ``off`` never asks; ``on`` raises ConfigError where they are not granted;
    ``auto`` falls back to at-least-once and says so in one line."""
    if kafka.transactions == "off":
        log.info("delivery: at-least-once (kafka.transactions is off)")
        return False
    granted, why = await _ask(kafka)
    if granted:
        log.info(
            "delivery: Kafka transactions, one per command partition (read_committed readers see one outcome)"
        )
        return True
    if kafka.transactions == "on":
        raise ConfigError(
            f"kafka.transactions is on but the broker at {kafka.bootstrap_servers} grants no transactional "
            f"producer ({why}); use a broker with transactions or set kafka.transactions to auto or off"
        )
    log.warning(
        "delivery: at-least-once, the broker grants no transactional producer (%s); "
        "a crash may publish an outcome twice",
        why,
    )
    return False


async def resolved_delivery(settings: Settings) -> Settings:
    """``settings`` with ``kafka.transactions`` decided: ``on`` or ``off``, never ``auto`` (the readers of
    :func:`bridge.kafka.clients.make_reader` then read committed records only where transactions run)."""
    while True:
        try:
            transactional = await choose_delivery(settings.kafka)
            break
        except KafkaError as exc:  # the broker went away between the clients' start and this question
            log.warning("cannot ask the broker about transactions (%s); retrying", exc)
            await asyncio.sleep(1.0)
    kafka = settings.kafka.model_copy(update={"transactions": "on" if transactional else "off"})
    return settings.model_copy(update={"kafka": kafka})


async def _ask(kafka: KafkaSettings) -> tuple[bool, str]:
    """The probe in a client of its own, closed whatever happens. A stop that arrives while it talks
    to the broker lets it finish first (``settle_before_cancel``): aiokafka leaks a connection whose
    opening is cancelled half-way (as :func:`bridge.kafka.clients.started` says)."""
    client = AIOKafkaClient(**client_options(kafka))

    async def ask() -> tuple[bool, str]:
        await client.bootstrap()
        return await transactions_granted(client, probe_id(kafka), kafka.transaction_timeout_ms)

    try:
        return await settle_before_cancel(ask())
    finally:
        await client.close()
