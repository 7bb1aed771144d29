"""Real clients of /ogc against a real server (uvicorn, tests/live_server.py), on SQLite and on
PostGIS: GDAL's OAPIF driver (Debian's gdal-bin: ogrinfo, ogr2ogr) lists every collection and
reads every layer page by page; OWSLib's OGC API Features client creates, replaces and deletes
through Part 4. Every check reads the database itself with plain SQL.

Without GDAL the GDAL tests are skipped, saying so (``scripts/gdal.sh`` installs it, and
``make test`` runs that); with ``CI=true`` a missing GDAL fails them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import shapely
from owslib.ogcapi.features import Features
from owslib.util import Authentication
from requests import PreparedRequest
from requests.auth import AuthBase
from shapely.geometry import box, shape
from sqlalchemy import Engine, make_url, text

from command.auth import Role
from gis.model import LAYERS
from gis.storage.db import make_engine
from gis.storage.tables import LAYER_ROWS
from tests.conftest import (
    BACKENDS,
    DEMO_ID,
    POSTGIS_URL_ENV,
    TEST_PASSWORD,
    _admin,
    _drop_database,
    _load_demo,
    site_database,
)
from tests.live_server import LiveServer

PLANNER = "planner-qgis"
WAIT_S = 120  # the longest one GDAL command may take


@dataclass(frozen=True)
class Served:
    """A real server on a database of its own, a planner's token, and SQL onto that database."""

    server: LiveServer
    engine: Engine
    token: str

    @property
    def ogc(self) -> str:
        return f"{self.server.base}/ogc"

    def sql(self, query: str, **params: Any) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(text(query), params).mappings()]

    def rows(self, layer: str, where: str = "", **params: Any) -> dict[str, dict[str, Any]]:
        """The layer's rows of the demo site by id, ``geom`` as shapely."""
        table = LAYER_ROWS[layer].__tablename__
        wkb = "ST_AsBinary(geom)" if self.engine.dialect.name == "postgresql" else "geom"
        fields = ", ".join(["id", f"{wkb} AS wkb", "version", *LAYERS[layer].fields])
        found = self.sql(
            f"SELECT {fields} FROM {table} WHERE site_id = :site {where}", site=DEMO_ID, **params
        )
        out = {}
        for row in found:
            blob = row.pop("wkb")
            row["geom"] = None if blob is None else shapely.from_wkb(bytes(blob))
            out[row["id"]] = row
        return out

    def log(self, layer: str, feature_id: str) -> list[tuple[str, int, str]]:
        found = self.sql(
            "SELECT action, version, actor FROM changes WHERE site_id = :site AND layer = :layer "
            "AND feature_id = :fid ORDER BY seq",
            site=DEMO_ID,
            layer=layer,
            fid=feature_id,
        )
        return [(r["action"], r["version"], r["actor"]) for r in found]


@pytest.fixture(scope="module", params=BACKENDS)
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp(f"ogc-{request.param}")
    users = {PLANNER: Role.PLANNER}
    dropped: tuple[str, str] | None = None
    if request.param == "sqlite":
        url = site_database(folder / "ogc.db", users)
    else:
        shared = os.environ.get(POSTGIS_URL_ENV)
        if not shared:
            pytest.skip(f"no PostGIS ({POSTGIS_URL_ENV} unset); 'make test' provides one")
        name = f"{make_url(shared).database}_ogc"
        _drop_database(shared, name)  # left by a run that was killed
        with _admin(shared) as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        dropped = (shared, name)
        url = make_url(shared).set(database=name).render_as_string(hide_password=False)
        _load_demo(url, users)
    engine = make_engine(url)
    try:
        # The audit log's key and checkpoints go to this test's folder, never to ./var.
        with LiveServer(
            url, audit_key=folder / "audit-key.pem", audit_checkpoints=folder / "c.jsonl"
        ) as server:
            login = {"username": PLANNER, "password": TEST_PASSWORD}
            answer = httpx.post(f"{server.base}/api/auth/login", json=login, timeout=30)
            assert answer.status_code == 200, answer.text
            yield Served(server, engine, answer.json()["access_token"])
    finally:
        engine.dispose()
        if dropped is not None:
            _drop_database(*dropped)


# --- GDAL's OAPIF driver ------------------------------------------------------------------------


def gdal_tool(name: str) -> str:
    """The path of a GDAL program; missing, the test is skipped with the reason (failed with
    ``CI=true``)."""
    found = shutil.which(name)
    if found is None:
        message = f"GDAL's {name} is missing: run scripts/gdal.sh ('make test' does)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


def gdal(served: Served, program: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a GDAL program with the planner's token sent as an HTTP header, and its HTTP log."""
    env = {
        **os.environ,
        "GDAL_HTTP_HEADERS": f"Authorization: Bearer {served.token}",
        "CPL_DEBUG": "ON",
        "GDAL_HTTP_TIMEOUT": "60",
    }
    done = subprocess.run(
        [gdal_tool(program), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def fetched(done: subprocess.CompletedProcess[str]) -> list[str]:
    """The URLs GDAL fetched, from its HTTP log."""
    return re.findall(r"HTTP: Fetch\((\S+)\)", done.stderr)


def test_gdal_lists_every_collection(served: Served) -> None:
    done = gdal(served, "ogrinfo", "-ro", "-so", "-al", f"OAPIF:{served.ogc}")
    names = re.findall(r"^Layer name: (\S+)$", done.stdout, flags=re.MULTILINE)
    sites = [r["id"] for r in served.sql("SELECT id FROM sites ORDER BY id")]
    assert names == [f"{site}.{layer}" for site in sites for layer in LAYERS]
    counts = [int(n) for n in re.findall(r"^Feature Count: (\d+)$", done.stdout, re.MULTILINE)]
    expected = [
        served.sql(
            f"SELECT count(*) AS n FROM {LAYER_ROWS[layer].__tablename__} WHERE site_id = :s",
            s=site,
        )[0]["n"]
        for site in sites
        for layer in LAYERS
    ]
    assert counts == expected


@pytest.mark.parametrize("layer", list(LAYERS))
def test_gdal_reads_every_layer_page_by_page(served: Served, layer: str, tmp_path: Path) -> None:
    rows = served.rows(layer)
    page = max(1, -(-len(rows) // 3))  # three pages or so: two next links followed
    out = tmp_path / f"{layer}.geojson"
    done = gdal(
        served,
        "ogr2ogr",
        "-f",
        "GeoJSON",
        str(out),
        f"OAPIF:{served.ogc}",
        f"{DEMO_ID}.{layer}",
        "-oo",
        f"PAGE_SIZE={page}",
    )
    pages = [u for u in fetched(done) if f"/{DEMO_ID}.{layer}/items" in u]
    assert sum("cursor=" in u for u in pages) >= 2, pages
    assert all(f"limit={page}" in u for u in pages), pages
    features = json.loads(out.read_text(encoding="utf-8"))["features"]
    got = [f["properties"]["id"] for f in features]
    assert sorted(got) == sorted(rows) and len(got) == len(rows)
    for feature in features:
        row = rows[feature["properties"]["id"]]
        for name in LAYERS[layer].fields:
            read = plain(feature["properties"].get(name))
            assert read == plain(row[name]), (feature["properties"]["id"], name, read, row[name])
        assert feature["properties"]["version"] == row["version"]
        if row["geom"] is None:
            assert feature["geometry"] is None
        else:
            assert shapely.equals_exact(shape(feature["geometry"]), row["geom"], tolerance=1e-9)


def plain(value: Any) -> Any:
    """A value as both readings can be compared: times as UTC datetimes (GDAL writes its own
    format, SQLite gives text), 0/1 as the booleans SQLite stores them as."""
    if isinstance(value, str) and re.fullmatch(r"\d{4}[-/]\d\d[-/]\d\d[T ]\d\d:\d\d.*", value):
        text_ = value.replace("/", "-").replace(" ", "T")
        text_ = re.sub(r"([+-]\d\d)$", r"\1:00", text_)
        parsed = datetime.fromisoformat(text_)
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, bool):
        return int(value)
    return value


def test_gdal_sends_its_spatial_filter_as_bbox(served: Served, tmp_path: Path) -> None:
    window = (121.3480, 30.7180, 121.3520, 30.7210)
    out = tmp_path / "network.geojson"
    done = gdal(
        served,
        "ogr2ogr",
        "-f",
        "GeoJSON",
        str(out),
        f"OAPIF:{served.ogc}",
        f"{DEMO_ID}.network",
        "-spat",
        *map(str, window),
        "-oo",
        "PAGE_SIZE=50",
    )
    assert any("bbox=" in u for u in fetched(done))
    rows = served.rows("network")
    expected = {i for i, r in rows.items() if r["geom"].intersects(box(*window))}
    got = {f["properties"]["id"] for f in json.loads(out.read_text())["features"]}
    assert got == expected and 0 < len(got) < len(rows)


# --- OWSLib: Part 4 -----------------------------------------------------------------------------


class Bearer(AuthBase):
    """``Authorization: Bearer <token>`` on every request OWSLib sends."""

    def __init__(self, token: str) -> None:
        self.token = token

    def __call__(self, request: PreparedRequest) -> PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.token}"
        return request


def owslib_client(served: Served) -> Any:
    client = Features(served.ogc, auth=Authentication(auth_delegate=Bearer(served.token)))
    # OWSLib's clients share one module-level headers dict: this one gets its own.
    client.headers = dict(client.headers)
    return client


def test_owslib_creates_replaces_and_deletes(served: Served) -> None:
    client = owslib_client(served)
    collection = f"{DEMO_ID}.resources"
    assert collection in client.feature_collections()
    page = client.collection_items(collection, limit=5)
    assert page["numberMatched"] == len(served.rows("resources"))
    assert len(page["features"]) == 5
    new = {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [121.3503, 30.7198]},
        "properties": {"kind": "spill_kit", "name": "OWSLib spill kit", "quantity": 2},
    }
    assert client.collection_item_create(collection, new)
    fid = client.response_headers["Location"].rsplit("/", 1)[1]
    assert client.response_headers["ETag"] == '"1"'
    row = served.rows("resources", "AND id = :fid", fid=fid)[fid]
    assert (row["kind"], row["quantity"], row["version"]) == ("spill_kit", 2, 1)
    assert shapely.equals_exact(row["geom"], shapely.Point(121.3503, 30.7198), tolerance=1e-12)
    # Replace what was read, naming its ETag.
    read = client.collection_item(collection, fid)
    read["properties"]["quantity"] = 5
    client.headers["If-Match"] = '"1"'
    assert client.collection_item_update(collection, fid, read)
    row = served.rows("resources", "AND id = :fid", fid=fid)[fid]
    assert (row["quantity"], row["version"]) == (5, 2)
    # The same again, now stale: 412, and nothing changes.
    before, log = served.rows("resources", "AND id = :fid", fid=fid), served.log("resources", fid)
    read["properties"]["quantity"] = 9
    with pytest.raises(RuntimeError, match="precondition-failed"):
        client.collection_item_update(collection, fid, read)
    with pytest.raises(RuntimeError, match="precondition-failed"):
        client.collection_item_delete(collection, fid)
    assert served.rows("resources", "AND id = :fid", fid=fid) == before
    assert served.log("resources", fid) == log
    client.headers["If-Match"] = '"2"'
    assert client.collection_item_delete(collection, fid)
    assert served.rows("resources", "AND id = :fid", fid=fid) == {}
    assert served.log("resources", fid) == [
        ("create", 1, PLANNER),
        ("update", 2, PLANNER),
        ("delete", 2, PLANNER),
    ]
