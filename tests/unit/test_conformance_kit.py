"""The conformance kit's checks fail on a provider that breaks what they check (a kit that always passes
would tell a plugin author nothing)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest
from workflow_bridge_airflow import provider as airflow

from bridge.conformance import ProviderConformance
from bridge.messages.commands import Command
from bridge.providers.api import HttpRequest, Status, Verdict
from bridge.providers.catalog import CATALOG, AnySpec
from bridge.providers.plugins import enable


@pytest.fixture
def spec() -> Iterator[AnySpec]:
    enable(["airflow"])
    yield CATALOG.spec("airflow")
    enable(())


class Unencoded(airflow.AirflowProvider):
    """Puts the run id in the path as it came."""

    def build_request(self, command: Command) -> HttpRequest:
        request = airflow.build_request(command)
        if isinstance(command, airflow.AirflowSetDagRunState):
            return replace(request, path=f"/api/v1/dags/{command.dag_id}/dagRuns/{command.dag_run_id}")
        return request


class QueuesEverything(airflow.AirflowProvider):
    def classify(self, command: Command, status: int, headers: Mapping[str, str], body: bytes) -> Verdict:
        return Verdict(Status.QUEUED)


def runtimes(provider: airflow.AirflowProvider) -> dict[str, Any]:
    return {"t": SimpleNamespace(provider=provider)}


def target() -> airflow.AirflowTarget:
    return airflow.AirflowTarget.model_validate(
        {
            "provider": "airflow",
            "base_url": "https://a.example",
            "username": {"env": "U"},
            "password": {"env": "P"},
        },
        context={"environ": {"U": "u", "P": "p"}},
    )


class Kit(ProviderConformance):
    kind = "airflow"
    documented = {"airflow.trigger_dag_run": {404: Status.REJECTED}}


def test_the_path_check_fails_on_an_id_that_is_not_encoded(spec):
    kit = Kit()
    kit.test_ids_in_paths_are_encoded(spec, runtimes(airflow.AirflowProvider("t", target(), None)))
    with pytest.raises(AssertionError, match="dag_run_id is not encoded"):
        kit.test_ids_in_paths_are_encoded(spec, runtimes(Unencoded("t", target(), None)))


def test_the_classification_check_fails_on_a_status_classified_otherwise(spec):
    kit = Kit()
    kit.test_every_documented_status_is_classified_as_documented(
        spec, runtimes(airflow.AirflowProvider("t", target(), None))
    )
    with pytest.raises(AssertionError, match=r"airflow\.trigger_dag_run 404"):
        kit.test_every_documented_status_is_classified_as_documented(
            spec, runtimes(QueuesEverything("t", target(), None))
        )


class Lax(airflow.AirflowTriggerDagRun):
    dag_id: int | str  # type: ignore[assignment]


def test_the_strict_parsing_check_fails_on_a_lax_field(spec):
    Kit().test_every_command_parses_strictly(spec)
    lax = replace(spec, commands=(replace(spec.commands[0], model=Lax), *spec.commands[1:]))
    enable(())
    CATALOG.use([*CATALOG.specs, lax])  # the lax model parses an int dag_id
    with pytest.raises(pytest.fail.Exception, match="DID NOT RAISE"):
        Kit().test_every_command_parses_strictly(lax)
