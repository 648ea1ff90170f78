"""Which status read follows which command: the provider modules' pure functions, by target. Pure.

Example::

    read = status_read(target_settings)
    ref = read.ref(command, outcome_reference)          # None: this command starts nothing to follow
    request = read.request(ref)
    reading = read.classify(status, headers, body, ref)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import assert_never

from bridge.commands import Command
from bridge.lifecycle import Reading
from bridge.providers import eightbyeight, workfloo, zilliant, zuora
from bridge.providers.base import HttpRequest
from bridge.settings import EightByEightTarget, TargetSettings, WorkflooTarget, ZilliantTarget, ZuoraTarget

Ref = Mapping[str, str]


@dataclass(frozen=True, slots=True)
class StatusRead:
    ref: Callable[[Command, str | None], dict[str, str] | None]
    request: Callable[[Ref], HttpRequest]
    classify: Callable[[int, Mapping[str, str], bytes, Ref], Reading]


def _plain(classify: Callable[[int, Mapping[str, str], bytes], Reading]) -> Callable[..., Reading]:
    def without_ref(status: int, headers: Mapping[str, str], body: bytes, ref: Ref) -> Reading:
        return classify(status, headers, body)

    return without_ref


def _eightbyeight(target: EightByEightTarget) -> StatusRead:
    def ref(command: Command, reference: str | None) -> dict[str, str] | None:
        return eightbyeight.status_ref(command, reference, default_account=target.account_id)

    def classify(status: int, headers: Mapping[str, str], body: bytes, ref: Ref) -> Reading:
        return eightbyeight.classify_status(status, headers, body, action=ref.get("action"))

    return StatusRead(ref, eightbyeight.build_instance_read, classify)


def _workfloo(target: WorkflooTarget) -> StatusRead:
    def request(ref: Ref) -> HttpRequest:
        return workfloo.build_status_request(ref, sandbox=target.sandbox)

    return StatusRead(workfloo.status_ref, request, _plain(workfloo.classify_status))


def status_read(target: TargetSettings) -> StatusRead:
    match target:
        case ZilliantTarget():
            return StatusRead(
                zilliant.status_ref, zilliant.build_status_request, _plain(zilliant.classify_status)
            )
        case ZuoraTarget():
            return StatusRead(zuora.status_ref, zuora.build_status_request, _plain(zuora.classify_status))
        case WorkflooTarget():
            return _workfloo(target)
        case EightByEightTarget():
            return _eightbyeight(target)
        case _:
            assert_never(target)
