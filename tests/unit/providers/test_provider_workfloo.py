"""workfloo: request builder and classifier tables, static x-api-key auth."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from pydantic import SecretStr

from bridge.errors import CommandRejected
from bridge.messages.outcomes import ErrorKind, Status
from bridge.providers.catalog import CATALOG
from bridge.providers.eightbyeight import EightByEightUpdateInstance
from bridge.providers.workfloo import (
    WorkflooExecute,
    WorkflooProvider,
    WorkflooTarget,
    build_request,
    classify,
    runs_in_sandbox,
)

API_KEY = "kiban-SECRET-key"


def command(**fields: Any) -> WorkflooExecute:
    base = {
        "id": "cmd-1",
        "target": "onboarding",
        "operation": "workfloo.execute",
        "definition_id": "657117e1d511b6e54fe2a967",
    }
    return WorkflooExecute.model_validate({**base, **fields})


def target(**fields: Any) -> WorkflooTarget:
    return WorkflooTarget.model_validate(
        {
            "provider": "workfloo",
            "base_url": "https://workfloo.kiban.com",
            "api_key": SecretStr(API_KEY),
            **fields,
        }
    )


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, {"idWorkflooDefinition": "657117e1d511b6e54fe2a967"}),
        (
            {"scenario_id": "6571181fd511b6e54fe2a968"},
            {"idWorkflooDefinition": "657117e1d511b6e54fe2a967", "scenarioId": "6571181fd511b6e54fe2a968"},
        ),
        (
            {"form": {"name": "Ana"}, "document": {"rfc": "X"}},
            {
                "idWorkflooDefinition": "657117e1d511b6e54fe2a967",
                "form": {"name": "Ana"},
                "document": {"rfc": "X"},
            },
        ),
        ({"form": {}}, {"idWorkflooDefinition": "657117e1d511b6e54fe2a967", "form": {}}),
    ],
)
def test_build_request_body(fields: dict[str, Any], expected: dict[str, Any]) -> None:
    request = build_request(command(**fields))
    assert (request.method, request.path, dict(request.query)) == ("POST", "/api/v1/workfloo", {})
    assert request.body is not None
    assert orjson.loads(request.body) == expected
    assert request.headers["Content-Type"] == "application/json"


def test_sandbox_adds_query() -> None:
    assert dict(build_request(command(scenario_id="s1"), sandbox=True).query) == {"sandbox": "true"}


def test_sandbox_mode_without_scenario_is_refused_before_any_call() -> None:
    with pytest.raises(CommandRejected) as caught:
        build_request(command(), sandbox=True)
    assert caught.value.kind is ErrorKind.VALIDATION and "scenario_id" in caught.value.message
    assert build_request(command(), sandbox=False).query == {}
    with pytest.raises(CommandRejected):
        build_request(command(), sandbox_host=True)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"base_url": "https://sandbox.workfloo.kiban.com"}, True),
        ({"base_url": "https://api.workfloo.kiban.com", "sandbox": True}, True),
        ({"base_url": "https://api.workfloo.kiban.com"}, False),
    ],
)
def test_sandbox_mode_is_the_flag_or_the_sandbox_host(fields, expected) -> None:
    assert runs_in_sandbox(target(**fields)) is expected


async def test_provider_uses_target_sandbox_flag(session) -> None:
    assert dict(
        WorkflooProvider("o", target(sandbox=True), session).build_request(command(scenario_id="s1")).query
    ) == {"sandbox": "true"}
    assert dict(WorkflooProvider("o", target(), session).build_request(command()).query) == {}


def test_other_operations_are_refused() -> None:
    other = EightByEightUpdateInstance(
        id="c",
        target="t",
        operation="8x8.update_instance",
        action="suspend",
        definition_id="d",
        instance_id="i",
    )
    with pytest.raises(CommandRejected) as exc:
        build_request(other)
    assert exc.value.kind is ErrorKind.TARGET_MISMATCH


REQUIRED = b'{"typeError":"REQUIRED_FIELDS","errors":{"idWorkflooDefinition":"required"},"errorMessage":""}'
NOT_FOUND = b'{"typeError":"ELEMENT_NOT_EXIST_ERROR","errors":null,"errorMessage":"scenarioId not found"}'


@pytest.mark.parametrize(
    ("status", "body", "want", "kind", "retryable", "refresh", "text"),
    [
        (200, b'{"id": "64a8bc288de4164da93f339c"}', Status.QUEUED, None, False, False, ""),
        (
            400,
            REQUIRED,
            Status.REJECTED,
            ErrorKind.PROVIDER_REJECTED,
            False,
            False,
            "REQUIRED_FIELDS: idWorkflooDefinition: required",
        ),
        (
            400,
            NOT_FOUND,
            Status.REJECTED,
            ErrorKind.PROVIDER_REJECTED,
            False,
            False,
            "ELEMENT_NOT_EXIST_ERROR: scenarioId not found",
        ),
        (404, NOT_FOUND, Status.REJECTED, ErrorKind.PROVIDER_REJECTED, False, False, "scenarioId not found"),
        (400, b"", Status.REJECTED, ErrorKind.PROVIDER_REJECTED, False, False, "(400)"),
        (
            400,
            b'{"typeError": 7, "errors": ["a", "b"]}',
            Status.REJECTED,
            ErrorKind.PROVIDER_REJECTED,
            False,
            False,
            "a, b",
        ),
        (401, b"", Status.ERROR, ErrorKind.AUTH, False, True, "401"),
        (403, b"", Status.ERROR, ErrorKind.AUTH, False, False, "API key has no access to this definition"),
        (409, b"", Status.CONFLICT, ErrorKind.CONFLICT, False, False, "conflict"),
        (500, b"", Status.ERROR, ErrorKind.PROVIDER_ERROR, True, False, "500"),
        (503, b"not json", Status.ERROR, ErrorKind.PROVIDER_ERROR, True, False, "503"),
        (429, b"", Status.ERROR, ErrorKind.RATE_LIMITED, True, False, "429"),
        (302, b"", Status.ERROR, ErrorKind.PROVIDER_ERROR, False, False, "unexpected"),
    ],
)
def test_classify(status, body, want, kind, retryable, refresh, text) -> None:
    verdict = classify(command(), status, {}, body)
    assert verdict.status is want
    assert verdict.error_kind is kind
    assert verdict.retryable is retryable
    assert verdict.refresh_auth is refresh
    assert text in verdict.message
    assert verdict.reference == ("64a8bc288de4164da93f339c" if status == 200 else None)


@pytest.mark.parametrize("body", [b"", b"[]", b'{"id": null}', b'{"idUnykoo": 5}'])
def test_success_without_id_has_no_reference(body: bytes) -> None:
    verdict = classify(command(), 200, {}, body)
    assert (verdict.status, verdict.reference) == (Status.QUEUED, None)


async def test_auth_is_raw_key_and_refresh_returns_it(session) -> None:
    provider = CATALOG.build("onboarding", target(), session)
    assert isinstance(provider, WorkflooProvider)
    assert provider.kind == "workfloo"
    assert await provider.auth_headers() == {"x-api-key": API_KEY}
    assert await provider.auth_headers(refresh=True) == {"x-api-key": API_KEY}
    assert CATALOG.operations_of("workfloo") == {"workfloo.execute"}
    await provider.aclose()
