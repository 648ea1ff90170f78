"""Turn one consumed record into exactly one message to publish: an outcome or a dead letter."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from bridge.commands import OPERATION_PROVIDER, Command, CommandFamily, Operation, expiry_of, operation_of
from bridge.executor import CallResult, Executor, TargetRuntime
from bridge.ledger.entries import DoneFields
from bridge.ledger.rules import Admission
from bridge.ledger.store import Ledger, Ticket
from bridge.ledger.unknown import resolve_in_doubt
from bridge.metrics import Metrics, bounded
from bridge.outcomes import (
    ErrorKind,
    OutcomeData,
    OutcomeError,
    ProviderKind,
    SourceRecord,
    Status,
    outcome_event_id,
)
from bridge.outcomes import encode_outcome as encode
from bridge.parsing import DeadLetter, DeadLetterReason, Invalid, parse_command
from bridge.settings import DLQ_HEADROOM_BYTES, Settings

log = logging.getLogger("bridge.outcome")
_OPERATIONS = frozenset(op.value for op in Operation)
Headers = tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class Incoming:
    """The parts of a consumed record the bridge uses."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers = ()
    timestamp_ms: int | None = None

    @property
    def source(self) -> SourceRecord:
        return SourceRecord(topic=self.topic, partition=self.partition, offset=self.offset)

    @property
    def record_time(self) -> datetime:
        if self.timestamp_ms is None or self.timestamp_ms < 0:
            return datetime.now(UTC)
        return datetime.fromtimestamp(self.timestamp_ms / 1000, UTC)


@dataclass(frozen=True, slots=True)
class Outgoing:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    outcome: OutcomeData | None = None
    dead_letter: DeadLetter | None = None
    labels: tuple[str, str, str, str] = ("", "", "", "")
    """Bounded metric labels of an outcome: target, provider, operation, status."""
    partition: int | None = None  # None: the producer's partitioner picks one
    then: tuple[Outgoing, ...] = ()  # published after this one is acknowledged (the ledger's done entry)
    skip: bool = False  # nothing to publish (a duplicate the ledger absorbed); the offset is still committed


SKIP = Outgoing("", None, None, skip=True)


CONTENT_TYPE = ("content-type", b"application/cloudevents+json; charset=utf-8")


class Processor:
    def __init__(
        self,
        settings: Settings,
        targets: Mapping[str, TargetRuntime],
        executor: Executor,
        metrics: Metrics,
        ledger: Ledger | None = None,
    ) -> None:
        self._ledger = ledger
        topics = settings.topics
        self._families = {
            topics.run_commands: CommandFamily.RUN,
            topics.control_commands: CommandFamily.CONTROL,
        }
        self._outcome_topics = {
            topics.run_commands: topics.run_outcomes,
            topics.control_commands: topics.control_outcomes,
        }
        self._dlq_topic = topics.dead_letter
        self._max_bytes = settings.engine.max_message_bytes
        self._max_dead_letter_value = settings.kafka.max_request_size - DLQ_HEADROOM_BYTES
        self._targets = targets
        self._target_names = frozenset(targets)
        self._executor = executor
        self._metrics = metrics

    @property
    def command_topics(self) -> dict[str, str]:
        """Command topic -> its family ('run' or 'control'), for subscription and metric labels."""
        return {topic: family.value for topic, family in self._families.items()}

    async def process(self, record: Incoming) -> Outgoing:
        self._metrics.child(self._metrics.commands_consumed, record.topic).inc()
        try:
            return await self._process(record)
        except Exception as exc:
            logging.getLogger("bridge.processor").exception(
                "internal error processing %s/%s@%s", record.topic, record.partition, record.offset
            )
            return self.dead_letter(record, DeadLetter(DeadLetterReason.INTERNAL_ERROR, type(exc).__name__))

    async def _process(self, record: Incoming) -> Outgoing:
        parsed = parse_command(record.value, self._families[record.topic], self._max_bytes)
        if isinstance(parsed, DeadLetter):
            return self.dead_letter(record, parsed)
        if isinstance(parsed, Invalid):
            error = OutcomeError(kind=parsed.kind, message=parsed.message, retryable=False)
            provider = self._provider_of(parsed.target)
            return self._outcome(
                record,
                parsed.command_id,
                parsed.target,
                provider,
                parsed.operation,
                CallResult(Status.REJECTED, error=error),
                0.0,
            )
        if self._ledger is None:
            return await self._execute(record, parsed.command, None)
        return await self._admitted(record, parsed.command, self._ledger)

    async def _admitted(self, record: Incoming, command: Command, ledger: Ledger) -> Outgoing:
        """The ledger's admission step: a command id runs once (see README, What runs once)."""
        ticket = await ledger.admit(record.topic, record.partition, record.offset, record.headers, command)
        try:
            if ticket.admission is Admission.DUPLICATE:
                return SKIP
            if ticket.admission is Admission.ID_REUSED:
                detail = f"command id {command.id!r} was already used with another payload; not executed"
                return self.dead_letter(record, DeadLetter(DeadLetterReason.ID_REUSED, detail))
            return await self._execute(record, command, ticket)
        finally:
            ledger.settle(ticket)

    async def _execute(self, record: Incoming, command: Command, ticket: Ticket | None) -> Outgoing:
        started = time.perf_counter()
        runtime = self._targets.get(command.target)
        result = self._precheck(record, command, runtime)
        if result is None:
            assert runtime is not None
            result = await self._call(runtime, command, ticket)
        duration = (time.perf_counter() - started) * 1000
        provider = OPERATION_PROVIDER[operation_of(command)]
        outgoing = self._outcome(
            record, command.id, command.target, provider, command.operation, result, duration
        )
        return outgoing if ticket is None else self._with_done(outgoing, record, ticket, result)

    async def _call(self, runtime: TargetRuntime, command: Command, ticket: Ticket | None) -> CallResult:
        if ticket is None or self._ledger is None:
            return await self._executor.execute(runtime, command)
        if ticket.admission is Admission.IN_DOUBT:
            answer, resolution = await resolve_in_doubt(runtime, command, self._executor)
            self._metrics.child(self._metrics.unknown_outcomes, runtime.name, resolution).inc()
            if answer is not None:
                return answer
        else:
            await self._ledger.dispatched(ticket)  # acknowledged before the first call
        return await self._executor.execute(runtime, command)

    def _with_done(
        self, outgoing: Outgoing, record: Incoming, ticket: Ticket, result: CallResult
    ) -> Outgoing:
        assert self._ledger is not None
        done = DoneFields(result.status.value, result.reference, outcome_event_id(record.source))
        entry = self._ledger.done(ticket, done)
        extra = Outgoing(entry.topic, entry.key, entry.value, partition=entry.partition)
        return replace(outgoing, then=(extra,))

    def _precheck(
        self, record: Incoming, command: Command, runtime: TargetRuntime | None
    ) -> CallResult | None:
        """Rejections decided before any call: unknown target, wrong provider, too old."""
        if runtime is None:
            return _rejected(
                ErrorKind.UNKNOWN_TARGET, f"no target named '{command.target}' is configured in this bridge"
            )
        wanted = OPERATION_PROVIDER[operation_of(command)]
        if runtime.provider.kind != wanted:
            return _rejected(
                ErrorKind.TARGET_MISMATCH,
                f"target '{command.target}' is a {runtime.provider.kind.value} target; "
                f"'{command.operation}' needs a {wanted.value} target",
            )
        expiry = command_deadline(command, record.record_time, runtime.settings.max_age_s)
        now = datetime.now(UTC)
        if expiry is not None and now > expiry:
            late = (now - expiry).total_seconds()
            return _rejected(ErrorKind.EXPIRED, f"command expired {late:.1f}s before its turn; not executed")
        return None

    def _provider_of(self, target: str | None) -> ProviderKind | None:
        runtime = self._targets.get(target) if target else None
        return runtime.provider.kind if runtime else None

    def _outcome(
        self,
        record: Incoming,
        command_id: str,
        target: str | None,
        provider: ProviderKind | None,
        operation: str | None,
        result: CallResult,
        duration_ms: float,
    ) -> Outgoing:
        data = OutcomeData(
            command_id=command_id,
            target=target,
            provider=provider,
            operation=operation,
            status=result.status,
            provider_ref=result.reference,
            http_status=result.http_status,
            attempts=result.attempts,
            duration_ms=round(duration_ms, 3),
            error=result.error,
            source=record.source,
        )
        log.info(
            "outcome %s %s",
            command_id,
            result.status.value,
            extra={
                "command_id": command_id,
                "target": target,
                "operation": operation,
                "status": result.status.value,
                "duration_ms": data.duration_ms,
                "error_kind": result.error.kind.value if result.error else None,
            },
        )
        labels = (
            bounded(target, self._target_names),
            provider.value if provider else "unknown",
            bounded(operation, _OPERATIONS),
            result.status.value,
        )
        return Outgoing(
            self._outcome_topics[record.topic],
            record.key,
            encode(data),
            [CONTENT_TYPE],
            outcome=data,
            labels=labels,
        )

    def dead_letter(self, record: Incoming, letter: DeadLetter) -> Outgoing:
        logging.getLogger("bridge.dlq").warning(
            "dead letter from %s/%s@%s: %s",
            record.topic,
            record.partition,
            record.offset,
            letter.reason.value,
            extra={"reason": letter.reason.value, "detail": letter.detail},
        )
        headers = [
            *record.headers,
            ("dlq.reason", letter.reason.value.encode()),
            ("dlq.detail", letter.detail.encode("utf-8", errors="replace")[:1000]),
            ("dlq.source.topic", record.topic.encode()),
            ("dlq.source.partition", str(record.partition).encode()),
            ("dlq.source.offset", str(record.offset).encode()),
        ]
        value = record.value
        if value is not None and len(value) > self._max_dead_letter_value:  # never retried forever
            headers.append(("dlq.value_omitted_bytes", str(len(value)).encode()))
            value = None
        return Outgoing(self._dlq_topic, record.key, value, headers, dead_letter=letter)


def command_deadline(command: Command, record_time: datetime, max_age_s: float | None) -> datetime | None:
    """Earliest of the command's own expiry and the target's maximum age."""
    deadlines = [d for d in (expiry_of(command, record_time),) if d is not None]
    if max_age_s is not None:
        deadlines.append(record_time + timedelta(seconds=max_age_s))
    return min(deadlines) if deadlines else None


def _rejected(kind: ErrorKind, message: str) -> CallResult:
    return CallResult(Status.REJECTED, error=OutcomeError(kind=kind, message=message, retryable=False))
