"""What every target's settings have; each provider module's ``<Provider>Target`` subclasses
:class:`TargetBase` and narrows ``provider`` to its own ``Literal`` (the tag of the union that
:mod:`bridge.providers.catalog` derives for ``Settings.targets``).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bridge.budget_settings import BulkheadSettings, TargetParkingSettings
from bridge.policies import (
    CircuitSettings,
    ConflictSettings,
    RateLimitSettings,
    RetrySettings,
    TimeoutSettings,
)
from bridge.tracking.settings import TargetTracking


class SettingsModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


OnUnknown = Literal["retry", "report", "read_before_write"]


class TargetBase(SettingsModel):
    base_url: str
    allow_http: bool = Field(default=False, description="Permit plain http:// (the local sandbox only).")
    ca_file: Path | None = Field(default=None, description="Custom CA bundle for this target's TLS.")
    timeouts: TimeoutSettings = TimeoutSettings()
    retry: RetrySettings = RetrySettings()
    circuit: CircuitSettings = CircuitSettings()
    rate_limit: RateLimitSettings = RateLimitSettings()
    bulkhead: BulkheadSettings = BulkheadSettings()
    parking: TargetParkingSettings = TargetParkingSettings()
    conflict: ConflictSettings = ConflictSettings()
    max_age_s: float | None = Field(default=None, gt=0, description="Refuse commands older than this.")
    on_unknown: OnUnknown = Field(
        default="report",
        description="A command found dispatched but not done after a crash: retry it, or report it.",
    )
    tracking: TargetTracking = TargetTracking()
    provider: str

    READ_BEFORE_WRITE: ClassVar[bool] = False
    """Whether the provider can read a command's effect before sending it again (on_unknown)."""

    @field_validator("base_url")
    @classmethod
    def _clean_base_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must start with https:// (or http:// together with allow_http: true)")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _https_unless_allowed(self) -> TargetBase:
        for name in ("base_url", "token_url"):
            url = getattr(self, name, None)
            if isinstance(url, str) and url.startswith("http://") and not self.allow_http:
                raise ValueError(f"{name} uses plain http; set allow_http: true only for a local sandbox")
        if self.on_unknown == "read_before_write" and not self.READ_BEFORE_WRITE:
            raise ValueError(
                f"on_unknown: read_before_write needs a status read; {self.provider} targets have none"
            )
        return self
