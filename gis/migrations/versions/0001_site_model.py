"""The site model: sites, the five layers, layer revisions and the change log.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

from gis.storage.types import Geometry, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

LAYER_TABLES: dict[str, list[sa.Column[Any]]] = {
    "zones": [
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("risk_grade", sa.String(16), nullable=True),
        sa.Column("capacity", sa.Integer(), nullable=True),
        sa.Column("geom", Geometry("POLYGON"), nullable=False),
    ],
    "resources": [
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("geom", Geometry("POINT"), nullable=False),
    ],
    "sensors": [
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("substance", sa.String(100), nullable=True),
        sa.Column("unit", sa.String(100), nullable=True),
        sa.Column("warning", sa.Float(), nullable=True),
        sa.Column("alarm", sa.Float(), nullable=True),
        sa.Column("high_alarm", sa.Float(), nullable=True),
        sa.Column("geom", Geometry("POINT"), nullable=False),
    ],
    "people": [
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(100), nullable=False),
        sa.Column("team", sa.String(100), nullable=True),
        sa.Column("shift", sa.String(100), nullable=True),
        sa.Column("employer", sa.String(200), nullable=False),
        sa.Column("employment", sa.String(32), nullable=False),
        sa.Column("seen_at", UTCDateTime(), nullable=True),
        sa.Column("geom", Geometry("POINT"), nullable=True),
    ],
    "network_edges": [
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("foot", sa.Boolean(), nullable=False),
        sa.Column("vehicle", sa.Boolean(), nullable=False),
        sa.Column("oneway", sa.Boolean(), nullable=False),
        sa.Column("width_m", sa.Float(), nullable=True),
        sa.Column("capacity", sa.Float(), nullable=True),
        sa.Column("door", sa.Boolean(), nullable=False),
        sa.Column("stairs", sa.Boolean(), nullable=False),
        sa.Column("geom", Geometry("LINESTRING"), nullable=False),
    ],
}
INDEXED_KIND = ("zones", "resources", "sensors")


def audit_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
    ]


def upgrade() -> None:
    postgis = op.get_bind().dialect.name == "postgresql"
    if postgis:
        op.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    op.create_table(
        "sites",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("crs", sa.String(200), nullable=True),
        sa.Column("boundary", Geometry("POLYGON"), nullable=False),
        *audit_columns(),
        sa.PrimaryKeyConstraint("id", name="pk_sites"),
    )
    for table, columns in LAYER_TABLES.items():
        op.create_table(
            table,
            sa.Column("site_id", sa.String(64), nullable=False),
            sa.Column("id", sa.String(64), nullable=False),
            *columns,
            *audit_columns(),
            sa.ForeignKeyConstraint(
                ["site_id"], ["sites.id"], name=f"fk_{table}_site_id_sites", ondelete="CASCADE"
            ),
            sa.PrimaryKeyConstraint("site_id", "id", name=f"pk_{table}"),
        )
        if postgis:
            op.create_index(f"ix_{table}_geom", table, ["geom"], postgresql_using="gist")
    for table in INDEXED_KIND:
        op.create_index(f"ix_{table}_kind", table, ["kind"])
    op.create_table(
        "layer_revisions",
        sa.Column("site_id", sa.String(64), nullable=False),
        sa.Column("layer", sa.String(32), nullable=False),
        sa.Column("token", sa.String(32), nullable=False),
        sa.ForeignKeyConstraint(
            ["site_id"], ["sites.id"], name="fk_layer_revisions_site_id_sites", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("site_id", "layer", name="pk_layer_revisions"),
    )
    op.create_table(
        "changes",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("site_id", sa.String(64), nullable=False),
        sa.Column("layer", sa.String(32), nullable=False),
        sa.Column("feature_id", sa.String(64), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("seq", name="pk_changes"),
    )
    op.create_index("ix_changes_site_id", "changes", ["site_id"])


def downgrade() -> None:
    op.drop_index("ix_changes_site_id", table_name="changes")
    op.drop_table("changes")
    op.drop_table("layer_revisions")
    for table in INDEXED_KIND:
        op.drop_index(f"ix_{table}_kind", table_name=table)
    for table in reversed(LAYER_TABLES):
        op.drop_table(table)
    op.drop_table("sites")
