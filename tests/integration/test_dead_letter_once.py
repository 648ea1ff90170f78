"""One dead letter per record, also when the record is read again (issue 25.3), on the real broker:
a bridge dead-letters poison records and stops; a bridge in a group without committed offsets (what
a rebalance that lost the commit, or a crash before it, leaves for the records after the last commit)
reads the same records again, restores the ledger, and absorbs them: no second dead letter, and
the valid command among them is not answered twice either."""

from __future__ import annotations

import uuid

import pytest

from tests.integration.conftest import Stack, workfloo_command

pytestmark = pytest.mark.integration


@pytest.mark.timeout(180)
async def test_a_poison_record_read_again_by_the_next_bridge_is_not_dead_lettered_twice(stack: Stack) -> None:
    first = await stack.start_bridge()
    run = uuid.uuid4().hex[:6]
    topic = stack.settings.topics.run_commands
    poison = [(f"p{n}".encode(), b"{not json " + run.encode()) for n in range(6)]
    await stack.send(*poison, topic=topic)
    await stack.send((b"ok", workfloo_command(f"{run}-ok")))
    events = await stack.collect(len(poison) + 1, within_s=60)
    letters = [e for e in events if not isinstance(e, dict)]
    assert len(letters) == len(poison)
    await stack.stop_bridge(first)

    # a group without committed offsets reads every record again from the start (what a lost
    # commit leaves, for the records after the last one); the ledger is the partitions', not the group's
    second = await stack.start_bridge(
        stack.configure(kafka={"group_id": f"{stack.settings.kafka.group_id}-2"})
    )
    again = await stack.collect(len(poison) + 1, within_s=20)
    assert again == [], f"read again, answered again: {again}"
    absorbed = second.metrics.registry.get_sample_value("bridge_duplicates_total", {"reason": "dead_letter"})
    done = second.metrics.registry.get_sample_value("bridge_duplicates_total", {"reason": "done"})
    print(f"\nread again by a new group: {absorbed:.0f} dead letter(s) and {done:.0f} outcome(s) absorbed")
    assert absorbed == len(poison) and done == 1
