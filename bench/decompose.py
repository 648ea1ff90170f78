"""Where a command's end-to-end time goes, and whether per-key order held. Pure.

Every instant is ``time.time()`` of one machine (the benchmark, the bridge and the peers run on it):

    sent ──fetch wait──> fetched ──key wait──> started ──provider──┬─own─> outcome sent ──outcome──> read
    (command record       (bridge.timing       (bridge.timing      │      (outcome record      (benchmark's
     timestamp)            header)              header)       duration_ms   timestamp)          consumer)

- fetch wait: broker hold, fetch round trips and the bridge's loop until its fetch returned the record;
- key wait: queued behind an earlier command of its key, or for the event loop to run it;
- provider: the outcome's ``duration_ms`` (parse to result: mostly the HTTP call);
- own: from the result to the outcome handed to the producer (outcome encoding, log line, loop wait);
- outcome: the producer's linger, the produce round trip and the benchmark consumer's fetch.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import pairwise

from bench.stats import PHASE_HEADER as PHASES
from bench.stats import percentile
from bench.workload import Arrival

ORDER_SLACK_MS = 0.1  # the header's instants are rounded to 0.1 ms; record timestamps truncated to 1 ms


def phases(sent_s: float, arrival: Arrival) -> tuple[float, ...] | None:
    """The five phases of one command in ms (they add up to its e2e); None without the header."""
    if arrival.fetched_ms is None or arrival.started_ms is None:
        return None
    return (
        arrival.fetched_ms - sent_s * 1000,
        arrival.started_ms - arrival.fetched_ms,
        arrival.duration_ms,
        arrival.sent_ms - arrival.started_ms - arrival.duration_ms,
        arrival.at * 1000 - arrival.sent_ms,
    )


def breakdown(sent: Mapping[str, float], firsts: Mapping[str, Arrival]) -> dict[str, list[float]]:
    """Phase name -> [p50, p99] in ms over every command that has the timing header."""
    rows = [p for cid, a in firsts.items() if cid in sent and (p := phases(sent[cid], a)) is not None]
    if not rows:
        return {}
    columns = zip(*rows, strict=True)
    return {
        name: [round(percentile(col, q) or 0.0, 2) for q in (0.5, 0.99)]
        for name, col in zip(PHASES, columns, strict=True)
    }


def command_index(command_id: str) -> int:
    """``"i-50ms-17"`` -> 17: commands of one key were sent in index order."""
    return int(command_id.rsplit("-", 1)[1])


def order_violations(firsts: Mapping[str, Arrival]) -> int | None:
    """Commands of a key that started before the previous command of that key sent its outcome.

    An outcome without the timing header (a parked command's, say) leaves its pairs unjudged, not
    the whole run; None when no pair could be judged."""
    by_key: dict[bytes, list[tuple[int, Arrival]]] = {}
    for cid, arrival in firsts.items():
        if arrival.key is not None:
            by_key.setdefault(arrival.key, []).append((command_index(cid), arrival))
    violations, judged = 0, 0
    for items in by_key.values():
        items.sort(key=lambda item: item[0])
        for (_, before), (_, after) in pairwise(items):
            if after.started_ms is None:
                continue
            judged += 1
            violations += after.started_ms < before.sent_ms - ORDER_SLACK_MS
    return violations if judged else None
