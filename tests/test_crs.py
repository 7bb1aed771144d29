from __future__ import annotations

import pytest
from shapely import LineString, Point

from gis.crs import SiteCRS, estimate_utm_crs, parse_metric_crs
from gis.errors import InvalidInput


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
