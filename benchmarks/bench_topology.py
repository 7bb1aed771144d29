"""Topology rules benchmark: what the checks add to one edit, and a whole-site check.

Run: ``.venv/bin/python -m benchmarks.bench_topology [--edges 100000] [--repeat 15]``.

The synthetic site is the one of ``benchmarks.bench_model`` (loaded once into a SQLite file kept
in ``--cache``); each run works on a copy. Measured, as :func:`gis.topology.check_edit` runs
inside a write (the edit itself applied after it, as ``gis.layers`` does):

1. **whole site**: :func:`gis.topology.check_site`, cold (the network read) and warm;
2. **network edge moved** (its end moved by about 10 cm, so its node changes): the first
   check reads the network (cold); the next ones start from the network the last edit left;
3. **zone moved** (an office, a metre east and back: the overlap rules on the zones near it)
   and **muster point moved** (the overlaps, and its attachment to the foot network).

The peer in the same run is the read the checks avoid: the foot network read from the table.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import shapely

from benchmarks.bench_model import loaded_database
from gis import layers, topology
from gis.reachability import read_network
from gis.sites import get_site
from gis.storage.db import Database, make_engine, upgrade
from gis.storage.tables import LAYER_ROWS, TopologyRulesRow


def edit_timed(db: Database, site_id: str, layer: str, fid: str, dx: float) -> float:
    """Move feature ``fid`` ``dx`` degrees east; the milliseconds its topology check took."""
    site = get_site(db, site_id)
    # Worked out by the edit's validation before the check (a write pays it whatever the rules).
    assert site.extent is not None
    current = layers.get_feature(db, site_id, layer, fid)
    assert current.geometry is not None
    moved = shapely.affinity.translate(current.geometry, xoff=dx)
    if layer == "network":  # only the end moves: the edge leaves its node
        coords = list(current.geometry.coords)
        coords[-1] = (coords[-1][0] + dx, coords[-1][1])
        moved = shapely.LineString(coords)
    parsed = layers.ParsedFeature(fid, moved, current.properties, current.version)
    model = layers.get_layer(layer)
    with db.write() as session:
        start = time.perf_counter()
        topology.check_edit(db, session, site, layer, feature_id=fid, before=current, after=parsed)
        ms = (time.perf_counter() - start) * 1000
        row = session.get(LAYER_ROWS[layer], (site_id, fid))
        assert row is not None
        layers.update_row(session, site_id, model, row, parsed, actor="bench")
    return ms


def summary(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"median {statistics.median(ordered):7.1f} ms   p95 {p95:7.1f} ms"


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--edges", type=int, default=100_000)
    parser.add_argument("--people", type=int, default=5_000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/rallypoint-bench"))
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    source = loaded_database(args.edges, args.people, args.cache)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rallypoint.db"
        shutil.copyfile(source, path)
        engine = make_engine(f"sqlite:///{path}")
        upgrade(engine)
        # A file cached while migration 0012 was still empty has no table of rules yet.
        TopologyRulesRow.metadata.create_all(engine, tables=[TopologyRulesRow.__table__])  # type: ignore[list-item]
        db = Database(engine)
        site_id = f"synthetic-{args.edges}"
        site = get_site(db, site_id)
        with db.read() as session:
            read_ms = timed(lambda: read_network(session, site_id))
            cold = timed(lambda: topology.check_site(db, session, site))
            warm = timed(lambda: topology.check_site(db, session, site))
            found = topology.check_site(db, session, site)
        edges = layers.list_features(db, site_id, "network", filters={"door": "true"})
        zones = layers.list_features(db, site_id, "zones")
        office = next(z.id for z in zones if z.properties["kind"] == "office")
        muster = next(z.id for z in zones if z.properties["kind"] == "muster_point")
        print(f"synthetic site {site_id}: {len(zones)} zones, {len(found)} breaches")
        print(f"  foot network read (the peer)          {read_ms:7.0f} ms")
        print(f"  whole-site check, cold / warm         {cold:7.0f} / {warm:.0f} ms")
        edge = edges[len(edges) // 2].id
        sign = [1e-6, -1e-6]
        first = edit_timed(db, site_id, "network", edge, sign[0])
        after = [
            edit_timed(db, site_id, "network", edge, sign[i % 2]) for i in range(1, args.repeat)
        ]
        print(f"  network edge moved, first (cold)      {first:7.0f} ms")
        print(f"  network edge moved, then              {summary(after)}")
        for name, fid in (("zone (office) moved", office), ("muster point moved", muster)):
            samples = [
                edit_timed(db, site_id, "zones", fid, 1e-5 if i % 2 == 0 else -1e-5)
                for i in range(args.repeat)
            ]
            print(f"  {name:<37} {summary(samples)}")
        engine.dispose()


if __name__ == "__main__":
    main()
