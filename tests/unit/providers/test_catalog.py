"""The catalog derives every registration from the specs: a provider declared here, in the test,
parses, routes to its family, gets its adapter and its status read without touching another module."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Literal

import pytest
from pydantic import TypeAdapter, ValidationError

from bridge.config.targets import TargetBase
from bridge.messages.commands import Command, CommandFamily
from bridge.messages.outcomes import Status
from bridge.messages.parsing import Parsed
from bridge.providers.base import HttpRequest
from bridge.providers.catalog import CATALOG, Catalog
from bridge.providers.parsing import validate_command
from bridge.providers.readings import RunReading, RunState
from bridge.providers.spec import CommandExample, CommandSpec, ProviderSpec, plain_read
from bridge.providers.verdicts import Verdict
from bridge.providers.zuora import ZuoraRunWorkflow


class ToyTarget(TargetBase):
    provider: Literal["toy"]


class ToyPing(Command):
    """Ping the toy (POST /ping)."""

    operation: Literal["toy.ping"]
    message: str


class ToyProvider:
    kind = "toy"

    def __init__(self, name, target, session, *, on_token_refresh=None, ssl_context=True) -> None:
        self.name, self.target = name, target

    def build_request(self, command: Command) -> HttpRequest:
        assert isinstance(command, ToyPing)
        return HttpRequest("POST", "/ping", body=command.message.encode(), route="/ping")

    async def auth_headers(self, *, refresh=False, stale=None) -> Mapping[str, str]:
        return {}

    def classify(self, command, status, headers, body) -> Verdict:
        return Verdict(Status.QUEUED, reference=body.decode())

    async def aclose(self) -> None:
        return None


def _ref(command: Command, reference: str | None) -> dict[str, str] | None:
    return {"ping": reference} if reference else None


TOY = ProviderSpec(
    kind="toy",
    title="Toy",
    order=99,
    target=ToyTarget,
    adapter=ToyProvider,
    commands=(CommandSpec(ToyPing, CommandFamily.RUN, CommandExample(99, "toy-key", {"target": "toy-1"})),),
    status_read=lambda target: plain_read(
        _ref,
        lambda ref: HttpRequest("GET", f"/ping/{ref['ping']}"),
        lambda status, headers, body: RunReading(RunState.COMPLETED, "done"),
    ),
    what_to_check="whether the toy was pinged",
    followed="ping",
)
TOY_CATALOG = Catalog([*CATALOG.specs, TOY])
PING = {"id": "t-1", "target": "toy-1", "operation": "toy.ping", "message": "hi"}


def test_a_declared_command_parses_in_its_family_and_in_no_other():
    command = TOY_CATALOG.adapters[CommandFamily.RUN].validate_python(PING)
    assert isinstance(command, ToyPing) and command.message == "hi"
    assert isinstance(TOY_CATALOG.any_adapter.validate_python(PING), ToyPing)
    with pytest.raises(ValidationError):
        TOY_CATALOG.adapters[CommandFamily.CONTROL].validate_python(PING)


def test_the_providers_already_there_still_parse_beside_it():
    doc = {"id": "z-1", "target": "z", "operation": "zuora.run_workflow", "workflow_id": 396}
    assert isinstance(TOY_CATALOG.adapters[CommandFamily.RUN].validate_python(doc), ZuoraRunWorkflow)


def test_its_operation_routes_to_its_family_and_provider():
    assert TOY_CATALOG.family_of("toy.ping") is CommandFamily.RUN
    assert TOY_CATALOG.provider_of("toy.ping") == "toy"
    assert TOY_CATALOG.operations_of("toy") == frozenset({"toy.ping"})
    assert "toy.ping" in TOY_CATALOG.operations
    assert TOY_CATALOG.kinds == (*CATALOG.kinds, "toy")  # its order puts it last
    run = [command.operation for command in TOY_CATALOG.commands if command.family is CommandFamily.RUN]
    assert run == [*(c.operation for c in CATALOG.commands if c.family is CommandFamily.RUN), "toy.ping"]


def test_its_target_settings_validate_and_build_its_adapter_and_status_read():
    raw = {"provider": "toy", "base_url": "https://toy.example/"}
    target = TypeAdapter(TOY_CATALOG.target_settings).validate_python(raw)
    assert isinstance(target, ToyTarget) and target.base_url == "https://toy.example"
    provider = TOY_CATALOG.build("toy-1", target, session=None)
    assert isinstance(provider, ToyProvider) and provider.name == "toy-1" and provider.kind == "toy"
    command = TOY_CATALOG.any_adapter.validate_python(PING)
    assert provider.build_request(command).body == b"hi"
    read = TOY_CATALOG.status_read(target)
    ref = read.ref(command, "p-7")
    assert ref == {"ping": "p-7"} and read.request(ref).path == "/ping/p-7"
    assert read.classify(200, {}, b"{}", ref) == RunReading(RunState.COMPLETED, "done")
    assert TOY_CATALOG.effect_check(target) is None


def test_the_real_catalog_knows_nothing_of_it():
    assert "toy" not in CATALOG.kinds and CATALOG.family_of("toy.ping") is None
    with pytest.raises(ValidationError):
        CATALOG.any_adapter.validate_python(PING)
    with pytest.raises(ValidationError):
        TypeAdapter(CATALOG.target_settings).validate_python({"provider": "toy", "base_url": "https://t"})


def test_the_parser_reads_the_catalogs_families():
    doc = {"id": "z-1", "target": "z", "operation": "zuora.rerun_task", "task_id": "2770"}
    assert isinstance(validate_command(doc, CommandFamily.CONTROL), Parsed)


def test_two_providers_cannot_claim_the_same_kind_order_or_operation():
    with pytest.raises(ValueError, match="same kind 'toy'"):
        Catalog([*CATALOG.specs, TOY, replace(TOY, order=100)])
    with pytest.raises(ValueError, match="same order 1"):
        Catalog([*CATALOG.specs, replace(TOY, kind="toy2", order=1, commands=())])
    with pytest.raises(ValueError, match=r"same operation 'toy\.ping'"):
        Catalog([*CATALOG.specs, TOY, replace(TOY, kind="toy2", order=100)])


_READ_SETTINGS = {"workfloo": {"sandbox": False}, "8x8": {"account_id": "acme"}}


@pytest.mark.parametrize("spec", CATALOG.specs, ids=lambda spec: spec.kind)
def test_each_provider_follows_a_field_its_status_read_keeps(spec):
    target = spec.target.model_construct(provider=spec.kind, **_READ_SETTINGS.get(spec.kind, {}))
    read = CATALOG.status_read(target)
    refs = []
    for command in spec.commands:
        doc = {"id": command.example.id, "operation": command.operation, **command.example.fields}
        ref = read.ref(CATALOG.any_adapter.validate_python(doc), "ref-1")
        if ref is not None:
            refs.append(ref)
            assert spec.followed in ref, (command.operation, ref)
    assert refs, f"no {spec.kind} command starts anything to follow"
