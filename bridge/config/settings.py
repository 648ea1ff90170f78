"""Typed configuration models. Reading (YAML file, environment overrides) is :mod:`bridge.config.loading`;
credential references are :mod:`bridge.config.secrets`; the targets are validated against the
provider catalog by :func:`bridge.providers.settings.load_settings`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from bridge.config.admin import AdminSettings
from bridge.config.base import SettingsModel
from bridge.config.presets import Preset, apply_preset
from bridge.config.providers import ProvidersSettings
from bridge.config.secrets import Secret, resolve_secret
from bridge.config.targets import TargetBase
from bridge.config.tracking import TrackingSettings, horizons_fit_retention

DLQ_HEADROOM_BYTES = 65_536


class KafkaSecuritySettings(SettingsModel):
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
        resolve_secret
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


class KafkaSettings(SettingsModel):
    bootstrap_servers: str = "127.0.0.1:9092"
    security: KafkaSecuritySettings = KafkaSecuritySettings()
    group_id: str = "workflow-bridge"
    client_id: str = "workflow-bridge"
    startup_timeout_s: float | None = Field(
        default=60.0,
        gt=0,
        description="How long `bridge run` tries to reach the broker at start, then exits 1; null: for ever.",
    )
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
    session_timeout_ms: int = Field(
        default=10000, ge=1000, description="A member silent this long (e.g. killed) loses its partitions."
    )
    heartbeat_interval_ms: int = Field(
        default=1000, ge=100, description="Also how soon a member notices that the group rebalances."
    )
    rebalance_timeout_ms: int | None = Field(
        default=None,
        ge=1000,
        description="How long a rebalance waits for members to drain and rejoin; "
        "default engine.drain_grace_s + 5 s, so that a drain is never cut short by the broker.",
    )
    group_instance_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=249,
        pattern=r"^[A-Za-z0-9._-]+$",
        description="Static membership (KIP-345): a stable name per member, e.g. a StatefulSet pod name.",
    )
    max_poll_records: int = Field(default=500, ge=1)
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    max_poll_interval_ms: int = Field(default=300000, ge=1000)
    request_timeout_ms: int = Field(default=30000, ge=1000)
    transactions: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="One visible outcome per command for read_committed readers (docs/exactly-once.md): "
        "auto uses Kafka transactions where the broker grants a transactional producer, on refuses to start "
        "where it does not, off stays at-least-once.",
    )
    transaction_batch_ms: int = Field(
        default=100,
        ge=1,
        description="A command partition's transaction commits at most this long after its first outcome.",
    )
    transaction_batch_max: int = Field(
        default=500, ge=1, description="... or as soon as it holds this many finished commands."
    )
    transaction_timeout_ms: int = Field(
        default=60000,
        ge=1000,
        description="The broker aborts a transaction left open this long (a crashed owner's).",
    )


class TopicSettings(SettingsModel):
    run_commands: str = "workflow.run.commands"
    control_commands: str = "workflow.control.commands"
    run_outcomes: str = "workflow.run.outcomes"
    control_outcomes: str = "workflow.control.outcomes"
    dead_letter: str = "workflow.commands.dlq"
    ledger: str = "workflow.bridge.ledger"
    lifecycle: str = "workflow.run.lifecycle"
    parked: str = "workflow.bridge.parked"

    @property
    def routes(self) -> dict[str, str]:
        """Each command topic and the topic its outcomes go to."""
        return {self.run_commands: self.run_outcomes, self.control_commands: self.control_outcomes}

    @property
    def results(self) -> tuple[str, ...]:
        """Every topic the bridge writes results to: the outcome topics, then the dead-letter topic."""
        return (self.run_outcomes, self.control_outcomes, self.dead_letter)


class LedgerStoreSettings(SettingsModel):
    """A local disk store per owned ledger partition (RocksDB): memory stops growing with the retention
    and a restart that keeps the directory reads only the changelog's tail. Unset: all in memory."""

    path: str | None = Field(
        default=None, description="Directory of the local stores (a persistent volume); unset: in memory."
    )
    cache_mb: int = Field(default=32, ge=1, description="Block cache per member, shared by its stores.")
    max_age_s: float = Field(
        default=86_400.0,
        gt=0,
        description="A store whose checkpoint is older is rebuilt; at most the ledger topic's "
        "delete.retention.ms (1 day unless set), after which compaction drops tombstones.",
    )


class LedgerSettings(SettingsModel):
    """The command ledger: which command ids ran, kept in the compacted ``topics.ledger`` topic."""

    enabled: bool = Field(default=True, description="Off: at-least-once, a redelivery calls again.")
    retention_s: float = Field(
        default=604_800.0, ge=60, description="How long an id is remembered; equals the topic's retention.ms."
    )
    restore_batch: int = Field(default=10_000, ge=1, description="Records per fetch while restoring.")
    store: LedgerStoreSettings = LedgerStoreSettings()


class EngineSettings(SettingsModel):
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
    timing_header: bool = Field(
        default=False,
        description="Add a bridge.timing header (fetched and started instants) to every outcome.",
    )


class HttpSettings(SettingsModel):
    max_connections: int = Field(default=0, ge=0, description="0 means: the engine's max_in_flight.")
    max_connections_per_host: int = Field(default=0, ge=0)


class TracingSettings(SettingsModel):
    """OpenTelemetry tracing, exported over OTLP/HTTP. A field left unset falls back to the standard
    OTEL_* variable, then to the SDK default."""

    enabled: bool = Field(default=False, description="Off by default; nothing is imported or traced then.")
    endpoint: str | None = Field(
        default=None,
        description="OTLP/HTTP traces URL, e.g. http://otel-collector:4318/v1/traces; unset: "
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, else OTEL_EXPORTER_OTLP_ENDPOINT + /v1/traces, "
        "else http://localhost:4318/v1/traces.",
    )
    sample_ratio: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Share of new traces kept (parent-based: a sampled parent is always followed); "
        "unset: OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG, else every trace.",
    )
    service_name: str | None = Field(
        default=None, description="Unset: OTEL_SERVICE_NAME, else workflow-bridge."
    )

    @field_validator("endpoint")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL (OTLP over HTTP)")
        return value


class ObservabilitySettings(SettingsModel):
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
    tracing: TracingSettings = TracingSettings()


class ParkingSettings(SettingsModel):
    """Order-keeping parking in ``topics.parked`` of commands whose target is down or full."""

    enabled: bool = Field(default=True, description="Off: such commands are answered at once instead.")
    max_held: int = Field(
        default=1000,
        ge=1,
        description="Parked records in memory until due, per parking partition: above it, its fetch pauses.",
    )


class Settings(SettingsModel):
    preset: Preset | None = Field(
        default=None, description="latency or throughput: a documented set of kafka values (PRESETS)."
    )
    kafka: KafkaSettings = KafkaSettings()
    topics: TopicSettings = TopicSettings()
    engine: EngineSettings = EngineSettings()
    ledger: LedgerSettings = LedgerSettings()
    tracking: TrackingSettings = TrackingSettings()
    parking: ParkingSettings = ParkingSettings()
    http: HttpSettings = HttpSettings()
    observability: ObservabilitySettings = ObservabilitySettings()
    admin: AdminSettings = AdminSettings()
    providers: ProvidersSettings = ProvidersSettings()
    targets: dict[str, TargetBase] = Field(default_factory=dict)
    """Each provider's target model: read with :func:`bridge.providers.settings.load_settings`, whose
    settings model validates every target against the provider catalog's union of target models."""
    _horizons = model_validator(mode="after")(horizons_fit_retention)

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, raw: Any) -> Any:
        return apply_preset(raw) if isinstance(raw, dict) else raw

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
