"""The provider API: everything a provider module (built-in or plugin) may import from the bridge.

A provider module imports from here and nothing else of ``bridge``; the four built-in providers do
too (``tests/unit/test_provider_api.py`` holds them to it). What is named in ``__all__`` keeps its
meaning within one major :data:`API_VERSION`: a minor version only adds names. A module declares
the version it was written against in its spec (``ProviderSpec(api_version=API_VERSION, ...)``) and
the plugin loader (:mod:`bridge.providers.plugins`) refuses a plugin whose major version differs or
whose minor version is newer than this bridge's.

What it holds, by the questions a provider module answers:

* its target settings: :class:`TargetBase` (``provider: Literal["<kind>"]`` plus its own fields),
  :data:`Secret` and :func:`resolve_secret` for credentials (``env:NAME`` / ``file:PATH`` references),
  :data:`OnUnknown`, :class:`TimeoutSettings`;
* its commands: :class:`Command` (``operation: Literal["<kind>.<verb>"]``), :class:`CommandFamily`,
  :class:`StrictModel`, :data:`JsonObject`, :data:`PathSegment`;
* the call: :class:`HttpRequest`, :func:`segment` (encode a path id), :class:`CommandRejected`;
* what a response means: :class:`Verdict`, :func:`classify_common`, :func:`scope_busy`,
  :func:`unexpected`, :class:`Status`, :class:`ErrorKind`, :func:`json_or_none`, :func:`reference_of`,
  :func:`clip`, :func:`header`;
* status reads: :class:`RunReading`, :class:`RunState`, :class:`ReadFailure`, :func:`status_document`,
  :data:`UNREADABLE`, :class:`StatusRead`, :func:`plain_read`, :class:`EffectCheck`;
* auth: :class:`StaticKeyProvider` (a fixed key), :class:`BasicAuthProvider` (username and
  password), :class:`OAuthProvider` (tokens from a token
  endpoint, cached with single-flight refresh), :func:`bearer_token`, :class:`Token`, :class:`AuthError`;
* the declaration: :class:`ProviderSpec`, :class:`CommandSpec`, :class:`CommandExample`,
  :class:`OutcomeExample`, :class:`CloudEventExample`.
"""

from __future__ import annotations

from bridge.config.secrets import Secret, resolve_secret
from bridge.config.targets import OnUnknown, TargetBase, TimeoutSettings
from bridge.errors import AuthError, CommandRejected
from bridge.messages.commands import Command, CommandFamily, JsonObject, PathSegment, StrictModel
from bridge.messages.outcomes import ErrorKind, Status
from bridge.providers.base import (
    BasicAuthProvider,
    HttpRequest,
    Provider,
    StaticKeyProvider,
    clip,
    header_safe,
    json_or_none,
    reference_of,
    segment,
)
from bridge.providers.oauth import OAuthProvider, bearer_token
from bridge.providers.readings import (
    UNREADABLE,
    ReadFailure,
    Reading,
    ReadProblem,
    RunReading,
    RunState,
    classify_read_common,
    status_document,
)
from bridge.providers.spec import (
    CloudEventExample,
    CommandExample,
    CommandSpec,
    EffectCheck,
    OutcomeExample,
    ProviderSpec,
    StatusRead,
    plain_read,
)
from bridge.providers.tokens import Clock, Token
from bridge.providers.verdicts import (
    Verdict,
    classify_common,
    header,
    parse_retry_after,
    scope_busy,
    unexpected,
)

API_VERSION = "1.0"
"""``major.minor`` of this API: a plugin built against ``1.x`` loads on any bridge with ``1.y``, y >= x."""

__all__ = [
    "API_VERSION",
    "UNREADABLE",
    "AuthError",
    "BasicAuthProvider",
    "Clock",
    "CloudEventExample",
    "Command",
    "CommandExample",
    "CommandFamily",
    "CommandRejected",
    "CommandSpec",
    "EffectCheck",
    "ErrorKind",
    "HttpRequest",
    "JsonObject",
    "OAuthProvider",
    "OnUnknown",
    "OutcomeExample",
    "PathSegment",
    "Provider",
    "ProviderSpec",
    "ReadFailure",
    "ReadProblem",
    "Reading",
    "RunReading",
    "RunState",
    "Secret",
    "StaticKeyProvider",
    "Status",
    "StatusRead",
    "StrictModel",
    "TargetBase",
    "TimeoutSettings",
    "Token",
    "Verdict",
    "bearer_token",
    "classify_common",
    "classify_read_common",
    "clip",
    "header",
    "header_safe",
    "json_or_none",
    "parse_retry_after",
    "plain_read",
    "reference_of",
    "resolve_secret",
    "scope_busy",
    "segment",
    "status_document",
    "unexpected",
]
