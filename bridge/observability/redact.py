"""Remove secrets from text that leaves the process (outcome events, logs), and cap its size."""

from __future__ import annotations

import re
from collections.abc import Iterable

import orjson

_SECRET_FIELDS = re.compile(
    r"""(?ix)
    (["']?(?:access_token|refresh_token|client_secret|password|api[_-]?key|x-api-key|token|secret|
    authorization|signature)["']?\s*[:=]\s*)
    ("[^"]*"|'[^']*'|[^\s,&}]+)
    """
)
_BEARER = re.compile(r"(?i)\b(bearer|oauth)\s+[A-Za-z0-9._~+/=!-]{8,}")  # Salesforce session ids hold a !
# Every pattern above needs one of these words: text without them skips the regular expressions.
_TRIGGERS = ("token", "secret", "password", "api", "authorization", "signature", "bearer", "oauth")
MASK = "***"


class Redactor:
    """Replaces known secret values and secret-looking fields with ``***``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        values = {s for s in secrets if len(s) >= 4}
        # Also the JSON-escaped spelling, so that a finished JSON line can be scrubbed in one pass.
        values |= {orjson.dumps(s).decode()[1:-1] for s in values}
        # Longest first, so that a secret containing another is masked whole.
        self._secrets = sorted(values, key=len, reverse=True)
        # chars past an excerpt's end that must be decoded too, so a secret across the cut is seen whole
        self._overlap = len(self._secrets[0]) if self._secrets else 0

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        lowered = text.lower()
        if not any(trigger in lowered for trigger in _TRIGGERS):
            return text
        text = _BEARER.sub(lambda m: f"{m.group(1)} {MASK}", text)
        return _SECRET_FIELDS.sub(lambda m: f"{m.group(1)}{_mask_like(m.group(2))}", text)

    def body_excerpt(self, body: bytes, limit: int) -> str | None:
        if not body:
            return None
        window = (limit + self._overlap) * 4  # UTF-8: at most 4 bytes a character
        text = self.scrub(body[:window].decode("utf-8", errors="replace"))
        if len(text) > limit or len(body) > window:
            return text[:limit] + "…(truncated)"
        return text


def _mask_like(value: str) -> str:
    if value[:1] in {'"', "'"}:
        return f"{value[0]}{MASK}{value[0]}"
    return MASK
