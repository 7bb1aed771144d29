"""SQLAlchemy models: one table per layer, plus sites, the change log and layer revisions.

Alembic owns the schema (``gis/migrations``); these models and the migrations must agree, which
``tests/test_migrations.py`` checks on both backends.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from shapely.geometry.base import BaseGeometry
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from gis.storage.types import Geometry, UTCDateTime

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Audited:
    """Who and when, on every row a person can change."""

    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_by: Mapped[str] = mapped_column(String(200))


class SiteRow(Audited, Base):
    __tablename__ = "sites"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64))
    crs: Mapped[str | None] = mapped_column(String(200), default=None)
    boundary: Mapped[BaseGeometry] = mapped_column(Geometry("POLYGON"))


class FeatureRow(Audited, Base):
    """Columns every layer table has."""

    __abstract__ = True
    layer_name: str

    site_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True
    )
    id: Mapped[str] = mapped_column(String(64), primary_key=True)

    if TYPE_CHECKING:
        # Each layer table declares its own geometry column (its own geometry type).
        geom: Mapped[BaseGeometry | None]


class ZoneRow(FeatureRow):
    __tablename__ = "zones"
    layer_name = "zones"

    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32), index=True)
    risk_grade: Mapped[str | None] = mapped_column(String(16))
    capacity: Mapped[int | None] = mapped_column(Integer)
    geom: Mapped[BaseGeometry] = mapped_column(Geometry("POLYGON"))


class ResourceRow(FeatureRow):
    __tablename__ = "resources"
    layer_name = "resources"

    name: Mapped[str | None] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32), index=True)
    quantity: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(32))
    geom: Mapped[BaseGeometry] = mapped_column(Geometry("POINT"))


class SensorRow(FeatureRow):
    __tablename__ = "sensors"
    layer_name = "sensors"

    name: Mapped[str | None] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32), index=True)
    substance: Mapped[str | None] = mapped_column(String(100))
    unit: Mapped[str | None] = mapped_column(String(100))
    warning: Mapped[float | None] = mapped_column(Float)
    alarm: Mapped[float | None] = mapped_column(Float)
    high_alarm: Mapped[float | None] = mapped_column(Float)
    geom: Mapped[BaseGeometry] = mapped_column(Geometry("POINT"))


class PersonRow(FeatureRow):
    __tablename__ = "people"
    layer_name = "people"

    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(100))
    team: Mapped[str | None] = mapped_column(String(100))
    shift: Mapped[str | None] = mapped_column(String(100))
    employer: Mapped[str] = mapped_column(String(200))
    employment: Mapped[str] = mapped_column(String(32))
    seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    geom: Mapped[BaseGeometry | None] = mapped_column(Geometry("POINT"), nullable=True)


class NetworkEdgeRow(FeatureRow):
    __tablename__ = "network_edges"
    layer_name = "network"

    name: Mapped[str | None] = mapped_column(String(200))
    foot: Mapped[bool] = mapped_column(Boolean)
    vehicle: Mapped[bool] = mapped_column(Boolean)
    oneway: Mapped[bool] = mapped_column(Boolean)
    width_m: Mapped[float | None] = mapped_column(Float)
    capacity: Mapped[float | None] = mapped_column(Float)
    door: Mapped[bool] = mapped_column(Boolean)
    stairs: Mapped[bool] = mapped_column(Boolean)
    geom: Mapped[BaseGeometry] = mapped_column(Geometry("LINESTRING"))


class BasemapRow(FeatureRow):
    """The surroundings drawn under the site: roads, buildings, water, landuse, place names."""

    __tablename__ = "basemap_features"
    layer_name = "basemap"

    kind: Mapped[str] = mapped_column(String(32), index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    subtype: Mapped[str | None] = mapped_column(String(100))
    geom: Mapped[BaseGeometry] = mapped_column(Geometry("GEOMETRY"))


class ReceptorRow(FeatureRow):
    """Sensitive receptors around the site: schools, hospitals, care homes, homes."""

    __tablename__ = "receptors"
    layer_name = "receptors"

    name: Mapped[str | None] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32), index=True)
    population: Mapped[int | None] = mapped_column(Integer)
    estimate: Mapped[str | None] = mapped_column(String(100))
    geom: Mapped[BaseGeometry] = mapped_column(Geometry("GEOMETRY"))


LAYER_ROWS: dict[str, type[FeatureRow]] = {
    row.layer_name: row
    for row in (
        ZoneRow,
        ResourceRow,
        SensorRow,
        PersonRow,
        NetworkEdgeRow,
        BasemapRow,
        ReceptorRow,
    )
}


class LayerRevision(Base):
    """A token that changes with every write to a layer, so caches know when they are stale."""

    __tablename__ = "layer_revisions"

    site_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True
    )
    layer: Mapped[str] = mapped_column(String(32), primary_key=True)
    token: Mapped[str] = mapped_column(String(32))


class ChangeRow(Base):
    """Append-only record of every change to the site model: what, who, when, and the data."""

    __tablename__ = "changes"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    site_id: Mapped[str] = mapped_column(String(64), index=True)
    layer: Mapped[str] = mapped_column(String(32))
    feature_id: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(16))
    version: Mapped[int] = mapped_column(Integer)
    actor: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: The ``layer.changed`` event (its sequence number in the site's log) that carried the
    #: change to the walls; None before it is sent (``command.layer_feed``).
    published_in: Mapped[int | None] = mapped_column(Integer, nullable=True)


class PlanTemplateRow(Base):
    """One version of a plan template and where it stands in the plan workflow
    (``plans.workflow``). Only a draft's content changes (``revision`` counts its saves); a
    version submitted, approved or superseded is never changed, and a run pins the version it
    started from."""

    __tablename__ = "plan_templates"

    site_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True
    )
    plan_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(2000))
    scenario_key: Mapped[str] = mapped_column(String(64), index=True)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: The YAML the planner wrote, comments and all (None: the version came as JSON).
    source: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(200))
    #: draft, submitted, approved (in force for activation), superseded or withdrawn
    status: Mapped[str] = mapped_column(String(16))
    #: Saves of the version while a draft (its ETag is "N", then "N.2", "N.3"...).
    revision: Mapped[int] = mapped_column(Integer)
    change_note: Mapped[str | None] = mapped_column(Text, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_by: Mapped[str] = mapped_column(String(200))
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    submitted_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    approved_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    superseded_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: Every transition of this version: action, by, at, and its note, reason or comment, and
    #: the sequence number of its event in the site's log when it was logged.
    history: Mapped[list[dict[str, Any]]] = mapped_column(JSON)


class UserRow(Base):
    """A person who signs in: roles say what they may do (see ``command.auth``)."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(400))
    roles: Mapped[list[str]] = mapped_column(JSON)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class TokenRow(Base):
    """A bearer token, stored as its SHA-256 only: a session after login, or a device's token
    (a sensor gateway), which may only post readings and positions for its site."""

    __tablename__ = "tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # session | device | wall
    user_id: Mapped[str | None] = mapped_column(
        String(64), ForeignKey("users.id", ondelete="CASCADE"), nullable=True, index=True
    )
    site_id: Mapped[str | None] = mapped_column(
        String(64), ForeignKey("sites.id", ondelete="CASCADE"), nullable=True
    )
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class SensorReadingRow(Base):
    """Each sensor's latest reading, kept so that a restart (and a new install's demo) starts
    with the wind known; older readings are not kept (what changed something is in the log)."""

    __tablename__ = "sensor_readings"

    site_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True
    )
    sensor_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[float] = mapped_column(Float)
    direction_deg: Mapped[float | None] = mapped_column(Float, nullable=True)
    observed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(200))


class SiteRoleRow(Base):
    """Roles a user holds on one site only, on top of ``users.roles`` (held on every site)."""

    __tablename__ = "site_roles"

    user_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    site_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True
    )
    roles: Mapped[list[str]] = mapped_column(JSON)


class LoginFailureRow(Base):
    """Failed sign-ins of one username (``user:NAME``) or one address (``address:IP``), kept in
    the database so that a restart does not forgive them and every server process counts them."""

    __tablename__ = "login_failures"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    last_failure_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class WsTicketRow(Base):
    """A single-use websocket ticket (its SHA-256), bound to the session token that asked."""

    __tablename__ = "ws_tickets"

    ticket_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    token_hash: Mapped[str] = mapped_column(
        String(64), ForeignKey("tokens.token_hash", ondelete="CASCADE")
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class AccountEventRow(Base):
    """Account administration, for the record: who did what to which user or device token,
    and when (disable, enable, password resets, role grants, device tokens)."""

    __tablename__ = "account_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(200))
    site_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)


class EventRow(Base):
    """The site's append-only event log: every state change of incident command, numbered per
    site and chained by hash to the one before, so that tampering shows (``rallypoint audit
    verify``). Broadcasts, replay, restart recovery and reviews all read it."""

    __tablename__ = "events"

    site_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    type: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(200))
    incident_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    #: The server process that appended it (``command.events.ORIGIN``; null: a tool). Not
    #: hashed: which process wrote an event is no part of what happened.
    origin: Mapped[str | None] = mapped_column(String(120), nullable=True)


class PositionFeedRow(Base):
    """People's latest positions and sensors' latest readings as one server process took them,
    for the others on the same database (``command.log_follower``: neither is logged as events,
    but for a change of tier). A row per process
    and site every quarter of a second, kept a minute. Used on PostgreSQL; on SQLite (one
    process) it stays empty."""

    __tablename__ = "position_feed"
    __table_args__ = (Index("ix_position_feed_at", "at"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    site_id: Mapped[str] = mapped_column(String(64))
    origin: Mapped[str] = mapped_column(String(120))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    #: person id -> [lon, lat, observed at (seconds since 1970, UTC)]
    positions: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: {"latest": sensor id -> its latest reading ({value, direction_deg, at, by}), "batches":
    #: [[taken at (epoch s), [sensor ids], [values], [directions]], ...]}, or null
    readings: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class EventHeadRow(Base):
    """Each site's last event (number and hash), written in the same transaction as the event:
    events deleted from the end of the log leave the head pointing past them, so the deletion
    shows (``docs/audit.md``). Signed checkpoints of the heads anchor them outside the
    database."""

    __tablename__ = "event_heads"

    site_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class NoticeTokenRow(Base):
    """The answer token of one call-tree notice (the event that requested it), stored as its
    SHA-256: only the person called holds it, through the link in the call-out, and it
    answers that notice only (``command.notifications``)."""

    __tablename__ = "notice_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    site_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("sites.id", ondelete="CASCADE"), index=True
    )
    seq: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class DrillScenarioRow(Base):
    """One version of a drill scenario (``plans.drills``): what a double-blind drill tests, its
    injects and the player actions expected. Only drill controllers read these; versions are
    never changed, an edit adds the next one."""

    __tablename__ = "drill_scenarios"

    site_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True
    )
    scenario_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(2000))
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(200))


class DrillRow(Base):
    """A drill: scheduled (blind: a window, the start drawn and sealed here; announced: now),
    then running, held, suspended by a real incident, and ended. The sealed start is never
    served to anyone; the site's event log hears of the drill only when it starts."""

    __tablename__ = "drills"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    site_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("sites.id", ondelete="CASCADE"), index=True
    )
    scenario_id: Mapped[str] = mapped_column(String(64))
    scenario_version: Mapped[int] = mapped_column(Integer)
    mode: Mapped[str] = mapped_column(String(16))
    window: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    sealed_start: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    incident_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(200))
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: The run's own bookkeeping (injects fired, time held), rebuilt from the log on restart.
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)


class ReviewRow(Base):
    """The after-action review of one ended incident (a drill's or a real one): generated
    from the event log when it ends, edited (causes, corrective actions) until signed off,
    then frozen with its hash (which the log also records)."""

    __tablename__ = "reviews"

    site_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True
    )
    incident_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    drill_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    ended_at: Mapped[datetime] = mapped_column(UTCDateTime())
    generated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    edits: Mapped[dict[str, Any]] = mapped_column(JSON)
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_by: Mapped[str] = mapped_column(String(200))
    signed_off_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    signed_off_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    hash: Mapped[str | None] = mapped_column(String(64), nullable=True)


class TopologyRulesRow(Audited, Base):
    """A site's own topology rules (``gis.topology``): how it tightens the defaults, and the
    recorded allowance when it loosens them. A site without a row keeps the defaults."""

    __tablename__ = "topology_rules"

    site_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True
    )
    rules: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: Why the site may be looser than the defaults (None: it is not).
    allowance: Mapped[str | None] = mapped_column(Text, nullable=True)


# -- geofences and contractors (``command.monitoring.fences``, ``.contractors``) --------------


class ZoneRuleRow(Audited, Base):
    """A zone's entry rules (``command.monitoring.fences``): who may be inside (roles, teams,
    certificates, induction), when (windows in the site's time zone), how many at once and for
    how long, and whom a breach notifies. A zone without a row has no rules."""

    __tablename__ = "zone_rules"

    site_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True
    )
    zone_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: The rules as ``command.monitoring.fences.Rules.as_dict`` writes them.
    rules: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: Whom a breach notifies: ``{"username": ...}`` or ``{"duty": ...}``, with a phone.
    owner: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class TemporaryFenceRow(Base):
    """A fence drawn on the wall for a while: a crane's swing radius (a circle, kept as its
    polygon with its centre and radius) or a hot-work area, with its rules and expiry."""

    __tablename__ = "temporary_fences"

    site_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True
    )
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200))
    rules: Mapped[dict[str, Any]] = mapped_column(JSON)
    owner: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    radius_m: Mapped[float | None] = mapped_column(Float, nullable=True)
    geom: Mapped[BaseGeometry] = mapped_column(Geometry("POLYGON"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    #: When it was expired by the clock or removed (None: in force until ``expires_at``).
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class CertificateRow(Base):
    """A person's certificate (``command.monitoring.contractors``): its type (``hot_work``,
    ``confined_space``...), number and expiry date."""

    __tablename__ = "person_certificates"

    site_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True
    )
    person_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    type: Mapped[str] = mapped_column(String(64), primary_key=True)
    number: Mapped[str] = mapped_column(String(64))
    #: The last day it is valid (the site's calendar).
    expires_on: Mapped[date] = mapped_column(Date)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())
    recorded_by: Mapped[str] = mapped_column(String(200))


class InductionRow(Base):
    """A person's site induction: when they passed it and until when it holds."""

    __tablename__ = "person_inductions"

    site_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True
    )
    person_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    passed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())
    recorded_by: Mapped[str] = mapped_column(String(200))


# -- wristbands (``command.monitoring.wristbands``) -------------------------------------------


class PositionSampleRow(Base):
    """People's positions, sampled for the daily report of dwell times and heat maps
    (``command.monitoring.wristbands``): at most one per person every ``SAMPLE_EVERY_S``
    seconds, and one at each change of zone; kept ``RETENTION_DAYS`` days."""

    __tablename__ = "position_samples"

    # 64-bit on PostGIS (5,000 people at one sample per 10 s pass 2**31 in 50 days); SQLite's
    # rowid is 64-bit already and autoincrements only as INTEGER.
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    site_id: Mapped[str] = mapped_column(String(64), ForeignKey("sites.id", ondelete="CASCADE"))
    person_id: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    lon: Mapped[float] = mapped_column(Float)
    lat: Mapped[float] = mapped_column(Float)
    accuracy_m: Mapped[float | None] = mapped_column(Float, nullable=True)
    #: The zone the position lies in (the first by id when zones overlap), or None.
    zone_id: Mapped[str | None] = mapped_column(String(64), nullable=True)

    __table_args__ = (Index("ix_position_samples_site_id_at", "site_id", "at"),)


class WristbandSettingsRow(Base):
    """A site's wristband timers: man-down after ``man_down_s`` without movement (within
    working hours, ``work_from``-``work_to`` in the site's time zone, both None: always) and
    signal lost after ``signal_lost_s`` without a position. A site without a row keeps the
    defaults of ``command.monitoring.wristbands``."""

    __tablename__ = "wristband_settings"

    site_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True
    )
    man_down_s: Mapped[int] = mapped_column(Integer)
    signal_lost_s: Mapped[int] = mapped_column(Integer)
    work_from: Mapped[str | None] = mapped_column(String(5), nullable=True)
    work_to: Mapped[str | None] = mapped_column(String(5), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_by: Mapped[str] = mapped_column(String(200))


# -- false-alarm analysis (``command.monitoring.history``, migration 0016) ---------------------


class AlarmJournalRow(Base):
    """One alarm of one sensor, from its rise out of normal to its return (a historian's
    derived store: rebuilt from the event log's ``sensor.state`` and ``alarm.outcome`` events,
    which stay the record). ``generated`` rows are the demo's made-up history."""

    __tablename__ = "alarm_journal"

    site_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True
    )
    #: ``e<seq>`` (the seq of the event that raised it) or ``g<n>`` (generated)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    sensor_id: Mapped[str] = mapped_column(String(64))
    substance: Mapped[str | None] = mapped_column(String(64), nullable=True)
    tier: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    peak: Mapped[float] = mapped_column(Float)
    outcome: Mapped[str | None] = mapped_column(String(16), nullable=True)
    outcome_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    outcome_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    outcome_note: Mapped[str | None] = mapped_column(Text, nullable=True)
    test: Mapped[bool] = mapped_column(Boolean, default=False)
    shelved: Mapped[bool] = mapped_column(Boolean, default=False)
    generated: Mapped[bool] = mapped_column(Boolean, default=False)


class AlarmJournalHeadRow(Base):
    """The last event of each site's log the journal has followed."""

    __tablename__ = "alarm_journal_heads"

    site_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer)


class ReadingHistoryRow(Base):
    """Each sensor's readings per 10-minute period (the WMO's averaging period for wind): how
    many, their least, mean and greatest value, and for wind stations the vector mean of the
    direction the wind blew from. ``period_s``: the period's start, seconds since 1970 (UTC)."""

    __tablename__ = "reading_history"

    site_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True
    )
    sensor_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    period_s: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    n: Mapped[int] = mapped_column(Integer)
    low: Mapped[float] = mapped_column(Float)
    mean: Mapped[float] = mapped_column(Float)
    high: Mapped[float] = mapped_column(Float)
    direction_deg: Mapped[float | None] = mapped_column(Float, nullable=True)
    generated: Mapped[bool] = mapped_column(Boolean, default=False)


class HotWorkPermitRow(Base):
    """A hot-work permit (welding, cutting, grinding...): where (a GeoJSON point or polygon and
    a radius around it), when, and who issued it."""

    __tablename__ = "hot_work_permits"

    site_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True
    )
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    location: Mapped[dict[str, Any]] = mapped_column(JSON)
    radius_m: Mapped[float] = mapped_column(Float)
    valid_from: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    valid_to: Mapped[datetime] = mapped_column(UTCDateTime())
    issued_by: Mapped[str] = mapped_column(String(200))
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())
    recorded_by: Mapped[str] = mapped_column(String(200))
    generated: Mapped[bool] = mapped_column(Boolean, default=False)


# -- alarm tiers and confirmation (``command.monitoring.alarms``) ----------------------------


class SensorAlarmSettingsRow(Base):
    """A sensor's alarm overrides (thresholds, deadband, delays, what each tier means) and its
    mode (shelved, out of service, test) with who set it, why and until when. A sensor without
    a row keeps its layer's thresholds (or the standard's) and is in service."""

    __tablename__ = "sensor_alarm_settings"

    site_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True
    )
    sensor_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: Whether the thresholds below replace the layer's (a None among them: no such tier).
    thresholds_set: Mapped[bool] = mapped_column(Boolean, default=False)
    warning: Mapped[float | None] = mapped_column(Float, nullable=True)
    alarm: Mapped[float | None] = mapped_column(Float, nullable=True)
    high_alarm: Mapped[float | None] = mapped_column(Float, nullable=True)
    deadband: Mapped[float | None] = mapped_column(Float, nullable=True)
    on_delay_s: Mapped[float] = mapped_column(Float, default=0.0)
    off_delay_s: Mapped[float] = mapped_column(Float, default=0.0)
    meanings: Mapped[dict[str, Any]] = mapped_column(JSON)
    mode: Mapped[str | None] = mapped_column(String(20), nullable=True)
    mode_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    mode_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    mode_since: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    mode_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_by: Mapped[str] = mapped_column(String(200))


class AlarmAreaRow(Base):
    """A zone's voting mode for its detectors' alarms (1oo1, 1oo2, 2oo2); a zone without a
    row votes by the default (``command.monitoring.alarms.default_voting``)."""

    __tablename__ = "alarm_areas"

    site_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True
    )
    zone_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    voting: Mapped[str] = mapped_column(String(8))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_by: Mapped[str] = mapped_column(String(200))


class SensorMaintenanceRow(Base):
    """A detector's calibration or bump test (``command.monitoring.maintenance``): when, by
    whom, with which gas, the result, and when it is due again. Records are added, never
    changed."""

    __tablename__ = "sensor_maintenance"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    site_id: Mapped[str] = mapped_column(String(64), ForeignKey("sites.id", ondelete="CASCADE"))
    sensor_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    by: Mapped[str] = mapped_column(String(200))
    result: Mapped[str] = mapped_column(String(8))
    gas: Mapped[str] = mapped_column(String(100))
    concentration: Mapped[float] = mapped_column(Float)
    unit: Mapped[str | None] = mapped_column(String(32), nullable=True)
    next_due: Mapped[datetime] = mapped_column(UTCDateTime())
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())
    recorded_by: Mapped[str] = mapped_column(String(200))

    __table_args__ = (Index("ix_sensor_maintenance_site_id_sensor_id", "site_id", "sensor_id"),)


class DetectorHealthSettingsRow(Base):
    """A detector's own instrument range and silence limit, where its class default
    (``command.monitoring.health.rules_for``) does not fit it."""

    __tablename__ = "detector_health_settings"

    site_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True
    )
    sensor_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    range_low: Mapped[float | None] = mapped_column(Float, nullable=True)
    full_scale: Mapped[float | None] = mapped_column(Float, nullable=True)
    stale_after_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_by: Mapped[str] = mapped_column(String(200))


class ReplicaLinkRow(Base):
    """At the group: a site whose event log is replicated here from the site's own server
    (``command.replication``). The site owns that log; the group stores what the site's
    forwarder sends, verified, and never appends to it itself. One row per replicated site."""

    __tablename__ = "replica_links"

    site_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True
    )
    #: The site server that owns the log (a name for people: in the 409 of a write here).
    owner: Mapped[str] = mapped_column(String(200))
    #: The last event the group stored and acknowledged (0 and 64 zeros before the first).
    acked_seq: Mapped[int] = mapped_column(Integer)
    acked_hash: Mapped[str] = mapped_column(String(64))
    acked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: How far the site's log reached when its forwarder last called, and when that was.
    site_head_seq: Mapped[int] = mapped_column(Integer)
    contact_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: The last batch refused (a gap, a reordering, a fork, a forged event), and when.
    refused: Mapped[str | None] = mapped_column(Text, nullable=True)
    refused_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(200))
    #: The group's change-log number when the site became a replica: the group's layer
    #: changes after it flow down to the site (``command.layer_replication``).
    layers_from: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class ForwardStateRow(Base):
    """At a site: how its forwarder stands with the group (``command.forwarder``): the last
    event the group acknowledged, the last error, the plans taken from the group, and the last
    of the group's layer changes taken (``command.layer_replication``)."""

    __tablename__ = "forward_state"

    site_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True
    )
    group_url: Mapped[str] = mapped_column(String(500))
    acked_seq: Mapped[int] = mapped_column(Integer)
    acked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    error_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    plans_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: Group plan versions not taken here, each {plan_id, version, reason, at}.
    plan_conflicts: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    #: The last of the group's layer changes taken (its number at the group), and when.
    layer_cursor: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    layers_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: The group's layer changes not applied here (the feature was edited here too), each
    #: {seq, layer, feature, action, group_version, group_actor, local_actor, fields, ...}.
    layer_conflicts: Mapped[list[dict[str, Any]]] = mapped_column(
        JSON, default=list, server_default="[]"
    )


class GroupPlanRow(Base):
    """At a site: a plan the group owns (its versions come down from the group, approved). A
    local save of it is refused (409 naming the group), never silently overwritten."""

    __tablename__ = "group_plans"

    site_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True
    )
    plan_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(500))
    #: The group's version last taken here.
    version: Mapped[int] = mapped_column(Integer)
    taken_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ClientActionRow(Base):
    """An action a client sent with an ``Idempotency-Key`` (``command.client_actions``): taken
    once per user and key. The row is claimed before the action runs, marked with the events
    it caused in the same transaction as those events, and given the answer after; a retry is
    answered from here. Kept a week."""

    __tablename__ = "client_actions"

    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(36), primary_key=True)
    #: SHA-256 of the request: method, path, acted-at and body.
    fingerprint: Mapped[str] = mapped_column(String(64))
    #: Who holds the claim now (a random token per attempt), since when.
    claim: Mapped[str] = mapped_column(String(32))
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    #: The events it caused (one append: a range of one site's log); null: none yet.
    site_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    first_seq: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_seq: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: The first answer; null until given.
    status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    answer: Mapped[str | None] = mapped_column(Text, nullable=True)


class AttachmentRow(Base):
    """A photo of a note, by its SHA-256 (which the logged note carries, so the hash chain
    covers the picture): stored once per site, whoever sent it again."""

    __tablename__ = "attachments"

    site_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True
    )
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    media_type: Mapped[str] = mapped_column(String(40))
    size: Mapped[int] = mapped_column(Integer)
    content: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(100))
