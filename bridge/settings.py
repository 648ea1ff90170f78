"""Typed configuration: a YAML file plus ``BRIDGE__SECTION__FIELD`` environment overrides.

Only this module reads the environment. Credentials are references (``{env: NAME}`` or
``{file: PATH}``), resolved once at start-up into :class:`pydantic.SecretStr`; inline secrets are
refused so that they cannot end up in a config file, a ConfigMap or a log line.

Example::

    settings = load_settings(Path("config.yaml"))
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from bridge.errors import ConfigError

ENV_PREFIX = "BRIDGE__"
_PROVIDER_TAGS = frozenset({"zilliant", "zuora", "workfloo", "8x8"})
DLQ_HEADROOM_BYTES = 65_536


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretRef(_Model):
    """Where a credential comes from: an environment variable or a file (a Kubernetes secret mount)."""

    env: str | None = None
    file: Path | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of 'env' or 'file'")
        return self

    def resolve(self, environ: Mapping[str, str]) -> SecretStr:
        if self.env is not None:
            value = environ.get(self.env)
            if not value:
                raise ValueError(f"environment variable {self.env} is not set or empty")
            return SecretStr(value)
        assert self.file is not None
        try:
            return SecretStr(self.file.read_text(encoding="utf-8").strip())
        except OSError as exc:
            raise ValueError(f"cannot read secret file {self.file}: {exc.strerror}") from exc


def _resolve_secret(value: Any, info: Any) -> Any:
    if isinstance(value, SecretStr):
        return value
    if isinstance(value, str):
        raise ValueError("inline secrets are not allowed; use {env: VAR} or {file: /path}")
    ref = SecretRef.model_validate(value)
    environ = (info.context or {}).get("environ", os.environ)
    return ref.resolve(environ)


class TimeoutSettings(_Model):
    connect_s: float = Field(default=5.0, gt=0)
    total_s: float = Field(default=30.0, gt=0)


class RetrySettings(_Model):
    """Retry policy for one target: attempts within a total time budget, full-jitter backoff."""

    max_attempts: int = Field(default=5, ge=1, le=50)
    budget_s: float = Field(default=60.0, gt=0)
    base_backoff_s: float = Field(default=0.2, gt=0)
    max_backoff_s: float = Field(default=10.0, gt=0)
    max_retry_after_s: float = Field(default=60.0, gt=0)


class ConflictSettings(_Model):
    """What to do with a Zilliant 409 (scope busy): report at once, or retry until a deadline."""

    policy: Literal["report", "retry"] = "report"
    retry_deadline_s: float = Field(default=300.0, gt=0)


class CircuitSettings(_Model):
    failure_threshold: int = Field(default=10, ge=1)
    open_s: float = Field(default=30.0, gt=0)
    mode: Literal["fail_fast", "hold"] = "hold"
    max_held: int = Field(default=100, ge=0, description="Commands held while open; more fail fast.")


class RateLimitSettings(_Model):
    rate_per_s: float | None = Field(default=None, gt=0, description="None disables the limit.")
    burst: int = Field(default=10, ge=1)


OnUnknown = Literal["retry", "report", "read_before_write"]


class TargetBase(_Model):
    base_url: str
    allow_http: bool = Field(default=False, description="Permit plain http:// (the local sandbox only).")
    ca_file: Path | None = Field(default=None, description="Custom CA bundle for this target's TLS.")
    timeouts: TimeoutSettings = TimeoutSettings()
    retry: RetrySettings = RetrySettings()
    circuit: CircuitSettings = CircuitSettings()
    rate_limit: RateLimitSettings = RateLimitSettings()
    conflict: ConflictSettings = ConflictSettings()
    max_age_s: float | None = Field(default=None, gt=0, description="Refuse commands older than this.")
    on_unknown: OnUnknown = Field(
        default="report",
        description="A command found dispatched but not done after a crash: retry it, or report it.",
    )

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
        if self.on_unknown == "read_before_write" and getattr(self, "provider", None) != "8x8":
            raise ValueError("on_unknown: read_before_write needs a status read; only 8x8 targets have one")
        return self


Secret = Annotated[SecretStr, Field(json_schema_extra={"format": "secret-ref"})]


class ZilliantTarget(TargetBase):
    provider: Literal["zilliant"]
    token_url: str = Field(description="Salesforce token endpoint, e.g. https://login.salesforce.com/...")
    forwarded_host: str = Field(description="X-Forwarded-Host value naming the OAuth host.")
    token_ttl_s: float = Field(
        default=3600.0, gt=0, description="Salesforce returns no expires_in: the org session timeout."
    )
    username: Secret
    password: Secret
    client_id: Secret
    client_secret: Secret

    _secrets = field_validator("username", "password", "client_id", "client_secret", mode="before")(
        _resolve_secret
    )


class ZuoraTarget(TargetBase):
    provider: Literal["zuora"]
    token_url: str | None = Field(default=None, description="Defaults to <base_url>/oauth/token.")
    on_unknown: OnUnknown = Field(default="retry", description="Safe: the Idempotency-Key replays (24 h).")
    client_id: Secret
    client_secret: Secret

    _secrets = field_validator("client_id", "client_secret", mode="before")(_resolve_secret)

    @property
    def effective_token_url(self) -> str:
        return self.token_url or f"{self.base_url}/oauth/token"


class WorkflooTarget(TargetBase):
    provider: Literal["workfloo"]
    sandbox: bool = Field(default=False, description="Add ?sandbox=true (ignored on the sandbox host).")
    api_key: Secret

    _secrets = field_validator("api_key", mode="before")(_resolve_secret)


class EightByEightTarget(TargetBase):
    provider: Literal["8x8"]
    account_id: str = Field(pattern=r"^[A-Za-z0-9._~-]{1,128}$")
    on_unknown: OnUnknown = Field(
        default="read_before_write", description="GET the instance; PATCH only if not yet in the asked state."
    )
    api_key: Secret

    _secrets = field_validator("api_key", mode="before")(_resolve_secret)


TargetSettings = Annotated[
    ZilliantTarget | ZuoraTarget | WorkflooTarget | EightByEightTarget, Field(discriminator="provider")
]


class KafkaSecuritySettings(_Model):
    """TLS and SASL for every Kafka client the bridge creates (consumer, producer, admin, CLI)."""

    protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: Secret | None = None
    sasl_password: Secret | None = None
    ssl_cafile: Path | None = Field(
        default=None, description="CA bundle that signed the brokers' certificates."
    )
    ssl_certfile: Path | None = Field(default=None, description="Client certificate (mutual TLS).")
    ssl_keyfile: Path | None = Field(default=None, description="Client private key (mutual TLS).")
    ssl_key_password: Secret | None = None
    ssl_check_hostname: bool = True

    _secrets = field_validator("sasl_username", "sasl_password", "ssl_key_password", mode="before")(
        _resolve_secret
    )

    @model_validator(mode="after")
    def _consistent(self) -> KafkaSecuritySettings:
        sasl = self.protocol.startswith("SASL")
        if sasl and (self.sasl_mechanism is None or self.sasl_username is None or self.sasl_password is None):
            raise ValueError(f"{self.protocol} needs sasl_mechanism, sasl_username and sasl_password")
        if not sasl and self.sasl_mechanism is not None:
            raise ValueError(f"sasl_mechanism is set but protocol is {self.protocol}; use SASL_SSL")
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("give both ssl_certfile and ssl_keyfile for mutual TLS, or neither")
        if not self.protocol.endswith("SSL") and (self.ssl_cafile or self.ssl_certfile):
            raise ValueError(f"TLS files are set but protocol is {self.protocol}; use SSL or SASL_SSL")
        return self


class KafkaSettings(_Model):
    bootstrap_servers: str = "127.0.0.1:9092"
    security: KafkaSecuritySettings = KafkaSecuritySettings()
    group_id: str = "workflow-bridge"
    client_id: str = "workflow-bridge"
    enable_idempotence: bool = Field(
        default=True, description="Idempotent producer; turn off for brokers without InitProducerId."
    )
    acks: Literal["all", "1", "0"] = "all"
    compression_type: Literal["gzip", "snappy", "lz4", "zstd"] | None = None
    linger_ms: int = Field(default=5, ge=0)
    max_request_size: int = Field(
        default=1_048_576, ge=4096, description="Largest produce request, in bytes."
    )
    max_batch_size: int = Field(
        default=1_000_000,
        ge=1024,
        description="Producer batch bytes per partition; small batches stall senders.",
    )
    fetch_max_wait_ms: int = Field(
        default=50,
        ge=0,
        description="How long the broker may hold an empty fetch; lower means lower latency.",
    )
    session_timeout_ms: int = Field(default=30000, ge=1000)
    heartbeat_interval_ms: int = Field(default=3000, ge=100)
    max_poll_records: int = Field(default=500, ge=1)
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    max_poll_interval_ms: int = Field(default=300000, ge=1000)
    request_timeout_ms: int = Field(default=30000, ge=1000)


class TopicSettings(_Model):
    run_commands: str = "workflow.run.commands"
    control_commands: str = "workflow.control.commands"
    run_outcomes: str = "workflow.run.outcomes"
    control_outcomes: str = "workflow.control.outcomes"
    dead_letter: str = "workflow.commands.dlq"
    ledger: str = "workflow.bridge.ledger"


class LedgerSettings(_Model):
    """The command ledger: which command ids ran, kept in the compacted ``topics.ledger`` topic."""

    enabled: bool = Field(default=True, description="Off: at-least-once, a redelivery calls again.")
    retention_s: float = Field(
        default=604_800.0, ge=60, description="How long an id is remembered; equals the topic's retention.ms."
    )
    restore_batch: int = Field(default=10_000, ge=1, description="Records per fetch while restoring.")


class EngineSettings(_Model):
    max_in_flight: int = Field(default=1000, ge=1, description="Commands held in memory at once.")
    drain_grace_s: float = Field(default=20.0, ge=0, description="Time to finish in-flight work on stop.")
    commit_interval_s: float = Field(default=0.5, gt=0)
    max_message_bytes: int = Field(
        default=983_040,
        ge=1024,
        description="Larger command values go to the DLQ (must fit a produce request).",
    )
    max_error_body_bytes: int = Field(default=2048, ge=64)
    publish_retry_backoff_s: float = Field(default=0.5, gt=0)


class HttpSettings(_Model):
    max_connections: int = Field(default=0, ge=0, description="0 means: the engine's max_in_flight.")
    max_connections_per_host: int = Field(default=0, ge=0)


class ObservabilitySettings(_Model):
    host: str = "0.0.0.0"  # noqa: S104 - the metrics/health port must be reachable by the kubelet
    port: int | None = Field(
        default=9464,
        ge=0,
        le=65535,
        description="Health and metrics port; 0 picks a free one, null disables.",
    )
    stall_after_s: float = Field(
        default=120.0, gt=0, description="Not ready when work waits and nothing finished for this long."
    )
    log_format: Literal["json", "text"] = "json"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class Settings(_Model):
    kafka: KafkaSettings = KafkaSettings()
    topics: TopicSettings = TopicSettings()
    engine: EngineSettings = EngineSettings()
    ledger: LedgerSettings = LedgerSettings()
    http: HttpSettings = HttpSettings()
    observability: ObservabilitySettings = ObservabilitySettings()
    targets: dict[str, TargetSettings] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _dead_letters_fit(self) -> Settings:
        # a dead letter carries the original value plus headers: it must always be publishable
        limit = self.kafka.max_request_size - DLQ_HEADROOM_BYTES
        if self.engine.max_message_bytes > limit:
            raise ValueError(
                f"engine.max_message_bytes ({self.engine.max_message_bytes}) must be at most "
                f"kafka.max_request_size - {DLQ_HEADROOM_BYTES} ({limit}) so that dead letters can be sent"
            )
        return self

    @field_validator("targets")
    @classmethod
    def _target_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", name):
                raise ValueError(f"target name {name!r} must match [A-Za-z0-9][A-Za-z0-9._-]{{0,62}}")
        return value


def apply_env_overrides(raw: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """``BRIDGE__KAFKA__BOOTSTRAP_SERVERS=host:9092`` sets ``kafka.bootstrap_servers``.

    Values are parsed as YAML scalars so that ``true``, ``5`` and ``null`` keep their types.
    """
    merged: dict[str, Any] = dict(raw)
    for key in sorted(environ):
        if not key.startswith(ENV_PREFIX):
            continue
        path = [part.lower() for part in key[len(ENV_PREFIX) :].split("__") if part]
        if not path:
            continue
        node = merged
        for part in path[:-1]:
            child = node.get(part)
            child = dict(child) if isinstance(child, dict) else {}
            node[part] = child
            node = child
        node[path[-1]] = yaml.safe_load(environ[key])
    return merged


def _format_errors(exc: ValidationError, origin: str) -> str:
    lines = [f"invalid configuration in {origin}:"]
    for err in exc.errors():
        loc = list(err["loc"])
        if len(loc) > 2 and loc[0] == "targets" and loc[2] in _PROVIDER_TAGS:
            del loc[2]  # the union's tag, not a field the user wrote
        where = ".".join(str(p) for p in loc) or "<root>"
        lines.append(f"  - {where}: {err['msg']}")
    return "\n".join(lines)


def parse_settings(raw: Mapping[str, Any], environ: Mapping[str, str], origin: str = "<config>") -> Settings:
    merged = apply_env_overrides(dict(raw), environ)
    try:
        return Settings.model_validate(merged, context={"environ": environ})
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, origin)) from None


def load_settings(path: Path | None, environ: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    raw: Any = {}
    if path is not None:
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"config file {path} must contain a mapping at the top level")
    return parse_settings(raw, env, str(path) if path else "<defaults>")
