"""Tracking settings: per target (how often to poll, how long to follow) and for the process."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

WEEK_S = 7 * 86_400.0


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TargetTracking(_Model):
    """``targets.<name>.tracking``: on by default (every provider kind has a status read)."""

    enabled: bool = Field(default=True, description="Follow this target's started workflows to their end.")
    first_poll_s: float = Field(default=2.0, gt=0, description="First status read after the outcome.")
    max_interval_s: float = Field(default=300.0, gt=0, description="The poll interval doubles up to this.")
    waiting_interval_s: float = Field(
        default=300.0, gt=0, description="Poll interval while the run waits on a human step."
    )
    jitter: float = Field(default=0.2, ge=0, le=1, description="Each interval is moved by up to this share.")
    horizon_s: float = Field(
        default=WEEK_S,
        gt=0,
        description="Give up (lost) this long after the start; below the provider's retention.",
    )
    polls_per_s: float = Field(
        default=5.0, gt=0, description="Poll budget: status reads per second, at most (after commands)."
    )
    gone_after: int = Field(default=3, ge=1, description="Consecutive 404 reads before the run is lost.")

    @model_validator(mode="after")
    def _first_below_cap(self) -> TargetTracking:
        if self.first_poll_s > self.max_interval_s:
            raise ValueError("first_poll_s must not exceed max_interval_s")
        return self


class TrackingSettings(_Model):
    """``tracking``: the process-wide part of tracking."""

    max_concurrent_polls: int = Field(default=50, ge=1, description="Status reads in flight at once.")
