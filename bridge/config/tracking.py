"""Tracking settings: per target (how often to poll, how long to follow) and for the process."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, TypeVar

from pydantic import Field, model_validator

from bridge.config.base import SettingsModel

WEEK_S = 7 * 86_400.0


class TargetTracking(SettingsModel):
    """``targets.<name>.tracking``: on by default (every provider kind has a status read)."""

    enabled: bool = Field(default=True, description="Follow this target's started workflows to their end.")
    first_poll_s: float = Field(default=2.0, gt=0, description="First status read after the outcome.")
    max_interval_s: float = Field(default=300.0, gt=0, description="The poll interval doubles up to this.")
    waiting_interval_s: float = Field(
        default=300.0, gt=0, description="Poll interval while the run waits on a human step."
    )
    jitter: float = Field(
        default=0.2,
        ge=0,
        le=1,
        description="Each interval is shortened by up to this share (never lengthened).",
    )
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


class TrackingSettings(SettingsModel):
    """``tracking``: the process-wide part of tracking."""

    max_concurrent_polls: int = Field(default=50, ge=1, description="Status reads in flight at once.")


class _Target(Protocol):
    @property
    def tracking(self) -> TargetTracking: ...


class _Ledger(Protocol):
    @property
    def enabled(self) -> bool: ...
    @property
    def retention_s(self) -> float: ...


class _Settings(Protocol):
    @property
    def targets(self) -> Mapping[str, _Target]: ...
    @property
    def ledger(self) -> _Ledger: ...


S = TypeVar("S", bound=_Settings)


def horizon_problems(targets: Mapping[str, _Target], retention_s: float) -> list[str]:
    """One message per tracked target whose horizon outlives the ledger's retention."""
    return [
        f"targets.{name}.tracking.horizon_s ({target.tracking.horizon_s:g}) exceeds ledger.retention_s "
        f"({retention_s:g}): a tracked workflow's entry would be deleted by retention before its horizon; "
        f"lower targets.{name}.tracking.horizon_s or raise ledger.retention_s (and the ledger topic's "
        "retention.ms with it)"
        for name, target in targets.items()
        if target.tracking.enabled and target.tracking.horizon_s > retention_s
    ]


def horizons_fit_retention(settings: S) -> S:
    """The settings' check (a model validator): without the ledger nothing is tracked."""
    problems = horizon_problems(settings.targets, settings.ledger.retention_s)
    if settings.ledger.enabled and problems:
        raise ValueError("; ".join(problems))
    return settings
