"""Settings of per-target bulkheads and parking (issue 12); :mod:`bridge.settings` composes them."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TargetParkingSettings(_Model):
    """How a target's parked commands come back (when ``parking.enabled``)."""

    retry_s: float = Field(default=30.0, gt=0, description="A parked command is tried again after this.")
    max_delay_s: float = Field(default=3600.0, gt=0, description="Answered by then at the latest.")


class BulkheadSettings(_Model):
    """A target's share of the bridge: beyond it, while it is down, its commands are answered at once."""

    max_in_flight: int | None = Field(default=None, ge=1, description="Unset: half of engine.max_in_flight.")
    max_calls: int = Field(default=64, ge=1, description="Concurrent HTTP calls to this target.")


class ParkingSettings(_Model):
    """Order-keeping parking in ``topics.parked`` of commands whose target is down or full."""

    enabled: bool = Field(default=True, description="Off: such commands are answered at once instead.")
    max_held: int = Field(
        default=1000,
        ge=1,
        description="Parked records in memory until due, per parking partition: above it, its fetch pauses.",
    )
