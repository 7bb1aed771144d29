"""Settings, read from ``RALLYPOINT_*`` environment variables and validated at start."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RALLYPOINT_", extra="ignore")

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
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Logging level."
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
