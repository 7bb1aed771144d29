"""Each kind of bad geometry gets its own clear message, through the one validation point."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from shapely import Polygon, box

from gis.crs import SiteCRS
from gis.errors import InvalidGeometry
from gis.geometry import SiteExtent, validate_geometry

SQUARE = [[[121.0, 30.0], [121.001, 30.0], [121.001, 30.001], [121.0, 30.001], [121.0, 30.0]]]
EXTENT = SiteExtent(SiteCRS.for_site(121.35, 30.72), box(121.34, 30.71, 121.36, 30.73))


def reason(value: Any, expected: str = "Polygon", **kwargs: Any) -> str:
    with pytest.raises(InvalidGeometry) as exc:
        validate_geometry(value, expected_type=expected, **kwargs)
    (error,) = exc.value.errors
    assert error.field == "geometry"
    return error.reason


@pytest.mark.parametrize(
    ("value", "expected", "message"),
    [
        (None, "Polygon", "geometry is required"),
        ("POINT (1 2)", "Point", "expected a GeoJSON geometry object, got str"),
        ({"type": "Point"}, "Point", "needs 'type' and 'coordinates'"),
        ({"type": "Point", "coordinates": "x"}, "Point", "coordinates must be numbers"),
        ({"type": "Point", "coordinates": [1]}, "Point", "malformed Point coordinates"),
        ({"type": "LineString", "coordinates": [[0, 0]]}, "LineString", "malformed LineString"),
        ({"type": "Polygon", "coordinates": []}, "Polygon", "geometry is empty"),
        ({"type": "Point", "coordinates": [121, 30]}, "Polygon", "expected a Polygon, got a Point"),
        (
            {"type": "MultiPolygon", "coordinates": [SQUARE]},
            "Polygon",
            "expected a Polygon, got a MultiPolygon",
        ),
        ({"type": "Point", "coordinates": [float("nan"), 30]}, "Point", "finite numbers"),
        (
            {"type": "Point", "coordinates": [30.7, 121.3]},
            "Point",
            "longitude and latitude swapped",
        ),
        ({"type": "Point", "coordinates": [190.0, 30.0]}, "Point", "longitude must lie within"),
        (
            {"type": "Polygon", "coordinates": [[[121, 30], [121.1, 30], [121.1, 30.1]]]},
            "Polygon",
            "polygon rings must be closed",
        ),
        (
            {
                "type": "Polygon",
                "coordinates": [[[121, 30], [121.1, 30.1], [121.1, 30], [121, 30.1], [121, 30]]],
            },
            "Polygon",
            "Self-intersection",
        ),
        (
            {"type": "LineString", "coordinates": [[121, 30], [121, 30]]},
            "LineString",
            "Too few points",
        ),
    ],
)
def test_each_fault_has_its_own_reason(value: Any, expected: str, message: str) -> None:
    assert message in reason(value, expected)


def test_geometry_outside_the_site_is_refused() -> None:
    outside = {"type": "Point", "coordinates": [121.5, 30.72]}
    assert reason(outside, "Point", extent=EXTENT) == "geometry lies outside the site boundary"
    inside = {"type": "Point", "coordinates": [121.35, 30.72]}
    assert validate_geometry(inside, expected_type="Point", extent=EXTENT) is not None


def test_optional_geometry_may_be_missing_and_z_is_dropped() -> None:
    assert validate_geometry(None, expected_type="Point", required=False) is None
    point = validate_geometry(
        {"type": "Point", "coordinates": [121, 30, 12.5]}, expected_type="Point"
    )
    assert point is not None and not point.has_z


def test_rows_are_named_in_errors() -> None:
    with pytest.raises(InvalidGeometry) as exc:
        validate_geometry(None, expected_type="Point", row=7)
    assert exc.value.errors[0].row == 7


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.sampled_from(["type", "coordinates", "x"]), children, max_size=3)
    ),
    max_leaves=20,
)


@given(
    st.one_of(
        json_values,
        st.fixed_dictionaries(
            {
                "type": st.sampled_from(["Point", "LineString", "Polygon", "MultiPolygon", "Nope"]),
                "coordinates": json_values,
            }
        ),
    )
)
def test_any_json_is_either_accepted_or_refused_with_a_reason(value: Any) -> None:
    """Garbage in never crashes: it is a valid geometry or an InvalidGeometry, nothing else."""
    for expected in ("Point", "Polygon"):
        try:
            geom = validate_geometry(value, expected_type=expected)
        except InvalidGeometry as exc:
            # Either outcome is allowed here, so pytest.raises does not fit.
            assert exc.errors and exc.errors[0].reason  # noqa: PT017
        else:
            assert geom is not None and geom.is_valid and geom.geom_type == expected


def test_valid_polygon_passes() -> None:
    geom = validate_geometry({"type": "Polygon", "coordinates": SQUARE}, expected_type="Polygon")
    assert isinstance(geom, Polygon)
