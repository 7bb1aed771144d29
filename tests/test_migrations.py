"""Alembic owns the schema: migrations run both ways and match the models, on both backends."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from gis.storage.db import downgrade, make_engine, schema_is_current, upgrade
from gis.storage.tables import Base
from tests.conftest import POSTGIS_URL_ENV


@pytest.fixture(params=["sqlite", "postgis"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'migrations.db'}"
    url = os.environ.get(POSTGIS_URL_ENV)
    if not url:
        pytest.skip(f"no PostGIS ({POSTGIS_URL_ENV} unset)")
    # A database of its own, so the shared test database keeps its demo site.
    admin = make_engine(url.rsplit("/", 1)[0] + "/postgres")
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("DROP DATABASE IF EXISTS rallypoint_migrations")
        conn.exec_driver_sql("CREATE DATABASE rallypoint_migrations")
    admin.dispose()
    return url.rsplit("/", 1)[0] + "/rallypoint_migrations"


def test_upgrade_downgrade_and_models_match(empty_url: str) -> None:
    engine = make_engine(empty_url)
    try:
        assert schema_is_current(engine)[0] is None
        upgrade(engine)
        current, head = schema_is_current(engine)
        assert current == head
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        # PostGIS's own table is not ours to model, and the GiST indexes exist only on PostGIS,
        # made by the migration (the models stay backend-neutral): check them by name instead.
        diff = [d for d in diff if not (d[0] == "remove_table" and d[1].name == "spatial_ref_sys")]
        gist = {d[1].name for d in diff if d[0] == "remove_index" and d[1].name.endswith("_geom")}
        diff = [d for d in diff if not (d[0] == "remove_index" and d[1].name in gist)]
        assert diff == []
        if engine.dialect.name == "postgresql":
            tables = ["zones", "resources", "sensors", "people", "network_edges"]
            tables += ["basemap_features", "receptors"]
            assert gist == {f"ix_{t}_geom" for t in tables}
        downgrade(engine, "base")
        assert schema_is_current(engine)[0] is None
        upgrade(engine)
    finally:
        engine.dispose()
