"""Gaussian plume threat zones (gis.hazards.plume): worked examples, tables and properties.

Pure functions only: no database or app fixtures.
"""

# Sources are quoted with their own notation (σ, χ).
# ruff: noqa: RUF002, RUF003

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely import affinity
from shapely.geometry import Point, Polygon

from gis.errors import InvalidInput
from gis.hazards.plume import (
    CALM_WIND_LIMIT_M_S,
    MAX_VERTICES,
    SIGMA_SETS,
    STABILITY_CLASSES,
    PlumeResult,
    concentration_g_m3,
    dispersion_sigmas,
    mg_m3_to_ppm,
    plume_footprints,
    ppm_to_mg_m3,
    stability_class,
    uncertainty_area,
    uncertainty_half_angle_deg,
    wind_speed_at_height,
)

PROPERTY = settings(max_examples=40, deadline=None)


def sigma(x_m: float, stability: str, sigma_set: str) -> tuple[float, float]:
    sy, sz = dispersion_sigmas([x_m], stability=stability, sigma_set=sigma_set)
    return float(sy[0]), float(sz[0])


def chi(x_m: float, **kwargs: float | str) -> float:
    return float(concentration_g_m3(x_m, **kwargs)[()])  # type: ignore[arg-type]


def ammonia(**overrides: object) -> PlumeResult:
    args: dict[str, object] = {
        "rate_g_s": 1000.0,
        "molecular_weight": 17.03,
        "wind_speed": 3.0,
        "stability": "D",
        "sigma_set": "briggs-rural",
        "thresholds_ppm": [1100.0, 160.0, 30.0],
    }
    args.update(overrides)
    return plume_footprints(**args)  # type: ignore[arg-type]


def field_of(excinfo: pytest.ExceptionInfo[InvalidInput]) -> list[str]:
    return [e.field for e in excinfo.value.errors]


# ---------------------------------------------------------------------------------------------
# Published worked examples
# ---------------------------------------------------------------------------------------------


def test_turner_workbook_burning_dump_pasquill_gifford() -> None:
    """Turner (1970), *Workbook of Atmospheric Dispersion Estimates*, example problem "burning
    dump": 3 g/s NOx, ground-level point source, overcast night, 7 m/s, 3 km directly downwind.
    Printed: class D, σy ≈ 190 m and σz ≈ 65 m (read from the PG charts, Figs 3-2/3-3),
    χ = 3 / (π·7·190·65) ≈ 1.1e-5 g/m³. Sigma set "pasquill-gifford" (ISC3 analytic form of
    those charts). Tolerance 10 %: chart readings are good to a few per cent and the answer is
    printed to two figures. (Figures as widely quoted from the workbook; its page could not be
    re-read for this test.)
    """
    assert stability_class(7.0, daytime=False, cloud_cover_octas=8) == "D"
    sy, sz = sigma(3000.0, "D", "pasquill-gifford")
    assert sy == pytest.approx(190.0, rel=0.10)
    assert sz == pytest.approx(65.0, rel=0.10)
    value = chi(3000.0, rate_g_s=3.0, wind_speed=7.0, stability="D", sigma_set="pasquill-gifford")
    assert value == pytest.approx(1.1e-5, rel=0.10)


@pytest.mark.parametrize(
    ("x_km", "sigma_z", "sigma_y", "chi_printed"),
    [(0.26, 26.2, 45.9, 1.53e-5), (0.28, 28.2, 49.0, 1.56e-5), (0.30, 30.1, 52.2, 1.55e-5)],
)
def test_boubel_fundamentals_elevated_source_pasquill_gifford(
    x_km: float, sigma_z: float, sigma_y: float, chi_printed: float
) -> None:
    """Boubel, Fox, Turner & Stern (1994), *Fundamentals of Air Pollution* 3rd ed., ch. 19
    §III.D "Example of a dispersion calculation" (pp. 303-305): 0.37 g/s at effective height
    40 m, 2 m/s, class B; the printed table gives σz, σy and ground-level centreline χ at 0.26,
    0.28 and 0.30 km from the equations of its Tables 19-4/19-5 (= ISC3 PG, our
    "pasquill-gifford"). Tolerance 1 %: the figures are printed to three digits.
    """
    sy, sz = sigma(x_km * 1000.0, "B", "pasquill-gifford")
    assert sz == pytest.approx(sigma_z, rel=0.01)
    assert sy == pytest.approx(sigma_y, rel=0.01)
    value = chi(
        x_km * 1000.0,
        rate_g_s=0.37,
        wind_speed=2.0,
        stability="B",
        sigma_set="pasquill-gifford",
        release_height=40.0,
    )
    assert value == pytest.approx(chi_printed, rel=0.01)


def test_boubel_fundamentals_maximum_is_near_280_m() -> None:
    """Same example: the book finds the maximum ground-level concentration at about 0.28 km
    (1.56e-5 g/m³). Tolerance: the book's own 20 m search step, and 1 % on the value."""
    x = np.linspace(150.0, 500.0, 3501)
    values = concentration_g_m3(
        x,
        rate_g_s=0.37,
        wind_speed=2.0,
        stability="B",
        sigma_set="pasquill-gifford",
        release_height=40.0,
    )
    assert float(x[int(np.argmax(values))]) == pytest.approx(280.0, abs=20.0)
    assert float(values.max()) == pytest.approx(1.56e-5, rel=0.01)


# ---------------------------------------------------------------------------------------------
# Sigma curves against published tables
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stability", "x_km", "sigma_z"),
    [
        ("A", 0.10, 14.0),
        ("A", 0.20, 29.3),
        ("A", 0.40, 71.2),
        ("A", 0.50, 104.7),
        ("B", 0.20, 20.2),
        ("B", 0.40, 40.0),
        ("D", 0.30, 12.1),
        ("D", 1.00, 32.1),
        ("D", 3.00, 65.1),
        ("D", 10.0, 134.9),
        ("D", 30.0, 251.2),
        ("E", 20.0, 109.3),
        ("E", 40.0, 141.9),
    ],
)
def test_pasquill_gifford_sigma_z_matches_printed_table(
    stability: str, x_km: float, sigma_z: float
) -> None:
    """Boubel et al. (1994) Table 19-5 (ISC3 PG σz) lists σz at the upper end of each distance
    band; printed to 0.1 m, so tolerance 0.5 %. Includes σz at 1 km for class D (rural)."""
    _, sz = sigma(x_km * 1000.0, stability, "pasquill-gifford")
    assert sz == pytest.approx(sigma_z, rel=0.005)


def test_class_d_at_one_km_rural_sets() -> None:
    """Class D at 1 km. PG (Boubel Table 19-4/19-5, ln x = 0 at 1 km): σy = 465.11628·tan(8.333°)
    = 68.1 m, σz = 32.1 m. Briggs rural (Boubel Table 19-7): σy = 80/√1.1 = 76.3 m,
    σz = 60/√2.5 = 37.9 m. Tolerance 0.2 % (values rounded to 0.1 m)."""
    assert sigma(1000.0, "D", "pasquill-gifford") == pytest.approx((68.1, 32.1), rel=0.002)
    assert sigma(1000.0, "D", "briggs-rural") == pytest.approx((76.3, 37.9), rel=0.002)
    # Urban (Table 19-6): σy = 160/√1.4, σz = 140/√1.3.
    assert sigma(1000.0, "D", "briggs-urban") == pytest.approx(
        (160 / math.sqrt(1.4), 140 / math.sqrt(1.3)), rel=1e-9
    )


@pytest.mark.parametrize(
    ("stability", "x_m", "sigma_z"),
    [
        ("D", 500.0, 18.29689264165363),
        ("D", 2000.0, 50.15135417398994),
        ("D", 5000.0, 88.69020460936578),
        ("E", 1500.0, 27.931190340632067),
        ("F", 800.0, 11.976175562087187),
        ("F", 5000.0, 34.207199596890135),
        ("B", 300.0, 30.144226325216724),
        ("A", 350.0, 58.955561122372494),
    ],
)
def test_pasquill_gifford_sigma_z_matches_an_independent_implementation(
    stability: str, x_m: float, sigma_z: float
) -> None:
    """Cross-check with GasDispersion.jl (aefarrell), test/utils/isc3_tests.jl, which codes the
    same ISC3 Vol. II tables independently; tolerance 1e-9 (same formula, floating point)."""
    assert sigma(x_m, stability, "pasquill-gifford")[1] == pytest.approx(sigma_z, rel=1e-9)


def test_sigma_sets_are_positive_and_grow_downwind() -> None:
    x = np.geomspace(1.0, 100_000.0, 400)
    for sigma_set in SIGMA_SETS:
        for stability in STABILITY_CLASSES:
            sy, sz = dispersion_sigmas(x, stability=stability, sigma_set=sigma_set)
            assert np.all(sy > 0) and np.all(sz > 0)
            assert np.all(np.diff(sy) > 0), (sigma_set, stability)


# ---------------------------------------------------------------------------------------------
# Stability table, units, wind profile
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wind", "insolation", "expected"),
    [
        (1.5, "strong", "A"),
        (1.5, "moderate", "B"),  # A-B: the more stable of the pair
        (1.5, "slight", "B"),
        (2.0, "strong", "B"),  # 2.0 is in the 2-3 row; A-B -> B
        (2.5, "slight", "C"),
        (4.0, "strong", "B"),
        (4.0, "moderate", "C"),  # B-C -> C
        (5.5, "strong", "C"),
        (5.5, "moderate", "D"),  # C-D -> D
        (7.0, "strong", "C"),
        (7.0, "slight", "D"),
    ],
)
def test_stability_daytime_rows(wind: float, insolation: str, expected: str) -> None:
    """Pasquill (1961) / Turner (1970) table as printed in Boubel et al. (1994) Table 19-3."""
    assert stability_class(wind, daytime=True, insolation=insolation) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("wind", "octas", "expected"),
    [
        (1.0, 6.0, "E"),  # blank in Turner; NOAA READY: E
        (1.0, 0.0, "F"),  # blank in Turner; NOAA READY: F
        (2.5, 5.0, "E"),
        (2.5, 2.0, "F"),
        (2.5, 3.5, "F"),  # between 3/8 and 4/8: the more stable column
        (4.0, 4.0, "D"),
        (4.0, 1.0, "E"),
        (5.5, 0.0, "D"),
        (9.0, 0.0, "D"),
    ],
)
def test_stability_night_rows(wind: float, octas: float, expected: str) -> None:
    assert stability_class(wind, daytime=False, cloud_cover_octas=octas) == expected


@pytest.mark.parametrize("daytime", [True, False])
def test_overcast_is_neutral_day_or_night(daytime: bool) -> None:
    assert stability_class(0.5, daytime=daytime, cloud_cover_octas=8) == "D"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"wind_speed": 3.0, "daytime": True}, "insolation"),
        ({"wind_speed": 3.0, "daytime": False}, "cloud_cover_octas"),
        ({"wind_speed": 3.0, "daytime": False, "cloud_cover_octas": 9.0}, "cloud_cover_octas"),
        ({"wind_speed": 3.0, "daytime": False, "cloud_cover_octas": -1.0}, "cloud_cover_octas"),
        ({"wind_speed": -1.0, "daytime": True, "insolation": "strong"}, "wind_speed"),
        ({"wind_speed": math.nan, "daytime": True, "insolation": "strong"}, "wind_speed"),
    ],
)
def test_stability_refuses_bad_input(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInput) as excinfo:
        stability_class(**kwargs)  # type: ignore[arg-type]
    assert field in field_of(excinfo)


def test_ppm_conversion_at_25c_1atm() -> None:
    """ppm = mg/m³ · 24.45 / MW. Chlorine (MW 70.90) 1 ppm = 2.90 mg/m³ and ammonia
    (MW 17.03) 1 ppm = 0.70 mg/m³, the conversions the NIOSH Pocket Guide prints (quoted from
    memory, not re-checked against it); printed to 2-3 digits."""
    assert ppm_to_mg_m3(1.0, 70.90) == pytest.approx(2.90, abs=0.005)
    assert ppm_to_mg_m3(1.0, 17.03) == pytest.approx(0.70, abs=0.005)
    assert mg_m3_to_ppm(24.45, 1.0) == pytest.approx(24.45 * 24.45)
    assert mg_m3_to_ppm(ppm_to_mg_m3(160.0, 17.03), 17.03) == pytest.approx(160.0)


def test_power_law_wind_profile_isc3_exponents() -> None:
    """ISC3 exponents; values cross-checked with GasDispersion.jl isc3_tests.jl (u0 = 3 m/s at
    1 m, to 10 m), tolerance 1e-9."""
    rural_f = wind_speed_at_height(3.0, 10.0, stability="F", reference_height_m=1.0)
    urban_d = wind_speed_at_height(
        3.0, 10.0, stability="D", terrain="urban", reference_height_m=1.0
    )
    assert rural_f == pytest.approx(10.644401677007265, rel=1e-9)
    assert urban_d == pytest.approx(5.334838230116768, rel=1e-9)
    assert wind_speed_at_height(4.0, 40.0, stability="D") == pytest.approx(4.0 * 4.0**0.15)
    assert wind_speed_at_height(4.0, 2.0, stability="D") == 4.0  # not extrapolated downwards


# ---------------------------------------------------------------------------------------------
# Concentration and footprints
# ---------------------------------------------------------------------------------------------


def test_concentration_is_reflected_gaussian() -> None:
    kwargs: dict[str, float | str] = {
        "rate_g_s": 10.0,
        "wind_speed": 4.0,
        "stability": "C",
        "sigma_set": "briggs-urban",
        "release_height": 20.0,
    }
    sy, sz = sigma(800.0, "C", "briggs-urban")
    expected = (
        10.0
        / (2 * math.pi * 4.0 * sy * sz)
        * math.exp(-0.5 * (30.0 / sy) ** 2)
        * (math.exp(-0.5 * ((5.0 - 20.0) / sz) ** 2) + math.exp(-0.5 * ((5.0 + 20.0) / sz) ** 2))
    )
    got = concentration_g_m3(800.0, 30.0, 5.0, **kwargs)  # type: ignore[arg-type]
    assert float(got[()]) == pytest.approx(expected, rel=1e-12)
    mirrored = concentration_g_m3(800.0, -30.0, 5.0, **kwargs)  # type: ignore[arg-type]
    assert float(mirrored[()]) == pytest.approx(expected, rel=1e-12)
    upwind = concentration_g_m3([-10.0, 0.0], **kwargs)  # type: ignore[arg-type]
    assert upwind.tolist() == [0.0, 0.0]


def test_ground_release_footprint_shape() -> None:
    result = ammonia()
    assert result.stability == "D" and result.sigma_set == "briggs-rural"
    assert result.wind_speed_m_s == 3.0 and not result.calm
    for zone in result.zones:
        polygon = zone.polygon
        assert polygon is not None and polygon.is_valid
        assert len(polygon.exterior.coords) - 1 <= MAX_VERTICES
        assert zone.min_downwind_m == 0.0 and polygon.touches(Point(0, 0)) | polygon.contains(
            Point(0, 0)
        )
        minx, miny, maxx, maxy = polygon.bounds
        assert minx == pytest.approx(0.0, abs=1e-9)
        assert maxx == pytest.approx(zone.max_downwind_m)
        assert maxy == pytest.approx(-miny) and maxy <= zone.max_half_width_m + 1e-9
        assert maxy == pytest.approx(zone.max_half_width_m, rel=0.02)
        # The tip is where the centreline concentration falls to the threshold ...
        tip = chi(zone.max_downwind_m, rate_g_s=1000.0, wind_speed=3.0, stability="D",
                  sigma_set="briggs-rural")  # fmt: skip
        assert tip == pytest.approx(zone.threshold_g_m3, rel=1e-6)
        # ... and every edge vertex sits on the threshold contour.
        xs, ys = np.asarray(polygon.exterior.coords).T
        inner = (xs > 1.0) & (np.abs(ys) > 1e-3)
        edge = concentration_g_m3(
            xs[inner],
            ys[inner],
            rate_g_s=1000.0,
            wind_speed=3.0,
            stability="D",
            sigma_set="briggs-rural",
        )
        assert np.allclose(edge, zone.threshold_g_m3, rtol=1e-6)
    assert any("extrapolated" in note for note in result.notes)


def test_elevated_release_starts_downwind_and_may_be_empty() -> None:
    result = plume_footprints(
        rate_g_s=100.0,
        molecular_weight=64.07,
        wind_speed=4.0,
        stability="C",
        sigma_set="pasquill-gifford",
        release_height=50.0,
        thresholds_ppm=[3.0, 1.0, 0.2],
    )
    never, also_never, reached = result.zones
    assert never.polygon is None and never.max_downwind_m == 0.0
    assert also_never.polygon is None
    assert reached.polygon is not None and reached.polygon.is_valid
    assert reached.min_downwind_m > 100.0
    assert reached.polygon.distance(Point(0, 0)) == pytest.approx(reached.min_downwind_m)
    assert sum("not reached" in note for note in result.notes) == 2
    assert any("does not touch the source" in note for note in result.notes)


def test_truncation_at_the_end_of_the_range_is_reported() -> None:
    result = ammonia(rate_g_s=50_000.0, stability="F", thresholds_ppm=[30.0, 1.0])
    assert result.truncated_at_m == 10_000.0
    outer = result.zones[-1]
    assert outer.truncated and outer.max_downwind_m == 10_000.0
    assert outer.polygon is not None and outer.polygon.bounds[2] == pytest.approx(10_000.0)
    assert any("truncated at 10000 m" in note for note in result.notes)

    short = ammonia(max_distance_m=300.0)
    assert short.truncated_at_m == 300.0
    assert any("max_distance_m" in note for note in short.notes)


def test_calm_wind_is_computed_at_the_limit_and_flagged() -> None:
    calm = ammonia(wind_speed=0.0)
    at_limit = ammonia(wind_speed=CALM_WIND_LIMIT_M_S)
    assert calm.calm and not at_limit.calm
    assert calm.wind_speed_m_s == CALM_WIND_LIMIT_M_S and calm.wind_speed_input_m_s == 0.0
    assert [z.max_downwind_m for z in calm.zones] == [z.max_downwind_m for z in at_limit.zones]
    assert any(note.startswith("Calm") for note in calm.notes)
    assert not any(note.startswith("Calm") for note in at_limit.notes)


def test_footprint_set_is_fast() -> None:
    """The brief asks for a few milliseconds per three-level set; allow slack for CI."""
    start = time.perf_counter()
    for _ in range(20):
        ammonia(sigma_set="pasquill-gifford")
    assert (time.perf_counter() - start) / 20 < 0.05


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"rate_g_s": 0.0}, "rate_g_s"),
        ({"rate_g_s": -1.0}, "rate_g_s"),
        ({"rate_g_s": math.nan}, "rate_g_s"),
        ({"rate_g_s": math.inf}, "rate_g_s"),
        ({"molecular_weight": 0.0}, "molecular_weight"),
        ({"wind_speed": -0.1}, "wind_speed"),
        ({"wind_speed": math.nan}, "wind_speed"),
        ({"release_height": -1.0}, "release_height"),
        ({"release_height": 1000.5}, "release_height"),
        ({"stability": "G"}, "stability"),
        ({"sigma_set": "gifford-1961"}, "sigma_set"),
        ({"thresholds_ppm": []}, "thresholds_ppm"),
        ({"thresholds_ppm": [0.0]}, "thresholds_ppm"),
        ({"thresholds_ppm": [30.0, 160.0]}, "thresholds_ppm"),
        ({"thresholds_ppm": [160.0, 160.0]}, "thresholds_ppm"),
        ({"max_distance_m": 0.0}, "max_distance_m"),
    ],
)
def test_footprints_refuse_bad_input(overrides: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInput) as excinfo:
        ammonia(**overrides)
    assert field_of(excinfo) == [field]
    assert excinfo.value.status_code == 422


def test_unknown_sigma_set_lists_the_known_ones() -> None:
    with pytest.raises(InvalidInput) as excinfo:
        ammonia(sigma_set="nope")
    reason = excinfo.value.errors[0].reason
    assert all(name in reason for name in SIGMA_SETS)


def test_all_problems_reported_at_once() -> None:
    with pytest.raises(InvalidInput) as excinfo:
        ammonia(rate_g_s=-1.0, stability="Z", wind_speed=-3.0)
    assert set(field_of(excinfo)) == {"rate_g_s", "stability", "wind_speed"}


# ---------------------------------------------------------------------------------------------
# Wind-direction uncertainty
# ---------------------------------------------------------------------------------------------


def test_uncertainty_half_angle_rule() -> None:
    assert uncertainty_half_angle_deg(5.0, "D") == pytest.approx(20.0)  # 2·σθ(D) = 2·10°
    assert uncertainty_half_angle_deg(10.0, "A") == pytest.approx(50.0)
    # Low wind: meander term 2·atan(0.5/2) dominates class F's 2·2.5°.
    assert uncertainty_half_angle_deg(2.0, "F") == pytest.approx(2 * math.degrees(math.atan(0.25)))
    assert uncertainty_half_angle_deg(0.5, "D") == 180.0


@PROPERTY
@given(
    u1=st.floats(0.0, 30.0),
    u2=st.floats(0.0, 30.0),
    stability=st.sampled_from(STABILITY_CLASSES),
)
def test_uncertainty_widens_as_wind_drops(u1: float, u2: float, stability: str) -> None:
    slow, fast = sorted((u1, u2))
    assert uncertainty_half_angle_deg(slow, stability) >= uncertainty_half_angle_deg(
        fast, stability
    )


@pytest.mark.parametrize("release_height", [0.0, 30.0])
@pytest.mark.parametrize("half_angle", [5.0, 40.0, 120.0, 175.0])
def test_uncertainty_area_covers_the_rotated_footprint(
    half_angle: float, release_height: float
) -> None:
    result = ammonia(release_height=release_height, thresholds_ppm=[30.0])
    footprint = result.zones[0].polygon
    assert footprint is not None
    area = uncertainty_area(footprint, half_angle)
    assert isinstance(area, Polygon) and area.is_valid
    tolerance = 0.005 * result.zones[0].max_downwind_m
    grown = area.buffer(tolerance)
    for angle in np.linspace(-half_angle, half_angle, 9):
        turned = affinity.rotate(footprint, float(angle), origin=(0.0, 0.0))
        assert grown.contains(turned), angle
    # Nothing far beyond the reach of the footprint.
    reach = max(math.hypot(x, y) for x, y in footprint.exterior.coords)
    assert Point(0, 0).buffer(reach + tolerance).contains(area)


def test_uncertainty_area_full_circle_and_degenerate_cases() -> None:
    footprint = ammonia(thresholds_ppm=[30.0]).zones[0].polygon
    assert footprint is not None
    reach = max(math.hypot(x, y) for x, y in footprint.exterior.coords)
    disc = uncertainty_area(footprint, 180.0)
    assert disc.area == pytest.approx(math.pi * reach**2, rel=0.002)
    assert uncertainty_area(footprint, 0.0).equals(footprint)
    assert uncertainty_area(Polygon(), 30.0).is_empty
    with pytest.raises(InvalidInput) as excinfo:
        uncertainty_area(footprint, -1.0)
    assert field_of(excinfo) == ["half_angle_deg"]
    with pytest.raises(InvalidInput):
        uncertainty_area(affinity.rotate(footprint, 180.0, origin=(0.0, 0.0)), 10.0)


# ---------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------

scenario = {
    "stability": st.sampled_from(STABILITY_CLASSES),
    "sigma_set": st.sampled_from(SIGMA_SETS),
    "wind_speed": st.floats(1.0, 15.0),
    "release_height": st.sampled_from([0.0, 0.0, 5.0, 25.0]),
}


def contains_within(big: Polygon | None, small: Polygon | None, tolerance: float) -> bool:
    if small is None:
        return True
    return big is not None and big.buffer(tolerance).contains(small)


@PROPERTY
@given(rate=st.floats(0.1, 5000.0), factor=st.floats(1.05, 20.0), **scenario)
def test_footprints_grow_with_release_rate(
    rate: float,
    factor: float,
    stability: str,
    sigma_set: str,
    wind_speed: float,
    release_height: float,
) -> None:
    def run(q: float) -> PlumeResult:
        return plume_footprints(
            rate_g_s=q,
            molecular_weight=34.0,
            wind_speed=wind_speed,
            stability=stability,
            sigma_set=sigma_set,
            release_height=release_height,
            thresholds_ppm=[50.0, 10.0, 1.0],
        )

    small, big = run(rate), run(rate * factor)
    for s, b in zip(small.zones, big.zones, strict=True):
        assert b.max_downwind_m >= s.max_downwind_m - 1e-6
        assert contains_within(b.polygon, s.polygon, 1e-3 * b.max_downwind_m + 0.01)


@PROPERTY
@given(rate=st.floats(0.1, 5000.0), **scenario)
def test_levels_are_nested(
    rate: float, stability: str, sigma_set: str, wind_speed: float, release_height: float
) -> None:
    result = plume_footprints(
        rate_g_s=rate,
        molecular_weight=34.0,
        wind_speed=wind_speed,
        stability=stability,
        sigma_set=sigma_set,
        release_height=release_height,
        thresholds_ppm=[100.0, 20.0, 2.0],
    )
    for inner, outer in zip(result.zones, result.zones[1:], strict=False):
        assert outer.max_downwind_m >= inner.max_downwind_m - 1e-6
        assert contains_within(outer.polygon, inner.polygon, 1e-3 * outer.max_downwind_m + 0.01)
    for zone in result.zones:
        if zone.polygon is not None:
            assert zone.polygon.is_valid
            assert len(zone.polygon.exterior.coords) - 1 <= MAX_VERTICES


@PROPERTY
@given(wind=st.floats(0.0, 30.0), stability=st.sampled_from(STABILITY_CLASSES))
def test_calm_flag_below_the_limit(wind: float, stability: str) -> None:
    result = ammonia(wind_speed=wind, stability=stability)
    assert result.calm == (wind < CALM_WIND_LIMIT_M_S)
    assert result.wind_speed_m_s == max(wind, CALM_WIND_LIMIT_M_S)
    assert any(note.startswith("Calm") for note in result.notes) == result.calm


@PROPERTY
@given(
    rate=st.floats(1.0, 1e5),
    threshold=st.floats(0.05, 500.0),
    max_distance=st.floats(200.0, 20_000.0),
    **scenario,
)
def test_truncation_reported_whenever_the_zone_reaches_the_end(
    rate: float,
    threshold: float,
    max_distance: float,
    stability: str,
    sigma_set: str,
    wind_speed: float,
    release_height: float,
) -> None:
    result = plume_footprints(
        rate_g_s=rate,
        molecular_weight=17.03,
        wind_speed=wind_speed,
        stability=stability,
        sigma_set=sigma_set,
        release_height=release_height,
        thresholds_ppm=[threshold],
        max_distance_m=max_distance,
    )
    end = min(result.valid_range_m[1], max_distance)
    at_end = chi(
        end,
        rate_g_s=rate,
        wind_speed=wind_speed,
        stability=stability,
        sigma_set=sigma_set,
        release_height=release_height,
    )
    zone = result.zones[0]
    reaches_end = at_end >= zone.threshold_g_m3
    assert zone.truncated == reaches_end
    assert (result.truncated_at_m == end) == reaches_end
    assert any("truncated" in note for note in result.notes) == reaches_end
    assert zone.max_downwind_m <= end + 1e-9
