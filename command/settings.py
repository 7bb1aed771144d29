"""Settings, read from ``RALLYPOINT_*`` environment variables (or a settings file, see
:func:`config_file`) and validated at start."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

#: Names a settings file (TOML, the settings' names without the prefix: database_url = "...").
CONFIG_ENV = "RALLYPOINT_CONFIG"
#: Where a settings file is looked for when RALLYPOINT_CONFIG names none, first found wins.
CONFIG_PLACES = (
    Path("rallypoint.toml"),
    Path.home() / ".config" / "rallypoint" / "rallypoint.toml",
    Path("/etc/rallypoint/rallypoint.toml"),
)


def config_file() -> Path | None:
    """The settings file in force: RALLYPOINT_CONFIG's (it must exist), else the first of
    :data:`CONFIG_PLACES` that does, else none. Environment variables override it."""
    named = os.environ.get(CONFIG_ENV)
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise ValueError(f"{CONFIG_ENV} names {path}, which is not a file")
        return path
    return next((p for p in CONFIG_PLACES if p.is_file()), None)


def database_source() -> str:
    """Where the database URL came from, for messages that say which database was used."""
    if os.environ.get("RALLYPOINT_DATABASE_URL"):
        return "RALLYPOINT_DATABASE_URL"
    path = config_file()
    if path is not None:
        return f"the settings file {path.resolve()}"
    return "the default (no RALLYPOINT_DATABASE_URL, no settings file)"


def describe_database(url: str) -> str:
    """The database a URL names, for people: a SQLite file's absolute path, or the URL
    without its password."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        name = parsed.database or ":memory:"
        return name if name == ":memory:" else str(Path(name).resolve())
    return parsed.render_as_string(hide_password=True)


def missing_sqlite_file(url: str) -> Path | None:
    """The file a SQLite URL names, when it does not exist yet (opening it would make it)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    path = Path(parsed.database).resolve()
    return None if path.exists() else path


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RALLYPOINT_", extra="ignore")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments, then RALLYPOINT_* variables, then the settings file (:func:`config_file`)."""
        path = config_file()
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    database_url: str = Field(
        default="sqlite:///var/rallypoint.db",
        description="SQLAlchemy URL: sqlite:///PATH (embedded, default) or "
        "postgresql+psycopg://USER@HOST/DB (PostGIS).",
    )
    host: str = Field(default="127.0.0.1", description="Address the server listens on.")
    port: int = Field(default=8000, ge=1, le=65535, description="Port the server listens on.")
    max_request_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=1024,
        description="Largest request body accepted (layer imports included), in bytes.",
    )
    max_unzipped_bytes: int = Field(
        default=200 * 1024 * 1024,
        ge=1024 * 1024,
        description="Most a zipped Shapefile import may unpack to, all files together, in bytes.",
    )
    max_unzip_ratio: float = Field(
        default=500.0,
        ge=10,
        description="How many times its packed size a file (over 1 MiB) of a zip may unpack to.",
    )
    event_reads_burst: int = Field(
        default=10_000,
        ge=1000,
        description="Events of the log one token may read at once (pages, websocket resumes).",
    )
    event_reads_per_s: float = Field(
        default=1000.0,
        gt=0,
        description="Events a second by which that allowance refills; beyond it reads get 429.",
    )
    header_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="Seconds a client has to send a request's headers, from connecting (or from "
        "the previous answer on a kept-alive connection); then it is disconnected.",
    )
    body_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="Seconds a request body may pause between two pieces before the answer is 408.",
    )
    token_ttl_s: int = Field(
        default=12 * 3600,
        ge=60,
        le=30 * 24 * 3600,
        description="Lifetime of a session token after login, in seconds (60 s to 30 days).",
    )
    ws_heartbeat_s: float = Field(
        default=15.0,
        ge=0.05,
        le=300,
        description="Seconds between websocket heartbeats; a client silent for two is closed.",
    )
    ws_queue_size: int = Field(
        default=1000,
        ge=100,  # one activation alone sends a few dozen messages at once
        le=1_000_000,
        description="Messages a websocket subscriber may have waiting before it must resync.",
    )
    webhook_url: str | None = Field(
        default=None,
        description="Outbound gateway (SMS/phone) that call-tree notifications are posted to.",
    )
    exercise_webhook_url: str | None = Field(
        default=None,
        description="The gateway configured as exercise-safe: the only outside channel a "
        "drill's call-outs reach (each marked EXERCISE / 演练). Without it they are logged as "
        "withheld.",
    )
    cap_webhook_url: str | None = Field(
        default=None,
        description="The park's or authority's platform that CAP 1.2 alerts (activation, level "
        "changes, stand-down) are posted to, as application/cap+xml.",
    )
    cap_alerts: bool = Field(
        default=False,
        description="Make and log CAP 1.2 alerts even with no platform to post them to (with "
        "RALLYPOINT_CAP_WEBHOOK_URL set they are made anyway).",
    )
    cap_exercise_safe: bool = Field(
        default=False,
        description="Whether that platform takes drills' alerts (status Exercise); if not, a "
        "drill's alerts are logged only.",
    )
    public_url: str | None = Field(
        default=None,
        description="The server's address as the people called reach it (for the answer link "
        "of a call-out, e.g. https://rallypoint.plant.example); without it the link is a path.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Logging level."
    )
    clock_file: Path | None = Field(
        default=None,
        description="Tests and rehearsals only: the server's time is the one written in this "
        "file (plans.clock.FileClock), shared by every process started with it. Unset: the "
        "system's clock.",
    )
    audit_key: Path | None = Field(
        default=None,
        description="Ed25519 private key (PEM, mode 600) that signs the audit checkpoints; "
        "created on first use. Default: audit-key.pem beside the SQLite database, or under var/.",
    )
    audit_checkpoints: Path | None = Field(
        default=None,
        description="Append-only file of signed audit checkpoints (JSON lines); its keyring of "
        "public keys is beside it (NAME.keys.jsonl). Default: DB-checkpoints.jsonl beside the "
        "key's default place, DB the database's name.",
    )
    audit_checkpoint_s: float = Field(
        default=60.0,
        ge=1,
        le=24 * 3600,
        description="At most this often (seconds) the server signs the heads that moved.",
    )
    mqtt_url: str | None = Field(
        default=None,
        pattern=r"^mqtts?://[^/?#]+/?$",
        description="The MQTT broker gateways publish to (mqtt://host:1883, mqtts://host:8883 "
        "for TLS); unset, MQTT ingestion is off (docs/monitoring.md).",
    )
    mqtt_client_id: str = Field(
        default="rallypoint",
        min_length=1,
        max_length=64,
        description="Rallypoint's client id at the broker: fixed, as its persistent session "
        "(the messages queued while it is away) is kept under it.",
    )
    mqtt_username: str | None = Field(default=None, description="User name at the broker.")
    mqtt_password: SecretStr | None = Field(default=None, description="Password at the broker.")
    mqtt_topic_prefix: str = Field(
        default="rallypoint",
        pattern=r"^[^#+/]+(/[^#+/]+)*$",
        description="First level(s) of the topics: PREFIX/<site>/readings, .../positions, "
        ".../events; refused messages go to PREFIX/<site>/dead-letter.",
    )
    mqtt_max_payload_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        le=64 * 1024 * 1024,
        description="Largest MQTT message taken; a larger one goes to the dead letters.",
    )
    mqtt_backoff_initial_s: float = Field(
        default=0.5,
        gt=0,
        le=60,
        description="Wait before the first reconnection to a lost broker; it doubles with each "
        "failed attempt (with jitter) up to RALLYPOINT_MQTT_BACKOFF_MAX_S.",
    )
    mqtt_backoff_max_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="Longest wait between two reconnection attempts to the broker.",
    )
    group_url: str | None = Field(
        default=None,
        description="At a site server: the group's Rallypoint that 'rallypoint forward' sends "
        "the site's event log to and takes the group's plans from (docs/offline.md).",
    )
    group_token: SecretStr | None = Field(
        default=None,
        description="At a site server: the replicator token the group issued for this site "
        "('rallypoint replica add SITE' at the group).",
    )
    forward_site: str | None = Field(
        default=None,
        description="At a site server: the site whose log is forwarded (default: the only site "
        "in the database).",
    )
    forward_every_s: float = Field(
        default=2.0,
        gt=0,
        le=3600,
        description="How often the forwarder pushes new events to the group (seconds).",
    )
    replication_cut_after_s: float = Field(
        default=30.0,
        gt=0,
        description="At the group: a site whose forwarder has not called for this long shows "
        "its link cut on the group wall (seconds).",
    )

    @field_validator("database_url")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        try:
            backend = make_url(value).get_backend_name()
        except ArgumentError as exc:
            raise ValueError(f"not a database URL: {value!r}") from exc
        if backend not in {"sqlite", "postgresql"}:
            raise ValueError("Rallypoint runs on SQLite (embedded) or PostgreSQL with PostGIS")
        return value
