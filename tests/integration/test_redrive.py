"""``bridge dlq replay`` and ``bridge redrive`` on the real broker, with a real bridge and the sandbox."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from aiokafka import TopicPartition

from bridge.messages.provenance import REDRIVE, REPLAY_COUNT, REPLAY_FROM
from bridge.redrive import kafka
from bridge.redrive.dlq import ReplayOptions, replay_dead_letters
from bridge.redrive.outcomes import RedriveOptions, redrive
from bridge.redrive.report import Report
from bridge.redrive.select import DeadLetterFilter, OutcomeFilter, TimeRange
from bridge.sandbox import workfloo as workfloo_sandbox
from tests.integration.conftest import Stack, by_command, workfloo_command, zuora_command
from tests.integration.test_cli import bridge_cli

pytestmark = pytest.mark.integration
# These tests name dead letters by their offsets; a transaction's commit marker takes an offset too, so they
# run without transactions wherever the broker has them (the exactly-once tests cover those).
CONSECUTIVE_OFFSETS = {"transactions": "off"}


def uid(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6]}"


def group() -> str:
    return f"replay-{uuid.uuid4().hex[:8]}"


async def records(stack: Stack, topic: str) -> list[Any]:
    """Every record now in ``topic`` (up to the fetch high watermark)."""
    async with kafka.open_consumer(stack.settings.kafka) as consumer:
        partitions = await kafka.assign(consumer, [topic], resume=False)
        return [r async for r in kafka.read_to_end(consumer, partitions)]


async def high_watermarks(stack: Stack) -> dict[str, int]:
    t = stack.settings.topics
    names = [t.run_commands, t.control_commands, t.run_outcomes, t.control_outcomes, t.dead_letter]
    return {name: len(await records(stack, name)) for name in names}


async def committed(stack: Stack, group_id: str) -> int | None:
    async with kafka.open_consumer(stack.settings.kafka, group_id) as consumer:
        tp = TopicPartition(stack.settings.topics.dead_letter, 0)
        await kafka.assign(consumer, [tp.topic], resume=False)
        position: int | None = await consumer.committed(tp)
        return position


def headers(record: Any) -> dict[str, str]:
    return {k: v.decode() for k, v in record.headers}


async def dead_letter(stack: Stack, count: int) -> list[Any]:
    """Send ``count`` unreadable records through a running bridge; their dead letters."""
    await stack.send(*[(f"junk-{i}".encode(), b"not json %d" % i) for i in range(count)])
    found = await stack.collect(count)
    assert len(found) == count and all(r.topic == stack.settings.topics.dead_letter for r in found)
    return found


def replay(group_id: str, **options: Any) -> tuple[ReplayOptions, Report]:
    return ReplayOptions(group_id=group_id, **options), Report("dlq", options.get("dry_run", False))


async def test_replay_after_the_fix_yields_exactly_one_new_outcome_per_record(stack: Stack) -> None:
    stack.configure(engine={"max_message_bytes": 1024})
    bridge = await stack.start_bridge()
    big = [uid("big"), uid("big")]
    small = uid("small")
    padded = [{**workfloo_command(cid), "form": {"note": "x" * 2000}} for cid in big]
    await stack.send(*[(cid.encode(), doc) for cid, doc in zip(big, padded, strict=True)])
    await stack.send((small.encode(), workfloo_command(small)))
    first = await stack.collect(3)
    assert sorted(headers(r)["dlq.reason"] for r in first if not isinstance(r, dict)) == ["too_large"] * 2
    await stack.stop_bridge(bridge)

    stack.configure(engine={"max_message_bytes": 983_040})  # the fix: a limit that fits these commands
    await stack.start_bridge()
    options, report = replay(group())
    await replay_dead_letters(stack.settings, options, report)
    assert dict(report.results) == {"replayed": 2}
    again = await stack.collect(2)
    assert sorted(by_command(again)) == sorted(big) and len(again) == 2
    assert await stack.collect(1, within_s=3) == []  # no duplicate (waits out the window)
    assert {o["status"] for o in by_command(again).values()} == {"queued"}
    replayed = [
        r for r in await records(stack, stack.settings.topics.run_commands) if REPLAY_FROM in headers(r)
    ]
    dlq = stack.settings.topics.dead_letter  # offsets 0 and 1: the broker's numbering of a new topic
    assert sorted(headers(r)[REPLAY_FROM] for r in replayed) == [f"{dlq}/0/0", f"{dlq}/0/1"]
    assert {headers(r)[REPLAY_COUNT] for r in replayed} == {"1"}
    assert not any(k.startswith("dlq.") or k == REDRIVE for r in replayed for k in headers(r))


def topics_config(stack: Stack, tmp_path: Any) -> str:
    config = tmp_path / "topics.yaml"
    config.write_text(
        "topics:\n" + "".join(f"  {k}: {v}\n" for k, v in stack.settings.topics.model_dump().items())
    )
    return str(config)


async def test_list_filters_and_show_prints_headers_and_value(stack: Stack, tmp_path) -> None:
    stack.configure(kafka=CONSECUTIVE_OFFSETS)
    await stack.start_bridge()
    async with kafka.open_producer(stack.settings.kafka) as producer:
        upstream = [("authorization", b"Bearer upstream-token-0123456789")]
        await producer.send_and_wait(stack.settings.topics.run_commands, b"not json 0", headers=upstream)
    await stack.collect(1)
    await stack.send((b"k", b""))
    await stack.collect(1)
    where = ("--config", topics_config(stack, tmp_path), "--bootstrap", stack.broker.bootstrap)
    code, out, err = await bridge_cli("dlq", "list", "--reason", "empty_value", *where)
    assert code == 0, err
    [line] = out.splitlines()
    assert line.startswith("0/1") and "empty_value" in line and "replays=0" in line
    code, out, err = await bridge_cli("dlq", "show", "0", *where)
    assert code == 0, err
    assert "  dlq.reason: invalid_json" in out and out.endswith("value\nnot json 0\n")
    assert "  authorization: ***" in out and "upstream-token" not in out
    code, _, err = await bridge_cli("dlq", "show", "9", *where)
    assert code == 1 and "no dead letter" in err


async def test_dry_run_changes_no_topic_and_no_offset_and_prints_a_histogram(stack: Stack, tmp_path) -> None:
    await stack.start_bridge()
    await dead_letter(stack, 3)
    await stack.send((b"k", b""))  # empty value: a second reason
    await stack.collect(1)
    before = await high_watermarks(stack)
    group_id = group()
    code, out, err = await bridge_cli(
        "dlq", "replay", "--dry-run", "--group", group_id, "--config", topics_config(stack, tmp_path),
        "--bootstrap", stack.broker.bootstrap, "--metrics-file", str(tmp_path / "replay.prom"),
    )  # fmt: skip
    assert code == 0, err
    assert "dlq (dry run): 4 would_replay" in out
    assert "  invalid_json             3\n  empty_value              1" in out
    assert await high_watermarks(stack) == before
    assert await committed(stack, group_id) is None
    metrics = (tmp_path / "replay.prom").read_text()
    assert 'bridge_replays_total{kind="dlq",result="would_replay"} 4.0' in metrics
    assert err.count('"action":"would_replay"') == 4  # one JSON log line per record


async def test_the_replay_count_limit_quarantines_a_record_that_keeps_failing(stack: Stack) -> None:
    stack.configure(kafka=CONSECUTIVE_OFFSETS)
    await stack.start_bridge()
    await dead_letter(stack, 1)
    group_id = group()
    for attempt in (1, 2):
        options, report = replay(group_id, limit=2)
        await replay_dead_letters(stack.settings, options, report)
        assert dict(report.results) == {"replayed": 1}  # only the dead letter the last run caused
        [again] = await stack.collect(1)
        assert headers(again)[REPLAY_COUNT] == str(attempt) and headers(again)["dlq.reason"] == "invalid_json"
    before = await high_watermarks(stack)
    options, report = replay(group_id, limit=2)
    await replay_dead_letters(stack.settings, options, report)
    assert dict(report.results) == {"quarantined": 1}
    assert await high_watermarks(stack) == before
    assert await committed(stack, group_id) == 3  # passed over: a later run does not report it again


async def test_a_second_run_continues_where_the_first_stopped(stack: Stack) -> None:
    bridge = await stack.start_bridge()
    await dead_letter(stack, 5)
    await stack.stop_bridge(bridge)  # nothing consumes the replays: the command topic shows each one
    group_id = group()
    options, first = replay(group_id, max_replays=2)
    await replay_dead_letters(stack.settings, options, first)
    assert await committed(stack, group_id) == 2
    options, second = replay(group_id)
    await replay_dead_letters(stack.settings, options, second)
    assert (dict(first.results), dict(second.results)) == ({"replayed": 2}, {"replayed": 3})
    dlq = stack.settings.topics.dead_letter
    commands = [headers(r) for r in await records(stack, stack.settings.topics.run_commands)]
    put_back = sorted(h[REPLAY_FROM] for h in commands if REPLAY_FROM in h)
    assert put_back == [f"{dlq}/0/{offset}" for offset in range(5)]  # each exactly once


async def test_filters_select_by_reason(stack: Stack) -> None:
    bridge = await stack.start_bridge()
    await dead_letter(stack, 2)
    await stack.send((b"k", b""))
    await stack.collect(1)
    await stack.stop_bridge(bridge)
    options, report = replay(group(), selection=DeadLetterFilter(reasons=frozenset({"empty_value"})))
    await replay_dead_letters(stack.settings, options, report)
    assert dict(report.results) == {"replayed": 1} and report.reasons == ["empty_value"]


async def test_redrive_resubmits_only_the_matching_outcomes(stack: Stack) -> None:
    await stack.start_bridge()
    since_ms = int(time.time() * 1000)
    failed, recovered, other_target, ok = uid("failed"), uid("recovered"), uid("bad-key"), uid("zuora-ok")
    await stack.fault("workfloo", {"fail_next": {"count": 100, "status": 503}})
    await stack.send(
        (failed.encode(), workfloo_command(failed)),
        (recovered.encode(), workfloo_command(recovered)),
        (other_target.encode(), workfloo_command(other_target, target=workfloo_sandbox.LOCAL_BAD_KEY_TARGET)),
        (ok.encode(), zuora_command(ok)),
    )
    first = by_command(await stack.collect(4))
    assert [first[c]["status"] for c in (failed, recovered, other_target, ok)] == ["error"] * 3 + ["queued"]
    await stack.fault("workfloo", {})  # the fix: the provider is back
    # upstream re-ran this one itself, deliberately (a plain re-send would be absorbed by the ledger)
    await stack.send((recovered.encode(), workfloo_command(recovered)), headers=[(REDRIVE, b"1")])
    assert by_command(await stack.collect(1))[recovered]["status"] == "queued"

    selection = OutcomeFilter(
        "error", frozenset({workfloo_sandbox.LOCAL_TARGET}), TimeRange(since_ms=since_ms)
    )
    report = await redrive(
        stack.settings, RedriveOptions(selection, group_id=group()), Report("redrive", False)
    )
    assert dict(report.results) == {"replayed": 1}
    again = await stack.collect(1)
    assert [(o["command_id"], o["status"]) for o in by_command(again).values()] == [(failed, "queued")]
    assert await stack.collect(1, within_s=3) == []  # nothing else re-submitted (waits out the window)
    [put_back] = [  # what the tool put back carries provenance (the upstream re-run above does not)
        r for r in await records(stack, stack.settings.topics.run_commands) if REPLAY_FROM in headers(r)
    ]
    meta = headers(put_back)
    assert (put_back.key, meta[REDRIVE], meta[REPLAY_COUNT]) == (failed.encode(), "1", "1")
    assert meta[REPLAY_FROM].startswith(f"{stack.settings.topics.run_outcomes}/")


async def test_redrive_dry_run_publishes_nothing_and_a_second_run_skips_what_the_first_did(
    stack: Stack,
) -> None:
    await stack.start_bridge()
    failed = uid("failed")
    await stack.fault("workfloo", {"fail_next": {"count": 100, "status": 503}})
    await stack.send((failed.encode(), workfloo_command(failed)))
    await stack.collect(1)
    await stack.fault("workfloo", {})
    group_id, selection = group(), OutcomeFilter("error")
    before = await high_watermarks(stack)
    dry = await redrive(
        stack.settings, RedriveOptions(selection, dry_run=True, group_id=group_id), Report("redrive", True)
    )
    assert dict(dry.results) == {"would_replay": 1} and await high_watermarks(stack) == before
    real = await redrive(
        stack.settings, RedriveOptions(selection, group_id=group_id), Report("redrive", False)
    )
    assert dict(real.results) == {"replayed": 1}
    assert by_command(await stack.collect(1))[failed]["status"] == "queued"
    rerun = await redrive(
        stack.settings, RedriveOptions(selection, group_id=group_id), Report("redrive", False)
    )
    assert dict(rerun.results) == {}  # the first run's position is committed; the new outcome is a success
