"""Throughput and latency benchmark of the bridge against plain baselines (see bench/README.md)."""
