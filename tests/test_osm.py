"""Real OpenStreetMap data (West Oakland extract, (c) OpenStreetMap contributors, ODbL 1.0)."""

from __future__ import annotations

from pathlib import Path

import pytest
from shapely.geometry import box

from gis import layers
from gis.errors import InvalidInput
from gis.osm import import_osm, read_osm_edges
from gis.sites import get_site
from gis.storage.db import Database
from tests.conftest import OSM_EXTRACT

# The extract's bounds, from shared/data/osm/README.md.
BOUNDS = box(-122.30258, 37.80615, -122.29825, 37.80914)


def test_edges_are_read_with_modes_and_one_way_streets() -> None:
    features, graph = read_osm_edges(OSM_EXTRACT)
    assert len(features) > 100
    assert graph.number_of_nodes() > 100
    props = [f["properties"] for f in features]
    assert any(p["foot"] and not p["vehicle"] for p in props)  # footways
    assert any(p["vehicle"] for p in props)
    assert len({f["id"] for f in features}) == len(features)


def test_import_creates_the_site_and_reports_detached_parts(db: Database) -> None:
    result = import_osm(
        db,
        OSM_EXTRACT,
        site_id="west-oakland",
        create_site_name="West Oakland",
        actor="test",
        timezone="America/Los_Angeles",
    )
    assert result.report.created > 100
    assert result.components == len(result.detached) + 1
    site = get_site(db, "west-oakland")
    assert site.crs.metric.to_epsg() == 32610
    network = layers.list_features(db, "west-oakland", "network")
    assert len(network) == result.report.created
    assert site.boundary.covers(BOUNDS)
    # Importing the same extract again changes nothing.
    again = import_osm(db, OSM_EXTRACT, site_id="west-oakland", actor="test")
    assert (again.report.created, again.report.updated, again.report.deleted) == (0, 0, 0)


def test_not_an_osm_file(db: Database, tmp_path: Path) -> None:
    bogus = tmp_path / "roads.osm"
    bogus.write_text("<html>nope</html>")
    with pytest.raises(InvalidInput) as exc:
        import_osm(db, bogus, site_id="x", create_site_name="X", actor="test")
    assert exc.value.errors[0].field == "file"
