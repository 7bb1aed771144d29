"""Surroundings: the basemap layer and sensitive receptors.

``basemap_features`` holds what the wall draws around the site with no tile server (roads,
buildings, water, landuse, place names); ``receptors`` the schools, hospitals, care homes and
homes whose people an incident's threat zones may reach. Both take any geometry type.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

from gis.storage.types import Geometry, UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

TABLES: dict[str, list[sa.Column[Any]]] = {
    "basemap_features": [
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("subtype", sa.String(100), nullable=True),
        sa.Column("geom", Geometry("GEOMETRY"), nullable=False),
    ],
    "receptors": [
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("population", sa.Integer(), nullable=True),
        sa.Column("estimate", sa.String(100), nullable=True),
        sa.Column("geom", Geometry("GEOMETRY"), nullable=False),
    ],
}


def _audit_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
    ]


def upgrade() -> None:
    postgis = op.get_bind().dialect.name == "postgresql"
    for table, columns in TABLES.items():
        op.create_table(
            table,
            sa.Column("site_id", sa.String(64), nullable=False),
            sa.Column("id", sa.String(64), nullable=False),
            *columns,
            *_audit_columns(),
            sa.ForeignKeyConstraint(
                ["site_id"], ["sites.id"], name=f"fk_{table}_site_id_sites", ondelete="CASCADE"
            ),
            sa.PrimaryKeyConstraint("site_id", "id", name=f"pk_{table}"),
        )
        if postgis:
            op.create_index(f"ix_{table}_geom", table, ["geom"], postgresql_using="gist")
        op.create_index(f"ix_{table}_kind", table, ["kind"])


def downgrade() -> None:
    for table in reversed(TABLES):
        op.drop_table(table)  # its indexes go with it
