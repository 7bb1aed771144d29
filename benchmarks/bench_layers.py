"""Bounding-box queries on SQLite: the in-memory STRtree index against a full scan.

Run: ``.venv/bin/python -m benchmarks.bench_layers [--edges 20000] [--people 5000]``. Prints the
figures recorded in docs/benchmarks.md. The baseline is a full scan of the same layer in the same
run (every feature read, then tested with shapely), so the ratio is what the index buys.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from shapely.geometry import box

from gis.layers import list_features
from gis.site_bundle import load_bundle, write_bundle
from gis.sitegen import generate_site
from gis.sites import get_site
from gis.storage.db import Database, make_engine, upgrade


def timed(fn: Callable[[], object], repeat: int) -> float:
    """Median wall time of ``fn`` in milliseconds."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def compare(
    db: Database, layer: str, windows: list[tuple[float, float, float, float]], repeat: int
) -> tuple[float, float]:
    """Median milliseconds of an indexed bbox query and of a full scan, over the same windows."""
    list_features(db, "bench", layer, bbox=windows[0])  # the first query builds the index
    indexed_windows = iter(windows * 2)
    scan_windows = iter(windows * 2)

    def indexed() -> object:
        return list_features(db, "bench", layer, bbox=next(indexed_windows))

    def scan() -> object:
        area = box(*next(scan_windows))
        everything = list_features(db, "bench", layer)
        return [f for f in everything if f.geometry is not None and f.geometry.intersects(area)]

    return timed(indexed, repeat), timed(scan, max(3, repeat // 3))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--edges", type=int, default=20_000)
    parser.add_argument("--people", type=int, default=5_000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "site"
        site_data, layers = generate_site(people=args.people, edges=args.edges, site_id="bench")
        write_bundle(folder, site_data, layers)
        engine = make_engine(f"sqlite:///{Path(tmp) / 'bench.db'}")
        upgrade(engine)
        db = Database(engine)
        start = time.perf_counter()
        load_bundle(db, folder, actor="bench")
        load_s = time.perf_counter() - start
        total = sum(len(v["features"]) for v in layers.values())
        print(
            f"site: {args.edges} edges requested, {len(layers['network']['features'])} made, "
            f"{args.people} people; {total} features loaded in {load_s:.1f} s "
            f"({total / load_s:.0f} features/s, validation and change log included)"
        )

        x0, y0, x1, y1 = get_site(db, "bench").boundary.bounds
        rng = random.Random(42)
        # A 200 m x 200 m window, the size of a threat zone's neighbourhood, at random places.
        w, h = 200 / 111_000, 200 / 96_000
        windows = []
        for _ in range(args.repeat):
            lon, lat = rng.uniform(x0, x1 - w), rng.uniform(y0, y1 - h)
            windows.append((lon, lat, lon + w, lat + h))
        for layer in ("people", "network"):
            indexed, baseline = compare(db, layer, windows, args.repeat)
            print(
                f"bbox {layer:8s} indexed {indexed:8.2f} ms   full scan {baseline:8.2f} ms   "
                f"ratio {baseline / indexed:6.1f}x"
            )
        engine.dispose()


if __name__ == "__main__":
    main()
