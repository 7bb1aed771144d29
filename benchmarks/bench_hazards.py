"""Hazard benchmarks: three threat zones plus what lies inside them.

Run: ``.venv/bin/python -m benchmarks.bench_hazards [--edges 100000] [--people 5000]``. Prints the
figures recorded in docs/benchmarks.md. For each site: a chlorine release (plume footprints for
AEGL-3/2/1, turned downwind, with the wind-direction uncertainty area), a pool fire and an
explosion, each followed by what lies inside its zones (people, zones, resources, sensors,
network edges) from the in-memory index. The baseline in the same run answers "what is inside"
by testing every feature against every zone without an index.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from shapely.geometry import shape

from benchmarks.bench_routing import load_site, timed
from gis.crs import SiteCRS
from gis.hazards.exposure import SiteIndex, exposure
from gis.hazards.threat import ToxicRelease, Weather, explosion, pool_fire, toxic_release
from gis.hazards.zones import ThreatAssessment


def unindexed(assessment: ThreatAssessment, layers: dict[str, list[Any]]) -> int:
    shapes = {name: [shape(f["geometry"]) for f in features] for name, features in layers.items()}
    return sum(
        zone.geometry.intersects(g)
        for zone in assessment.zones
        for geoms in shapes.values()
        for g in geoms
    )


def run(name: str, site: dict[str, Any], layers: dict[str, Any], repeat: int) -> None:
    features = {layer: fc["features"] for layer, fc in layers.items()}
    boundary = shape(site["boundary"])
    centre = boundary.centroid
    crs = SiteCRS.for_site(centre.x, centre.y, site.get("crs"))
    x0, y0, x1, y1 = boundary.bounds
    source = (x0 + (x1 - x0) / 3, y0 + (y1 - y0) / 2)
    counts = ", ".join(f"{len(v)} {k}" for k, v in features.items())
    print(f"== {name}: {counts}")
    build_ms, index = timed(lambda: SiteIndex(features), 1)
    print(f"index build: {build_ms:8.1f} ms (once per layer change)")

    release = ToxicRelease("chlorine", 2000.0)
    weather = Weather(3.0, 45.0, daytime=False, cloud_cover_octas=2)
    cases: dict[str, Callable[[], ThreatAssessment]] = {
        "chlorine plume": lambda: toxic_release(crs, source, release, weather),
        "pool fire": lambda: pool_fire(crs, source, fuel="gasoline", diameter_m=20.0),
        "explosion": lambda: explosion(crs, source, mass_kg=5000.0, substance="propane"),
    }
    for label, make in cases.items():
        zones_ms, assessment = timed(make, repeat)
        inside_ms, found = timed(partial(exposure, assessment, index), repeat)
        base_ms, _ = timed(partial(unindexed, assessment, features), max(1, repeat // 5))
        people = found.counts()
        print(
            f"{label:15s} zones {zones_ms:6.1f} ms + inside {inside_ms:6.1f} ms = "
            f"{zones_ms + inside_ms:6.1f} ms   unindexed inside {base_ms:8.1f} ms "
            f"(ratio {base_ms / inside_ms:6.1f}x)   people per level "
            + " ".join(f"L{lv}={people[lv]['people']}" for lv in sorted(people, reverse=True))
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--edges", type=int, default=100_000)
    parser.add_argument("--people", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/rallypoint-bench"))
    args = parser.parse_args()
    site, layers = load_site(None, 0, args.cache)
    run("demo site", site, layers, args.repeat)
    site, layers = load_site(args.edges, args.people, args.cache)
    run(f"synthetic site ({args.edges} edges requested)", site, layers, args.repeat)


if __name__ == "__main__":
    main()
