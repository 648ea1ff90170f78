"""bench.run's command line: configuration overrides as a person types them."""

from __future__ import annotations

import pytest

from bench.run import overrides


def test_a_field_and_a_nested_field_are_set_with_yaml_values() -> None:
    found = overrides(["kafka.linger_ms=0", "ledger.store.path=/tmp/s", "ledger.store.cache_mb=8"])
    assert found == {"kafka": {"linger_ms": 0}, "ledger": {"store": {"path": "/tmp/s", "cache_mb": 8}}}


@pytest.mark.parametrize("item", ["kafka", "kafka=1", "kafka.=1", ".linger_ms=1", "ledger..path=x"])
def test_an_override_without_a_section_and_a_field_is_refused(item: str) -> None:
    with pytest.raises(SystemExit, match=r"SECTION\.FIELD=VALUE"):
        overrides([item])
