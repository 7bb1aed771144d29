"""Deterministic sites: the demo chemical works, and large synthetic sites for benchmarks.

The demo site is an invented chlor-alkali and fine-chemicals works in an East China chemical park
(around 30.72 N, 121.35 E; no real company). Its layout is a grid of blocks between roads; each
block holds one zone. Every building has doors that a walkway links to the road network, so the
network reaches every door and muster point. The same code, given other sizes, generates synthetic
sites (``rallypoint fixtures generate``). Everything is drawn from ``random.Random(seed)``.
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import shapely
from shapely.geometry import LineString, Point, Polygon, box, mapping
from shapely.geometry.base import BaseGeometry

from gis.crs import SiteCRS

DEMO_CENTRE = (121.35, 30.72)
BLOCK_W, BLOCK_H = 140.0, 110.0  # metres between road centrelines
SETBACK = 12.0  # from road centreline to building wall
SEGMENT_M = 10.0  # road edges are split at most this long (as OSM ways are noded)
SNAPSHOT_TIME = datetime(2026, 1, 15, 2, 0, tzinfo=UTC)  # "now" of the demo positions

# Maximum specific flows, people per minute per metre of width, from the SFPE Handbook of Fire
# Protection Engineering ("Emergency movement"): 1.3 p/s/m for corridors, aisles, ramps and
# doorways; 1.01 p/s/m for stairs of 7 in risers and 11 in treads. Applied to nominal width.
FLOW_LEVEL, FLOW_STAIRS, FLOW_DOOR = 78.0, 60.6, 78.0

# (kind, name, risk grade, occupancy capacity), rows listed north to south, columns west to east.
DEMO_BLOCKS: list[list[tuple[str, str, str, int]]] = [
    [
        ("wastewater", "Wastewater treatment plant", "yellow", 20),
        ("wastewater", "Sludge dewatering house", "yellow", 10),
        ("restricted_area", "Waste incinerator", "orange", 8),
        ("muster_point", "Muster point N1 (north gate lawn)", "blue", 500),
        ("gate", "North emergency gate", "blue", 10),
        ("office", "Contractor office", "blue", 60),
        ("warehouse", "Spare parts store", "yellow", 15),
        ("parking", "Truck parking", "blue", 30),
    ],
    [
        ("tank_farm", "Tank farm T1 (methanol)", "red", 6),
        ("tank_farm", "Tank farm T2 (benzene and toluene)", "red", 6),
        ("tank_farm", "Tank farm T3 (LPG spheres)", "red", 6),
        ("process_unit", "Distillation unit D-300", "orange", 20),
        ("process_unit", "Formaldehyde unit", "orange", 18),
        ("warehouse", "Drum store", "yellow", 10),
        ("storage", "Acrylonitrile storage", "red", 6),
        ("tank_farm", "Tank farm T4 (caustic soda)", "yellow", 6),
    ],
    [
        ("utility", "Nitrogen plant", "yellow", 8),
        ("storage", "Ammonia storage (spheres)", "red", 6),
        ("process_unit", "Ammonia refrigeration unit", "orange", 12),
        ("process_unit", "Reactor unit R-100 (ethylene oxide)", "red", 20),
        ("process_unit", "Reactor unit R-200 (hydrogenation)", "red", 20),
        ("utility", "Flare area", "orange", 4),
        ("restricted_area", "Hydrogen compressor house", "red", 6),
        ("utility", "Instrument air station", "yellow", 6),
    ],
    [
        ("utility", "Cooling water plant", "yellow", 12),
        ("process_unit", "Chlor-alkali unit (electrolysis)", "orange", 30),
        ("storage", "Chlorine liquefaction and storage", "red", 8),
        ("process_unit", "Hydrochloric acid synthesis unit", "orange", 16),
        ("process_unit", "VCM unit", "red", 20),
        ("process_unit", "PVC unit", "orange", 30),
        ("utility", "Boiler house", "orange", 12),
        ("muster_point", "Muster point E1 (east car park)", "blue", 600),
    ],
    [
        ("muster_point", "Muster point W1 (west lawn)", "blue", 500),
        ("laboratory", "Quality control laboratory", "yellow", 40),
        ("control_room", "Central control room", "orange", 40),
        ("workshop", "Maintenance workshop", "yellow", 60),
        ("warehouse", "Warehouse A (packaged goods)", "yellow", 20),
        ("warehouse", "Warehouse B (raw materials)", "yellow", 20),
        ("warehouse", "Hazardous goods store", "orange", 8),
        ("utility", "Substation 35 kV", "orange", 4),
    ],
    [
        ("parking", "Staff car park", "blue", 50),
        ("office", "Administration building", "blue", 200),
        ("gate", "Main gate and security", "blue", 20),
        ("canteen", "Canteen", "blue", 300),
        ("fire_station", "Fire station", "yellow", 40),
        ("loading_bay", "Truck loading bay", "orange", 20),
        ("rail_siding", "Rail siding (west)", "orange", 10),
        ("rail_siding", "Rail siding (east)", "orange", 10),
    ],
]
SYNTHETIC_CYCLE: list[tuple[str, str, int]] = [
    ("process_unit", "orange", 20),
    ("tank_farm", "red", 6),
    ("warehouse", "yellow", 20),
    ("office", "blue", 120),
    ("storage", "red", 8),
    ("utility", "yellow", 10),
    ("workshop", "yellow", 40),
    ("control_room", "orange", 30),
]
MULTI_STOREY = {"office", "control_room", "laboratory", "canteen"}
OCCUPIED = {
    "office": 8,
    "control_room": 6,
    "laboratory": 4,
    "workshop": 5,
    "canteen": 3,
    "process_unit": 3,
    "fire_station": 3,
    "warehouse": 1,
    "gate": 2,
    "storage": 1,
    "utility": 1,
    "loading_bay": 2,
    "tank_farm": 1,
    "wastewater": 1,
    "rail_siding": 1,
}
SURNAMES = [
    "Wang",
    "Li",
    "Zhang",
    "Liu",
    "Chen",
    "Yang",
    "Huang",
    "Zhao",
    "Wu",
    "Zhou",
    "Xu",
    "Sun",
    "Ma",
    "Zhu",
    "Hu",
    "Guo",
    "He",
    "Lin",
    "Gao",
]
GIVEN = [
    "Wei",
    "Fang",
    "Min",
    "Jing",
    "Lei",
    "Qiang",
    "Jun",
    "Yan",
    "Tao",
    "Ming",
    "Chao",
    "Hua",
    "Ping",
    "Gang",
    "Hong",
    "Bin",
    "Xin",
    "Yu",
    "Hao",
    "Jie",
    "Lin",
    "Na",
    "Kai",
    "Rui",
    "Bo",
    "Dan",
    "Peng",
    "Fei",
    "Ying",
    "Qing",
]
CONTRACTORS = [
    "Haitong Scaffolding Co.",
    "Jinshan Insulation Services",
    "Donghai Industrial Cleaning",
    "Hangzhou Bay Electrical Contracting",
]
SHIFTS = ["A", "B", "C", "D", "day"]


@dataclass
class _Builder:
    """Accumulates features in local metres (x east, y north from the south-west corner)."""

    rng: random.Random
    zones: list[dict[str, Any]] = field(default_factory=list)
    resources: list[dict[str, Any]] = field(default_factory=list)
    sensors: list[dict[str, Any]] = field(default_factory=list)
    people: list[dict[str, Any]] = field(default_factory=list)
    edges: list[dict[str, Any]] = field(default_factory=list)
    # road line -> stations (metres along it) where something joins
    stations: dict[tuple[str, int], set[float]] = field(default_factory=dict)

    def edge(self, line: LineString, **props: Any) -> None:
        width = props.get("width_m", 2.0)
        flow = (
            FLOW_STAIRS if props.get("stairs") else FLOW_DOOR if props.get("door") else FLOW_LEVEL
        )
        props.setdefault("capacity", round(width * flow, 1))
        self.edges.append({"geometry": line, "properties": props})

    def resource(
        self, x: float, y: float, kind: str, quantity: int = 1, name: str | None = None
    ) -> None:
        status = "available"
        if kind in {"hydrant", "extinguisher", "scba", "eyewash"} and self.rng.random() < 0.03:
            status = "out_of_service"
        props: dict[str, Any] = {"kind": kind, "quantity": quantity, "status": status}
        if name:
            props["name"] = name
        self.resources.append({"geometry": Point(x, y), "properties": props})

    def sensor(self, x: float, y: float, **props: Any) -> None:
        self.sensors.append({"geometry": Point(x, y), "properties": props})


def generate_site(
    *,
    seed: int = 42,
    people: int = 430,
    edges: int | None = None,
    site_id: str = "demo-works",
    name: str = "Demo chemical works (Hangzhou Bay chemical park)",
    centre: tuple[float, float] = DEMO_CENTRE,
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """A site bundle: the site description and one FeatureCollection per layer.

    ``edges=None`` lays out the demo works; a number lays out a synthetic site of about that many
    network edges (never smaller than the demo).
    """
    rng = random.Random(seed)
    if edges is None:
        blocks = [[(k, n, r, c) for k, n, r, c in row] for row in DEMO_BLOCKS]
    else:
        blocks = _synthetic_blocks(edges)
    ny, nx = len(blocks), len(blocks[0])
    b = _Builder(rng)
    width, height = nx * BLOCK_W, ny * BLOCK_H
    zone_geoms: list[tuple[dict[str, Any], Polygon]] = []

    for row_from_north, row in enumerate(blocks):
        j = ny - 1 - row_from_north
        for i, (kind, zname, grade, capacity) in enumerate(row):
            x0, y0 = i * BLOCK_W + SETBACK, j * BLOCK_H + SETBACK
            x1, y1 = (i + 1) * BLOCK_W - SETBACK, (j + 1) * BLOCK_H - SETBACK
            poly = box(x0, y0, x1, y1)
            props = {"name": zname, "kind": kind, "risk_grade": grade, "capacity": capacity}
            b.zones.append({"geometry": poly, "properties": props})
            zone_geoms.append((props, poly))
            _doors(b, kind, zname, i, j, poly)
            _zone_equipment(b, kind, zname, poly)

    _roads(b, nx, ny)
    _hydrants(b, nx, ny)
    _people(b, zone_geoms, people)

    crs = SiteCRS.for_site(*centre)
    cx, cy = crs.to_metric(Point(*centre)).coords[0]
    ox, oy = cx - width / 2, cy - height / 2
    margin = 30.0
    boundary = box(-margin, -margin, width + margin, height + margin)

    def to_wgs84(geom: BaseGeometry) -> BaseGeometry:
        moved = shapely.transform(geom, lambda c: c + np.array([ox, oy]))
        return shapely.set_precision(crs.to_wgs84(moved), 1e-7)

    site = {
        "id": site_id,
        "name": name,
        "timezone": "Asia/Shanghai",
        "crs": None,
        "boundary": mapping(to_wgs84(boundary)),
        "note": "Invented site for demonstrations and tests; no real company is depicted.",
    }
    layers = {
        "zones": _collection(b.zones, "Z", 3, to_wgs84),
        "resources": _collection(b.resources, "R", 4, to_wgs84),
        "sensors": _collection(b.sensors, "S", 3, to_wgs84),
        "people": _collection(b.people, "P", 4, to_wgs84),
        "network": _collection(b.edges, "E", 5, to_wgs84),
    }
    if edges is None:  # the demo's neighbours; synthetic sites stand alone
        basemap, receptors = _surroundings()
        layers["basemap"] = _collection(basemap, "BM", 3, to_wgs84)
        layers["receptors"] = _collection(receptors, "RC", 2, to_wgs84)
    return site, layers


#: Where the demo's chlorine store (Z-027) stands, in the site's metric frame (metres east and
#: north of its south-west corner), and the way its plume goes in a north-east wind.
CHLORINE_STORE = (2.5 * BLOCK_W, 2.5 * BLOCK_H)
SOUTH_WEST = (-math.sqrt(0.5), -math.sqrt(0.5))


def _surroundings() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The demo works' invented neighbours, all outside the fence: a village and its primary
    school down the plume of a chlorine leak in a north-east wind (the school 700 m from the
    store, the village 1.3 km), an expressway between them and the works, a river south of the
    village, and a clinic up-wind that such a plume does not reach. Drawn without the random
    generator, so the works and its people stay as they were."""

    def along(metres: float) -> tuple[float, float]:
        return (
            CHLORINE_STORE[0] + SOUTH_WEST[0] * metres,
            CHLORINE_STORE[1] + SOUTH_WEST[1] * metres,
        )

    def draw(geometry: BaseGeometry, kind: str, name: str | None, subtype: str) -> dict[str, Any]:
        return {
            "geometry": geometry,
            "properties": {"kind": kind, "name": name, "subtype": subtype},
        }

    school_x, school_y = along(700)
    village_x, village_y = along(1300)
    village = box(village_x - 250, village_y - 200, village_x + 250, village_y + 200)
    grounds = box(school_x - 60, school_y - 40, school_x + 60, school_y + 40)
    river = LineString(
        [(x, village_y - 330 + 40 * math.sin(x / 200)) for x in range(-1800, 2001, 100)]
    )
    basemap = [
        draw(
            LineString([(-260, -1800), (-260, 1500)]), "road", "Bay coastal expressway", "motorway"
        ),
        draw(
            LineString([(-260, village_y), (village_x, village_y)]),
            "road",
            "Dongwan road",
            "residential",
        ),
        draw(river, "water", "Dongwan river (东湾河)", "river"),
        draw(village, "landuse", "Dongwan village", "residential"),
        draw(Point(village_x, village_y + 60), "place", "Dongwan village (东湾村)", "village"),
        draw(
            box(school_x - 30, school_y - 15, school_x + 30, school_y + 15),
            "building",
            "Dongwan primary school",
            "school",
        ),
    ]
    for dx, dy in itertools.product(range(-200, 201, 50), (-150, -90, 30, 90, 150)):
        x, y = village_x + dx, village_y + dy
        basemap.append(draw(box(x - 8, y - 6, x + 8, y + 6), "building", None, "house"))
    receptors = [
        {
            "geometry": grounds,
            "properties": {
                "name": "Dongwan primary school (东湾小学)",
                "kind": "school",
                "population": 420,
                "estimate": "enrolment and staff (invented)",
            },
        },
        {
            "geometry": village,
            "properties": {
                "name": "Dongwan village (东湾村)",
                "kind": "residential",
                "population": 850,
                "estimate": "registered residents (invented)",
            },
        },
        {
            "geometry": Point(1500, 1000),
            "properties": {
                "name": "Chemical park clinic",
                "kind": "clinic",
                "population": 25,
                "estimate": "staff and patients (invented)",
            },
        },
    ]
    return basemap, receptors


def _synthetic_blocks(edges: int) -> list[list[tuple[str, str, str, int]]]:
    # About 31 edges per block (road segments of the block's two sides, doors, walkways).
    count = max(48, math.ceil(edges / 31))
    nx = max(8, math.ceil(math.sqrt(count * 1.4)))
    ny = max(6, math.ceil(count / nx))
    rows = []
    for r in range(ny):
        row = []
        for c in range(nx):
            # Muster points on the edges of the site, and one in every 6 x 8 blocks inside it.
            edge = (r, c) in {(0, nx // 2), (ny - 1, 0), (ny // 2, nx - 1), (ny // 2, 0)}
            if edge or (r % 6 == 3 and c % 8 == 4):
                row.append(("muster_point", f"Muster point {r}-{c}", "blue", 1500))
                continue
            kind, grade, capacity = SYNTHETIC_CYCLE[(r * 7 + c * 3) % len(SYNTHETIC_CYCLE)]
            row.append((kind, f"Block {r}-{c} {kind.replace('_', ' ')}", grade, capacity))
        rows.append(row)
    return rows


def _doors(b: _Builder, kind: str, zname: str, i: int, j: int, poly: Polygon) -> None:
    """A door (or gap) in the south and north walls, each with a walkway to the road."""
    x0, y0, x1, y1 = poly.bounds
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    muster = kind == "muster_point"
    for wall_y, road_y, offset in ((y0, j * BLOCK_H, -15.0), (y1, (j + 1) * BLOCK_H, 15.0)):
        dx = round(cx + offset, 2)
        inside = (dx, wall_y + (8.0 if wall_y == y0 else -8.0))
        door = (dx, wall_y)
        road_line = ("h", round(road_y / BLOCK_H))
        b.stations.setdefault(road_line, set()).add(dx)
        b.edge(LineString([door, (dx, road_y)]), name=f"Walkway to {zname}", width_m=2.0)
        if muster:
            b.edge(LineString([door, inside, (cx, cy)]), name=zname, width_m=6.0)
            continue
        b.edge(LineString([inside, door]), name=f"{zname} door", door=True, width_m=1.8)
        if kind in MULTI_STOREY:
            b.edge(LineString([inside, (cx, cy)]), name=f"{zname} stairs", stairs=True, width_m=1.5)
        else:
            b.edge(LineString([inside, (cx, cy)]), name=f"{zname} aisle", width_m=2.5)


def _roads(b: _Builder, nx: int, ny: int) -> None:
    width, height = nx * BLOCK_W, ny * BLOCK_H
    for j in range(ny + 1):
        y = j * BLOCK_H
        cuts = {i * BLOCK_W for i in range(nx + 1)} | b.stations.get(("h", j), set())
        outer = j in (0, ny)
        for a, c in _segments(cuts, width):
            oneway = j == 0 and a >= width * 0.6  # the rail siding service road is one-way east
            b.edge(
                LineString([(a, y), (c, y)]),
                name="Perimeter road" if outer else f"Road {j}",
                vehicle=True,
                oneway=oneway,
                width_m=10.0 if outer else 8.0,
            )
    for i in range(nx + 1):
        x = i * BLOCK_W
        cuts = {j * BLOCK_H for j in range(ny + 1)}
        outer = i in (0, nx)
        for a, c in _segments(cuts, height):
            b.edge(
                LineString([(x, a), (x, c)]),
                name="Perimeter road" if outer else f"Avenue {i}",
                vehicle=True,
                width_m=10.0 if outer else 8.0,
            )


def _segments(cuts: set[float], length: float) -> list[tuple[float, float]]:
    """Consecutive stations along a road of ``length``, at most SEGMENT_M apart."""
    points = sorted(round(c, 2) for c in cuts | {0.0, length} if 0 <= c <= length)
    out: list[tuple[float, float]] = []
    for a, c in itertools.pairwise(points):
        n = max(1, math.ceil((c - a) / SEGMENT_M - 1e-9))
        steps = [round(a + (c - a) * k / n, 2) for k in range(n)] + [c]
        out.extend(itertools.pairwise(steps))
    return out


def _hydrants(b: _Builder, nx: int, ny: int) -> None:
    """Hydrants every 80 m along the roads, 4 m off the kerb line (GB 50160 allows 60-120 m)."""
    for j in range(ny + 1):
        for k in range(int(nx * BLOCK_W // 80) + 1):
            b.resource(k * 80.0 + 20.0, j * BLOCK_H + 6.0, "hydrant")
    for i in range(nx + 1):
        for k in range(int(ny * BLOCK_H // 80)):
            b.resource(i * BLOCK_W - 6.0, k * 80.0 + 55.0, "hydrant")


def _zone_equipment(b: _Builder, kind: str, zname: str, poly: Polygon) -> None:
    x0, y0, x1, y1 = poly.bounds
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    corners = [(x0 + 4, y0 + 4), (x1 - 4, y0 + 4), (x1 - 4, y1 - 4), (x0 + 4, y1 - 4)]
    if kind not in {"muster_point", "parking", "rail_siding"}:
        b.resource(x0 + 10, y0 + 3, "extinguisher", 2)
        b.resource(x1 - 10, y1 - 3, "extinguisher", 2)
    if kind in {"office", "control_room", "workshop", "canteen", "laboratory", "gate"}:
        b.resource(cx + 5, cy, "first_aid")
    if kind in {"process_unit", "storage", "laboratory", "tank_farm"}:
        b.resource(cx - 5, y0 + 6, "eyewash")
    if kind in {"tank_farm", "storage"} or "Hazardous" in zname or "Drum" in zname:
        b.resource(x0 + 6, cy, "spill_kit", 2)
    if kind == "tank_farm":
        for x, y in corners:
            b.resource(x, y, "fire_monitor")
    if kind == "control_room":
        b.resource(cx - 8, cy, "scba", 6, "SCBA cabinet, control room")
        b.resource(cx - 8, cy + 4, "gas_suit", 2, "Gas-tight suits, control room")
    if kind == "fire_station":
        for n, vehicle in enumerate(["fire_truck", "fire_truck", "foam_tender", "ambulance"]):
            b.resource(
                x0 + 15 + 18 * n, y0 + 10, vehicle, 1, f"{vehicle.replace('_', ' ')} {n + 1}"
            )
        b.resource(x0 + 15, y1 - 15, "fire_truck", 1, "Aerial ladder truck")
        b.resource(cx, cy, "scba", 12, "SCBA store, fire station")
        b.resource(cx + 6, cy, "gas_suit", 6, "Gas-tight suits, fire station")
        b.resource(cx, cy + 8, "rescue_team", 8, "On-site rescue team")
    if "Chlorine" in zname or "Ammonia storage" in zname:
        b.resource(cx + 8, y0 + 6, "scba", 4, f"SCBA cabinet, {zname}")
    # Gas detectors where the substance is handled, wind and temperature where they matter.
    gas = None
    if "Chlor" in zname or "Hydrochloric" in zname:
        gas = ("Cl2", "ppm", 0.5, 1.0, 3.0)
    elif "Ammonia" in zname:
        gas = ("NH3", "ppm", 25.0, 50.0, 150.0)
    elif kind == "wastewater":
        gas = ("H2S", "ppm", 5.0, 10.0, 20.0)
    elif "caustic" not in zname and (
        kind in {"tank_farm", "process_unit"} or "Hydrogen" in zname or "Acrylonitrile" in zname
    ):
        gas = ("LEL", "%LEL", 10.0, 25.0, 50.0)
    if gas is not None:
        substance, unit, warning, alarm, high = gas
        for n, (x, y) in enumerate(corners, start=1):
            b.sensor(
                x,
                y,
                name=f"{substance} detector {n}, {zname}",
                kind="gas",
                substance=substance,
                unit=unit,
                warning=warning,
                alarm=alarm,
                high_alarm=high,
            )
    if (
        kind == "control_room"
        or "Tank farm T1" in zname
        or (kind == "wastewater" and "plant" in zname)
    ):
        b.sensor(
            cx,
            cy + 10,
            name=f"Wind station, {zname}",
            kind="wind",
            unit="m/s",
            warning=10.8,
            alarm=17.2,
            high_alarm=24.5,
        )
    if "LPG" in zname or "Ammonia storage" in zname:
        b.sensor(
            cx,
            cy,
            name=f"Shell temperature, {zname}",
            kind="temperature",
            unit="degC",
            warning=45.0,
            alarm=55.0,
            high_alarm=65.0,
        )


def _people(b: _Builder, zones: list[tuple[dict[str, Any], Polygon]], count: int) -> None:
    rng = b.rng
    places = [(p, g) for p, g in zones if p["kind"] in OCCUPIED]
    weights = [OCCUPIED[p["kind"]] for p, _ in places]
    for _ in range(count):
        props, poly = rng.choices(places, weights)[0]
        x0, y0, x1, y1 = poly.buffer(-3).bounds
        point = Point(rng.uniform(x0, x1), rng.uniform(y0, y1))
        contractor = rng.random() < 0.22
        kind = props["kind"]
        role = _role(rng, kind, contractor)
        team = (
            rng.choice(CONTRACTORS).split(" Co.")[0] + " crew"
            if contractor
            else f"{props['name'].split(' (')[0]} team"
        )
        b.people.append(
            {
                "geometry": point,
                "properties": {
                    "name": _name(rng),
                    "role": role,
                    "team": team,
                    "shift": "day" if kind in {"office", "canteen"} else rng.choice(SHIFTS),
                    "employer": rng.choice(CONTRACTORS) if contractor else "Demo chemical works",
                    "employment": "contractor" if contractor else "staff",
                    "seen_at": (SNAPSHOT_TIME - timedelta(seconds=rng.randint(5, 900))).isoformat(),
                },
            }
        )


def _name(rng: random.Random) -> str:
    return f"{rng.choice(SURNAMES)} {rng.choice(GIVEN)}{rng.choice(GIVEN).lower()}"


def _role(rng: random.Random, kind: str, contractor: bool) -> str:
    if contractor:
        return rng.choice(["scaffolder", "insulator", "cleaner", "electrician", "welder"])
    by_kind = {
        "office": ["office staff", "engineer", "safety officer", "duty manager"],
        "control_room": ["panel operator", "shift leader", "duty manager"],
        "laboratory": ["lab analyst"],
        "workshop": ["maintenance fitter", "electrician", "instrument technician"],
        "fire_station": ["firefighter", "medic"],
        "gate": ["security guard"],
        "canteen": ["canteen staff"],
        "loading_bay": ["driver", "loader"],
    }
    return rng.choice(by_kind.get(kind, ["field operator", "field operator", "shift leader"]))


def _collection(
    items: list[dict[str, Any]], prefix: str, digits: int, to_wgs84: Any
) -> dict[str, Any]:
    features = []
    for n, item in enumerate(items, start=1):
        props = {k: v for k, v in item["properties"].items() if v is not None}
        features.append(
            {
                "type": "Feature",
                "id": f"{prefix}-{n:0{digits}d}",
                "geometry": mapping(to_wgs84(item["geometry"])),
                "properties": props,
            }
        )
    return {"type": "FeatureCollection", "features": features}
