"""OGC API Features items with a bbox over a 100k-edge network: pages of 1,000, p95 per page.

Run: ``.venv/bin/python -m benchmarks.bench_ogc [--edges 100000] [--people 5000] [--windows 12]
[--postgis-url postgresql+psycopg://... [--tipg /path/to/venv/bin/python]]``. Prints the figures
recorded in docs/benchmarks.md.

The synthetic site (``benchmarks.bench_model.loaded_database``, a SQLite file made once and kept
in ``--cache``) is served by the real app under uvicorn (``tests.live_server.LiveServer``). Each
of ``--windows`` windows, a quarter of the site across at a seeded random place, is read to its
end page by page (``limit=1000``, following the ``next`` links), each request timed from sending
it to the last byte of its GeoJSON. Peers in the same run, over the same pages: the domain call
alone (``gis.ogc.items_page``: the page cut and its GeoJSON built, no HTTP), and the table read
directly: the page's rows by id in one query, geometries decoded (the least any server must do
for that page). Then the whole site as the bbox (every edge matched): its first pages and its
last, which keyset paging makes cost the same. Times are wall and CPU: on a busy machine the CPU
time is the page's own cost. With ``--postgis-url`` (a database the site is loaded into once),
the same runs on PostGIS; with ``--tipg`` too, tipg (installed in a throwaway virtualenv, never
a dependency) serves the same tables as a peer.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import shapely
from shapely.geometry import box
from sqlalchemy import LargeBinary, func, make_url, select, type_coerce

from benchmarks.bench_command import FAST_HASHER, pct
from benchmarks.bench_model import loaded_database
from benchmarks.bench_routing import load_site
from command.auth import Role, create_user, find_user, issue_token
from gis.errors import NotFound
from gis.model import LAYERS
from gis.ogc import items_page
from gis.site_bundle import load_bundle, write_bundle
from gis.sites import get_site
from gis.storage.db import Database, make_engine, upgrade
from gis.storage.tables import NetworkEdgeRow
from tests.live_server import LiveServer

PAGE = 1000
TARGET_P95_MS = 50.0
USER = "bench-planner"


@dataclass
class Pages:
    """What one walk through a window's pages found: the ids of each page, and times."""

    ids: list[list[str]]
    matched: int
    ms: list[float]
    #: CPU milliseconds of this process per page (the server thread's and the client's): what
    #: a page costs, whatever else the machine is doing.
    cpu_ms: list[float]


def walk_http(client: httpx.Client, url: str) -> Pages:
    """Every page from ``url`` on, following ``next``; each request timed to its last byte."""
    pages = Pages([], 0, [], [])
    next_url: str | None = url
    while next_url is not None:
        start, cpu = time.perf_counter(), time.process_time()
        answer = client.get(next_url)
        body = answer.content
        pages.ms.append((time.perf_counter() - start) * 1000)
        pages.cpu_ms.append((time.process_time() - cpu) * 1000)
        assert answer.status_code == 200, answer.text[:500]
        page: dict[str, Any] = orjson.loads(body)
        pages.ids.append([f["id"] for f in page["features"]])
        pages.matched = page["numberMatched"]
        link = next((li["href"] for li in page["links"] if li["rel"] == "next"), None)
        next_url = None if link is None else urlsplit(link).path + "?" + urlsplit(link).query
    return pages


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """Wall and CPU milliseconds (this thread's) of ``fn``."""
    start, cpu = time.perf_counter(), time.thread_time()
    fn()
    return (time.perf_counter() - start) * 1000, (time.thread_time() - cpu) * 1000


def read_directly(db: Database, site_id: str, ids: list[str]) -> None:
    """The page's rows straight from the table: every column, in one query by id, geometries
    decoded together; no page cut, no encoding. The least any server must do for the page."""
    row = NetworkEdgeRow
    geom = func.ST_AsBinary(row.geom) if db.is_postgis else type_coerce(row.geom, LargeBinary)
    columns = [getattr(row, name) for name in LAYERS["network"].fields]
    stmt = select(row.id, geom, *columns, row.version, row.updated_at, row.updated_by)
    with db.read() as session:
        found = session.connection().execute(stmt.where(row.site_id == site_id, row.id.in_(ids)))
        shapely.from_wkb([bytes(r[1]) for r in found.all()])


def _split(samples: list[tuple[float, float]]) -> tuple[list[float], list[float]]:
    return [w for w, _ in samples], [c for _, c in samples]


def windows(db: Database, site_id: str, count: int) -> list[tuple[float, float, float, float]]:
    """``count`` windows a quarter of the site across, at seeded random places inside it."""
    x0, y0, x1, y1 = get_site(db, site_id).boundary.bounds
    w, h = (x1 - x0) / 4, (y1 - y0) / 4
    rng = random.Random(42)
    out = []
    for _ in range(count):
        left, bottom = rng.uniform(x0, x1 - w), rng.uniform(y0, y1 - h)
        out.append((left, bottom, left + w, bottom + h))
    return out


def token_for(db: Database) -> str:
    with db.write() as session:
        try:
            user = find_user(session, USER)
        except NotFound:
            user = create_user(
                session, USER, "bench-password-1", [Role.PLANNER], hasher=FAST_HASHER
            )
        return issue_token(session, user, ttl_s=3600).token


def line(label: str, wall: Sequence[float], cpu: Sequence[float], *, target: bool = False) -> str:
    """Wall time and CPU time per page: p50, p95, max."""
    out = (
        f"  {label:40s} wall p50 {statistics.median(wall):6.1f} p95 {pct(wall, 0.95):6.1f}"
        f" max {max(wall):7.1f} ms | CPU p50 {statistics.median(cpu):6.1f}"
        f" p95 {pct(cpu, 0.95):6.1f} ms"
    )
    if target:
        verdicts = [
            f"{what} {'met' if pct(v, 0.95) < TARGET_P95_MS else 'MISSED'}"
            for what, v in (("wall", wall), ("CPU", cpu))
        ]
        out += f"  (p95 < {TARGET_P95_MS:.0f} ms: {', '.join(verdicts)})"
    return out


def measure(url: str, site_id: str, n_windows: int, label: str) -> None:
    engine = make_engine(url)
    upgrade(engine)  # the cached database may predate the newest migrations
    db = Database(engine)
    token = token_for(db)
    boxes = windows(db, site_id, n_windows)
    items = f"/ogc/collections/{site_id}.network/items"
    with (
        LiveServer(url) as server,
        httpx.Client(
            base_url=server.base, headers={"Authorization": f"Bearer {token}"}, timeout=120
        ) as client,
    ):
        whole = ",".join(map(str, get_site(db, site_id).boundary.bounds))
        first_ms, _ = timed(lambda: client.get(f"{items}?limit={PAGE}&bbox={whole}"))
        walks = [
            walk_http(client, f"{items}?limit={PAGE}&bbox={','.join(map(str, b))}") for b in boxes
        ]
        http_ms = [ms for w in walks for ms in w.ms]
        http_cpu = [ms for w in walks for ms in w.cpu_ms]
        pages = sum(len(w.ids) for w in walks)
        edges = sum(w.matched for w in walks)
        print(
            f"== {label}: {site_id}; {n_windows} windows a quarter of the site across, "
            f"{edges:,} edges matched in all, {pages} pages of up to {PAGE:,}"
        )
        print(f"  first query after start (builds the window index): {first_ms:.0f} ms")
        print(f"  load average of the machine: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")
        print(line("items over HTTP (server + client)", http_ms, http_cpu, target=True))
        # The same pages, in process: the domain call alone, then the table read directly.
        domain: list[tuple[float, float]] = []
        direct: list[tuple[float, float]] = []
        for b, walk in zip(boxes, walks, strict=True):
            after: str | None = None
            window = box(*b)
            for ids in walk.ids:

                def page(window: Any = window, cursor: str | None = after) -> None:
                    items_page(db, site_id, "network", window=window, limit=PAGE, after=cursor)

                def rows(page_ids: list[str] = ids) -> None:
                    read_directly(db, site_id, page_ids)

                domain.append(timed(page))
                direct.append(timed(rows))
                after = ids[-1] if ids else None
        print(line("items_page alone (no HTTP, no JSON)", *_split(domain)))
        print(line("the table read directly (same rows)", *_split(direct)))
        # The whole site as the window: every edge matches; the last page costs the first's.
        whole_walk = walk_http(client, f"{items}?limit={PAGE}&bbox={whole}")
        print(
            f"  whole site as bbox ({whole_walk.matched:,} matched, {len(whole_walk.ms)} pages):"
            f" CPU per page: pages 1-10 p50 {statistics.median(whole_walk.cpu_ms[:10]):.1f} ms,"
            f" last 10 p50 {statistics.median(whole_walk.cpu_ms[-10:]):.1f} ms"
        )
        print(line("  every page of it", whole_walk.ms, whole_walk.cpu_ms))
        no_bbox = walk_http(client, f"{items}?limit={PAGE}")
        print(line(f"no bbox ({no_bbox.matched:,} edges)", no_bbox.ms, no_bbox.cpu_ms))
    engine.dispose()


def measure_tipg(python: str, url: str, site_id: str, n_windows: int) -> None:
    """tipg (``--tipg``: the Python of a virtualenv it is installed in) serving the same
    PostGIS tables: the same windows, page by page (tipg pages by offset)."""
    engine = make_engine(url)
    boxes = windows(Database(engine), site_id, n_windows)
    engine.dispose()
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [python, "-m", "uvicorn", "tipg.main:app", "--port", str(port), "--log-level", "warning"],
        env={**os.environ, "DATABASE_URL": dsn},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=120) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if client.get("/collections").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "tipg did not start"
                time.sleep(0.2)
            items = "/collections/public.network_edges/items"
            walks = [
                walk_http(client, f"{items}?limit={PAGE}&bbox={','.join(map(str, b))}")
                for b in boxes
            ]
            # tipg's CPU is another process's: its wall time is the comparable figure.
            wall = [ms for w in walks for ms in w.ms]
            print(line("tipg, the same windows (offset paging)", wall, wall))
    finally:
        server.terminate()
        server.wait(10)


def postgis_loaded(url: str, edges: int, people: int, cache: Path) -> str:
    """The synthetic site in the PostGIS database at ``url`` (loaded once: it stays there)."""
    engine = make_engine(url)
    upgrade(engine)
    db = Database(engine)
    site_id = f"synthetic-{edges}"
    try:
        get_site(db, site_id)
    except NotFound:
        site, layers = load_site(edges, people, cache)
        with tempfile.TemporaryDirectory() as tmp:
            write_bundle(Path(tmp) / "bundle", site, layers)
            load_bundle(db, Path(tmp) / "bundle", actor="bench")
    engine.dispose()
    return site_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--edges", type=int, default=100_000)
    parser.add_argument("--people", type=int, default=5_000)
    parser.add_argument("--windows", type=int, default=12)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/rallypoint-bench"))
    parser.add_argument("--postgis-url", help="a PostGIS database to load the site into")
    parser.add_argument("--tipg", help="with --postgis-url: the Python of a venv with tipg")
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    source = loaded_database(args.edges, args.people, args.cache)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rallypoint.db"
        shutil.copyfile(source, path)
        measure(f"sqlite:///{path}", f"synthetic-{args.edges}", args.windows, "SQLite")
    if args.postgis_url:
        site_id = postgis_loaded(args.postgis_url, args.edges, args.people, args.cache)
        measure(args.postgis_url, site_id, args.windows, "PostGIS")
        if args.tipg:
            measure_tipg(args.tipg, args.postgis_url, site_id, args.windows)


if __name__ == "__main__":
    main()
