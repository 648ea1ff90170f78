"""Credentials as references (``{env: NAME}`` or ``{file: PATH}``), resolved once at start-up into
:class:`pydantic.SecretStr`. Inline secrets are refused so that they cannot end up in a config file,
a ConfigMap or a log line.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator


class SecretRef(BaseModel):
    """Where a credential comes from: an environment variable or a file (a Kubernetes secret mount)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    env: str | None = None
    file: Path | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of 'env' or 'file'")
        return self

    def resolve(self, environ: Mapping[str, str]) -> SecretStr:
        if self.env is not None:
            value = environ.get(self.env)
            if not value:
                raise ValueError(f"environment variable {self.env} is not set or empty")
            return SecretStr(value)
        assert self.file is not None
        try:
            return SecretStr(self.file.read_text(encoding="utf-8").strip())
        except OSError as exc:
            raise ValueError(f"cannot read secret file {self.file}: {exc.strerror}") from exc


def resolve_secret(value: Any, info: Any) -> Any:
    if isinstance(value, SecretStr):
        return value
    if isinstance(value, str):
        raise ValueError("inline secrets are not allowed; use {env: VAR} or {file: /path}")
    ref = SecretRef.model_validate(value)
    environ = (info.context or {}).get("environ", os.environ)
    return ref.resolve(environ)


Secret = Annotated[SecretStr, Field(json_schema_extra={"format": "secret-ref"})]
