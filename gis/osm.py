"""OpenStreetMap ways into a site's network layer: only the ways that people or vehicles travel.

OSM XML (plain, .bz2 or .gz) is read as a stream. The filter is modelled on OSMnx's ``walk`` and
``drive`` network filters (``_get_network_filter`` in ``osmnx/_overpass.py``), read for an
emergency on an industrial site. A way is imported when it passes every check below; the first
check it fails is the reason it is skipped, and the import counts the skipped ways by reason.

1. ``not a highway``: it has a ``highway`` tag. Buildings, landuse, natural, waterway, railway,
   barrier and untagged multipolygon members never become network.
2. ``not in use``: ``highway`` is not proposed, planned, construction, abandoned, disused, razed
   or no.
3. ``area``: it is not a polygon: no ``area=yes``, and ``highway`` is not platform, rest_area or
   services.
4. ``not for travel``: ``highway`` is not raceway, bus_guideway or elevator (lifts are not used
   to evacuate).
5. ``no access``: at least one mode may use it.

   - foot: ``highway`` is not motorway or motorway_link, and the most specific of ``foot``,
     ``access`` that is tagged is not ``no`` or ``private``;
   - vehicle: ``highway`` is not footway, path, steps, pedestrian, corridor, bridleway, cycleway
     or escalator, and the most specific of ``motor_vehicle``, ``vehicle``, ``access`` that is
     tagged is not ``no`` or ``private``. So ``access=private`` with ``foot=yes`` is foot-only.
6. ``outside the extract``: at least two consecutive nodes of the way are in the file.

Vehicles follow ``oneway``: ``yes``, ``true`` or ``1`` (implied by ``junction=roundabout`` or
``circular`` unless ``oneway=no``) allow only the way's own direction, ``-1`` only the reverse;
the edge is then stored in the permitted direction with ``oneway`` set. Walking ignores
``oneway``, as OSMnx's walk network does.

On purpose, unlike OSMnx: service roads (driveways, alleys, parking aisles, emergency access)
and tracks are drivable, because fire engines and ambulances use them and an industrial site's
own roads are mostly service roads; cycleways are walkable (people on foot use them in an
evacuation; ``foot=no`` still excludes them); streets with ``sidewalk=separate`` stay walkable;
``access=no`` excludes like ``private``; ``motorcar`` is not read (fire engines are not cars).

Each segment between two consecutive nodes becomes one network edge, ``osm-<way>-<from>-<to>``,
in the way's direction (the permitted one where one-way). Segments with a node missing from the
file (ways clipped at the extract's edge) are left out. Parts of the network that are not
connected to the rest are kept and reported, never dropped; only nodes on imported edges count.

Surroundings
------------
The same file also gives the ``basemap`` layer (drawn under the site by the wall, never routed
on) and the ``receptors`` layer (see :func:`read_osm_surroundings`). A way or tagged node goes
to the basemap by its first matching tag: ``highway`` (a road, any kind, network or not; a line),
``railway`` rail, light_rail, tram, subway or narrow_gauge (a line), ``building`` (a closed way),
``waterway`` (a line; riverbank, dock and basin closed) or ``natural=water`` or ``landuse``
reservoir or basin (closed), ``landuse``, ``leisure`` park, garden or pitch, ``natural`` wood,
scrub, grassland, heath or wetland (closed), and ``place`` with a ``name`` (a node). The OSM
value is kept as ``subtype``, the ``name`` as name. It becomes a receptor by its tags:
``amenity`` school, kindergarten (or childcare), hospital, clinic; ``amenity=nursing_home`` or
``social_facility`` nursing_home or assisted_living (care_home); ``landuse=residential`` and
``building`` residential, apartments, house, detached, semidetached_house, terrace, bungalow or
dormitory (residential). A receptor's population is, in this order: its ``capacity`` tag
("capacity tag"), a hospital's ``beds`` ("beds tag"); for a house-like building 2.5 people per
dwelling (``building:flats``, else one), rounded up ("2.5 per dwelling"); for a residential or
apartment building the same from ``building:flats`` when tagged, else its floor area
(footprint times ``building:levels``, else 3 levels) at 40 m² a person ("floor area"); for a
residential area 4,000 people per km² ("area density", an urban average that also counts the
homes inside it); otherwise unknown (``None``). Closed ways are polygons (repaired when
invalid, skipped if nothing is left), other ways lines, nodes points; only the nodes present
in the file are used (a way clipped at the extract's edge keeps its longest present run; a
clipped closed way is skipped). Multipolygon relations are not read: their member ways are
drawn only when tagged themselves. Ids are ``osm-w<way>`` and ``osm-n<node>``.
"""

from __future__ import annotations

import bz2
import gzip
import logging
import math
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any, BinaryIO

import networkx as nx
import shapely
from shapely.geometry import MultiPoint, box, mapping
from shapely.geometry.base import BaseGeometry

from gis.crs import SiteCRS
from gis.errors import FieldError, InvalidInput
from gis.layer_io import ImportMode, ImportReport, RawRow, import_rows
from gis.model import MAX_COUNT
from gis.sites import create_site
from gis.storage.db import Database
from gis.storage.tables import SiteRow

log = logging.getLogger(__name__)

SKIP_REASONS = (
    "not a highway",
    "not in use",
    "area",
    "not for travel",
    "no access",
    "outside the extract",
)
NOT_IN_USE = frozenset(
    {"proposed", "planned", "construction", "abandoned", "disused", "razed", "no"}
)
AREAS = frozenset({"platform", "rest_area", "services"})
NOT_FOR_TRAVEL = frozenset({"raceway", "bus_guideway", "elevator"})
NO_FOOT = frozenset({"motorway", "motorway_link"})
NO_VEHICLES = frozenset(
    {"footway", "path", "steps", "pedestrian", "corridor", "bridleway", "cycleway", "escalator"}
)
#: Access keys from the most specific to the most general, per mode.
FOOT_ACCESS = ("foot", "access")
VEHICLE_ACCESS = ("motor_vehicle", "vehicle", "access")
FORBIDDEN = frozenset({"no", "private"})
ONE_WAY = frozenset({"yes", "true", "1"})
ROUNDABOUTS = frozenset({"roundabout", "circular"})
SITE_MARGIN_M = 50.0


@dataclass
class OsmNetwork:
    """What an OSM file holds for the network: its features and their graph.

    ``graph`` has the nodes of imported edges only (``x``/``y`` = lon/lat) and one edge per
    feature, keyed by its id, from its start to its end, with ``way``, ``foot``, ``vehicle``
    and ``oneway``. ``skipped`` counts the ways left out, per reason (every reason, in order).
    """

    features: list[dict[str, Any]]
    graph: nx.MultiDiGraph
    ways: int
    skipped: dict[str, int]
    bounds: shapely.Polygon | None = None


@dataclass
class OsmImport:
    """The layer import's report, the ways imported and skipped (by reason), and the connected
    parts of the imported network (``detached``: all but the largest)."""

    report: ImportReport
    ways: int
    skipped: dict[str, int]
    components: int
    detached: list[str] = field(default_factory=list)
    basemap: ImportReport | None = None
    receptors: ImportReport | None = None
    #: Mapped ways and nodes of the surroundings left out, per reason.
    surroundings_skipped: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class _Way:
    id: int
    refs: list[int]
    tags: dict[str, str]


def read_osm_network(path: Path) -> OsmNetwork:
    """The ways of ``path`` that people or vehicles travel, as network features (WGS84)."""
    nodes, ways, bounds = _read_xml(path)
    features: list[dict[str, Any]] = []
    graph = nx.MultiDiGraph()
    skipped: Counter[str] = Counter()
    imported = 0
    for way in ways:
        reason = skip_reason(way.tags)
        if reason is None and not _add_way(features, graph, way, nodes):
            reason = "outside the extract"
        if reason is None:
            imported += 1
        else:
            skipped[reason] += 1
    if not features:
        raise InvalidInput(
            f"{path.name} has no ways that people or vehicles travel",
            errors=[FieldError("file", "no highway ways that people or vehicles may use")],
        )
    counts = {reason: skipped[reason] for reason in SKIP_REASONS}
    # The import reports these figures; the log has them for graph_from_osm too.
    log.debug("%s: %d ways read as network, skipped %s", path.name, imported, dict(skipped))
    return OsmNetwork(features, graph, imported, counts, bounds)


def read_osm_edges(path: Path) -> tuple[list[dict[str, Any]], nx.MultiDiGraph]:
    """Network features (GeoJSON-like, WGS84) from an OSM XML file, and their graph."""
    network = read_osm_network(path)
    return network.features, network.graph


def skip_reason(tags: Mapping[str, str]) -> str | None:
    """Why a way with these tags is not network (one of ``SKIP_REASONS``), or None."""
    highway = tags.get("highway")
    if highway is None:
        return "not a highway"
    if highway in NOT_IN_USE:
        return "not in use"
    if tags.get("area", "").strip().lower() == "yes" or highway in AREAS:
        return "area"
    if highway in NOT_FOR_TRAVEL:
        return "not for travel"
    if not any(way_modes(tags)):
        return "no access"
    return None


def way_modes(tags: Mapping[str, str]) -> tuple[bool, bool]:
    """Whether people on foot, and vehicles, may use a highway way with these tags."""
    highway = tags.get("highway", "")
    foot = highway not in NO_FOOT and _permitted(tags, FOOT_ACCESS)
    vehicle = highway not in NO_VEHICLES and _permitted(tags, VEHICLE_ACCESS)
    return foot, vehicle


def _permitted(tags: Mapping[str, str], keys: tuple[str, ...]) -> bool:
    for key in keys:  # the most specific tagged key decides
        if key in tags:
            return tags[key].strip().lower() not in FORBIDDEN
    return True


def _vehicle_direction(tags: Mapping[str, str]) -> int:
    """1: vehicles only along the way's node order; -1: only against it; 0: both ways."""
    oneway = tags.get("oneway", "").strip().lower()
    if oneway in ONE_WAY:
        return 1
    if oneway == "-1":
        return -1
    if not oneway and tags.get("junction", "").strip().lower() in ROUNDABOUTS:
        return 1
    return 0


def _add_way(
    features: list[dict[str, Any]],
    graph: nx.MultiDiGraph,
    way: _Way,
    nodes: Mapping[int, tuple[float, float]],
) -> bool:
    """Add the way's segments (those with both nodes in the file); False if it has none."""
    foot, vehicle = way_modes(way.tags)
    direction = _vehicle_direction(way.tags) if vehicle else 0
    refs = way.refs[::-1] if direction == -1 else way.refs
    highway = way.tags["highway"]
    props: dict[str, Any] = {
        "foot": foot,
        "vehicle": vehicle,
        "oneway": direction != 0,
        "stairs": highway == "steps",
    }
    name = way.tags.get("name", "").strip()
    if name:
        props["name"] = name[:200]
    width = _width(way.tags.get("width"))
    if width is not None:
        props["width_m"] = width
    added = False
    for start, end in pairwise(refs):
        if start not in nodes or end not in nodes or nodes[start] == nodes[end]:
            continue
        feature_id = f"osm-{way.id}-{start}-{end}"
        if graph.has_edge(start, end, key=feature_id):
            continue  # a way that passes the same segment twice
        for node in (start, end):
            graph.add_node(node, x=nodes[node][0], y=nodes[node][1])
        graph.add_edge(
            start,
            end,
            key=feature_id,
            way=way.id,
            foot=foot,
            vehicle=vehicle,
            oneway=direction != 0,
        )
        features.append(
            {
                "type": "Feature",
                "id": feature_id,
                "geometry": {
                    "type": "LineString",
                    "coordinates": [list(nodes[start]), list(nodes[end])],
                },
                "properties": dict(props),
            }
        )
        added = True
    return added


def _width(value: str | None) -> float | None:
    text = (value or "").strip().removesuffix("m").strip()
    try:
        width = float(text)
    except ValueError:
        return None
    return width if 0 < width <= 200 else None


def _read_xml(
    path: Path, tagged: list[_Way] | None = None
) -> tuple[dict[int, tuple[float, float]], list[_Way], shapely.Polygon | None]:
    """Nodes (id to lon/lat, to 1e-7 degrees), ways and the declared bounds of an OSM file;
    the nodes with tags are appended to ``tagged`` when given (as ways of their one node)."""
    nodes: dict[int, tuple[float, float]] = {}
    ways: list[_Way] = []
    bounds = None
    try:
        with _open(path) as stream:
            parser = ET.iterparse(stream, events=("start", "end"))
            _, root = next(parser)
            if root.tag != "osm":
                raise ValueError(f"the root element is <{root.tag}>, not <osm>")
            for event, element in parser:
                if event == "start":
                    continue
                if element.tag == "node":
                    lon, lat = element.get("lon"), element.get("lat")
                    if lon is not None and lat is not None:
                        nodes[int(element.attrib["id"])] = (
                            round(float(lon), 7),
                            round(float(lat), 7),
                        )
                        if tagged is not None and len(element):
                            node_id = int(element.attrib["id"])
                            tags = {t.attrib["k"]: t.attrib["v"] for t in element.iter("tag")}
                            if tags:
                                tagged.append(_Way(node_id, [node_id], tags))
                elif element.tag == "way":
                    refs = [int(nd.attrib["ref"]) for nd in element.iter("nd")]
                    tags = {t.attrib["k"]: t.attrib["v"] for t in element.iter("tag")}
                    ways.append(_Way(int(element.attrib["id"]), refs, tags))
                elif element.tag == "bounds":
                    west, south, east, north = (
                        float(element.attrib[k]) for k in ("minlon", "minlat", "maxlon", "maxlat")
                    )
                    bounds = box(west, south, east, north)
                elif element.tag != "relation":
                    continue
                root.clear()  # keeps memory flat on a large extract
    except (ET.ParseError, OSError, EOFError, StopIteration, ValueError, KeyError) as exc:
        raise InvalidInput(
            f"cannot read {path.name} as OSM XML: {exc}",
            errors=[FieldError("file", "not an OSM XML file (.osm, .osm.bz2 or .osm.gz)")],
        ) from exc
    return nodes, ways, bounds


def _open(path: Path) -> BinaryIO | bz2.BZ2File | gzip.GzipFile:
    with path.open("rb") as probe:
        magic = probe.read(3)
    if magic.startswith(b"BZh"):
        return bz2.open(path, "rb")
    if magic.startswith(b"\x1f\x8b"):
        return gzip.open(path, "rb")
    return path.open("rb")


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
    """Import the ways of ``path`` that people or vehicles travel as the network of ``site_id``
    (creating the site if asked), and its surroundings as the basemap and receptors layers."""
    network = read_osm_network(path)
    surroundings = read_osm_surroundings(path)
    rows = [RawRow(n, f) for n, f in enumerate(network.features, start=1)]
    with db.write() as session:
        if create_site_name is not None and session.get(SiteRow, site_id) is None:
            boundary = _extent_boundary(network)
            site = {
                "id": site_id,
                "name": create_site_name,
                "timezone": timezone,
                "boundary": mapping(boundary),
            }
            create_site(session, site, actor=actor)
        report = import_rows(db.joined(session), site_id, "network", rows, actor=actor, mode=mode)
        around = {
            name: import_rows(
                db.joined(session),
                site_id,
                name,
                [RawRow(n, f) for n, f in enumerate(features, start=1)],
                actor=actor,
                mode=mode,
            )
            for name, features in (
                ("basemap", surroundings.basemap),
                ("receptors", surroundings.receptors),
            )
        }
    graph = network.graph
    parts = sorted(nx.weakly_connected_components(graph), key=len, reverse=True)
    detached = []
    for part in parts[1:]:
        node = graph.nodes[min(part)]
        detached.append(f"{len(part)} node(s) near lon {node['x']:.6f}, lat {node['y']:.6f}")
    return OsmImport(
        report,
        network.ways,
        network.skipped,
        len(parts),
        detached,
        basemap=around["basemap"],
        receptors=around["receptors"],
        surroundings_skipped=surroundings.skipped,
    )


def _extent_boundary(network: OsmNetwork) -> shapely.Polygon:
    """The extract's bounding rectangle (its declared bounds and the network), widened by
    SITE_MARGIN_M."""
    points = MultiPoint([(d["x"], d["y"]) for _, d in network.graph.nodes(data=True)])
    extent = points if network.bounds is None else points.union(network.bounds)
    centre = extent.envelope.centroid
    crs = SiteCRS.for_site(centre.x, centre.y)
    rectangle = crs.to_metric(extent).envelope.buffer(SITE_MARGIN_M, join_style="mitre")
    boundary = shapely.set_precision(crs.to_wgs84(rectangle), 1e-7)
    assert isinstance(boundary, shapely.Polygon)
    return boundary


# --- surroundings: the basemap and sensitive receptors ----------------------------------------

RAILWAYS = frozenset({"rail", "light_rail", "tram", "subway", "narrow_gauge"})
WATER_AREAS = frozenset({"riverbank", "dock", "basin"})
WATER_LANDUSE = frozenset({"reservoir", "basin"})
GREEN_LEISURE = frozenset({"park", "garden", "pitch"})
GREEN_NATURAL = frozenset({"wood", "scrub", "grassland", "heath", "wetland"})
RECEPTOR_AMENITIES = {
    "school": "school",
    "kindergarten": "kindergarten",
    "childcare": "kindergarten",
    "hospital": "hospital",
    "clinic": "clinic",
    "nursing_home": "care_home",
}
CARE_FACILITIES = frozenset({"nursing_home", "assisted_living"})
HOUSES = frozenset({"house", "detached", "semidetached_house", "terrace", "bungalow"})
HOMES = frozenset({"residential", "apartments", "dormitory"})
PEOPLE_PER_DWELLING = 2.5
FLOOR_M2_PER_PERSON = 40.0
DEFAULT_LEVELS = 3
RESIDENTIAL_PER_KM2 = 4_000.0
#: Polygons (closed ways) are the kinds with an area; the others are lines or points.
AREA_KINDS = frozenset({"building", "landuse"})
MAX_SURROUNDING_VERTICES = 5_000


@dataclass
class OsmSurroundings:
    """An extract's basemap and receptor features (WGS84), and the mapped ways and nodes left
    out, per reason."""

    basemap: list[dict[str, Any]]
    receptors: list[dict[str, Any]]
    skipped: dict[str, int]


def basemap_kind(tags: Mapping[str, str], closed: bool) -> tuple[str, str] | None:
    """The basemap kind and subtype of an OSM element with these tags, or None (see the
    module's docstring for the rule)."""
    for key, kind in (("highway", "road"), ("railway", "railway")):
        value = tags.get(key)
        if value and (key == "highway" or value in RAILWAYS):
            return kind, value
    if "building" in tags and closed:
        return "building", tags["building"]
    waterway, natural, landuse = tags.get("waterway"), tags.get("natural"), tags.get("landuse")
    if waterway and (closed or waterway not in WATER_AREAS):
        return "water", waterway
    if closed and (natural == "water" or landuse in WATER_LANDUSE):
        return "water", natural if natural == "water" else str(landuse)
    if closed and landuse:
        return "landuse", landuse
    if closed and tags.get("leisure") in GREEN_LEISURE:
        return "landuse", tags["leisure"]
    if closed and natural in GREEN_NATURAL:
        return "landuse", str(natural)
    if "place" in tags and tags.get("name", "").strip():
        return "place", tags["place"]
    return None


def receptor_kind(tags: Mapping[str, str], closed: bool) -> str | None:
    """The receptor kind of an OSM element with these tags, or None."""
    amenity = tags.get("amenity", "")
    if amenity in RECEPTOR_AMENITIES:
        return RECEPTOR_AMENITIES[amenity]
    if amenity == "social_facility" and tags.get("social_facility") in CARE_FACILITIES:
        return "care_home"
    if closed and tags.get("landuse") == "residential":
        return "residential"
    if closed and tags.get("building") in HOUSES | HOMES:
        return "residential"
    return None


def population_estimate(
    tags: Mapping[str, str], kind: str, area_m2: float
) -> tuple[int | None, str | None]:
    """People at a receptor and how that was found (the rule of the module's docstring)."""
    capacity = _count(tags.get("capacity"))
    if capacity is not None:
        return capacity, "capacity tag"
    beds = _count(tags.get("beds"))
    if kind == "hospital" and beds is not None:
        return beds, "beds tag"
    if kind != "residential":
        return None, None
    flats = _count(tags.get("building:flats"))
    building = tags.get("building")
    if building in HOUSES or (building in HOMES and flats is not None):
        return math.ceil((flats or 1) * PEOPLE_PER_DWELLING), "2.5 per dwelling"
    if building in HOMES:
        levels = _count(tags.get("building:levels")) or DEFAULT_LEVELS
        return math.ceil(area_m2 * levels / FLOOR_M2_PER_PERSON), "floor area"
    if tags.get("landuse") == "residential":
        return math.ceil(area_m2 * RESIDENTIAL_PER_KM2 / 1e6), "area density"
    return None, None


def _count(value: str | None) -> int | None:
    try:
        number = int((value or "").strip())
    except ValueError:
        return None
    return number if 0 <= number <= MAX_COUNT else None


def read_osm_surroundings(path: Path) -> OsmSurroundings:
    """The basemap and receptor features of an OSM file (WGS84)."""
    tagged: list[_Way] = []
    nodes, ways, _ = _read_xml(path, tagged)
    basemap: list[dict[str, Any]] = []
    receptors: list[dict[str, Any]] = []
    skipped: Counter[str] = Counter()
    crs: SiteCRS | None = None
    for element, prefix in [*((w, "w") for w in ways), *((n, "n") for n in tagged)]:
        closed = prefix == "w" and len(element.refs) >= 4 and element.refs[0] == element.refs[-1]
        drawn = basemap_kind(element.tags, closed)
        if drawn is not None and (drawn[0] == "place") != (prefix == "n"):
            drawn = None  # nodes draw place names only (not traffic signals or trees)
        receptor = receptor_kind(element.tags, closed)
        if drawn is None and receptor is None:
            continue
        polygon = closed and (receptor is not None or _is_area(drawn, element.tags))
        geometry, reason = _element_geometry(element, nodes, polygon=polygon)
        if geometry is None:
            skipped[str(reason)] += 1
            continue
        fid = f"osm-{prefix}{element.id}"
        name = element.tags.get("name", "").strip()[:200] or None
        if drawn is not None:
            props: dict[str, Any] = {"kind": drawn[0], "name": name, "subtype": drawn[1][:100]}
            basemap.append(_feature(fid, geometry, props))
        if receptor is not None:
            if crs is None:
                centre = geometry.centroid
                crs = SiteCRS.for_site(centre.x, centre.y)
            area = float(crs.to_metric(geometry).area)
            population, estimate = population_estimate(element.tags, receptor, area)
            props = {"name": name, "kind": receptor, "population": population}
            props["estimate"] = estimate
            receptors.append(_feature(fid, geometry, props))
    return OsmSurroundings(basemap, receptors, dict(sorted(skipped.items())))


def _is_area(drawn: tuple[str, str] | None, tags: Mapping[str, str]) -> bool:
    if drawn is None:
        return False
    linear_water = drawn[0] == "water" and tags.get("waterway", "") not in {"", *WATER_AREAS}
    return drawn[0] in AREA_KINDS or (drawn[0] == "water" and not linear_water)


def _element_geometry(
    element: _Way, nodes: Mapping[int, tuple[float, float]], *, polygon: bool
) -> tuple[BaseGeometry | None, str | None]:
    """The element's geometry, or None and why it has none."""
    if len(element.refs) == 1:
        return shapely.Point(nodes[element.refs[0]]), None
    if len(element.refs) > MAX_SURROUNDING_VERTICES:
        return None, "too many vertices"
    if polygon:
        if any(ref not in nodes for ref in element.refs):
            return None, "outside the extract"
        ring: BaseGeometry = shapely.Polygon([nodes[ref] for ref in element.refs])
        if not ring.is_valid:
            ring = shapely.make_valid(ring)
            parts = [g for g in getattr(ring, "geoms", [ring]) if g.geom_type == "Polygon"]
            if not parts:
                return None, "invalid polygon"
            ring = parts[0] if len(parts) == 1 else shapely.MultiPolygon(parts)
        return (ring, None) if not ring.is_empty and ring.area > 0 else (None, "invalid polygon")
    runs: list[list[tuple[float, float]]] = [[]]
    for ref in element.refs:
        if ref in nodes:
            if not runs[-1] or runs[-1][-1] != nodes[ref]:
                runs[-1].append(nodes[ref])
        elif runs[-1]:
            runs.append([])
    longest = max(runs, key=len)
    if len(longest) < 2:
        return None, "outside the extract"
    return shapely.LineString(longest), None


def _feature(fid: str, geometry: BaseGeometry, props: dict[str, Any]) -> dict[str, Any]:
    properties = {k: v for k, v in props.items() if v is not None}
    return {"type": "Feature", "id": fid, "geometry": mapping(geometry), "properties": properties}
