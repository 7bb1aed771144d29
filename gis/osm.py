"""OpenStreetMap road data into a site's network layer.

OSM XML (plain, .bz2 or .gz) is read with OSMnx's ``graph_from_xml``. Each OSM way segment
becomes one network edge; two-way segments are stored once (the graph has both directions).
Modes follow the ``highway`` tag: footways, paths, steps and pedestrian ways are foot-only,
motorways and trunk roads vehicle-only, everything else both. Parts of the network that are not
connected to the rest are kept and reported, never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx
import osmnx as ox
import shapely
from shapely.geometry import LineString, MultiPoint, mapping

from gis.crs import SiteCRS
from gis.errors import FieldError, InvalidInput
from gis.layer_io import ImportMode, ImportReport, RawRow, import_rows
from gis.sites import create_site
from gis.storage.db import Database
from gis.storage.tables import SiteRow

FOOT_ONLY = {"footway", "path", "steps", "pedestrian", "cycleway", "corridor", "bridleway"}
VEHICLE_ONLY = {"motorway", "motorway_link", "trunk", "trunk_link"}
SITE_MARGIN_M = 50.0


@dataclass
class OsmImport:
    report: ImportReport
    components: int
    detached: list[str] = field(default_factory=list)


def read_osm_edges(path: Path) -> tuple[list[dict[str, Any]], nx.MultiDiGraph]:
    """Network features (GeoJSON-like, WGS84) from an OSM XML file, and the OSMnx graph."""
    try:
        graph = ox.graph_from_xml(path, simplify=False, retain_all=True, bidirectional=False)
    except Exception as exc:  # OSMnx raises several kinds for an unreadable or roadless file
        raise InvalidInput(
            f"cannot read roads from {path.name}: {exc}",
            errors=[FieldError("file", "not an OSM XML file with highways")],
        ) from exc
    features = []
    seen: set[tuple[int, int, Any]] = set()
    for u, v, data in graph.edges(data=True):
        oneway = bool(data.get("oneway", False))
        osmid = data.get("osmid")
        key = (min(u, v), max(u, v), str(osmid)) if not oneway else (u, v, str(osmid))
        if key in seen:
            continue
        seen.add(key)
        geometry = data.get("geometry") or LineString(
            [(graph.nodes[u]["x"], graph.nodes[u]["y"]), (graph.nodes[v]["x"], graph.nodes[v]["y"])]
        )
        highway = _first(data.get("highway")) or "road"
        foot = highway not in VEHICLE_ONLY
        vehicle = highway not in FOOT_ONLY
        props: dict[str, Any] = {
            "foot": foot,
            "vehicle": vehicle,
            "oneway": oneway and vehicle,
            "stairs": highway == "steps",
        }
        name = _first(data.get("name"))
        if name:
            props["name"] = str(name)[:200]
        width = _width(data.get("width"))
        if width is not None:
            props["width_m"] = width
        features.append(
            {
                "type": "Feature",
                "id": f"osm-{osmid}-{u}-{v}",
                "geometry": mapping(shapely.set_precision(geometry, 1e-7)),
                "properties": props,
            }
        )
    return features, graph


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, list) and value else value


def _width(value: Any) -> float | None:
    text = str(_first(value) or "").strip().removesuffix("m").strip()
    try:
        width = float(text)
    except ValueError:
        return None
    return width if 0 < width <= 200 else None


def import_osm(
    db: Database,
    path: Path,
    *,
    site_id: str,
    actor: str,
    create_site_name: str | None = None,
    timezone: str = "UTC",
    mode: ImportMode = ImportMode.REPLACE,
) -> OsmImport:
    """Import the roads of ``path`` as the network of ``site_id`` (creating the site if asked)."""
    features, graph = read_osm_edges(path)
    rows = [RawRow(n, f) for n, f in enumerate(features, start=1)]
    with db.write() as session:
        if create_site_name is not None and session.get(SiteRow, site_id) is None:
            boundary = _extent_boundary(graph)
            site = {
                "id": site_id,
                "name": create_site_name,
                "timezone": timezone,
                "boundary": mapping(boundary),
            }
            create_site(session, site, actor=actor)
        report = import_rows(db.joined(session), site_id, "network", rows, actor=actor, mode=mode)
    parts = sorted(nx.weakly_connected_components(graph), key=len, reverse=True)
    detached = []
    for part in parts[1:]:
        node = graph.nodes[next(iter(part))]
        detached.append(f"{len(part)} node(s) near lon {node['x']:.6f}, lat {node['y']:.6f}")
    return OsmImport(report, len(parts), detached)


def _extent_boundary(graph: nx.MultiDiGraph) -> shapely.Polygon:
    """The extract's bounding rectangle, widened by SITE_MARGIN_M."""
    points = MultiPoint([(d["x"], d["y"]) for _, d in graph.nodes(data=True)])
    centre = points.centroid
    crs = SiteCRS.for_site(centre.x, centre.y)
    rectangle = crs.to_metric(points).envelope.buffer(SITE_MARGIN_M, join_style="mitre")
    boundary = shapely.set_precision(crs.to_wgs84(rectangle), 1e-7)
    assert isinstance(boundary, shapely.Polygon)
    return boundary
