"""What a Kafka-protocol broker can do, found by asking it (never by its name).

Tansu answers InitProducerId with an error, so an idempotent producer cannot start against it;
Apache Kafka grants a producer id. Callers that choose client settings for whatever broker they were
given (the local stack, the integration fixtures, the redrive tool) ask here once.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiokafka import AIOKafkaClient
from aiokafka.errors import KafkaError, for_code
from aiokafka.protocol.transaction import InitProducerIdRequest

NO_ERROR = 0
RETRY_FOR_S = 20.0  # a broker just started answers "coordinator loading" for a few seconds


@dataclass(frozen=True)
class BrokerAbilities:
    idempotent_producer: bool


async def idempotent_producer_supported(client: AIOKafkaClient) -> bool:
    """InitProducerId without a transactional id, as an idempotent producer sends it first; a
    retriable answer (the coordinator still loading) is asked again, any other error means no."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + RETRY_FOR_S
    while True:
        node = client.get_random_node()
        if node is None:
            return False
        try:
            # transactional_id None: the idempotent-only form (no transaction)
            request = InitProducerIdRequest(transactional_id=None, transaction_timeout_ms=60_000)
            response = await client.send(node, request)
        except KafkaError:  # a broker without the API may close the connection instead of answering
            return False
        code = int(response.error_code)
        if code == NO_ERROR:
            return True
        if not for_code(code).retriable or loop.time() > deadline:
            return False
        await asyncio.sleep(0.2)


async def detect_abilities(bootstrap: str) -> BrokerAbilities:
    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        await client.bootstrap()
        return BrokerAbilities(idempotent_producer=await idempotent_producer_supported(client))
    finally:
        await client.close()
