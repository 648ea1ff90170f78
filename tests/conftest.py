"""Options for the whole suite: which broker the integration tests run against (docs/brokers.md)."""

from __future__ import annotations

import os

import pytest

BROKERS = ("tansu", "kafka")
BROKER_ENV = "BRIDGE_TEST_BROKER"
STORE_ENV = "BRIDGE_TEST_LEDGER_STORE"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--broker",
        choices=BROKERS,
        default=os.environ.get(BROKER_ENV) or "tansu",
        help=f"the integration tests' broker: tansu (embedded) or kafka (default ${BROKER_ENV}, else tansu)",
    )
    parser.addoption(
        "--ledger-store",
        action="store_true",
        default=os.environ.get(STORE_ENV) == "1",
        help="every bridge the integration tests start keeps its ledger in a local disk store "
        f"(ledger.store.path), unless the test sets one (default: ${STORE_ENV}=1)",
    )


def pytest_configure(config: pytest.Config) -> None:
    if (
        config.getoption("--broker") not in BROKERS
    ):  # from the environment: choices checks the command line only
        raise pytest.UsageError(f"{BROKER_ENV} must be one of {', '.join(BROKERS)}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test marked ``only_broker("tansu")`` is about that broker's quirks: elsewhere it is skipped."""
    chosen = config.getoption("--broker")
    for item in items:
        marker = item.get_closest_marker("only_broker")
        if marker is not None and chosen not in marker.args:
            item.add_marker(
                pytest.mark.skip(reason=f"about {', '.join(marker.args)} only (running on {chosen})")
            )
