"""Turn one consumed record into exactly one message to publish: an outcome or a dead letter."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import partial

from bridge.config.settings import DLQ_HEADROOM_BYTES, Settings
from bridge.ledger.dispatch import LedgerDispatch
from bridge.ledger.entries import DoneFields
from bridge.ledger.rules import Admission
from bridge.ledger.store import DEAD_LETTER_AGAIN, Ledger, Ticket
from bridge.messages.commands import Command, CommandFamily, command_deadline, expires_in_s
from bridge.messages.outcomes import ErrorKind, OutcomeData, Status
from bridge.messages.outcomes import encode_outcome as encode
from bridge.messages.parsing import DeadLetter, DeadLetterReason, Invalid, ParseResult
from bridge.messages.records import SKIP, Incoming, Outgoing
from bridge.messages.wire import Header, copyable_headers, schema_id_of
from bridge.observability import tracing
from bridge.observability.metrics import Metrics, bounded
from bridge.pipeline import decide
from bridge.pipeline.bulkheads import Bulkheads, TargetLoad
from bridge.pipeline.decide import Decision
from bridge.pipeline.desk import ParkedSet, ParkingDesk
from bridge.pipeline.executor import Executor, TargetRuntime
from bridge.pipeline.unknown import resolve_in_doubt
from bridge.providers.catalog import CATALOG
from bridge.providers.parsing import parse_command

log = logging.getLogger("bridge.outcome")
# tracking (bridge.tracking): the entry that starts following a workflow, or None
Track = Callable[[Incoming, Command, str | None], Outgoing | None]
_STARTED = frozenset({Status.QUEUED, Status.APPLIED})


CONTENT_TYPE = ("content-type", b"application/cloudevents+json; charset=utf-8")


class Processor:
    def __init__(
        self,
        settings: Settings,
        targets: Mapping[str, TargetRuntime],
        executor: Executor,
        metrics: Metrics,
        ledger: Ledger | None = None,
        *,
        track: Track | None = None,
        loads: Mapping[str, TargetLoad] | None = None,
        parking: ParkedSet | None = None,
    ) -> None:
        self._parking = parking
        self._ledger = ledger
        self._track = track
        topics = settings.topics
        self._families = {
            topics.run_commands: CommandFamily.RUN,
            topics.control_commands: CommandFamily.CONTROL,
        }
        self._outcome_topics = topics.routes
        self._dlq_topic = topics.dead_letter
        self._max_bytes = settings.engine.max_message_bytes
        self._max_dead_letter_value = settings.kafka.max_request_size - DLQ_HEADROOM_BYTES
        self._max_key = max_key_bytes(settings.kafka.max_request_size)
        self._targets = targets
        self._target_names = frozenset(targets)
        self._executor = executor
        self._metrics = metrics
        self.bulkheads = (
            Bulkheads(self._parse, loads, metrics, park_shed=parking is not None) if loads else None
        )
        """The engine's per-record hook (``lanes``): each target's share of in-flight commands."""
        self._desk = ParkingDesk(parking, targets, ledger, self.bulkheads) if parking else None
        if parking is not None:
            metrics.replay_topics(self.command_topics)

    @property
    def command_topics(self) -> dict[str, str]:
        """Command topic -> its family ('run' or 'control'), for subscription and metric labels."""
        return {topic: family.value for topic, family in self._families.items()}

    @tracing.traced_command
    async def process(self, record: Incoming) -> Outgoing:
        self._metrics.consumed(record.topic)
        return await self._answered(record)

    @tracing.traced_command
    async def replay(self, record: Incoming) -> Outgoing:
        """A parked command brought back (bridge/parking/replay.py): counted as replayed, not consumed."""
        self._metrics.replayed(record.topic)
        return await self._answered(record)

    async def _answered(self, record: Incoming) -> Outgoing:
        try:
            return await self._process(record)
        except Exception as exc:
            logging.getLogger("bridge.processor").exception(
                "internal error processing %s/%s@%s", record.topic, record.partition, record.offset
            )
            return self.dead_letter(record, DeadLetter(DeadLetterReason.INTERNAL_ERROR, type(exc).__name__))

    def _parse(self, record: Incoming) -> ParseResult:
        return parse_command(record.value, self._families[record.topic], self._max_bytes, record.headers)

    async def _process(self, record: Incoming) -> Outgoing:
        where = (record.topic, record.partition)
        if self._ledger is not None and self._ledger.dead_lettered(where, record.offset):
            self._metrics.duplicate(DEAD_LETTER_AGAIN)
            return SKIP  # dead-lettered before (a redelivery): one dead letter per record
        if record.undecodable is not None:
            reason = DeadLetterReason.CORRUPT if record.corrupt else DeadLetterReason.UNDECODABLE
            return self.dead_letter(record, DeadLetter(reason, record.undecodable))
        if record.key is not None and len(record.key) > self._max_key:
            return self.dead_letter(record, key_too_large(len(record.key), self._max_key))
        shed = self._desk.shed(record) if self._desk else None
        if shed is not None:
            return shed
        parsed = (self.bulkheads and self.bulkheads.parsed(record)) or self._parse(record)
        if isinstance(parsed, DeadLetter):
            return self.dead_letter(record, parsed)
        if isinstance(parsed, Invalid):
            provider = self._provider_of(parsed.target)
            decision = decide.rejected(parsed.kind, parsed.message)
            data = decide.outcome_data(
                command_id=parsed.command_id,
                target=parsed.target,
                provider=provider,
                operation=parsed.operation,
                decision=decision,
                duration_ms=0.0,
                source=record.source,
                schema_id=schema_id_of(record.value),
            )
            return self._outcome(record, data)
        if self._ledger is None:
            return await self._execute(record, parsed.command, None)
        return await self._admitted(record, parsed.command, self._ledger)

    async def _admitted(self, record: Incoming, command: Command, ledger: Ledger) -> Outgoing:
        """The ledger's admission step: a command id runs once (docs/failure-semantics.md)."""
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
        parked = self._desk.before_call(record, command, runtime, result) if self._desk else None
        if isinstance(parked, Outgoing):
            return parked  # its outcome comes when it is back (bridge/parking)
        result = parked or result
        if result is None:
            assert runtime is not None
            result = await self._call(runtime, command, ticket, _monotonic(command, record, runtime))
            parked = self._desk.after_call(record, command, runtime, ticket, result) if self._desk else None
            if parked is not None:
                return parked
        data = decide.outcome_data(
            command_id=command.id,
            target=command.target,
            provider=CATALOG.provider_of(command.operation),
            operation=command.operation,
            decision=result,
            duration_ms=(time.perf_counter() - started) * 1000,
            source=record.source,
            schema_id=schema_id_of(record.value),
        )
        if ticket is None:
            return self._outcome(record, data)
        return self._outcome(record, data, partial(self._after_outcome, record, command, ticket, result))

    async def _call(
        self, runtime: TargetRuntime, command: Command, ticket: Ticket | None, deadline: float | None
    ) -> Decision:
        if ticket is None or self._ledger is None:
            return await self._executor.execute(runtime, command, deadline=deadline)
        in_doubt = ticket.admission is Admission.IN_DOUBT
        if in_doubt:
            answer, resolution = await resolve_in_doubt(runtime, command, self._executor)
            self._metrics.unknown_outcome(runtime.name, resolution)
            if answer is not None:
                return answer
        # ``dispatched`` is acknowledged before each call and withdrawn while every call was refused
        dispatch = LedgerDispatch(self._ledger, ticket, written=in_doubt)
        return await self._executor.execute(runtime, command, deadline=deadline, dispatch=dispatch)

    def _after_outcome(
        self, record: Incoming, command: Command, ticket: Ticket, result: Decision, data: OutcomeData
    ) -> tuple[Outgoing, ...]:
        """What is published once the outcome is acknowledged: the ledger's ``done`` entry, after the
        tracking entry of a workflow that started."""
        assert self._ledger is not None
        done = DoneFields(result.status.value, result.reference, data.source.event_id)
        entry = self._ledger.done(ticket, done)
        extra = Outgoing(entry.topic, entry.key, entry.value, partition=entry.partition)
        # tracking's entry goes first: a crash before ``done`` leaves the command in doubt, not untracked
        tracked = (
            self._track(record, command, result.reference)
            if self._track and result.status in _STARTED
            else None
        )
        return (tracked, extra) if tracked else (extra,)

    def _precheck(self, record: Incoming, command: Command, runtime: TargetRuntime | None) -> Decision | None:
        """Rejections decided before any call: unknown target, wrong provider, too old."""
        if runtime is None:
            return decide.rejected(
                ErrorKind.UNKNOWN_TARGET, f"no target named '{command.target}' is configured in this bridge"
            )
        wanted = CATALOG.provider_of(command.operation)
        if runtime.provider.kind != wanted:
            return decide.rejected(
                ErrorKind.TARGET_MISMATCH,
                f"target '{command.target}' is a {runtime.provider.kind} target; "
                f"'{command.operation}' needs a {wanted} target",
            )
        expiry = command_deadline(command, record.record_time, runtime.settings.max_age_s)
        now = datetime.now(UTC)
        if expiry is not None and now > expiry:
            late = (now - expiry).total_seconds()
            return decide.rejected(
                ErrorKind.EXPIRED, f"command expired {late:.1f}s before its turn; not executed"
            )
        if self.bulkheads is not None and self.bulkheads.is_shed(record):
            return decide.refused(ErrorKind.TARGET_BUSY, command.target, 0)
        return None

    def _provider_of(self, target: str | None) -> str | None:
        runtime = self._targets.get(target) if target else None
        return runtime.provider.kind if runtime else None

    def _outcome(
        self,
        record: Incoming,
        data: OutcomeData,
        after: Callable[[OutcomeData], tuple[Outgoing, ...]] | None = None,
    ) -> Outgoing:
        """The outcome; ``after``: the records published once it is acknowledged, decided only once
        the outcome is encoded (nothing is remembered for an outcome that could not be built)."""
        _log_outcome(data)
        labels = (
            bounded(data.target, self._target_names),
            data.provider or "unknown",
            bounded(data.operation, CATALOG.operations),
            data.status.value,
        )
        value = encode(data, extensions=tracing.cloudevent_extensions())
        return Outgoing(
            self._outcome_topics[record.topic],
            record.key,
            value,
            [CONTENT_TYPE],
            outcome=data,
            labels=labels,
            then=after(data) if after is not None else (),
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
        key, value = record.key, record.value
        omitted: list[Header] = []
        if key is not None and len(key) > self._max_key:
            omitted.append(("dlq.key_omitted_bytes", str(len(key)).encode()))
            key = None
        if value is not None and len(value) > self._max_dead_letter_value:  # never retried forever
            omitted.append(("dlq.value_omitted_bytes", str(len(value)).encode()))
            value = None
        room = self._max_dead_letter_value - len(value or b"") - len(key or b"")
        copied, dropped = copyable_headers(record.headers, room)
        if dropped:
            omitted.append(("dlq.headers_omitted_bytes", str(dropped).encode()))
        headers = [
            *copied,
            ("dlq.reason", letter.reason.value.encode()),
            ("dlq.detail", letter.detail.encode("utf-8", errors="replace")[:1000]),
            ("dlq.source.topic", record.topic.encode()),
            ("dlq.source.partition", str(record.partition).encode()),
            ("dlq.source.offset", str(record.offset).encode()),
            *omitted,
        ]
        then: tuple[Outgoing, ...] = ()
        if self._ledger is not None:  # recorded after the dead letter, like ``done`` after an outcome
            where = (record.topic, record.partition)
            entry = self._ledger.dead_letter(where, record.offset, letter.reason.value)
            then = (Outgoing(entry.topic, entry.key, entry.value, partition=entry.partition),)
        return Outgoing(self._dlq_topic, key, value, headers, dead_letter=letter, then=then)


def _monotonic(command: Command, record: Incoming, runtime: TargetRuntime) -> float | None:
    """The command's deadline on the monotonic clock (what the executor waits against)."""
    expires_in = expires_in_s(command, record.record_time, runtime.settings.max_age_s)
    return None if expires_in is None else time.monotonic() + expires_in


def _log_outcome(data: OutcomeData) -> None:
    if not log.isEnabledFor(logging.INFO):
        return  # the extra fields are not even built
    log.info(
        "outcome %s %s",
        data.command_id,
        data.status.value,
        extra={
            "command_id": data.command_id,
            "target": data.target,
            "operation": data.operation,
            "status": data.status.value,
            "duration_ms": data.duration_ms,
            "error_kind": data.error.kind.value if data.error else None,
            "schema_id": data.schema_id,
        },
    )


def max_key_bytes(max_request_size: int) -> int:
    """The longest command key every record that copies it can carry: the outcome, the lifecycle
    events, and the tracked entry, which holds it in base64 (4 bytes per 3)."""
    return (max_request_size - DLQ_HEADROOM_BYTES) * 3 // 4


def key_too_large(size: int, limit: int) -> DeadLetter:
    detail = f"the Kafka key is {size} bytes, limit is {limit}: no outcome could carry it"
    detail += "; not executed; the dead letter drops the key"
    return DeadLetter(DeadLetterReason.KEY_TOO_LARGE, detail)
