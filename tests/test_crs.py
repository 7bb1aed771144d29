from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest
from shapely import LineString, Point, box

from gis.crs import SiteCRS, estimate_utm_crs, parse_metric_crs
from gis.errors import InvalidInput
from gis.sites import Site


def test_utm_zone_is_estimated_from_the_site() -> None:
    assert estimate_utm_crs(121.35, 30.72).to_epsg() == 32651  # East China: UTM 51N
    assert estimate_utm_crs(-122.3, 37.8).to_epsg() == 32610  # Oakland: UTM 10N
    assert estimate_utm_crs(151.2, -33.9).to_epsg() == 32756  # southern hemisphere


def test_a_configured_cgcs2000_gauss_kruger_zone_is_used() -> None:
    crs = SiteCRS.for_site(121.35, 30.72, "EPSG:4549")
    assert crs.metric.to_epsg() == 4549
    assert "CGCS2000" in crs.metric.name


@pytest.mark.parametrize(
    ("value", "reason"),
    [("EPSG:4326", "projected CRS with metre units"), ("not a crs", "unknown CRS")],
)
def test_unusable_crs_is_refused_with_the_reason(value: str, reason: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        parse_metric_crs(value)
    assert reason in exc.value.errors[0].reason


def test_round_trip_and_metric_lengths() -> None:
    crs = SiteCRS.for_site(121.35, 30.72)
    point = Point(121.35, 30.72)
    back = crs.to_wgs84(crs.to_metric(point))
    assert back.distance(point) < 1e-9
    # One minute of latitude is about 1,847 m at 30.7 N.
    line = LineString([(121.35, 30.72), (121.35, 30.72 + 1 / 60)])
    assert crs.length_m(line) == pytest.approx(1847.5, rel=2e-3)


def test_a_site_crs_is_found_once_per_centre_and_configuration() -> None:
    first = SiteCRS.for_site(121.35, 30.72)
    assert SiteCRS.for_site(121.35, 30.72) is first  # PROJ's database is searched once
    assert first.epsg == 32651
    assert SiteCRS.for_site(121.35, 30.72, "EPSG:4549").epsg == 4549
    assert SiteCRS.for_site(-122.3, 37.8).epsg == 32610
    for _ in range(2):  # a refusal is not kept as an answer
        with pytest.raises(InvalidInput):
            SiteCRS.for_site(10.0, 85.0)


def test_a_site_moved_or_given_a_crs_gets_its_new_crs() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    site = Site("s", "S", "Asia/Shanghai", None, box(121.34, 30.71, 121.36, 30.73), 1, at, "t")
    moved = dataclasses.replace(site, boundary=box(-122.31, 37.79, -122.29, 37.81), version=2)
    configured = dataclasses.replace(site, crs_name="EPSG:4549", version=3)
    assert site.crs.epsg == 32651
    assert moved.crs.epsg == 32610
    assert configured.crs.epsg == 4549
    assert SiteCRS.for_site(121.35, 30.72).epsg == 32651  # the first site's is untouched
