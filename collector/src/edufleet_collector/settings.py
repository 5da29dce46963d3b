"""Settings of the collector, read from ``EDUFLEET_*`` environment variables."""

from __future__ import annotations

import secrets
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .errors import ConfigError

PLACEHOLDER_SECRETS = {"", "changeme", "change-me", "secret", "please-change-me"}
MIN_SECRET_LENGTH = 32


class Settings(BaseSettings):
    """Every setting of the collector's programs: migrate, serve, ingest, worker."""

    model_config = SettingsConfigDict(env_prefix="EDUFLEET_", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    database_url: str = Field(
        description="libpq URL of the PostgreSQL or TimescaleDB database",
    )
    mqtt_url: str = Field(
        default="mqtt://127.0.0.1:1883",
        description="broker URL: mqtt://host:port or mqtts://host:port",
    )
    mqtt_username: str | None = None
    mqtt_password: SecretStr | None = None
    mqtt_ca_file: str | None = None
    mqtt_admin_username: str | None = Field(
        default=None,
        description="the broker's dynamic security admin; enrollment uses it to "
        "create each device's MQTT identity",
    )
    mqtt_admin_password: SecretStr | None = None
    broker_public_url: str | None = Field(
        default=None,
        description="broker URL enrolled agents are told to use, e.g. "
        "mqtts://mqtt.example.org:8883; EDUFLEET_MQTT_URL when unset",
    )
    broker_ca_file: str | None = Field(
        default=None,
        description="PEM file of the CA that signed the broker's certificate; "
        "enrolled agents receive it and pin it",
    )
    enroll_failures_per_ip: int = Field(
        default=10,
        ge=1,
        description="failed enrollments one client address may make per window",
    )
    enroll_failure_window_seconds: float = Field(default=900.0, gt=0)
    secret_key: SecretStr = Field(
        default_factory=lambda: SecretStr(""),
        description="key that signs cookies, links and tokens; 32+ characters",
    )
    public_url: str = Field(
        default="http://127.0.0.1:8000",
        description="base URL printed on QR labels and in notification links",
    )
    upload_dir: str = Field(
        default="/var/lib/edufleet/uploads",
        description="folder for report photos, outside any web root",
    )
    upload_max_bytes: int = Field(default=5 * 1024 * 1024, ge=1024)
    personal_data_retention_days: int = Field(
        default=180,
        ge=1,
        description="days after a ticket closes before its reporter's name and "
        "phone number are erased and the report's photo deleted",
    )
    qr_rate_per_minute: float = Field(
        default=30.0, gt=0, description="QR page requests per client per minute"
    )
    qr_reports_per_hour: float = Field(
        default=20.0, gt=0, description="reports per client (and per device) an hour"
    )
    storage_mode: Literal["auto", "timescale", "native"] = "auto"
    telemetry_retention_days: int = Field(default=90, ge=1, le=3650)
    telemetry_partitions_ahead_days: int = Field(default=7, ge=1, le=90)
    state_history_retention_days: int = Field(
        default=400,
        ge=1,
        le=3650,
        description="days of devices' connection-state changes kept (about 1 M "
        "rows a day for 300,000 devices)",
    )
    db_pool_min_size: int = Field(default=2, ge=1)
    db_pool_max_size: int = Field(default=20, ge=1)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    ingest_batch_size: int = Field(
        default=2000, ge=1, le=100_000, description="messages per database batch"
    )
    ingest_batch_ms: int = Field(
        default=100, ge=1, le=60_000, description="longest wait before a batch commits"
    )
    ingest_max_pending: int = Field(
        default=20_000,
        ge=10,
        le=65_535,
        description="unacknowledged telemetry messages held in memory (the "
        "telemetry connection's MQTT 5 Receive Maximum; the control connection "
        "holds up to 1,000 more), so the broker queues the rest while the "
        "database is slow",
    )
    ingest_max_payload_bytes: int = Field(default=256 * 1024, ge=1024)
    ingest_max_clock_ahead_seconds: float = Field(
        default=300.0, gt=0, description="a sample further in the future is refused"
    )
    ingest_max_sample_age_days: float = Field(
        default=30.0, gt=0, description="a sample older than this is refused"
    )
    ingest_clock_suspect_seconds: float = Field(
        default=120.0,
        gt=0,
        description="a live message whose clock is off by more flags the device",
    )
    ingest_device_cache_seconds: float = Field(default=300.0, gt=0)
    ingest_session_expiry_seconds: int = Field(default=86_400, ge=60)
    ingest_last_seen_resolution_seconds: float = Field(
        default=10.0,
        ge=0,
        description="a device's last_seen is rewritten at most this often",
    )
    ingest_rejected_retention_days: float = Field(
        default=30.0, gt=0, description="refused messages are kept this long"
    )
    silence_factor: float = Field(
        default=3.0,
        ge=1.0,
        description="a device is silent after this many report intervals without "
        "a message",
    )
    silence_default_interval_seconds: float = Field(default=60.0, gt=0)
    silence_check_seconds: float = Field(default=30.0, gt=0)

    ticket_accept_timeout_seconds: int = Field(
        default=600,
        ge=10,
        description="a dispatched ticket not accepted in this time goes to the backup",
    )
    ticket_self_recover: bool = Field(
        default=True,
        description="close a fault ticket when the fault clears before acceptance",
    )
    ticket_fault_cooldown_hours: float = Field(
        default=168.0,
        gt=0,
        description="a fault recurring this soon after its fix reopens the ticket; "
        "a fix without recurrence for this long is marked verified",
    )
    ticket_rating_days: float = Field(
        default=3.0, gt=0, description="an unrated resolved ticket closes after this"
    )
    ticket_outage_min_devices: int = Field(
        default=3,
        ge=2,
        description="devices of one school lost together that make a network incident",
    )
    ticket_outage_window_seconds: float = Field(default=600.0, gt=0)
    notify_max_attempts: int = Field(default=8, ge=1, le=100)
    notify_lease_seconds: float = Field(
        default=120.0,
        gt=0,
        description="how long a worker holds a notification it is sending",
    )
    notify_timeout_seconds: float = Field(default=10.0, gt=0)
    smtp_host: str | None = Field(
        default=None, description="SMTP server for e-mail notifications"
    )
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_starttls: bool = True
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str = "edufleet@localhost"
    worker_interval_seconds: float = Field(default=2.0, gt=0, le=300)

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        if not value.startswith(("postgresql://", "postgres://")):
            raise ValueError(
                "must be a postgresql:// URL, e.g. postgresql://edufleet@127.0.0.1:5432/edufleet"
            )
        return value

    @field_validator("mqtt_url")
    @classmethod
    def _check_mqtt_url(cls, value: str) -> str:
        if not value.startswith(("mqtt://", "mqtts://")):
            raise ValueError(
                "must be an mqtt:// or mqtts:// URL, e.g. mqtt://127.0.0.1:1883"
            )
        return value

    @model_validator(mode="after")
    def _check_secret_key(self) -> Settings:
        key = self.secret_key.get_secret_value()
        if self.environment == "production":
            if key.lower() in PLACEHOLDER_SECRETS or len(key) < MIN_SECRET_LENGTH:
                raise ValueError(
                    "EDUFLEET_SECRET_KEY must be a random value of at least "
                    f"{MIN_SECRET_LENGTH} characters in production; generate one with "
                    "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`"
                )
        elif not key:
            # Outside production a missing key gets a random one, which is
            # fine for a single process but invalidates cookies on restart.
            self.secret_key = SecretStr(secrets.token_urlsafe(48))
        return self


def describe_validation_error(exc: ValidationError, prefix: str = "EDUFLEET_") -> str:
    """Turn pydantic's report into lines naming each environment variable."""
    lines = []
    for error in exc.errors():
        name = prefix + "_".join(str(part) for part in error["loc"]).upper()
        if not error["loc"]:
            name = "settings"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "missing":
            message = "is required but not set"
        lines.append(f"{name}: {message}")
    return "\n".join(lines)


def load_settings() -> Settings:
    """Read the settings from the environment; ConfigError names any culprit."""
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigError(
            "invalid configuration:\n" + describe_validation_error(exc)
        ) from exc
