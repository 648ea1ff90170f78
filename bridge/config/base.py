"""The one base of every settings model: unknown keys are an error, and settings never change once loaded."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class SettingsModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
