"""bench.run's command line: configuration overrides as a person types them."""

from __future__ import annotations

import pytest

from bench.run import bridge_exit, overrides
from bench.stats import Row


def test_a_field_and_a_nested_field_are_set_with_yaml_values() -> None:
    found = overrides(["kafka.linger_ms=0", "ledger.store.path=/tmp/s", "ledger.store.cache_mb=8"])
    assert found == {"kafka": {"linger_ms": 0}, "ledger": {"store": {"path": "/tmp/s", "cache_mb": 8}}}


@pytest.mark.parametrize("item", ["kafka", "kafka=1", "kafka.=1", ".linger_ms=1", "ledger..path=x"])
def test_an_override_without_a_section_and_a_field_is_refused(item: str) -> None:
    with pytest.raises(SystemExit, match=r"SECTION\.FIELD=VALUE"):
        overrides([item])


def test_a_failed_check_shows_what_a_bridge_that_exited_on_its_own_said() -> None:
    said = "bridge: invalid configuration in custom.bridge.yaml:\n  - ledger.store.path: Extra inputs"
    refused = Row("custom", "bridge", 0, 1.0, 50, extra={"bridge_exit_code": 2, "bridge_log_tail": said})
    stopped = Row("other", "bridge", 10, 1.0, 50, extra={"bridge_exit_code": 0})
    assert bridge_exit([refused, stopped], "custom/bridge#1") == (
        "  the bridge exited with code 2; its last lines:\n"
        "    bridge: invalid configuration in custom.bridge.yaml:\n"
        "      - ledger.store.path: Extra inputs\n"
    )
    assert bridge_exit([refused, stopped], "other/bridge#1") == ""
