"""The admin listener's settings: ``GET /v1/commands/{id}`` (see bridge/status/admin.py)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import Field, model_validator

from bridge.config.base import SettingsModel


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


class AdminSettings(SettingsModel):
    """A separate HTTP listener for operators: what became of a command, by id."""

    host: str = Field(
        default="127.0.0.1",
        description="Loopback by default; any other address needs token_file.",
    )
    port: int | None = Field(
        default=None, ge=0, le=65535, description="Admin port (e.g. 9465); 0 picks a free one; null: off."
    )
    token_file: Path | None = Field(
        default=None,
        description="File holding the bearer token every request must carry (e.g. a mounted Secret).",
    )
    show_payload: bool = Field(
        default=False, description="Whether ?payload=true may return the command's payload."
    )

    @model_validator(mode="after")
    def _token_off_loopback(self) -> AdminSettings:
        if self.port is not None and not is_loopback(self.host) and self.token_file is None:
            raise ValueError(
                f"admin.host is {self.host} (not loopback): "
                "set admin.token_file to the file of a bearer token"
            )
        return self
