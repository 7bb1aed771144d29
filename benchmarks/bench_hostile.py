"""A planner's hostile walkway: where a threat zone cuts one line of many vertices.

Run: ``.venv/bin/python -m benchmarks.bench_hostile [--vertices 1000 10000 100000]
[--repeat 3]``.

Issue 12's reproduction: one walkway of N vertices made every activation take about
N² / 500,000 ms (8 s at 2,000 vertices, 154 s at 10,000), because the part of the line inside
the zone was located on the whole line coordinate by coordinate. Since then a network edge is
refused above 1,000 vertices (``gis.model.MAX_EDGE_VERTICES``), and the span is found in
linear time (``routing.hazard.inside_span``).

Measured here, in one run (so the ratios hold on a noisy machine): for a zigzag line of N
vertices lying inside a circular zone of 64 vertices,

- **direct**: the former way, shapely's ``intersection`` then ``line_locate_point`` of every
  coordinate of the part inside on the whole line (skipped above 20,000 vertices: minutes);
- **span**: ``inside_span``;
- **ratio**: direct / span.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import shapely
from shapely.geometry import LineString, Point

from routing.hazard import inside_span

DIRECT_UP_TO = 20_000


def zigzag(n: int) -> LineString:
    x = np.linspace(-900.0, 900.0, n)
    y = np.where(np.arange(n) % 2, 1.0, -1.0)
    return LineString(np.c_[x, y])


def direct(line: LineString, area: shapely.Geometry) -> tuple[float, float]:
    part = shapely.intersection(line, area)
    coords = shapely.get_coordinates(part)
    along = shapely.line_locate_point(line, shapely.points(coords), normalized=True)
    return float(along.min()), float(along.max())


def best_ms(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vertices", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    area = Point(0, 0).buffer(1000, quad_segs=16)
    print(f"{'vertices':>9} {'direct ms':>10} {'span ms':>9} {'ratio':>7}")
    for n in args.vertices:
        line = zigzag(n)
        lines = np.array([line], dtype=object)
        span = best_ms(partial(inside_span, lines, area), args.repeat)
        first, last = inside_span(lines, area)
        if n <= DIRECT_UP_TO:
            took = best_ms(partial(direct, line, area), args.repeat)
            want = direct(line, area)
            assert abs(first[0] - want[0]) < 1e-9 and abs(last[0] - want[1]) < 1e-9
            print(f"{n:>9} {took:>10.1f} {span:>9.2f} {took / span:>7.0f}")
        else:
            print(f"{n:>9} {'(minutes)':>10} {span:>9.2f} {'':>7}")


if __name__ == "__main__":
    main()
