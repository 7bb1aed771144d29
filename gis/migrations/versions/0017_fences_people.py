"""Geofences, wristbands and contractors: certificates, zone entry rules, temporary fences.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from gis.storage.types import Geometry, UTCDateTime

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def _site_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["site_id"], ["sites.id"], name=f"fk_{table}_site_id_sites", ondelete="CASCADE"
    )


# -- geofences and contractors (command.monitoring.fences, .contractors) ----------------------


def _upgrade_fences_people() -> None:
    op.create_table(
        "zone_rules",
        sa.Column("site_id", sa.String(64), nullable=False),
        sa.Column("zone_id", sa.String(64), nullable=False),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("owner", sa.JSON(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
        _site_fk("zone_rules"),
        sa.PrimaryKeyConstraint("site_id", "zone_id", name="pk_zone_rules"),
    )
    op.create_table(
        "temporary_fences",
        sa.Column("site_id", sa.String(64), nullable=False),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("owner", sa.JSON(), nullable=True),
        sa.Column("radius_m", sa.Float(), nullable=True),
        sa.Column("geom", Geometry("POLYGON"), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("ended_at", UTCDateTime(), nullable=True),
        _site_fk("temporary_fences"),
        sa.PrimaryKeyConstraint("site_id", "id", name="pk_temporary_fences"),
    )
    op.create_index("ix_temporary_fences_expires_at", "temporary_fences", ["expires_at"])
    op.create_table(
        "person_certificates",
        sa.Column("site_id", sa.String(64), nullable=False),
        sa.Column("person_id", sa.String(64), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("number", sa.String(64), nullable=False),
        sa.Column("expires_on", sa.Date(), nullable=False),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
        sa.Column("recorded_by", sa.String(200), nullable=False),
        _site_fk("person_certificates"),
        sa.PrimaryKeyConstraint("site_id", "person_id", "type", name="pk_person_certificates"),
    )
    op.create_table(
        "person_inductions",
        sa.Column("site_id", sa.String(64), nullable=False),
        sa.Column("person_id", sa.String(64), nullable=False),
        sa.Column("passed_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
        sa.Column("recorded_by", sa.String(200), nullable=False),
        _site_fk("person_inductions"),
        sa.PrimaryKeyConstraint("site_id", "person_id", name="pk_person_inductions"),
    )


def _downgrade_fences_people() -> None:
    for table in ("person_inductions", "person_certificates", "temporary_fences", "zone_rules"):
        op.drop_table(table)  # its indexes go with it


# -- end of geofences and contractors ---------------------------------------------------------


# -- wristbands (command.monitoring.wristbands) ------------------------------------------------


def _upgrade_wristbands() -> None:
    op.create_table(
        "position_samples",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("site_id", sa.String(64), nullable=False),
        sa.Column("person_id", sa.String(64), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("lon", sa.Float(), nullable=False),
        sa.Column("lat", sa.Float(), nullable=False),
        sa.Column("accuracy_m", sa.Float(), nullable=True),
        sa.Column("zone_id", sa.String(64), nullable=True),
        _site_fk("position_samples"),
        sa.PrimaryKeyConstraint("id", name="pk_position_samples"),
    )
    op.create_index("ix_position_samples_site_id_at", "position_samples", ["site_id", "at"])
    op.create_table(
        "wristband_settings",
        sa.Column("site_id", sa.String(64), nullable=False),
        sa.Column("man_down_s", sa.Integer(), nullable=False),
        sa.Column("signal_lost_s", sa.Integer(), nullable=False),
        sa.Column("work_from", sa.String(5), nullable=True),
        sa.Column("work_to", sa.String(5), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
        _site_fk("wristband_settings"),
        sa.PrimaryKeyConstraint("site_id", name="pk_wristband_settings"),
    )


def _downgrade_wristbands() -> None:
    for table in ("wristband_settings", "position_samples"):
        op.drop_table(table)  # its indexes go with it


# -- end of wristbands ------------------------------------------------------------------------


def upgrade() -> None:
    _upgrade_fences_people()
    _upgrade_wristbands()


def downgrade() -> None:
    _downgrade_wristbands()
    _downgrade_fences_people()
