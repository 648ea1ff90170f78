"""One command for the benchmark: ``python -m bench.run`` (see bench/README.md).

    python -m bench.run --commands 5000 --keys 1000 --partitions 4 --latency-ms 50 --in-flight 1000
    python -m bench.run --suite     # the issue's four targets
    python -m bench.run --smoke     # correctness only: exactly one outcome per command; exit 1 otherwise
    python -m bench.run --broker both --broker-rounds 2 --commands 5000 --latency-ms 50   # Tansu vs Kafka

Speed never changes the exit code; only the smoke's correctness check and a crash do.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import signal
import statistics
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench import baselines, suite_results
from bench.brokers import (
    broker_order,
    comparison,
    comparison_table,
    tagged_checks,
    tagged_rows,
    tagged_targets,
)
from bench.goals import GUARANTEES, OWN_P99_MS, Cost, guarantee_costs, guarantee_table, throughput_goals
from bench.ledger import on_vs_off
from bench.profile import render, summarise
from bench.scenarios import DEFAULT, Bench, BridgeRun, Check, Variant, started
from bench.stats import Row, Target, phase_table, ratio, ratios, table, write_json
from bench.tracing_ab import tracing_ab
from bench.workload import Latency, Shape
from bridge.local.kafka_broker import kafka_available

NOISY = 0.10
"""Share of the machine used by other processes above which a bridge run is flagged as disturbed."""


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    checks: dict[str, Check] = field(default_factory=dict)
    costs: list[Cost] = field(default_factory=list)
    """the suite's cost of each guarantee (bench/goals.py)"""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--suite", action="store_true", help="run the issue's scenarios (i)-(iv)")
    mode.add_argument("--smoke", action="store_true", help="quick correctness check; exit 1 on failure")
    mode.add_argument(
        "--tracing-ab",
        type=int,
        default=0,
        metavar="ROUNDS",
        help="tracing off vs on, alternating ROUNDS times",
    )
    mode.add_argument("--ledger", action="store_true", help="the command ledger on vs off, in one run")
    p.add_argument(
        "--broker",
        choices=["tansu", "kafka", "both"],
        default="tansu",
        help="the embedded Tansu, Apache Kafka (make kafka-jars), or both in turn in one run",
    )
    p.add_argument("--broker-rounds", type=int, default=1, help="--broker both: tansu, kafka rounds")
    p.add_argument(
        "--warmup",
        type=int,
        default=0,
        metavar="COMMANDS",
        help="first run this many commands through a bridge, unmeasured (a fresh broker's JIT, caches)",
    )
    p.add_argument("--commands", type=int, default=5000, help="commands in the scenario (N)")
    p.add_argument("--keys", type=int, default=1000, help="distinct Kafka keys (K)")
    p.add_argument("--partitions", type=int, default=4, help="partitions of the command topic (P)")
    p.add_argument("--latency-ms", type=float, default=50.0, help="provider latency set in the sandbox")
    p.add_argument("--latency-distribution", choices=["fixed", "uniform", "exponential"], default="fixed")
    p.add_argument("--in-flight", type=int, default=1000, help="engine.max_in_flight of the bridge")
    p.add_argument("--rate", type=float, default=None, help="feed at this rate (commands/s), no preload")
    p.add_argument("--no-baselines", action="store_true", help="run the bridge only")
    p.add_argument("--peers", action="store_true", help="also FastStream (and with --rate the Kafka floor)")
    p.add_argument("--seq-commands", type=int, default=100, help="bound of the sequential baseline")
    p.add_argument("--seq-seconds", type=float, default=15.0, help="time bound of the sequential baseline")
    p.add_argument("--ledger-rounds", type=int, default=2, help="--ledger: alternating off/on rounds")
    p.add_argument(
        "--ledger-rate",
        type=float,
        default=None,
        help="--ledger: the paced feed's commands/s (default: half the ledger-off throughput); fixed, "
        "two runs' latencies compare",
    )
    p.add_argument("--paced-seconds", type=float, default=10.0, help="suite (iii): how long to feed")
    p.add_argument("--timeout", type=float, default=300.0, help="give up on a scenario after this long")
    p.add_argument("--bridge-log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="bridge configuration override, YAML value (e.g. kafka.linger_ms=0, ledger.store.path=/tmp/s)",
    )
    p.add_argument(
        "--bridge-cmd",
        type=shlex.split,
        default=[],
        help='start the bridge with this command instead of "python -m bridge" (e.g. a patched build)',
    )
    p.add_argument(
        "--ab-before-cmd",
        type=shlex.split,
        default=[],
        help="--tracing-ab: also run this build (e.g. one without tracing) as the 'before' variant",
    )
    p.add_argument(
        "--ab-sample-ratio",
        type=float,
        default=None,
        help="--tracing-ab: also run tracing on with this observability.tracing.sample_ratio",
    )
    p.add_argument("--ab-variants", default="", help="--tracing-ab: only these variants, e.g. off,before")
    p.add_argument(
        "--before-cmd",
        type=shlex.split,
        default=[],
        help="also run this bridge build (e.g. the code before a change) in every scenario, A/B/A/B",
    )
    p.add_argument("--rounds", type=int, default=2, help="A/B rounds when variants are compared")
    p.add_argument("--profile", type=Path, default=None, help="py-spy each bridge run into this folder")
    p.add_argument("--keep-logs", type=Path, default=None, help="write process logs here (default: temp)")
    return p.parse_args(argv)


def bridge_exit(rows: Sequence[Row], label: str) -> str:
    """What a scenario's bridge said when it ended with a non-zero exit code, or nothing."""
    said = ""
    for row in rows:
        code = row.extra.get("bridge_exit_code")
        if row.scenario == label.split("/", 1)[0] and code not in (0, None):
            tail = str(row.extra.get("bridge_log_tail", "")).rstrip()
            said += f"  the bridge exited with code {code}; its last lines:\n"
            said += "".join(f"    {line}\n" for line in tail.splitlines())
    return said


def overrides(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``["kafka.linger_ms=0", "ledger.store.path=/tmp/s"]`` -> ``{"kafka": {"linger_ms": 0}, "ledger":
    {"store": {"path": "/tmp/s"}}}`` (values parsed as YAML; a dotted field is a nested one)."""
    found: dict[str, dict[str, Any]] = {}
    for item in items:
        name, sep, value = item.partition("=")
        section, *fields = name.split(".")
        if not sep or not section or not fields or not all(fields):
            raise SystemExit(f"--set wants SECTION.FIELD=VALUE, got {item!r}")
        nested = found.setdefault(section, {})
        for field_name in fields[:-1]:
            nested = nested.setdefault(field_name, {})
        nested[fields[-1]] = yaml.safe_load(value)
    return found


async def with_baselines(
    bench: Bench, report: Report, label: str, shape: Shape, latency: Latency, in_flight: int, args: Any
) -> None:
    """The sequential loop, the HTTP-only and the Kafka-only ceilings over the same data shape."""
    world = bench.world
    # The sequential loop is bounded: ~18 commands/s at 50 ms, so a full N would take minutes.
    seq_count = args.seq_commands if latency.ms > 0 else max(args.seq_commands, 500)
    seq_shape = Shape(min(shape.commands, seq_count), shape.keys, shape.partitions)
    report.rows.append(await baselines.sequential(world, label, seq_shape, latency, args.seq_seconds))
    report.rows.append(await baselines.http_only(world, label, shape.commands, in_flight, latency))
    report.rows.append(await baselines.kafka_only(world, label, shape, args.timeout))


async def peer(
    bench: Bench, report: Report, label: str, variant: Variant, shape: Shape, latency: Latency, args: Any
) -> Row:
    """A ``bench.peers`` process doing the bridge's job over fresh topics (see bench/peers.py)."""
    run = BridgeRun(bench, label, shape, latency, 1000, args.timeout, variant=variant)
    row, check = await run.preloaded()
    report.rows.append(row)
    report.checks[f"{label}/{variant.kind}"] = check
    _said(label, variant, 1, row, check)
    return row


def _said(label: str, variant: Variant, number: int, row: Row, check: Check) -> None:
    row.extra["check"] = asdict(check)
    print(
        f"[{label}] {variant.kind} #{number}: {row.rate:,.1f} commands/s; added p50/p99 "
        f"{row.added_p50_ms or 0:,.1f} / {row.added_p99_ms or 0:,.1f} ms; lost {check.missing}, "
        f"doubled {check.duplicates}, key-order violations {row.extra.get('order_violations')}; "
        f"{check.statuses}",
        flush=True,
    )


async def faststreams(
    bench: Bench, report: Report, label: str, shape: Shape, latency: Latency, args: Any
) -> None:
    """FastStream with its defaults (one message at a time: bounded like the sequential loop), with
    ``max_workers`` = the bridge's in-flight, and with one consumer per partition committing after."""
    one = args.seq_commands if latency.ms > 0 else max(args.seq_commands, 500)
    small = Shape(min(shape.commands, one), shape.keys, shape.partitions)
    await peer(bench, report, label, Variant("faststream", peer=("faststream",)), small, latency, args)
    await peer(bench, report, label, fast_workers(args), shape, latency, args)
    small = Shape(min(shape.commands, one * shape.partitions), shape.keys, shape.partitions)
    argv = ("faststream", "--workers", str(shape.partitions), "--ack-after")
    await peer(bench, report, label, Variant("faststream-partitions", peer=argv), small, latency, args)


def fast_workers(args: Any) -> Variant:
    return Variant("faststream-workers", peer=("faststream", "--workers", str(args.in_flight)))


FLOOR = Variant("kafka-floor", peer=("echo",))
UNTIMED = Variant("bridge", timing=False)
"""The bridge without the timing header: throughput and CPU comparable with a build from before it."""


async def scenario(
    bench: Bench,
    report: Report,
    label: str,
    shape: Shape,
    latency: Latency,
    in_flight: int,
    args: Any,
    *,
    rate: float | None = None,
    baselines_too: bool = True,
    watch_in_flight: bool = False,
    variants: Sequence[Variant] = (),
    base: Variant = DEFAULT,
) -> Row:
    """The bridge; with ``variants``, ``--rounds`` rounds of the bridge and each variant in turn
    (A/B/A/B), so that the machine's changing load hits them alike. Returns the bridge's last row."""
    rounds = args.rounds if variants else 1
    row = None
    for number in range(1, rounds + 1):
        for variant in (base, *variants):
            run = BridgeRun(bench, label, shape, latency, in_flight, args.timeout, watch_in_flight)
            run.variant = variant
            run.profile_dir = args.profile if variant is base and number == 1 else None
            got, check = await (run.paced(rate) if rate else run.preloaded())
            got.extra["round"] = number
            report.rows.append(got)
            report.checks[f"{label}/{variant.kind}#{number}"] = check
            _said(label, variant, number, got, check)
            row = got if variant is base else row
    assert row is not None
    if args.profile:
        summary = summarise((args.profile / f"{label}.txt").read_text())
        print(render(summary, 15), flush=True)
    if baselines_too:
        await with_baselines(bench, report, label, shape, latency, in_flight, args)
    return row


def compared(args: Any, presets: bool = False) -> list[Variant]:
    """What ``--before-cmd`` (and for the latency scenario the throughput preset and the settings'
    defaults, ``fetch_max_wait_ms`` 50 and ``linger_ms`` 5) add to a scenario."""
    # the bench's own kafka values (bridge.local.stack) are the latency preset's: no row of its own
    found = [Variant("bridge[throughput]", preset="throughput")] if presets else []
    if presets:
        found.append(Variant("bridge[defaults]", field_defaults=True))
    if args.before_cmd:
        found.append(Variant("bridge[before]", cmd=tuple(args.before_cmd), timing=False))
    return found


async def suite(bench: Bench, report: Report, args: Any) -> None:
    i = "i-50ms"
    await scenario(
        bench,
        report,
        i,
        Shape(5000, 1000, 4),
        Latency(50),
        1000,
        args,
        variants=[*GUARANTEES, *compared(args)],
        base=UNTIMED,
    )
    report.costs = guarantee_costs(report.rows, i)
    print(f"\n[{i}] the cost of each guarantee (medians of the rounds)\n{guarantee_table(report.costs)}")
    await faststreams(bench, report, i, Shape(5000, 1000, 4), Latency(50), args)
    rel = ratios(report.rows, i)
    report.targets += [
        Target(i, "bridge / sequential", rel["x_sequential"], 40, at_least=True),
        Target(i, "bridge / HTTP-only ceiling", rel["of_http_only"], 0.70, at_least=True),
        Target(i, "bridge / FastStream max_workers", rel.get("x_faststream-workers"), 1.0, at_least=True),
    ]
    ii = "ii-0ms"
    top = await scenario(
        bench,
        report,
        ii,
        Shape(10000, 1000, 4),
        Latency(0),
        1000,
        args,
        variants=compared(args),
        base=UNTIMED,
    )
    top_rate = _median(report.rows, ii, "bridge", "rate") or top.rate
    report.targets += throughput_goals(report.rows, i, ii)
    await paced_latency(bench, report, "iii-paced-50%", max(10.0, top_rate / 2), args)
    iv = "iv-5000-held"
    held = await scenario(
        bench,
        report,
        iv,
        Shape(5000, 1000, 4),
        Latency(2000),
        5000,
        args,
        baselines_too=False,
        watch_in_flight=True,
    )
    report.targets.append(Target(iv, "peak RSS MB", held.peak_rss_mb, 200, at_least=False))
    peak = held.extra.get("peak_in_flight")
    report.targets.append(Target(iv, "commands held at once (scraped)", peak, 5000, at_least=True))


async def paced_latency(bench: Bench, report: Report, label: str, rate: float, args: Any) -> None:
    """The bridge, the Kafka-only floor (same broker, same client settings) and FastStream with
    max_workers, each fed at ``rate`` with a 0 ms provider, one after the other."""
    shape = Shape(int(rate * args.paced_seconds), 1000, 4)
    await scenario(
        bench,
        report,
        label,
        shape,
        Latency(0),
        1000,
        args,
        rate=rate,
        baselines_too=False,
        variants=[*compared(args, presets=True), FLOOR, fast_workers(args)],
    )
    floor = _median(report.rows, label, FLOOR.kind, "e2e_p99_ms")
    fast = _median(report.rows, label, fast_workers(args).kind, "added_p99_ms")
    for kind in ("bridge",):
        added = _median(report.rows, label, kind, "added_p99_ms")
        report.targets += [
            Target(label, f"{kind} added p99 ms (median of rounds)", added, 10, at_least=False),
            Target(
                label,
                f"goal: {kind} own added p99 ms (- floor e2e p99)",
                _minus(added, floor),
                OWN_P99_MS,
                at_least=False,
            ),
            Target(
                label, f"{kind} added p99 / FastStream max_workers", ratio(added, fast), 1, at_least=False
            ),
        ]


def _median(rows: Sequence[Row], scenario: str, kind: str, attr: str) -> float | None:
    values = [
        v for r in rows if r.scenario == scenario and r.kind == kind and (v := getattr(r, attr)) is not None
    ]
    return statistics.median(values) if values else None


def _minus(a: float | None, b: float | None) -> float | None:
    return a - b if a is not None and b is not None else None


async def single(bench: Bench, report: Report, args: Any) -> None:
    shape = Shape(args.commands, args.keys, args.partitions)
    latency = Latency(args.latency_ms, args.latency_distribution)
    label = "paced" if args.rate else "custom"
    if args.peers and args.rate:
        await paced_latency(bench, report, label, args.rate, args)
        return
    await scenario(
        bench,
        report,
        label,
        shape,
        latency,
        args.in_flight,
        args,
        rate=args.rate,
        baselines_too=not args.no_baselines and not args.rate,
    )
    if args.peers:
        await faststreams(bench, report, label, shape, latency, args)


async def smoke(bench: Bench, report: Report, args: Any) -> None:
    """A few hundred commands through the bridge, plus a quick sequential check of the harness."""
    args.timeout = min(args.timeout, 60.0)
    await scenario(bench, report, "smoke", Shape(300, 50, 2), Latency(1), 100, args, baselines_too=False)
    report.rows.append(
        await baselines.sequential(bench.world, "smoke", Shape(20, 20, 2), Latency(1), max_s=10)
    )


def print_report(report: Report) -> None:
    print()
    print(table(report.rows))
    phases = phase_table(report.rows)
    if phases:
        print("\nwhere the time goes (ms; bench/decompose.py)\n" + phases)
    if report.costs:
        print(
            "\nthe cost of each guarantee (i-50ms, medians of the rounds)\n" + guarantee_table(report.costs)
        )
    if report.targets:
        print()
        print("\n".join(t.line() for t in report.targets))
    both = comparison_table(comparison(report.rows))
    if both:
        print("\nKafka vs Tansu (medians over the broker rounds; k/t = Kafka / Tansu)\n" + both)
    for label, check in report.checks.items():
        if not check.ok:
            print(f"CHECK FAILED [{label}]: {check}")
            print(bridge_exit(report.rows, label), end="")
    for row in report.rows:
        share = row.extra.get("foreign_share") or 0.0
        if share > NOISY:
            print(
                f"NOTE [{row.scenario}]: processes outside the benchmark used {share:.0%} of the machine "
                f"({row.extra['foreign_cpu_s']} CPU-s) during the bridge run; its figures are disturbed"
            )


async def run(args: argparse.Namespace, workdir: Path) -> Report:
    report = Report()
    main_task = asyncio.current_task()
    assert main_task is not None
    # SIGTERM cancels the run like Ctrl-C does: every child process is stopped on the way out.
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    order = broker_order(args.broker, args.broker_rounds)
    for number, kind in enumerate(order, start=1):
        if len(order) == 1:
            await on_broker(args, workdir, kind, report)
            continue
        part = Report()
        print(f"=== {kind}, round {(number + 1) // 2} ===", flush=True)
        await on_broker(args, workdir / f"{kind}-{number}", kind, part)
        report.rows += tagged_rows(part.rows, kind, (number + 1) // 2)
        report.targets += tagged_targets(part.targets, kind)
        report.checks |= tagged_checks(part.checks, kind, (number + 1) // 2)
    return report


async def on_broker(args: argparse.Namespace, workdir: Path, kind: str, report: Report) -> None:
    """The chosen mode on one broker: its own broker, sandbox and topics."""
    await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
    async with started(workdir, kind) as bench:
        bench.bridge_log_level = args.bridge_log_level
        bench.bridge_cmd = tuple(args.bridge_cmd)
        bench.bridge_overrides = overrides(args.set)
        if args.warmup:
            shape = Shape(args.warmup, min(args.warmup, 1000), 4)
            await scenario(bench, Report(), "warmup", shape, Latency(0), 1000, args, baselines_too=False)
        if args.smoke:
            await smoke(bench, report, args)
        elif args.suite:
            await suite(bench, report, args)
        elif args.tracing_ab:
            await tracing_ab(bench, report, args, scenario)
        elif args.ledger:
            await on_vs_off(bench, report, args, scenario)
        else:
            await single(bench, report, args)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM before the event loop runs; inside it, run() cancels instead


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.broker != "tansu" and (missing := kafka_available()) is not None:
        print(f"--broker {args.broker}: {missing}", file=sys.stderr)
        return 2
    started_at = suite_results.Started.now()
    signal.signal(signal.SIGTERM, _interrupt)
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        workdir = args.keep_logs or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            report = asyncio.run(run(args, workdir))
        except (KeyboardInterrupt, asyncio.CancelledError):
            print("interrupted; every process the benchmark started has been stopped", file=sys.stderr)
            return 130
    print_report(report)
    if args.smoke:
        checks = [c for label, c in report.checks.items() if "smoke/bridge#1" in label]
        seqs = [r for r in report.rows if r.kind == "sequential"]
        ok = bool(checks) and all(c.ok and c.statuses == {"queued": c.expected} for c in checks)
        ok = ok and len(seqs) == len(checks) and all(seq.commands == 20 for seq in seqs)
        for check in checks:
            print(f"smoke: {'OK' if ok else 'FAILED'}: {check}")
        return 0 if ok else 1
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    path = write_json(settings, report.rows, report.targets)
    print(f"\nresults written to {path}")
    if args.suite:
        kept = suite_results.write(sys.argv, report.rows, report.targets, report.costs, started_at)
        print(f"suite results (kept in git; the docs quote them: python -m bench.report) written to {kept}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
