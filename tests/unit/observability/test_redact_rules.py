"""What the redactor masks before text leaves the process (logs, provider error bodies in outcomes).

Two rules: every configured secret value, wherever it appears, and the value of every field whose
name says it is a credential (plus ``Bearer``/``OAuth`` tokens). Everything else is left as it is.
"""

from __future__ import annotations

import orjson
import pytest

from bridge.observability.redact import MASK, Redactor

SECRET = "hunter2-secret-value"


# -- configured secret values ------------------------------------------------------------------------


def test_a_configured_secret_is_masked_anywhere_in_free_text():
    assert (
        Redactor([SECRET]).scrub(f"login failed for {SECRET}, retrying") == "login failed for ***, retrying"
    )


def test_every_occurrence_is_masked():
    assert Redactor([SECRET]).scrub(f"{SECRET}/{SECRET}") == "***/***"


def test_a_secret_containing_another_is_masked_whole():
    scrubbed = Redactor(["abcd", "abcd-longer-secret"]).scrub("key=abcd-longer-secret!")
    assert "longer" not in scrubbed


def test_the_json_escaped_spelling_of_a_secret_is_masked_too():
    secret = 'pa"ss\\word'
    line = orjson.dumps({"msg": f"bad {secret}"}).decode()
    assert secret not in Redactor([secret]).scrub(line)
    assert orjson.loads(Redactor([secret]).scrub(line))["msg"] == "bad ***"


def test_values_shorter_than_four_characters_are_not_treated_as_secrets():
    # masking "abc" would mangle ordinary words; such a credential is weak anyway
    assert Redactor(["abc"]).scrub("abcdef abc") == "abcdef abc"


def test_without_secrets_plain_text_is_unchanged():
    text = "zuora answered 503 for workflow 396 after 3 attempts"
    assert Redactor().scrub(text) == text


# -- credential-looking fields -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "field",
    [
        "access_token",
        "refresh_token",
        "client_secret",
        "password",
        "api_key",
        "api-key",
        "apikey",
        "x-api-key",
        "token",
        "secret",
        "authorization",
        "signature",
        "ACCESS_TOKEN",
    ],
)
def test_a_json_credential_field_keeps_its_name_and_loses_its_value(field: str):
    scrubbed = Redactor().scrub(f'{{"{field}": "v4lue-123", "status": 401}}')
    assert scrubbed == f'{{"{field}": "***", "status": 401}}'


@pytest.mark.parametrize(
    ("text", "scrubbed"),
    [
        pytest.param(
            "grant_type=password&password=p4ss&client_secret=s3c&scope=api",
            "grant_type=password&password=***&client_secret=***&scope=api",
            id="form fields up to the separator",
        ),
        pytest.param("{'token': 'abc123'}", "{'token': '***'}", id="single quotes kept"),
        pytest.param("x-api-key: k-123 next", "x-api-key: *** next", id="header style"),
        pytest.param(
            "sent Bearer eyJhbGciOi.payload.sig and OAuth 00DSANDBOX!AQ0.token",
            "sent Bearer *** and OAuth ***",
            id="bearer and oauth tokens, scheme kept",
        ),
        pytest.param("bearer of bad news", "bearer of bad news", id="a short word after bearer is no token"),
        pytest.param(
            '{"token_type": "Bearer", "expires_in": 3599}',
            '{"token_type": "Bearer", "expires_in": 3599}',
            id="a field merely mentioning a credential word",
        ),
    ],
)
def test_credential_looking_text(text: str, scrubbed: str):
    assert Redactor().scrub(text) == scrubbed


# -- provider error bodies ---------------------------------------------------------------------------


def test_an_empty_body_has_no_excerpt():
    assert Redactor().body_excerpt(b"", 100) is None


def test_a_short_body_is_kept_whole_and_scrubbed():
    body = b'{"error": "invalid_client", "client_secret": "s3cr3t"}'
    assert Redactor().body_excerpt(body, 2048) == '{"error": "invalid_client", "client_secret": "***"}'


def test_a_body_of_exactly_the_limit_is_not_marked_truncated():
    assert Redactor().body_excerpt(b"x" * 100, 100) == "x" * 100


def test_a_longer_body_is_cut_to_the_limit_and_says_so():
    excerpt = Redactor().body_excerpt(b"y" * 101, 100)
    assert excerpt == "y" * 100 + "…(truncated)"


def test_the_limit_counts_characters_not_bytes():
    assert Redactor().body_excerpt("é".encode() * 100, 100) == "é" * 100


def test_bytes_that_are_not_utf8_are_replaced_not_fatal():
    assert Redactor().body_excerpt(b"bad \xff\xfe byte", 100) == "bad \ufffd\ufffd byte"


def test_a_secret_across_the_cut_is_masked_not_half_shown():
    # multi-byte text before the secret puts it where the excerpt is cut
    body = "€".encode() * 6 + SECRET.encode() + b" and the rest of the answer"
    excerpt = Redactor([SECRET]).body_excerpt(body, 10)
    assert excerpt is not None and excerpt.startswith("€" * 6 + MASK)
    for n in range(2, len(SECRET)):
        assert SECRET[:n] not in excerpt


def test_a_secret_beyond_the_excerpt_does_not_matter():
    body = b"a" * 200 + SECRET.encode()
    assert Redactor([SECRET]).body_excerpt(body, 50) == "a" * 50 + "…(truncated)"


def test_masking_happens_before_the_cut_so_the_excerpt_shows_what_follows():
    body = f"{SECRET} tail".encode()
    assert Redactor([SECRET]).body_excerpt(body, 8) == "*** tail"
