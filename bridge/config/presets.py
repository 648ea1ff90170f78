"""Documented sets of settings that trade latency for throughput (``preset: latency | throughput``)."""

from __future__ import annotations

from typing import Any, Literal

Preset = Literal["latency", "throughput"]

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    # answer as soon as a command arrives: short broker holds on empty fetches, barely any linger
    # (5 ms and 0 measured no faster at low load and far worse tails at high load: bench/results/)
    "latency": {"kafka": {"fetch_max_wait_ms": 10, "linger_ms": 1}},
    # fewer, fuller fetch and produce requests when idle or under load, at some added latency
    "throughput": {"kafka": {"fetch_max_wait_ms": 100, "linger_ms": 10}},
}
"""Settings that trade latency for throughput. A value set explicitly wins over its preset."""


def apply_preset(raw: dict[str, Any]) -> dict[str, Any]:
    """Pure: ``raw`` with the values of its ``preset`` filled in under the explicit ones."""
    values = PRESETS.get(raw.get("preset") or "")
    if values is None:
        return raw  # no preset, or an unknown name that field validation reports
    merged = dict(raw)
    for section, defaults in values.items():
        given = merged.get(section)
        merged[section] = {**defaults, **given} if isinstance(given, dict) else given or dict(defaults)
    return merged
