"""The ``providers`` section: which installed provider plugins this bridge loads.

Read before the rest of the configuration (:func:`bridge.providers.settings.parse_settings`), because the
targets of a plugin's kind validate only once the plugin is in the catalog.

Example::

    providers:
      plugins: [airflow]    # entry point names in workflow_bridge.providers; none unless listed
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

from bridge.config.base import SettingsModel

PluginName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]


class ProvidersSettings(SettingsModel):
    plugins: list[PluginName] = Field(
        default_factory=list,
        description="Installed provider plugins to load, by entry point name; none unless listed.",
    )
