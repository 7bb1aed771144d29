"""OGC API - Features under /ogc, over HTTP, on SQLite and PostGIS: every answer is checked
against an independent reading of the database (SQL, shapely, pyproj), never against the code
that serves it. The real clients (GDAL, OWSLib) are in tests/test_ogc_clients.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest
import shapely
from fastapi.testclient import TestClient
from pyproj import Transformer
from shapely.geometry import box, shape
from shapely.geometry.base import BaseGeometry
from sqlalchemy import text

from command.app import create_app
from command.auth import Role, create_user, create_wall_token
from command.routes.ogc import CONFORMANCE
from command.routes.sites import SITE_EXAMPLE
from command.settings import Settings
from gis.model import LAYERS
from gis.sites import create_site
from gis.storage.db import Database
from gis.storage.tables import LAYER_ROWS
from tests.conftest import DEMO_ID, FAST_HASHER, TEST_PASSWORD, sign_in
from tests.problems import assert_problem
from tests.test_incidents import activate
from tests.test_topology import N1, NORTH_WALK, OFFICE_DOORS, SOUTH_WALK

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
UTM51 = "http://www.opengis.net/def/crs/EPSG/0/32651"
ITEMS = f"/ogc/collections/{DEMO_ID}.{{layer}}/items"
GEOJSON = "application/geo+json"
TO_UTM = Transformer.from_crs("EPSG:4326", "EPSG:32651", always_xy=True)
FROM_UTM = Transformer.from_crs("EPSG:32651", "EPSG:4326", always_xy=True)


@pytest.fixture
def client(db: Database) -> Iterator[TestClient]:
    """The tester (every human role) on an app without the once-a-second ticker: nothing here
    needs deadlines fired, and a tick still running in a worker thread when the test ends
    would use the rolled-back connection after the pool took it back (conftest's client)."""
    app = create_app(Settings(database_url=str(db.engine.url)), database=db, ticking=False)
    with TestClient(app) as test_client:
        test_client.headers.update(sign_in(db, "tester"))
        yield test_client


# --- an independent reading of the database ------------------------------------------------------


def sql_rows(db: Database, layer: str, where: str = "", **params: Any) -> dict[str, dict[str, Any]]:
    """The layer's rows read with plain SQL, by id, with ``geom`` as shapely (None if none)."""
    table = LAYER_ROWS[layer].__tablename__
    geom = "ST_AsBinary(geom)" if db.is_postgis else "geom"
    columns = ", ".join(["id", f"{geom} AS wkb", "version", *LAYERS[layer].fields])
    sql = f"SELECT {columns} FROM {table} WHERE site_id = :site {where}"
    with db.read() as session:
        rows = session.execute(text(sql), {"site": DEMO_ID, **params}).mappings().all()
    out = {}
    for row in rows:
        values = dict(row)
        wkb = values.pop("wkb")
        values["geom"] = None if wkb is None else shapely.from_wkb(bytes(wkb))
        out[values["id"]] = values
    return out


def sql_ids_in_order(db: Database, layer: str) -> list[str]:
    """Ids in the database's own order (PostgreSQL's collation, SQLite's bytes)."""
    table = LAYER_ROWS[layer].__tablename__
    with db.read() as session:
        return list(
            session.scalars(
                text(f"SELECT id FROM {table} WHERE site_id = :site ORDER BY id"),
                {"site": DEMO_ID},
            )
        )


def change_log(db: Database, layer: str, feature_id: str) -> list[tuple[str, int, str]]:
    with db.read() as session:
        rows = session.execute(
            text(
                "SELECT action, version, actor FROM changes WHERE site_id = :site "
                "AND layer = :layer AND feature_id = :fid ORDER BY seq"
            ),
            {"site": DEMO_ID, "layer": layer, "fid": feature_id},
        ).all()
    return [(r[0], r[1], r[2]) for r in rows]


def intersecting(rows: dict[str, dict[str, Any]], window: BaseGeometry) -> set[str]:
    return {i for i, r in rows.items() if r["geom"] is not None and r["geom"].intersects(window)}


def path_of(href: str) -> str:
    parts = urlsplit(href)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def walk(client: TestClient, first: str, rel: str = "next") -> Iterator[dict[str, Any]]:
    """Every page from ``first`` on, following ``rel`` links."""
    url: str | None = first
    while url is not None:
        answer = client.get(url)
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith(GEOJSON)
        page: dict[str, Any] = answer.json()
        yield page
        url = next((path_of(li["href"]) for li in page["links"] if li["rel"] == rel), None)


def all_ids(client: TestClient, first: str) -> list[str]:
    return [f["id"] for page in walk(client, first) for f in page["features"]]


# --- the landing page, conformance, collections ---------------------------------------------------


def test_the_landing_page_links_everything(client: TestClient) -> None:
    answer = client.get("/ogc")
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    links = {li["rel"]: li for li in answer.json()["links"]}
    assert {"self", "service-desc", "conformance", "data"} <= set(links)
    for rel in ("self", "conformance", "data"):
        assert client.get(path_of(links[rel]["href"])).status_code == 200, rel
    api = client.get(path_of(links["service-desc"]["href"])).json()
    assert links["service-desc"]["type"] == "application/vnd.oai.openapi+json;version=3.1"
    assert api["openapi"].startswith("3.1")
    ogc_paths = {p for p in api["paths"] if p.startswith("/ogc")}
    assert {
        "/ogc",
        "/ogc/conformance",
        "/ogc/collections",
        "/ogc/collections/{collection_id}/items",
        "/ogc/collections/{collection_id}/items/{feature_id}",
        "/ogc/collections/{collection_id}/queryables",
    } <= ogc_paths
    items = api["paths"]["/ogc/collections/{collection_id}/items"]
    assert {"get", "post", "options"} <= set(items)
    limit = next(p for p in items["get"]["parameters"] if p["name"] == "limit")
    assert limit["schema"]["maximum"] == 10_000
    assert client.get("/ogc/").status_code == 200  # the trailing slash of a typed URL


def test_conformance_claims_exactly_the_tested_classes(client: TestClient) -> None:
    """A class added to the list must come with its tests: this list is the tested one."""
    claimed = client.get("/ogc/conformance").json()["conformsTo"]
    assert claimed == CONFORMANCE
    assert set(claimed) == {
        "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
        "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
        "http://www.opengis.net/spec/ogcapi-features-2/1.0/conf/crs",
        "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables",
        "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables-query-parameters",
        "http://www.opengis.net/spec/ogcapi-features-4/1.0/conf/create-replace-delete",
        "http://www.opengis.net/spec/ogcapi-features-4/1.0/conf/update",
        "http://www.opengis.net/spec/ogcapi-features-4/1.0/conf/optimistic-locking-etags",
        "http://www.opengis.net/spec/ogcapi-features-4/1.0/conf/features",
    }
    assert not [c for c in claimed if "oas30" in c or "html" in c or "cql2" in c]


def test_collections_are_every_layer_with_its_extent(client: TestClient, db: Database) -> None:
    listed = client.get("/ogc/collections").json()["collections"]
    assert [c["id"] for c in listed] == [f"{DEMO_ID}.{name}" for name in LAYERS]
    for collection in listed:
        layer = collection["id"].split(".", 1)[1]
        geoms = [r["geom"] for r in sql_rows(db, layer).values() if r["geom"] is not None]
        expected = shapely.total_bounds(np.array(geoms, dtype=object))
        bbox = collection["extent"]["spatial"]["bbox"][0]
        assert np.allclose(bbox, expected, atol=1e-9), layer
        assert collection["extent"]["spatial"]["crs"] == CRS84
        assert collection["crs"] == [CRS84, UTM51] and collection["storageCrs"] == CRS84
        assert collection["itemType"] == "feature"
        rels = {li["rel"]: li["href"] for li in collection["links"]}
        assert path_of(rels["items"]) == ITEMS.format(layer=layer)
        assert rels["http://www.opengis.net/def/rel/ogc/1.0/queryables"]
        assert client.get(f"/ogc/collections/{collection['id']}").json() == collection
        assert ("temporal" in collection["extent"]) == (layer == "people")
    people = next(c for c in listed if c["id"].endswith(".people"))
    with db.read() as session:
        first, last = session.execute(
            text("SELECT min(seen_at), max(seen_at) FROM people WHERE site_id = :s"),
            {"s": DEMO_ID},
        ).one()
    interval = people["extent"]["temporal"]["interval"][0]
    assert [datetime.fromisoformat(t) for t in interval] == [
        _utc(first),
        _utc(last),
    ]


def _utc(value: Any) -> datetime:
    parsed = datetime.fromisoformat(value) if isinstance(value, str) else value
    assert isinstance(parsed, datetime)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


# --- who sees what -------------------------------------------------------------------------------

OTHER = "north-works"


def _only_on(db: Database, username: str, site_id: str, role: Role) -> dict[str, str]:
    with db.write() as session:
        create_user(session, username, TEST_PASSWORD, [role], site_id=site_id, hasher=FAST_HASHER)
    return sign_in(db, username)


def test_a_site_without_a_role_is_invisible(client: TestClient, db: Database) -> None:
    """A wall token reads its one site: the others are not there for it. (A person granted a
    role on one site reads the others as a viewer: the group rule, docs/group.md.)"""
    with db.write() as session:
        create_site(session, {**SITE_EXAMPLE, "id": OTHER}, actor="test")
        wall = create_wall_token(session, OTHER, "north wall", None).token
    north = {"Authorization": f"Bearer {wall}"}
    planner = _only_on(db, "north-planner", OTHER, Role.PLANNER)
    listed = client.get("/ogc/collections", headers=north).json()["collections"]
    assert {c["id"].split(".")[0] for c in listed} == {OTHER}
    both = {c["id"].split(".")[0] for c in client.get("/ogc/collections").json()["collections"]}
    assert both == {DEMO_ID, OTHER}
    zones = f"/ogc/collections/{DEMO_ID}.zones"
    for answer in (
        client.get(zones, headers=north),
        client.get(f"{zones}/items", headers=north),
        client.get(f"{zones}/items/Z-001", headers=north),
        client.get(f"{zones}/queryables", headers=north),
    ):
        assert_problem(answer, 404, field="collection")
    # The planner of the other site reads the demo works as a viewer: no writing there.
    assert client.get(zones, headers=planner).status_code == 200
    assert_problem(client.post(f"{zones}/items", json={}, headers=planner), 403, field="role")
    allow = client.request("OPTIONS", f"{zones}/items", headers=planner)
    assert allow.headers["allow"] == "GET, OPTIONS"
    # The same answer as a collection that does not exist at all.
    missing = assert_problem(client.get("/ogc/collections/nowhere.zones", headers=north), 404)
    hidden = assert_problem(client.get(zones, headers=north), 404)
    assert hidden["detail"].replace(f"{DEMO_ID}.zones", "X") == missing["detail"].replace(
        "nowhere.zones", "X"
    )
    for bad in ("zones", f"{DEMO_ID}.nolayer", f"{DEMO_ID}", "Demo.zones"):
        assert_problem(client.get(f"/ogc/collections/{bad}"), 404)


def test_readers_read_and_planners_write(client: TestClient, db: Database) -> None:
    viewer = _only_on(db, "demo-viewer", DEMO_ID, Role.VIEWER)
    planner = _only_on(db, "demo-planner", DEMO_ID, Role.PLANNER)
    items = ITEMS.format(layer="resources")
    assert client.get(items, headers=viewer).status_code == 200
    refused = assert_problem(client.post(items, json=hydrant(), headers=viewer), 403, field="role")
    assert "planner" in refused["detail"]
    put = client.put(f"{items}/R-0001", json={}, headers={**viewer, "If-Match": '"1"'})
    assert_problem(put, 403, field="role")
    allow = client.request("OPTIONS", items, headers=viewer)
    assert allow.status_code == 204 and allow.headers["allow"] == "GET, OPTIONS"
    allow = client.request("OPTIONS", items, headers=planner)
    assert allow.headers["allow"] == "GET, OPTIONS, POST"
    one = client.request("OPTIONS", f"{items}/R-0001", headers=planner)
    assert one.headers["allow"] == "GET, OPTIONS, PUT"  # what QGIS can send a version with
    one = client.request("OPTIONS", f"{items}/R-0001", headers=viewer)
    assert one.headers["allow"] == "GET, OPTIONS"
    assert_problem(client.get("/ogc/collections", headers={"Authorization": ""}), 401)


# --- items: pages, bbox, crs, filters -----------------------------------------------------------


def test_pages_walk_every_feature_once_in_id_order(client: TestClient, db: Database) -> None:
    rows = sql_rows(db, "network")
    ordered = sql_ids_in_order(db, "network")
    pages = list(walk(client, ITEMS.format(layer="network") + "?limit=500"))
    assert len(pages) == -(-len(rows) // 500) >= 4
    assert [f["id"] for p in pages for f in p["features"]] == ordered
    for page in pages:
        assert page["numberMatched"] == len(rows)
        assert page["numberReturned"] == len(page["features"])
        assert page["timeStamp"].endswith("Z")
        for feature in page["features"]:
            row = rows[feature["id"]]
            for name in LAYERS["network"].fields:
                assert feature["properties"][name] == row[name], name
            assert feature["properties"]["version"] == row["version"]
            assert shapely.equals_exact(shape(feature["geometry"]), row["geom"], tolerance=1e-12)
    # Back from the last page by prev links: the same pages, in reverse.
    last = pages[-1]["links"]
    back = next(li["href"] for li in last if li["rel"] == "self")
    returned = [p["features"] for p in walk(client, path_of(back), rel="prev")]
    assert [f["id"] for page in reversed(returned) for f in page] == ordered
    assert not [li for li in pages[0]["links"] if li["rel"] == "prev"]
    assert not [li for li in pages[-1]["links"] if li["rel"] == "next"]


def test_a_page_holds_what_the_item_and_the_layers_api_hold(client: TestClient) -> None:
    """Pages are encoded in bulk, single features one by one: the same features either way."""
    for layer in LAYERS:
        for crs in (CRS84, UTM51):
            page = client.get(ITEMS.format(layer=layer) + f"?limit=7&crs={crs}").json()
            assert page["features"], layer
            for feature in page["features"]:
                url = f"{ITEMS.format(layer=layer)}/{feature['id']}?crs={crs}"
                item = client.get(url).json()
                assert item.pop("links") and feature == item, (layer, crs)
                if crs == CRS84:
                    api = f"/api/sites/{DEMO_ID}/layers/{layer}/features/{feature['id']}"
                    assert feature == client.get(api).json(), layer


def test_bbox_gives_what_intersects_it(client: TestClient, db: Database) -> None:
    site_box = (121.3480, 30.7180, 121.3520, 30.7210)
    window = box(*site_box)
    for layer in ("network", "people", "zones", "resources"):
        rows = sql_rows(db, layer)
        expected = intersecting(rows, window)
        assert 0 < len(expected) < len(rows), layer
        url = ITEMS.format(layer=layer) + "?limit=37&bbox=" + ",".join(map(str, site_box))
        pages = list(walk(client, url))
        got = [f["id"] for p in pages for f in p["features"]]
        assert got == sorted(got, key=sql_ids_in_order(db, layer).index), layer
        assert set(got) == expected and len(got) == len(expected), layer
        assert {p["numberMatched"] for p in pages} == {len(expected)}, layer
    # Six numbers (heights ignored); a box without width is the line it is.
    six = f"{site_box[0]},{site_box[1]},-10,{site_box[2]},{site_box[3]},50"
    got = all_ids(client, ITEMS.format(layer="network") + f"?limit=1000&bbox={six}")
    assert set(got) == intersecting(sql_rows(db, "network"), window)
    line = [121.3500, 30.7180, 121.3500, 30.7210]
    got = all_ids(client, ITEMS.format(layer="zones") + "?bbox=" + ",".join(map(str, line)))
    assert set(got) == intersecting(sql_rows(db, "zones"), shapely.LineString([line[:2], line[2:]]))


def test_bbox_edges_are_exact(client: TestClient, db: Database, planner: dict[str, str]) -> None:
    """A tenth of a micro-degree either side of an edge: finer than the single-precision boxes
    PostGIS compares with its box operators, so only an exact test tells them apart."""
    x0, y0, x1, y1 = 121.3480, 30.7180, 121.3520, 30.7210
    places = {
        "inside east": (x1 - 1e-7, 30.7195),
        "outside east": (x1 + 1e-7, 30.7195),
        "inside south": (121.3500, y0 + 1e-7),
        "outside south": (121.3500, y0 - 1e-7),
    }
    items = ITEMS.format(layer="resources")
    ids = {}
    for name, xy in places.items():
        body = {**hydrant(name=name), "geometry": {"type": "Point", "coordinates": list(xy)}}
        created = client.post(items, json=body, headers=planner)
        assert created.status_code == 201, created.text
        ids[name] = created.json()["id"]
    got = set(all_ids(client, f"{items}?limit=1000&bbox={x0},{y0},{x1},{y1}"))
    assert got == intersecting(sql_rows(db, "resources"), box(x0, y0, x1, y1))
    assert {name for name, fid in ids.items() if fid in got} == {"inside east", "inside south"}


def test_crs_and_bbox_crs_in_the_sites_metric_crs(client: TestClient, db: Database) -> None:
    rows = sql_rows(db, "zones")
    answer = client.get(ITEMS.format(layer="zones") + f"?limit=100&crs={UTM51}")
    assert answer.headers["content-crs"] == f"<{UTM51}>"
    for feature in answer.json()["features"]:
        expected = shapely.transform(rows[feature["id"]]["geom"], _utm)
        assert shapely.equals_exact(shape(feature["geometry"]), expected, tolerance=1e-6)
    default = client.get(ITEMS.format(layer="zones") + "?limit=1")
    assert default.headers["content-crs"] == f"<{CRS84}>"
    one = client.get(f"{ITEMS.format(layer='zones')}/Z-001?crs={UTM51}")
    assert one.headers["content-crs"] == f"<{UTM51}>"
    assert shapely.equals_exact(
        shape(one.json()["geometry"]), shapely.transform(rows["Z-001"]["geom"], _utm), 1e-6
    )
    # A window of 300 m x 200 m in UTM: what intersects it, transformed here independently.
    x0, y0 = TO_UTM.transform(121.3485, 30.7185)
    metric = shapely.segmentize(box(x0, y0, x0 + 300, y0 + 200), 5.0)
    window = shapely.transform(metric, _lonlat)
    for layer in ("network", "zones"):
        expected = intersecting(sql_rows(db, layer), window)
        assert expected, layer
        bbox = f"{x0},{y0},{x0 + 300},{y0 + 200}"
        got = all_ids(client, ITEMS.format(layer=layer) + f"?bbox={bbox}&bbox-crs={UTM51}")
        assert set(got) == expected, layer
    for param in ("crs", "bbox-crs"):
        url = (
            ITEMS.format(layer="zones")
            + f"?bbox=1,2,3,4&{param}=http://www.opengis.net/def/crs/EPSG/0/4326"
        )
        body = assert_problem(client.get(url), 400, field=param)
        assert UTM51 in str(body["errors"])


def _utm(coords: Any) -> Any:
    x, y = TO_UTM.transform(coords[:, 0], coords[:, 1])
    return np.column_stack([x, y])


def _lonlat(coords: Any) -> Any:
    x, y = FROM_UTM.transform(coords[:, 0], coords[:, 1])
    return np.column_stack([x, y])


def test_queryables_and_filtering_by_them(client: TestClient, db: Database) -> None:
    schema = client.get(f"/ogc/collections/{DEMO_ID}.resources/queryables")
    assert schema.headers["content-type"] == "application/schema+json"
    body = schema.json()
    assert body["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert body["$id"].endswith(f"/ogc/collections/{DEMO_ID}.resources/queryables")
    assert body["type"] == "object"
    assert set(body["properties"]) == set(LAYERS["resources"].fields)
    assert "hydrant" in body["properties"]["kind"]["enum"]
    assert body["properties"]["quantity"]["type"] == "integer"
    items = ITEMS.format(layer="resources")
    cases = {
        "?kind=hydrant": sql_rows(db, "resources", "AND kind = 'hydrant'"),
        "?kind=hydrant,extinguisher&status=available": sql_rows(
            db, "resources", "AND kind IN ('hydrant', 'extinguisher') AND status = 'available'"
        ),
        "?kind=hydrant&kind=scba": sql_rows(db, "resources", "AND kind IN ('hydrant', 'scba')"),
    }
    for query, rows in cases.items():
        assert rows, query
        pages = list(walk(client, items + query + "&limit=50"))
        assert {f["id"] for p in pages for f in p["features"]} == set(rows), query
        assert pages[0]["numberMatched"] == len(rows), query
    # With a bbox too (on SQLite the window and the filter take different paths).
    window = box(121.3470, 30.7170, 121.3540, 30.7220)
    hydrants = intersecting(cases["?kind=hydrant"], window)
    assert hydrants
    got = all_ids(client, items + "?kind=hydrant&bbox=121.347,30.717,121.354,30.722&limit=3")
    assert set(got) == hydrants
    people = sql_rows(db, "people", "AND employment = 'contractor'")
    got = all_ids(
        client, ITEMS.format(layer="people") + "?employment=contractor&bbox=121,30,122,31"
    )
    assert set(got) == {i for i, r in people.items() if r["geom"] is not None}
    assert_problem(client.get(items + "?quantity=many"), 400, field="quantity")
    assert_problem(client.get(items + "?kind=dragon"), 400, field="kind")


def test_datetime_selects_people_seen_then(client: TestClient, db: Database) -> None:
    people = sql_rows(db, "people")
    with db.read() as session:
        times = {
            r[0]: _utc(r[1])
            for r in session.execute(
                text("SELECT id, seen_at FROM people WHERE site_id = :s AND seen_at IS NOT NULL"),
                {"s": DEMO_ID},
            )
        }
    middle = sorted(times.values())[len(times) // 2]
    start = middle.isoformat().replace("+00:00", "Z")
    cases = {
        f"{start}/..": {i for i, t in times.items() if t >= middle},
        f"../{start}": {i for i, t in times.items() if t <= middle},
        start: {i for i, t in times.items() if t == middle},
    }
    for value, expected in cases.items():
        assert expected, value
        got = all_ids(client, ITEMS.format(layer="people") + f"?datetime={value}&limit=1000")
        assert set(got) == expected, value
    assert len(people) > len(cases[f"{start}/.."])
    # A layer without times has no feature whose time lies in any interval.
    zones = client.get(ITEMS.format(layer="zones") + f"?datetime={start}/..").json()
    assert zones["features"] == [] and zones["numberMatched"] == 0
    for bad in ("yesterday", "2026-01-01", "../..", "2026-02-01T00:00:00Z/2026-01-01T00:00:00Z"):
        assert_problem(client.get(ITEMS.format(layer="people") + f"?datetime={bad}"), 400)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("?foo=1", "foo"),
        ("?limit=0", "limit"),
        ("?limit=ten", "limit"),
        ("?limit=5&limit=6", "limit"),
        ("?bbox=1,2,3", "bbox"),
        ("?bbox=121.36,30.7,121.35,30.72", "bbox"),
        ("?bbox=nan,1,2,3", "bbox"),
        ("?cursor=%21%21", "cursor"),
        ("?f=html", "f"),
        ("?crs=EPSG:32651", "crs"),
        ("?=x", "query"),
    ],
)
def test_a_bad_parameter_answers_400(client: TestClient, query: str, field: str) -> None:
    assert_problem(client.get(ITEMS.format(layer="zones") + query), 400, field=field)


def test_every_resource_refuses_unknown_parameters(client: TestClient) -> None:
    zones = f"/ogc/collections/{DEMO_ID}.zones"
    for path in ("/ogc", "/ogc/conformance", "/ogc/collections", zones, f"{zones}/queryables"):
        assert_problem(client.get(f"{path}?limit=1"), 400, field="limit")
        assert client.get(f"{path}?f=json").status_code == 200, path
    assert_problem(client.get(f"{zones}/items/Z-001?bbox=1,2,3,4"), 400, field="bbox")
    big = client.get(ITEMS.format(layer="network") + "?limit=50000&f=json")
    assert big.status_code == 200 and big.json()["numberReturned"] == big.json()["numberMatched"]


def test_an_item_carries_its_version_as_etag(client: TestClient, db: Database) -> None:
    row = sql_rows(db, "sensors")["S-005"]
    answer = client.get(f"{ITEMS.format(layer='sensors')}/S-005")
    assert answer.status_code == 200 and answer.headers["content-type"] == GEOJSON
    assert answer.headers["etag"] == f'"{row["version"]}"'
    feature = answer.json()
    assert feature["id"] == "S-005" and feature["properties"]["version"] == row["version"]
    assert shapely.equals_exact(shape(feature["geometry"]), row["geom"], tolerance=1e-12)
    rels = {li["rel"] for li in feature["links"]}
    assert {"self", "collection"} <= rels
    assert_problem(client.get(f"{ITEMS.format(layer='sensors')}/S-999999"), 404)


# --- Part 4: create, replace, update, delete ----------------------------------------------------


def hydrant(**properties: Any) -> dict[str, Any]:
    return {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [121.3502, 30.7199]},
        "properties": {"kind": "hydrant", "name": "OGC hydrant", **properties},
    }


@pytest.fixture
def planner(db: Database) -> dict[str, str]:
    return sign_in(db, "planner-ogc", [Role.PLANNER])


def test_create_replace_update_delete(
    client: TestClient, db: Database, planner: dict[str, str]
) -> None:
    items = ITEMS.format(layer="resources")
    created = client.post(items, json=hydrant(quantity=2), headers=planner)
    assert created.status_code == 201, created.text
    fid = created.json()["id"]
    assert created.headers["etag"] == '"1"'
    assert path_of(created.headers["location"]) == f"{items}/{fid}"
    assert client.get(path_of(created.headers["location"])).json()["id"] == fid
    row = sql_rows(db, "resources", "AND id = :fid", fid=fid)[fid]
    assert (row["kind"], row["quantity"], row["name"], row["version"]) == (
        "hydrant",
        2,
        "OGC hydrant",
        1,
    )
    # Replace: the whole feature, If-Match naming the version read.
    replaced = client.put(
        f"{items}/{fid}",
        json=hydrant(quantity=3, status="assigned"),
        headers={**planner, "If-Match": '"1"'},
    )
    assert replaced.status_code == 200, replaced.text
    assert replaced.headers["etag"] == '"2"'
    # Update: a JSON merge patch; null restores the default.
    patched = client.patch(
        f"{items}/{fid}",
        content=json.dumps({"properties": {"name": None, "quantity": 5}}),
        headers={**planner, "If-Match": '"2"', "Content-Type": "application/merge-patch+json"},
    )
    assert patched.status_code == 200, patched.text
    assert patched.headers["etag"] == '"3"'
    row = sql_rows(db, "resources", "AND id = :fid", fid=fid)[fid]
    assert (row["name"], row["quantity"], row["status"], row["version"]) == (
        None,
        5,
        "assigned",
        3,
    )
    deleted = client.delete(f"{items}/{fid}", headers={**planner, "If-Match": '"3"'})
    assert deleted.status_code == 204, deleted.text
    assert sql_rows(db, "resources", "AND id = :fid", fid=fid) == {}
    assert change_log(db, "resources", fid) == [
        ("create", 1, "planner-ogc"),
        ("update", 2, "planner-ogc"),
        ("update", 3, "planner-ogc"),
        ("delete", 3, "planner-ogc"),
    ]
    assert_problem(client.delete(f"{items}/{fid}", headers={**planner, "If-Match": '"3"'}), 404)


def test_number_matched_follows_every_write(
    client: TestClient, db: Database, planner: dict[str, str]
) -> None:
    """Counts are kept per layer revision: a write is counted on the next page at once."""
    items = ITEMS.format(layer="resources")
    queries = ("?kind=hydrant", "?kind=hydrant&bbox=121.3495,30.7190,121.3510,30.7205", "")
    before = [client.get(items + q).json()["numberMatched"] for q in queries]
    assert before == [
        len(sql_rows(db, "resources", "AND kind = 'hydrant'")),
        len(
            intersecting(
                sql_rows(db, "resources", "AND kind = 'hydrant'"),
                box(121.3495, 30.7190, 121.3510, 30.7205),
            )
        ),
        len(sql_rows(db, "resources")),
    ]
    fid = client.post(items, json=hydrant(), headers=planner).json()["id"]
    assert [client.get(items + q).json()["numberMatched"] for q in queries] == [
        n + 1 for n in before
    ]
    patch = {"properties": {"kind": "scba"}}
    changed = client.patch(f"{items}/{fid}", json=patch, headers={**planner, "If-Match": '"1"'})
    assert changed.status_code == 200, changed.text
    after = [client.get(items + q).json()["numberMatched"] for q in queries]
    assert after == [before[0], before[1], before[2] + 1]


def test_a_stale_if_match_answers_412_and_changes_nothing(
    client: TestClient, db: Database, planner: dict[str, str]
) -> None:
    items = ITEMS.format(layer="resources")
    fid = client.post(items, json=hydrant(), headers=planner).json()["id"]
    ok = client.put(
        f"{items}/{fid}", json=hydrant(quantity=4), headers={**planner, "If-Match": '"1"'}
    )
    assert ok.status_code == 200, ok.text
    before = sql_rows(db, "resources", "AND id = :fid", fid=fid)
    log = change_log(db, "resources", fid)
    stale = {**planner, "If-Match": '"1"'}
    patch_headers = {**stale, "Content-Type": "application/merge-patch+json"}
    for answer in (
        client.put(f"{items}/{fid}", json=hydrant(quantity=9), headers=stale),
        client.patch(
            f"{items}/{fid}",
            content='{"properties": {"status": "assigned"}}',
            headers=patch_headers,
        ),
        client.delete(f"{items}/{fid}", headers=stale),
    ):
        body = assert_problem(answer, 412)
        assert body["type"] == "/problems/precondition-failed"
    assert sql_rows(db, "resources", "AND id = :fid", fid=fid) == before
    assert change_log(db, "resources", fid) == log


def test_no_version_at_all_answers_428_naming_if_match(
    client: TestClient, db: Database, planner: dict[str, str]
) -> None:
    items = ITEMS.format(layer="resources")
    fid = client.post(items, json=hydrant(), headers=planner).json()["id"]
    before = sql_rows(db, "resources", "AND id = :fid", fid=fid)
    for answer in (
        client.put(f"{items}/{fid}", json=hydrant(quantity=9), headers=planner),
        client.patch(f"{items}/{fid}", json={"properties": {"quantity": 9}}, headers=planner),
        client.delete(f"{items}/{fid}", headers=planner),
    ):
        body = assert_problem(answer, 428)
        assert "If-Match" in body["detail"]
    assert sql_rows(db, "resources", "AND id = :fid", fid=fid) == before


def test_a_stale_body_version_is_merged_as_the_layers_api_does(
    client: TestClient, db: Database, planner: dict[str, str]
) -> None:
    """QGIS sends the version it read in the feature (no If-Match): a stale edit of other
    attributes is merged, and says so; the same attribute changed twice is a 409."""
    items = ITEMS.format(layer="resources")
    fid = client.post(items, json=hydrant(quantity=1), headers=planner).json()["id"]
    theirs = client.patch(
        f"{items}/{fid}",
        json={"properties": {"status": "assigned"}},
        headers={**planner, "If-Match": '"1"'},
    )
    assert theirs.status_code == 200, theirs.text
    mine = client.put(f"{items}/{fid}", json=hydrant(quantity=6, version=1), headers=planner)
    assert mine.status_code == 200, mine.text
    assert "Rallypoint-Merged" in mine.headers and mine.headers["etag"] == '"3"'
    row = sql_rows(db, "resources", "AND id = :fid", fid=fid)[fid]
    assert (row["quantity"], row["status"], row["version"]) == (6, "assigned", 3)
    clash = client.put(f"{items}/{fid}", json=hydrant(quantity=7, version=2), headers=planner)
    assert_problem(clash, 409)


def test_topology_warnings_come_as_the_layers_api_gives_them(
    client: TestClient, planner: dict[str, str]
) -> None:
    """A write that cuts doors or a muster point off the foot network is made, and says so: in
    the body (``warnings``, ``violations``) and in an ASCII ``Rallypoint-Warning`` header."""
    items = ITEMS.format(layer="network")
    first = {**planner, "If-Match": '"1"'}
    quiet = client.delete(f"{items}/{SOUTH_WALK}", headers=first)
    assert quiet.status_code == 204 and "Rallypoint-Warning" not in quiet.headers
    cut = client.delete(f"{items}/{NORTH_WALK}", headers=first)
    assert cut.status_code == 200, cut.text
    assert (
        cut.headers["Rallypoint-Warning"] == f"topology foot-reachable: {', '.join(OFFICE_DOORS)}"
    )
    assert [v["id"] for v in cut.json()["violations"]] == OFFICE_DOORS
    closed = {"properties": {"foot": False, "vehicle": True}}
    assert client.patch(f"{items}/E-00019", json=closed, headers=first).status_code == 200
    other = client.patch(f"{items}/E-00021", json=closed, headers=first)
    assert other.status_code == 200, other.text
    feature = other.json()
    assert feature["id"] == "E-00021" and [v["id"] for v in feature["violations"]] == [N1]
    assert (
        feature["warnings"]
        and other.headers["Rallypoint-Warning"] == f"topology foot-reachable: {N1}"
    )


def test_content_crs_gives_the_bodys_crs(
    client: TestClient, db: Database, planner: dict[str, str]
) -> None:
    x, y = TO_UTM.transform(121.3502, 30.7199)
    feature = hydrant()
    feature["geometry"] = {"type": "Point", "coordinates": [x, y]}
    items = ITEMS.format(layer="resources")
    created = client.post(items, json=feature, headers={**planner, "Content-Crs": f"<{UTM51}>"})
    assert created.status_code == 201, created.text
    fid = created.json()["id"]
    stored = sql_rows(db, "resources", "AND id = :fid", fid=fid)[fid]["geom"]
    assert abs(stored.x - 121.3502) < 1e-9 and abs(stored.y - 30.7199) < 1e-9
    refused = client.post(
        items,
        json=feature,
        headers={**planner, "Content-Crs": "<http://www.opengis.net/def/crs/EPSG/0/3857>"},
    )
    assert_problem(refused, 400, field="Content-Crs")
    # Metres taken for degrees lie far off the site: refused by the layer's own validation.
    assert_problem(client.post(items, json=feature, headers=planner), 422)


def test_a_write_during_an_incident_replans_it(command: TestClient, db: Database) -> None:
    incident = activate(command)["incident"]["id"]
    planner = sign_in(db, "planner-ogc", [Role.PLANNER])
    answer = command.patch(
        f"{ITEMS.format(layer='zones')}/Z-001",
        json={"properties": {"capacity": 77}},
        headers={**planner, "If-Match": '"1"'},
    )
    assert answer.status_code == 200, answer.text
    assert incident in answer.headers["Rallypoint-Warning"]
    events = command.get(f"/api/sites/{DEMO_ID}/events").json()["events"]
    changed = [e for e in events if e["type"] == "incident.network_changed"]
    assert changed and changed[-1]["data"]["layers"] == ["zones"]
