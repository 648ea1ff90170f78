"""``--tracing-ab ROUNDS``: one scenario with tracing off and on, alternating, in the same run.

Variants, each a fresh bridge process over fresh topics:

- ``off``: the default configuration (``observability.tracing.enabled: false``);
- ``on``: tracing enabled, every span exported over OTLP/HTTP to a receiver in the benchmark process
  (it decodes each export, so it also costs the machine what a local collector would);
- ``sampled`` (with ``--ab-sample-ratio R``): tracing enabled with ``sample_ratio: R``;
- ``before`` (with ``--ab-before-cmd CMD``): another build started with ``CMD run --config ...``, e.g.
  the commit before tracing existed, to show what tracing costs when it is off.

``--ab-variants off,before`` runs only the variants named. The order of the variants rotates every
round so that none always runs first. Ratios compare medians.
"""

from __future__ import annotations

import statistics
from typing import Any

from bench.stats import Row, Target
from bench.workload import Latency, Shape
from bridge.local.otlp import OtlpReceiver


def median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def cpu_per_1000(row: Row) -> float | None:
    return row.cpu_s * 1000 / row.commands if row.cpu_s is not None and row.commands else None


def variants(args: Any, receiver: OtlpReceiver) -> list[tuple[str, tuple[str, ...], dict[str, Any]]]:
    """(name, bridge command, observability overrides)."""
    own = tuple(args.bridge_cmd)
    found = [
        ("off", own, {}),
        ("on", own, {"tracing": {"enabled": True, "endpoint": receiver.url}}),
    ]
    if args.ab_sample_ratio is not None:
        sampled = {"enabled": True, "endpoint": receiver.url, "sample_ratio": args.ab_sample_ratio}
        found.append(("sampled", own, {"tracing": sampled}))
    if args.ab_before_cmd:
        found.append(("before", tuple(args.ab_before_cmd), {}))
    wanted = set(args.ab_variants.split(",")) if args.ab_variants else None
    return [variant for variant in found if wanted is None or variant[0] in wanted]


async def tracing_ab(bench: Any, report: Any, args: Any, scenario: Any) -> None:
    """``scenario`` is :func:`bench.run.scenario` (passed in to keep the import one-way)."""
    shape = Shape(args.commands, args.keys, args.partitions)
    latency = Latency(args.latency_ms, args.latency_distribution)
    receiver = OtlpReceiver()
    await receiver.start()
    rows: dict[str, list[Row]] = {}
    base_overrides = dict(bench.bridge_overrides)
    try:
        chosen = variants(args, receiver)
        for round_no in range(args.tracing_ab):
            shift = round_no % len(chosen)
            for name, command, observability in chosen[shift:] + chosen[:shift]:
                bench.bridge_cmd = command
                bench.bridge_overrides = {**base_overrides, "observability": observability}
                spans_before = len(receiver.spans)
                label = f"ab-{name}-{round_no + 1}"
                row = await scenario(
                    bench, report, label, shape, latency, args.in_flight, args, baselines_too=False
                )
                row.extra["spans_received"] = len(receiver.spans) - spans_before
                rows.setdefault(name, []).append(row)
    finally:
        await receiver.stop()
    report.targets += summary(rows)


def summary(rows: dict[str, list[Row]]) -> list[Target]:
    """Median commands/s and CPU per 1,000 commands of each variant, as ratios (informational)."""
    rate = {name: median([r.rate for r in runs]) for name, runs in rows.items()}
    cpu = {name: median([cpu_per_1000(r) for r in runs]) for name, runs in rows.items()}
    spans = {name: median([r.extra.get("spans_received") for r in runs]) for name, runs in rows.items()}
    for name in rows:
        print(
            f"[tracing-ab] {name}: median {rate[name] or 0:,.1f} commands/s, "
            f"{cpu[name] or 0:.3f} CPU-s per 1,000 commands, spans exported {spans[name] or 0:,.0f} per run",
            flush=True,
        )
    targets = []
    if "on" in rows:
        targets += [
            Target("tracing-ab", "commands/s on / off", _ratio(rate, "on", "off"), 0.80, at_least=True),
            Target("tracing-ab", "CPU per command on / off", _ratio(cpu, "on", "off"), 1.50, at_least=False),
        ]
    if "sampled" in rows:
        targets.append(
            Target(
                "tracing-ab", "commands/s sampled / off", _ratio(rate, "sampled", "off"), 0.90, at_least=True
            )
        )
    if "before" in rows:
        targets += [
            Target(
                "tracing-ab", "commands/s off / before", _ratio(rate, "off", "before"), 0.95, at_least=True
            ),
            Target(
                "tracing-ab",
                "CPU per command off / before",
                _ratio(cpu, "off", "before"),
                1.05,
                at_least=False,
            ),
        ]
    return targets


def _ratio(values: dict[str, float | None], a: str, b: str) -> float | None:
    top, bottom = values.get(a), values.get(b)
    return top / bottom if top is not None and bottom else None
