"""Threat zones on the map: orientation, nesting, what lies inside, wind changes, bad input."""

from __future__ import annotations

import json
import math
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import Geod
from shapely.geometry import Point, shape

from gis.crs import SiteCRS
from gis.errors import InvalidInput
from gis.hazards import explosion as blast
from gis.hazards import fire as fires
from gis.hazards.erg import erg_entry, protective_distances
from gis.hazards.exposure import SiteIndex, exposure, exposure_change
from gis.hazards.substances import (
    AIR_MOLECULAR_WEIGHT_G_MOL,
    Substance,
    all_substances,
    default_levels_of_concern,
    missing_levels,
)
from gis.hazards.threat import (
    ToxicRelease,
    Weather,
    erg_zones,
    explosion,
    pool_fire,
    radius_zones,
    toxic_release,
    toxic_release_after_wind_change,
)
from gis.hazards.zones import ThreatAssessment
from gis.site_bundle import read_bundle

DEMO = Path(__file__).resolve().parent.parent / "fixtures" / "demo-site"
GEOD = Geod(ellps="WGS84")
CHLORINE_STORE = "Z-027"


@cache
def demo() -> tuple[SiteCRS, dict[str, Any], tuple[float, float]]:
    site, layers = read_bundle(DEMO)
    centre = shape(site["boundary"]).centroid
    crs = SiteCRS.for_site(centre.x, centre.y, site.get("crs"))
    store = next(f for f in layers["zones"]["features"] if f["id"] == CHLORINE_STORE)
    point = shape(store["geometry"]).centroid
    return crs, layers, (point.x, point.y)


def index() -> SiteIndex:
    _, layers, _ = demo()
    return SiteIndex({name: fc["features"] for name, fc in layers.items()})


def wrong(value: object) -> Any:
    """A value of the wrong type, as a client might send it."""
    return value


def chlorine(rate_g_s: float = 2000.0, **kw: Any) -> ToxicRelease:
    return ToxicRelease("chlorine", rate_g_s, **kw)


def far_point_bearing(assessment: ThreatAssessment, level: int) -> tuple[float, float]:
    """Bearing (degrees from true north) from the source to the zone's centroid (on the axis
    of a symmetric footprint), and the distance (m) to the zone's farthest vertex."""
    zone = assessment.zone(level)
    assert zone is not None
    lon0, lat0 = assessment.source_lonlat
    centre = zone.geometry.centroid
    bearing, _, _ = GEOD.inv(lon0, lat0, centre.x, centre.y)
    coords = np.asarray(shapely.get_coordinates(zone.geometry))
    _, _, dist = GEOD.inv(
        np.full(len(coords), lon0), np.full(len(coords), lat0), coords[:, 0], coords[:, 1]
    )
    return float(bearing) % 360, float(dist.max())


@pytest.mark.parametrize(("wind_from", "downwind"), [(0, 180), (90, 270), (225, 45), (360, 180)])
def test_plume_lies_downwind_of_where_the_wind_comes_from(
    wind_from: float, downwind: float
) -> None:
    crs, _, source = demo()
    result = toxic_release(crs, source, chlorine(), Weather(5.0, wind_from))
    bearing, distance = far_point_bearing(result, 1)
    # True north, not grid north: the demo's UTM zone is about 0.8 degrees off here.
    assert abs((bearing - downwind + 180) % 360 - 180) < 0.3
    zone = result.zone(1)
    assert zone is not None and zone.distance_m is not None
    assert distance == pytest.approx(zone.distance_m, rel=0.01)


@settings(max_examples=25, deadline=None)
@given(
    wind_from=st.floats(0, 360),
    turn=st.floats(-180, 180),
    speed=st.floats(1.5, 12),
)
def test_turning_the_wind_turns_the_footprint(wind_from: float, turn: float, speed: float) -> None:
    crs, _, source = demo()
    first = toxic_release(crs, source, chlorine(), Weather(speed, wind_from))
    second = toxic_release(crs, source, chlorine(), Weather(speed, (wind_from + turn) % 360))
    b1, d1 = far_point_bearing(first, 1)
    b2, d2 = far_point_bearing(second, 1)
    assert abs((b2 - b1 - turn + 180) % 360 - 180) < 0.5
    assert d2 == pytest.approx(d1, rel=0.01)
    z1, z2 = first.zone(1), second.zone(1)
    assert z1 is not None and z2 is not None
    assert crs.area_m2(z2.geometry) == pytest.approx(crs.area_m2(z1.geometry), rel=0.01)


def test_levels_nest_and_name_their_levels_of_concern() -> None:
    crs, _, source = demo()
    result = toxic_release(
        crs, source, chlorine(), Weather(2.5, 45, daytime=False, cloud_cover_octas=2)
    )
    assert [z.level for z in result.zones] == [3, 2, 1]
    # Chlorine's AEGLs (60 min), as ALOHA uses by default: 20, 2 and 0.5 ppm.
    assert [(z.label, z.threshold) for z in result.zones] == [
        ("AEGL-3 (60 min)", 20.0),
        ("AEGL-2 (60 min)", 2.0),
        ("AEGL-1 (60 min)", 0.5),
    ]
    inner, middle, outer = (z.geometry for z in result.zones)
    assert outer.buffer(1e-7).contains(middle) and middle.buffer(1e-7).contains(inner)
    assert result.parameters["stability"] == "F"  # night, clear sky, 2.5 m/s
    assert result.parameters["sigma_set"] == "briggs-rural"
    assert result.uncertainty is not None and result.uncertainty.contains(outer.buffer(-1e-6))
    json.dumps(result.as_geojson())  # the map wall gets it as GeoJSON


def test_calm_wind_gives_circles_and_says_so() -> None:
    crs, _, source = demo()
    result = toxic_release(crs, source, chlorine(), Weather(0.3, 90))
    assert result.parameters["calm"] is True
    assert any("calm" in note for note in result.notes)
    zone = result.zone(1)
    assert zone is not None and zone.distance_m is not None
    area = crs.area_m2(zone.geometry)
    assert area == pytest.approx(math.pi * zone.distance_m**2, rel=0.01)


def test_a_level_never_reached_is_said_not_drawn() -> None:
    crs, _, source = demo()
    # A 0.01 g/s trickle of chlorine from a 60 m stack never brings 20 ppm to the ground.
    result = toxic_release(crs, source, chlorine(0.01, release_height_m=60.0), Weather(5.0, 90))
    assert result.zone(3) is None
    assert any("AEGL-3" in note and "not reached" in note for note in result.notes)


def test_user_levels_replace_the_table() -> None:
    crs, _, source = demo()
    result = toxic_release(crs, source, chlorine(levels_ppm=(50.0, 10.0)), Weather(4.0, 180))
    assert [(z.level, z.threshold) for z in result.zones] == [(3, 50.0), (2, 10.0)]
    assert result.parameters["levels_of_concern"] == "user"


def test_a_chlorine_plume_says_the_model_assumes_a_neutrally_buoyant_gas() -> None:
    crs, _, source = demo()
    result = toxic_release(crs, source, chlorine(), Weather(4.0, 90))
    # Chlorine, 70.9 g/mol, is over twice as heavy as air (28.96 g/mol).
    (dense,) = [note for note in result.notes if "heavier than air" in note]
    assert "Chlorine" in dense and "neutral buoyancy" in dense
    assert "spread wider near the ground" in dense and "travel shorter" in dense
    # Ammonia (17.0 g/mol) is lighter than air: no such note.
    light = toxic_release(crs, source, ToxicRelease("ammonia", 2000.0), Weather(4.0, 90))
    assert not any("heavier than air" in note for note in light.notes)


def test_a_missing_level_of_concern_is_named_in_the_notes() -> None:
    crs, _, source = demo()
    # Sulfur dioxide has all three AEGLs now (NRC Vol. 8): three zones, no gap named.
    result = toxic_release(crs, source, ToxicRelease("sulfur-dioxide", 500.0), Weather(4.0, 90))
    assert [z.level for z in result.zones] == [3, 2, 1]
    assert not any(note.startswith("no level-") for note in result.notes)
    # Phosgene's AEGL-1 is "not recommended" by EPA.
    result = toxic_release(crs, source, ToxicRelease("phosgene", 50.0), Weather(4.0, 90))
    (note,) = [n for n in result.notes if n.startswith("no level-1 zone")]
    assert "AEGL-1" in note and "not recommended" in note
    # Toluene has no AEGLs here: its ERPGs are used, and the notes say so.
    result = toxic_release(crs, source, ToxicRelease("toluene", 500.0), Weather(4.0, 90))
    assert any("no AEGL" in note and "ERPG is used" in note for note in result.notes)
    # Levels given by the user: those not given are named too.
    result = toxic_release(crs, source, chlorine(levels_ppm=(50.0, 10.0)), Weather(4.0, 90))
    assert any(note.startswith("no level-1 zone") for note in result.notes)


@pytest.mark.parametrize("substance", all_substances(), ids=lambda s: s.id)
def test_every_substance_names_its_missing_levels(substance: Substance) -> None:
    crs, _, source = demo()
    release = ToxicRelease(substance.id, 100.0)
    try:
        scheme = default_levels_of_concern(substance).scheme
    except InvalidInput:
        scheme = None
    if scheme is None or substance.molecular_weight_g_mol is None:
        # No toxic level at all (a fuel) or no molecular weight (a mixture): refused, not drawn.
        with pytest.raises(InvalidInput):
            toxic_release(crs, source, release, Weather(4.0, 90))
        return
    result = toxic_release(crs, source, release, Weather(4.0, 90))
    for gap in missing_levels(substance, scheme):
        assert any(
            note.startswith(f"no level-{gap.level} zone") and gap.label in note
            for note in result.notes
        ), (gap, result.notes)
    drawn_or_missing = {z.level for z in result.zones} | {
        m.level for m in missing_levels(substance, scheme)
    }
    not_reached = [n for n in result.notes if "not reached" in n]
    assert len(drawn_or_missing) + len(not_reached) == 3
    dense = any("heavier than air" in note for note in result.notes)
    assert dense == (substance.molecular_weight_g_mol > AIR_MOLECULAR_WEIGHT_G_MOL)


def test_fire_and_explosion_zones_are_circles_of_the_model_distances() -> None:
    crs, _, source = demo()
    fire = pool_fire(crs, source, fuel="methanol", diameter_m=10.0)
    distances = fires.fire_threat_distances("methanol", diameter_m=10.0)
    for zone in fire.zones:
        level = next(lv for lv in distances.levels if lv.level == zone.level)
        assert level.distance_m is not None
        assert crs.area_m2(zone.geometry) == pytest.approx(math.pi * level.distance_m**2, rel=0.01)
    blast_zones = explosion(crs, source, tnt_kg=1000.0)
    levels = blast.explosion_threat_distances(1000.0)
    assert [z.level for z in blast_zones.zones] == [3, 2, 1]
    for zone, blast_level in zip(blast_zones.zones, levels, strict=True):
        assert zone.distance_m == pytest.approx(blast_level.distance_m)
        assert zone.unit == "psi"


def test_explosion_from_a_substance_uses_its_heat_of_combustion() -> None:
    crs, _, source = demo()
    result = explosion(crs, source, mass_kg=1000.0, substance="methane")
    assert result.parameters["tnt_kg"] > 0


def test_erg_isolation_circle_and_downwind_square() -> None:
    crs, _, source = demo()
    result = erg_zones(
        crs, source, substance="chlorine", spill="small", daytime=False, wind_from_deg=270
    )
    expected = protective_distances(erg_entry("chlorine"), spill="small", daytime=False)
    isolate, protect = result.zone(3), result.zone(2)
    assert isolate is not None and protect is not None
    assert crs.area_m2(isolate.geometry) == pytest.approx(math.pi * expected.isolate_m**2, rel=0.01)
    # The square (side = protective action distance) runs downwind: east for a west wind.
    bearing, distance = far_point_bearing(result, 2)
    assert 45 - 0.5 <= bearing <= 135 + 0.5
    assert distance == pytest.approx(expected.protect_m * math.sqrt(1.25), rel=0.01)
    assert result.parameters["edition"] == expected.edition


def test_radius_zones_for_hazards_without_a_model() -> None:
    crs, _, source = demo()
    result = radius_zones(crs, source, [50, 150, 300], label="collapse")
    assert [z.level for z in result.zones] == [3, 2, 1]
    assert [z.distance_m for z in result.zones] == [50, 150, 300]


def test_what_lies_inside_matches_a_plain_check() -> None:
    crs, layers, source = demo()
    result = toxic_release(
        crs, source, chlorine(), Weather(2.0, 200, daytime=False, cloud_cover_octas=2)
    )
    found = exposure(result, index())
    counts = found.counts()
    assert counts[1]["people"] >= counts[2]["people"] >= counts[3]["people"] > 0
    for level in (1, 2, 3):
        zone = result.zone(level)
        assert zone is not None
        for layer in ("people", "resources", "sensors", "network", "zones"):
            expected = {
                str(f["id"])
                for f in layers[layer]["features"]
                if zone.geometry.intersects(shape(f["geometry"]))
            }
            assert set(found.inside[level][layer]) == expected, (level, layer)
    # The chlorine store itself is in the innermost zone.
    assert found.highest["zones"][CHLORINE_STORE] == 3


def test_a_wind_change_says_who_entered_and_who_left() -> None:
    crs, _, source = demo()
    release = chlorine()
    site = index()
    before = exposure(
        toxic_release(crs, source, release, Weather(2.0, 0, daytime=False, cloud_cover_octas=2)),
        site,
    )
    turned = toxic_release_after_wind_change(
        crs,
        source,
        release,
        Weather(2.0, 180, daytime=False, cloud_cover_octas=2),
        previous=before,
        index=site,
    )
    entered = turned.change.entered["people"]
    left = turned.change.left["people"]
    assert entered and left
    assert set(entered) <= set(turned.exposure.highest["people"])
    assert not set(entered) & set(before.highest["people"])
    assert set(left) <= set(before.highest["people"])
    assert not set(left) & set(turned.exposure.highest["people"])
    same = exposure_change(before, before)
    assert same.empty


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda c, s: toxic_release(c, s, chlorine(), Weather(3.0, 400)), "wind_from_deg"),
        (lambda c, s: toxic_release(c, s, chlorine(), Weather(3.0, -5)), "wind_from_deg"),
        (lambda c, s: toxic_release(c, s, chlorine(), Weather(float("nan"), 5)), "wind_speed_m_s"),
        (lambda c, s: toxic_release(c, s, chlorine(-1.0), Weather(3.0, 90)), "rate_g_s"),
        (lambda c, s: toxic_release(c, s, chlorine(0.0), Weather(3.0, 90)), "rate_g_s"),
        (
            lambda c, s: toxic_release(c, s, ToxicRelease("unobtainium", 5.0), Weather(3.0, 90)),
            "substance",
        ),
        (
            lambda c, s: toxic_release(c, s, chlorine(release_height_m=-3.0), Weather(3.0, 90)),
            "release_height",
        ),
        (
            lambda c, s: toxic_release(c, s, chlorine(release_height_m=5000.0), Weather(3.0, 90)),
            "release_height",
        ),
        (
            lambda c, s: toxic_release(c, s, chlorine(sigma_set="martian"), Weather(3.0, 90)),
            "sigma_set",
        ),
        (lambda c, s: toxic_release(c, (200.0, 95.0), chlorine(), Weather(3.0, 90)), "source"),
        (lambda c, s: explosion(c, s, tnt_kg=-5.0), "tnt_kg"),
        (lambda c, s: explosion(c, s, mass_kg=10.0, substance="chlorine"), "substance"),
        (lambda c, s: pool_fire(c, s, fuel="lava", diameter_m=3.0), "fuel"),
        (lambda c, s: pool_fire(c, s, fuel="methanol", diameter_m=0.0), "diameter_m"),
        (lambda c, s: radius_zones(c, s, [100, 50]), "radii_m"),
        (
            lambda c, s: erg_zones(
                c, s, substance="chlorine", spill="small", daytime=True, wind_from_deg=361
            ),
            "wind_from_deg",
        ),
        # Wrong types and impossible sizes (found in review): refused, never a crash.
        (lambda c, s: toxic_release(c, s, chlorine(), Weather(True, 90)), "wind_speed_m_s"),
        (lambda c, s: toxic_release(c, s, chlorine(), Weather(wrong("3"), 90)), "wind_speed_m_s"),
        (lambda c, s: toxic_release(c, s, chlorine(), Weather(3.0, True)), "wind_from_deg"),
        (
            lambda c, s: toxic_release(c, s, chlorine(), Weather(3.0, 9, daytime=wrong(None))),
            "daytime",
        ),
        (lambda c, s: toxic_release(c, s, chlorine(wrong("5")), Weather(3.0, 90)), "rate_g_s"),
        (lambda c, s: toxic_release(c, s, chlorine(1e300), Weather(3.0, 90)), "rate_g_s"),
        (
            lambda c, s: toxic_release(c, s, chlorine(levels_ppm=wrong(("a",))), Weather(3, 9)),
            "levels_ppm",
        ),
        (
            lambda c, s: toxic_release(c, s, chlorine(levels_ppm=wrong(5.0)), Weather(3, 9)),
            "levels_ppm",
        ),
        (lambda c, s: toxic_release(c, s, chlorine(scheme=wrong("XYZ")), Weather(3, 9)), "scheme"),
        (
            lambda c, s: toxic_release(c, s, ToxicRelease(wrong(1017), 5.0), Weather(3, 9)),
            "substance",
        ),
        (lambda c, s: toxic_release(c, (0.0, 30.7), chlorine(), Weather(3.0, 90)), "source"),
        (lambda c, s: explosion(c, s, tnt_kg=1e300), "tnt_kg"),
        (lambda c, s: explosion(c, s, tnt_kg=100.0, yield_factor=-5), "yield_factor"),
        (lambda c, s: explosion(c, s, tnt_kg=100.0, thresholds_psi=(10, 8, 3.5, 1)), "thresholds"),
        (lambda c, s: explosion(c, s, tnt_kg=100.0, thresholds_psi=wrong(8.0)), "thresholds_psi"),
        (lambda c, s: pool_fire(c, s, fuel="methanol", diameter_m=1e160), "diameter_m"),
        (lambda c, s: radius_zones(c, s, [1e300]), "radii_m"),
        (lambda c, s: radius_zones(c, s, wrong(["a"])), "radii_m"),
        (lambda c, s: radius_zones(c, s, wrong(5)), "radii_m"),
        (
            lambda c, s: erg_zones(
                c,
                s,
                substance="chlorine",
                spill=wrong("medium"),
                daytime=True,
                wind_from_deg=90,
            ),
            "spill",
        ),
        (
            lambda c, s: erg_zones(
                c,
                s,
                substance="chlorine",
                spill="small",
                daytime=wrong("no"),
                wind_from_deg=90,
            ),
            "daytime",
        ),
    ],
)
def test_bad_input_names_the_field(call: Any, field: str) -> None:
    crs, _, source = demo()
    with pytest.raises(InvalidInput) as caught:
        call(crs, source)
    fields = [e.field for e in caught.value.errors]
    assert any(f == field or f.startswith(field) for f in fields), fields


def test_someone_at_the_leak_is_in_the_innermost_zone() -> None:
    crs, _, source = demo()
    result = toxic_release(crs, source, chlorine(), Weather(3.0, 90))
    site = SiteIndex(
        {
            "people": [
                {"id": "at-leak", "geometry": {"type": "Point", "coordinates": list(source)}},
            ]
        }
    )
    assert exposure(result, site).highest["people"] == {"at-leak": 3}


def test_calm_air_uncertainty_is_the_whole_circle() -> None:
    crs, _, source = demo()
    result = toxic_release(crs, source, chlorine(), Weather(0.5, 90))
    outer = result.zone(1)
    assert outer is not None and result.uncertainty is not None
    assert result.uncertainty.equals(outer.geometry)


def test_people_as_points_are_tested_on_coordinates() -> None:
    site = SiteIndex(
        {
            "people": [
                {"id": "a", "geometry": {"type": "Point", "coordinates": [0.0, 0.0]}},
                {"id": "b", "geometry": {"type": "Point", "coordinates": [1.0, 1.0]}},
            ]
        }
    )
    assert list(site.inside("people", Point(0, 0).buffer(0.5))) == ["a"]
