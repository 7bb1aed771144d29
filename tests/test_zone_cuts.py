"""Where a threat zone cuts a network line: the linear-time span against a direct reading.

The reference locates every coordinate of the line's part inside the zone on the whole line
(shapely's ``intersection`` and ``line_locate_point``): plainly right, and quadratic in the
vertices, which let a planner's 100,000-vertex walkway stall activation for 30 s (issue 12).
"""

from __future__ import annotations

import numpy as np
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely.geometry import LineString, Point, Polygon

from routing.hazard import inside_span


def reference(line: LineString, area: Polygon) -> tuple[float, float]:
    part = shapely.intersection(line, area)
    coords = shapely.get_coordinates(part)
    if not len(coords):
        return 1.0, 0.0
    along = shapely.line_locate_point(line, shapely.points(coords), normalized=True)
    return float(along.min()), float(along.max())


# Metres, to the millimetre, as a site's metric CRS gives them (a reference that locates on a
# line of 1e-47 m says nothing useful).
metres = st.integers(-30_000, 30_000).map(lambda mm: mm / 1000)
walks = st.lists(st.tuples(metres, metres), min_size=2, max_size=40).map(
    lambda steps: LineString(np.cumsum(np.array(steps), axis=0))
)
areas = st.tuples(st.floats(-40, 40), st.floats(-40, 40), st.floats(5, 60), st.integers(3, 12)).map(
    lambda c: Point(c[0], c[1]).buffer(c[2], quad_segs=c[3])
)


@settings(max_examples=300, deadline=None)
@given(lines=st.lists(walks, min_size=1, max_size=6), area=areas)
def test_the_span_is_the_one_the_direct_reading_gives(
    lines: list[LineString], area: Polygon
) -> None:
    # A line that runs back over itself has two places for one point, and the reference
    # (locating a point on the whole line) takes the first: compare on simple lines.
    lines = [line for line in lines if line.length > 0 and line.is_simple and not line.is_closed]
    first, last = inside_span(np.array(lines, dtype=object), area)
    for line, f, end in zip(lines, first, last, strict=True):
        want_first, want_last = reference(line, area)
        assert f == np.float64(want_first) or abs(f - want_first) < 1e-9
        assert end == np.float64(want_last) or abs(end - want_last) < 1e-9


def test_a_line_crossing_in_and_out_many_times_spans_from_first_entry_to_last_exit() -> None:
    area = Polygon([(0, 0), (10, 0), (10, 10), (0, 10)])
    # A zigzag along y = 5 that pokes above y = 10 and back, 200 times: 401 crossings.
    xs = np.linspace(-5, 15, 401)
    ys = np.where(np.arange(401) % 2, 12.0, 8.0)
    line = LineString(np.c_[xs, ys])
    [first], [last] = inside_span(np.array([line], dtype=object), area)
    want_first, want_last = reference(line, area)
    assert abs(first - want_first) < 1e-9 and abs(last - want_last) < 1e-9
    assert 0.2 < first < last < 0.8


def test_lines_that_miss_the_area_or_lie_inside_it() -> None:
    area = Polygon([(0, 0), (10, 0), (10, 10), (0, 10)])
    outside = LineString([(20, 20), (30, 30)])
    inside = LineString([(1, 1), (2, 2), (3, 1)])
    touching = LineString([(-5, 5), (0, 5)])
    first, last = inside_span(np.array([outside, inside, touching], dtype=object), area)
    assert (first[0], last[0]) == (1.0, 0.0)
    assert (first[1], last[1]) == (0.0, 1.0)
    assert first[2] == last[2] == 1.0
    empty = inside_span(np.array([], dtype=object), area)
    assert len(empty[0]) == len(empty[1]) == 0
