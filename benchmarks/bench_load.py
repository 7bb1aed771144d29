"""Loading a large site, and the first build of its site model (issue 17, item 8).

Run: ``.venv/bin/python -m benchmarks.bench_load [--edges 100000] [--people 5000]
[--postgis-url URL] [--baseline]``; ``scripts/with-postgis.sh .venv/bin/python -m
benchmarks.bench_load`` provides a PostGIS (``RALLYPOINT_TEST_POSTGIS_URL``).

The synthetic site of ``benchmarks.bench_routing.load_site`` (about 106,000 network edges and
140,000 features in all) is loaded with ``load_bundle``, the loader of ``rallypoint site load``:
every feature validated, stored with its version and change-log row, the topology rules
checked. Then the site model is built for its first use (``SiteModels.get``). Measured on
SQLite (a fresh file) and on PostGIS when a URL is given, wall and CPU time of this process.

Baselines: the figures issue 17 measured before (SQLite load 49-55 s, first model 10-16 s).
With ``--baseline``, the per-row path is run too in the same run: each feature validated on its
own (``parse_feature``) and stored as an ORM object with an ORM change-log row, the collector
running, as the loader did before; it takes minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import text

from benchmarks.bench_routing import load_site
from command.site_model import SiteModels
from gis import topology
from gis.layers import Feature, parse_feature, touch_layer
from gis.model import LAYERS
from gis.site_bundle import load_bundle, read_bundle
from gis.sites import create_site
from gis.storage.db import MARK, SERVER_WRITER, Database, make_engine, upgrade
from gis.storage.tables import LAYER_ROWS, ChangeRow

#: Issue 17's figures for the 106k-edge site before this work, on SQLite (seconds).
ISSUE_LOAD_S = (49.0, 55.0)
ISSUE_MODEL_S = (10.0, 16.0)
#: Issue 17's targets (seconds): the load into PostGIS, the model's first build.
TARGET_LOAD_S = 10.0
TARGET_MODEL_S = 3.0


@dataclass(frozen=True)
class Timing:
    wall_s: float
    cpu_s: float

    def __str__(self) -> str:
        return f"{self.wall_s:6.2f} s (CPU {self.cpu_s:5.2f} s)"


def timed(fn: Callable[[], Any]) -> tuple[Timing, Any]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return Timing(time.perf_counter() - wall, time.process_time() - cpu), result


def bundle_as(source: Path, site_id: str, into: Path) -> Path:
    """The bundle at ``source`` under another site id (the layer files linked, not copied)."""
    into.mkdir(parents=True)
    site = json.loads((source / "site.json").read_text())
    site["id"] = site_id
    (into / "site.json").write_text(json.dumps(site))
    for layer in source.glob("*.geojson"):
        (into / layer.name).symlink_to(layer.resolve())
    return into


def per_row_load(db: Database, path: Path, *, actor: str) -> None:
    """The loader as it was before the bulk path: each feature validated alone, stored as one
    ORM object with one ORM change-log row, the topology checked once at the end."""
    site_data, layers = read_bundle(path)
    with db.write() as session:
        site = create_site(session, site_data, actor=actor)
        now = datetime.now(UTC)
        for name, collection in layers.items():
            layer, model = LAYERS[name], LAYER_ROWS[name]
            for n, data in enumerate(collection["features"], start=1):
                p = parse_feature(layer, data, extent=site.extent, row=n, prefix="")
                assert p.id is not None
                session.add(
                    model(
                        site_id=site.id,
                        id=p.id,
                        geom=p.geometry,
                        **p.properties,
                        version=1,
                        created_at=now,
                        created_by=actor,
                        updated_at=now,
                        updated_by=actor,
                    )
                )
                feature = Feature(p.id, p.geometry, p.properties, 1, now, actor, now, actor)
                session.add(
                    ChangeRow(
                        site_id=site.id,
                        layer=name,
                        feature_id=p.id,
                        action="create",
                        version=1,
                        actor=actor,
                        at=now,
                        data=feature.to_geojson(),
                    )
                )
            touch_layer(session, site.id, name)
        session.flush()
        topology.check_site(db.joined(session), session, site)


@contextmanager
def database(url: str | None, folder: Path) -> Iterator[Database]:
    """A migrated database: a fresh SQLite file in ``folder``, or the PostGIS at ``url``."""
    engine = make_engine(url or f"sqlite:///{folder / 'bench.db'}")
    upgrade(engine)
    try:
        yield Database(engine)
    finally:
        engine.dispose()


def remove_sites(db: Database, site_ids: list[str]) -> None:
    """Remove the benchmark's sites from a PostGIS left for reuse, with plain SQL, marked as
    the server's write (the layer tables' triggers would log every deletion otherwise)."""
    with db.engine.begin() as conn:
        conn.execute(MARK, {"value": SERVER_WRITER})
        for site_id in site_ids:
            conn.execute(text("DELETE FROM changes WHERE site_id = :s"), {"s": site_id})
            conn.execute(text("DELETE FROM sites WHERE id = :s"), {"s": site_id})


def run(name: str, url: str | None, source: Path, args: argparse.Namespace) -> dict[str, Timing]:
    out: dict[str, Timing] = {}
    stamp = time.strftime("%H%M%S")
    made: list[str] = []
    with (
        tempfile.TemporaryDirectory(prefix="rallypoint-bench-load-") as tmp,
        database(url, Path(tmp)) as db,
    ):
        try:
            site_id = f"bench-load-{stamp}"
            path = bundle_as(source, site_id, Path(tmp) / "bulk")
            made.append(site_id)
            out["load"], (site, reports) = timed(lambda: load_bundle(db, path, actor="bench"))
            count = sum(r.created for r in (reports or {}).values())
            print(
                f"{name:8s} load          {out['load']}   {count} features, "
                f"{count / out['load'].wall_s:,.0f} a second"
            )
            models = SiteModels(db)
            out["model"], model = timed(lambda: models.get(site.id))
            print(
                f"{name:8s} first model   {out['model']}   "
                f"{model.graphs['foot'].edge_count} foot edges, "
                f"{len(model.person_ids)} people placed"
            )
            if args.baseline:
                old_id = f"bench-rows-{stamp}"
                old = bundle_as(source, old_id, Path(tmp) / "rows")
                made.append(old_id)
                out["per-row"], _ = timed(lambda: per_row_load(db, old, actor="bench"))
                print(
                    f"{name:8s} per-row load  {out['per-row']}   ratio "
                    f"{out['per-row'].wall_s / out['load'].wall_s:5.1f}x (wall), "
                    f"{out['per-row'].cpu_s / out['load'].cpu_s:5.1f}x (CPU)"
                )
        finally:
            if url is not None:
                remove_sites(db, made)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--edges", type=int, default=100_000)
    parser.add_argument("--people", type=int, default=5_000)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/rallypoint-bench"))
    parser.add_argument(
        "--postgis-url",
        default=os.environ.get("RALLYPOINT_TEST_POSTGIS_URL"),
        help="a scratch PostGIS database (default: $RALLYPOINT_TEST_POSTGIS_URL)",
    )
    parser.add_argument("--baseline", action="store_true", help="run the per-row path too")
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    load_site(args.edges, args.people, args.cache)  # written once, kept in the cache
    source = args.cache / f"synthetic-{args.edges}-{args.people}"
    load = os.getloadavg()[0]
    print(f"synthetic site: {args.edges} edges requested; load average {load:.1f} on 2 cores")
    results = {"sqlite": run("sqlite", None, source, args)}
    if args.postgis_url:
        results["postgis"] = run("postgis", args.postgis_url, source, args)
    low, high = ISSUE_LOAD_S
    sqlite = results["sqlite"]
    print(
        f"against issue 17's figures: SQLite load {low:.0f}-{high:.0f} s -> "
        f"{sqlite['load'].wall_s:.1f} s ({low / sqlite['load'].wall_s:.1f}-"
        f"{high / sqlite['load'].wall_s:.1f}x); first model {ISSUE_MODEL_S[0]:.0f}-"
        f"{ISSUE_MODEL_S[1]:.0f} s -> {sqlite['model'].wall_s:.1f} s "
        f"({ISSUE_MODEL_S[0] / sqlite['model'].wall_s:.1f}-"
        f"{ISSUE_MODEL_S[1] / sqlite['model'].wall_s:.1f}x)"
    )
    for name, figures in results.items():
        print(
            f"targets on {name}: load under {TARGET_LOAD_S:.0f} s: "
            f"{'met' if figures['load'].wall_s < TARGET_LOAD_S else 'NOT met'}; "
            f"first model under {TARGET_MODEL_S:.0f} s: "
            f"{'met' if figures['model'].wall_s < TARGET_MODEL_S else 'NOT met'}"
        )


if __name__ == "__main__":
    main()
