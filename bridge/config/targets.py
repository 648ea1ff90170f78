"""What every target's settings have: its address, its call policies (timeouts, retries, the conflict policy,
the circuit breaker, the rate limit), its bulkhead and its parking. Each provider module's
``<Provider>Target`` subclasses :class:`TargetBase` and narrows ``provider`` to its own ``Literal``
(the tag of the union that :mod:`bridge.providers.catalog` derives for ``Settings.targets``).
:mod:`bridge.pipeline.retry` and :mod:`bridge.pipeline.guards` apply the policies.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from bridge.config.base import SettingsModel
from bridge.config.tracking import TargetTracking


class TimeoutSettings(SettingsModel):
    connect_s: float = Field(default=5.0, gt=0)
    total_s: float = Field(default=30.0, gt=0)


class RetrySettings(SettingsModel):
    """Retry policy for one target: attempts within a total time budget, full-jitter backoff."""

    max_attempts: int = Field(default=5, ge=1, le=50)
    budget_s: float = Field(default=60.0, gt=0)
    base_backoff_s: float = Field(default=0.2, gt=0)
    max_backoff_s: float = Field(default=10.0, gt=0)
    max_retry_after_s: float = Field(default=60.0, gt=0)


class ConflictSettings(SettingsModel):
    """What to do when the provider says another run holds the resource (a "scope busy" 409: Zilliant,
    workfloo): report the conflict at once, or retry until a deadline. See bridge/providers/verdicts.py."""

    policy: Literal["report", "retry"] = "report"
    retry_deadline_s: float = Field(default=300.0, gt=0)


class CircuitSettings(SettingsModel):
    failure_threshold: int = Field(default=10, ge=1)
    open_s: float = Field(default=30.0, gt=0)
    mode: Literal["fail_fast", "hold"] = "hold"
    max_held: int = Field(default=100, ge=0, description="Commands held while open; more fail fast.")
    slow_call_s: float = Field(default=10.0, gt=0, description="A call slower than this counts as failed.")
    max_unanswered: int = Field(
        default=20,
        ge=1,
        description="Open when this many calls are in flight and none answered for silent_s.",
    )
    silent_s: float = Field(default=3.0, gt=0, description="See max_unanswered.")


class RateLimitSettings(SettingsModel):
    rate_per_s: float | None = Field(default=None, gt=0, description="None disables the limit.")
    burst: int = Field(default=10, ge=1)


class TargetParkingSettings(SettingsModel):
    """How a target's parked commands come back (when ``parking.enabled``)."""

    retry_s: float = Field(default=30.0, gt=0, description="A parked command is tried again after this.")
    max_delay_s: float = Field(default=3600.0, gt=0, description="Answered by then at the latest.")
    probe_s: float = Field(
        default=5.0,
        gt=0,
        description="While the target is down, one parked command probes it this often (or every"
        " circuit.open_s when shorter); once a call succeeds, its parked commands come back at once.",
    )


class BulkheadSettings(SettingsModel):
    """A target's share of the bridge: beyond it, while it is down, its commands are answered at once."""

    max_in_flight: int | None = Field(default=None, ge=1, description="Unset: half of engine.max_in_flight.")
    max_calls: int | None = Field(
        default=None,
        ge=1,
        description="Concurrent HTTP calls to this target. Unset: its in-flight share, so that a healthy "
        "target is bounded by its rate limit and its share, never by a guess (a hung one is caught by "
        "circuit.max_unanswered and silent_s).",
    )


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
