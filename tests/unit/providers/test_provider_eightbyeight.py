"""8x8 Automation: request builder and classifier tables, static Bearer auth."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from pydantic import SecretStr

from bridge.errors import CommandRejected
from bridge.messages.outcomes import ErrorKind, Status
from bridge.providers.catalog import CATALOG
from bridge.providers.eightbyeight import (
    EightByEightProvider,
    EightByEightTarget,
    EightByEightUpdateInstance,
    build_request,
    classify,
)
from bridge.providers.zilliant import ZilliantQueueJob

API_KEY = "connect-SECRET-key"
DEFINITION = "5870442f-3ddd-4657-b74c-6e17308f5230"
INSTANCE = "60dbe307fe55d99fc083db61"


def command(**fields: Any) -> EightByEightUpdateInstance:
    base = {
        "id": "cmd-1",
        "target": "cx",
        "operation": "8x8.update_instance",
        "action": "suspend",
        "definition_id": DEFINITION,
        "instance_id": INSTANCE,
    }
    return EightByEightUpdateInstance.model_validate({**base, **fields})


def target() -> EightByEightTarget:
    return EightByEightTarget.model_validate(
        {
            "provider": "8x8",
            "base_url": "https://automation.8x8.com",
            "account_id": "acme-1",
            "api_key": SecretStr(API_KEY),
        }
    )


@pytest.mark.parametrize("action", ["suspend", "resume", "terminate"])
def test_build_request(action: str) -> None:
    request = build_request(command(action=action), default_account="acme-1")
    assert request.method == "PATCH"
    assert request.path == f"/api/v1/accounts/acme-1/definitions/{DEFINITION}/workflows/{INSTANCE}"
    assert request.body is not None
    assert orjson.loads(request.body) == {"status": action}
    assert request.headers["Content-Type"] == "application/json"


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"account_id": "other"}, f"/api/v1/accounts/other/definitions/{DEFINITION}/workflows/{INSTANCE}"),
        (
            {"definition_id": "a:b", "instance_id": "c@d"},
            "/api/v1/accounts/acme-1/definitions/a%3Ab/workflows/c%40d",
        ),
        (
            {"instance_id": "x;y=1&z"},
            f"/api/v1/accounts/acme-1/definitions/{DEFINITION}/workflows/x%3By%3D1%26z",
        ),
        (
            {"instance_id": "(it's)+*"},
            f"/api/v1/accounts/acme-1/definitions/{DEFINITION}/workflows/%28it%27s%29%2B%2A",
        ),
        (
            {"account_id": "acc!$,"},
            f"/api/v1/accounts/acc%21%24%2C/definitions/{DEFINITION}/workflows/{INSTANCE}",
        ),
    ],
)
def test_path_is_encoded(fields: dict[str, Any], path: str) -> None:
    assert build_request(command(**fields), default_account="acme-1").path == path


def test_other_operations_are_refused() -> None:
    other = ZilliantQueueJob(id="c", target="t", operation="zilliant.queue_job", automation_id="X")
    with pytest.raises(CommandRejected) as exc:
        build_request(other, default_account="a")
    assert exc.value.kind is ErrorKind.TARGET_MISMATCH


INVALID = (
    b'{"code":1000,"message":"Invalid definition id.","errorId":"2558ff83-c8db-4890-805e-ad64001857a1",'
    b'"timestamp":"2021-07-13T01:28:37.66Z"}'
)
MISSING = b'{"code":1300,"message":"Definition 2aa9465e not found.","errorId":"e1","timestamp":"t"}'


@pytest.mark.parametrize(
    ("status", "body", "want", "kind", "retryable", "refresh", "text"),
    [
        (200, b"", Status.APPLIED, None, False, False, ""),
        (204, b"", Status.APPLIED, None, False, False, ""),
        (
            400,
            INVALID,
            Status.REJECTED,
            ErrorKind.PROVIDER_REJECTED,
            False,
            False,
            "Invalid definition id. (code 1000, errorId 2558ff83-c8db-4890-805e-ad64001857a1)",
        ),
        (
            404,
            MISSING,
            Status.REJECTED,
            ErrorKind.PROVIDER_REJECTED,
            False,
            False,
            "Definition 2aa9465e not found. (code 1300, errorId e1)",
        ),
        (
            400,
            b'{"code": "x", "message": 5}',
            Status.REJECTED,
            ErrorKind.PROVIDER_REJECTED,
            False,
            False,
            "(400)",
        ),
        (400, b"<html/>", Status.REJECTED, ErrorKind.PROVIDER_REJECTED, False, False, "(400)"),
        (401, b'{"code":1200,"message":"Unauthorized"}', Status.ERROR, ErrorKind.AUTH, False, True, "401"),
        (403, b"", Status.ERROR, ErrorKind.AUTH, False, False, "403"),
        (429, b"", Status.ERROR, ErrorKind.RATE_LIMITED, True, False, "429"),
        (500, b"", Status.ERROR, ErrorKind.PROVIDER_ERROR, True, False, "500"),
        (409, b"", Status.ERROR, ErrorKind.PROVIDER_ERROR, False, False, "unexpected"),
    ],
)
def test_classify(status, body, want, kind, retryable, refresh, text) -> None:
    verdict = classify(command(), status, {}, body)
    assert verdict.status is want
    assert verdict.error_kind is kind
    assert verdict.retryable is retryable
    assert verdict.refresh_auth is refresh
    assert text in verdict.message
    assert verdict.reference == (INSTANCE if status < 300 else None)


async def test_provider_uses_target_account_and_bearer_key(session) -> None:
    provider = CATALOG.build("cx", target(), session)
    assert isinstance(provider, EightByEightProvider)
    assert provider.kind == "8x8"
    assert provider.build_request(command()).path.startswith("/api/v1/accounts/acme-1/")
    assert await provider.auth_headers() == {"Authorization": f"Bearer {API_KEY}"}
    assert await provider.auth_headers(refresh=True) == {"Authorization": f"Bearer {API_KEY}"}
    assert CATALOG.operations_of("8x8") == {"8x8.update_instance"}
    await provider.aclose()
