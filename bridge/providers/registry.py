"""Which provider class serves a target, and which operations each provider kind supports.

Example::

    provider = build_provider("billing-eu", settings.targets["billing-eu"], session)
    assert Operation.ZUORA_RUN_WORKFLOW in PROVIDER_OPERATIONS[provider.kind]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import assert_never

import aiohttp

from bridge.commands import OPERATION_PROVIDER, Operation
from bridge.outcomes import ProviderKind
from bridge.providers.base import Provider
from bridge.providers.eightbyeight import EightByEightProvider
from bridge.providers.workfloo import WorkflooProvider
from bridge.providers.zilliant import ZilliantProvider
from bridge.providers.zuora import ZuoraProvider
from bridge.settings import (
    EightByEightTarget,
    TargetSettings,
    WorkflooTarget,
    ZilliantTarget,
    ZuoraTarget,
)

PROVIDER_OPERATIONS: dict[ProviderKind, frozenset[Operation]] = {
    kind: frozenset(op for op, owner in OPERATION_PROVIDER.items() if owner is kind) for kind in ProviderKind
}


def build_provider(
    name: str,
    target: TargetSettings,
    session: aiohttp.ClientSession,
    *,
    on_token_refresh: Callable[[bool], None] | None = None,
) -> Provider:
    """The adapter for ``target`` (dispatching on ``target.provider``); it shares ``session``."""
    match target:
        case ZilliantTarget():
            return ZilliantProvider(name, target, session, on_token_refresh=on_token_refresh)
        case ZuoraTarget():
            return ZuoraProvider(name, target, session, on_token_refresh=on_token_refresh)
        case WorkflooTarget():
            return WorkflooProvider(name, target, session, on_token_refresh=on_token_refresh)
        case EightByEightTarget():
            return EightByEightProvider(name, target, session, on_token_refresh=on_token_refresh)
        case _:
            assert_never(target)
