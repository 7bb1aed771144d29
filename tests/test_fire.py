"""Pool- and jet-fire thermal radiation, point-source model (gis.hazards.fire): pure functions."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gis.errors import InvalidInput
from gis.hazards import fire

FT = 0.3048  # m, exact
FT2 = FT * FT  # m², exact


def test_nureg_1805_spreadsheet_small_pool_example() -> None:
    # Source: NUREG-1805 Fire Dynamics Tools, spreadsheet 05.1 "Heat flux calculations, wind
    # free, point source radiation model" (public copy): m'' = 0.033 kg/m²s, dHc = 28,000 kJ/kg,
    # k-beta = 2.6 1/m, dike area 9.00 ft², target 10.00 ft away, chi_r = 0.30; it prints
    # Q = 719.75 kW. Tolerance: the printed precision (0.005 kW).
    fuel = fire.FuelProperties("spreadsheet fuel", 0.033, 28_000.0, 2.6, "NUREG-1805 05.1")
    pool = fire.pool_fire(fuel, area_m2=9.00 * FT2)
    assert pool.heat_release_kw == pytest.approx(719.75, abs=0.005)
    # Eq. 5-1 with R = L (NUREG's equation has no transmissivity): 0.30·Q/(4π·3.048²). The
    # spreadsheet's printed flux was not in the copy we could read, so this is the hand value.
    flux = fire.point_source_flux_kw_m2(pool.heat_release_kw, 10.0 * FT)
    assert flux == pytest.approx(0.30 * 719.75 / (4 * math.pi * 3.048**2), rel=1e-5)
    assert flux == pytest.approx(1.85, abs=0.005)


def test_nureg_1805_spreadsheet_diesel_dike_example() -> None:
    # Source: another public copy of the same spreadsheet 05.1: m'' = 0.045 kg/m²s,
    # dHc = 44,400 kJ/kg, k-beta = 2.1 1/m (the diesel row), dike area 2545.00 ft² (236.44 m²),
    # target 130.00 ft (39.624 m), chi_r = 0.30; it prints Q = 472,403.60 kW.
    # Tolerance: the printed precision (0.005 kW).
    pool = fire.pool_fire("diesel", area_m2=2545.00 * FT2)
    assert pool.area_m2 == pytest.approx(236.44, abs=0.005)
    assert pool.heat_release_kw == pytest.approx(472_403.60, abs=0.005)
    flux = fire.point_source_flux_kw_m2(pool.heat_release_kw, 130.0 * FT)
    assert flux == pytest.approx(0.30 * 472_403.60 / (4 * math.pi * 39.624**2), rel=1e-6)


@pytest.mark.parametrize(
    ("name", "burning_rate", "heat", "k_beta"),
    [
        ("methanol", 0.017, 20_000.0, 100.0),
        ("ethanol", 0.015, 26_800.0, 100.0),
        ("butane", 0.078, 45_700.0, 2.7),
        ("benzene", 0.085, 40_100.0, 2.7),
        ("hexane", 0.074, 44_700.0, 1.9),
        ("heptane", 0.101, 44_600.0, 1.1),
        ("xylene", 0.090, 40_800.0, 1.4),
        ("acetone", 0.041, 25_800.0, 1.9),
        ("dioxane", 0.018, 26_200.0, 5.4),
        ("diesel", 0.045, 44_400.0, 2.1),
    ],
)
def test_fuel_table_matches_the_nureg_1805_spreadsheet(
    name: str, burning_rate: float, heat: float, k_beta: float
) -> None:
    # Source: NUREG-1805 spreadsheet 05.1, "Burning rate data for fuels" (see module docstring).
    props = fire.FUELS[name]
    assert (props.burning_rate_kg_m2_s, props.heat_of_combustion_kj_kg, props.k_beta_per_m) == (
        burning_rate,
        heat,
        k_beta,
    )
    assert "NUREG-1805" in props.source


def test_heskestad_flame_height_and_point_source_height() -> None:
    pool = fire.pool_fire("gasoline", diameter_m=10.0)
    expected = 0.235 * pool.heat_release_kw**0.4 - 1.02 * 10.0
    assert pool.flame_height_m == pytest.approx(expected)
    assert pool.source_height_m == pytest.approx(expected / 2)
    # The ground flux uses the slant distance to that point.
    flux = fire.pool_fire_flux_kw_m2(pool, 30.0, transmissivity=1.0)
    r2 = 30.0**2 + pool.source_height_m**2
    assert flux == pytest.approx(0.30 * pool.heat_release_kw / (4 * math.pi * r2))


def test_transmissivity_follows_the_ccps_correlation_and_is_clamped() -> None:
    # e_s(20 °C) = 2.33 kPa (Magnus/Alduchov-Eskridge); τ = 2.02·(P_w·X)^-0.09.
    assert fire.saturation_vapour_pressure_pa(20.0) == pytest.approx(2337.0, rel=0.005)
    pw = fire.water_vapour_partial_pressure_pa(50.0, 20.0)
    assert fire.atmospheric_transmissivity(100.0) == pytest.approx(2.02 * (pw * 100.0) ** -0.09)
    assert fire.atmospheric_transmissivity(0.5, relative_humidity_pct=5.0) == 1.0
    assert fire.atmospheric_transmissivity(100.0, relative_humidity_pct=0.0) == 1.0
    taus = [fire.atmospheric_transmissivity(x) for x in (10.0, 100.0, 1000.0)]
    assert taus == sorted(taus, reverse=True)
    assert fire.atmospheric_transmissivity(
        100.0, relative_humidity_pct=90.0
    ) < fire.atmospheric_transmissivity(100.0, relative_humidity_pct=20.0)


def test_threat_distances_put_the_threshold_flux_at_each_distance() -> None:
    zones = fire.fire_threat_distances("gasoline", diameter_m=10.0)
    assert [level.level for level in zones.levels] == [3, 2, 1]
    assert zones.transmissivity is None
    previous = 0.0
    for level in zones.levels:
        assert level.reached_outside_fire and level.within_valid_range and level.note is None
        assert level.distance_m is not None and level.distance_m > previous
        previous = level.distance_m
        assert isinstance(zones.source, fire.PoolFire)
        flux = fire.pool_fire_flux_kw_m2(zones.source, level.distance_m)
        assert flux == pytest.approx(level.threshold_kw_m2, rel=1e-6)


def test_attenuation_shortens_the_distances() -> None:
    clear = fire.fire_threat_distances("heptane", diameter_m=5.0, transmissivity=1.0)
    humid = fire.fire_threat_distances("heptane", diameter_m=5.0, relative_humidity_pct=100.0)
    for a, b in zip(clear.levels, humid.levels, strict=True):
        assert a.distance_m is not None and b.distance_m is not None
        assert b.distance_m < a.distance_m


def test_threshold_not_reached_outside_the_pool_says_so() -> None:
    zones = fire.fire_threat_distances(
        "methanol", diameter_m=0.5, thresholds_kw_m2=(50.0, 1.0), transmissivity=1.0
    )
    high, low = zones.levels
    assert high.distance_m is None and not high.reached_outside_fire
    assert high.note is not None and "pool edge" in high.note
    assert low.reached_outside_fire and low.distance_m is not None


def test_distances_close_to_the_fire_are_flagged_outside_the_valid_range() -> None:
    zones = fire.fire_threat_distances("methanol", diameter_m=1.0, transmissivity=1.0)
    inner = zones.levels[0]
    assert inner.distance_m is not None and inner.distance_m < 1.0
    assert not inner.within_valid_range
    assert inner.note is not None and "point-source" in inner.note


def test_jet_fire_distance_is_the_inverse_square_law() -> None:
    zones = fire.jet_fire_threat_distances(
        2.0, 50_000.0, radiative_fraction=0.2, transmissivity=1.0
    )
    for level in zones.levels:
        expected = math.sqrt(0.2 * 100_000.0 / (4 * math.pi * level.threshold_kw_m2))
        assert level.distance_m == pytest.approx(expected, rel=1e-7)
    raised = fire.jet_fire_threat_distances(
        2.0, 50_000.0, radiative_fraction=0.2, source_height_m=5.0, flame_length_m=30.0
    )
    assert raised.levels[0].distance_m is not None
    assert not raised.levels[0].within_valid_range  # inside the stated flame length


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"fuel": "kerosine-ish"}, "fuel"),
        ({"diameter_m": 0.0}, "diameter_m"),
        ({"diameter_m": -3.0}, "diameter_m"),
        ({"diameter_m": math.nan}, "diameter_m"),
        ({"diameter_m": None, "area_m2": -1.0}, "area_m2"),
        ({"area_m2": 4.0}, "diameter_m"),  # both given
        ({"radiative_fraction": 0.0}, "radiative_fraction"),
        ({"radiative_fraction": 1.0}, "radiative_fraction"),
        ({"relative_humidity_pct": 120.0}, "relative_humidity_pct"),
        ({"relative_humidity_pct": -1.0}, "relative_humidity_pct"),
        ({"transmissivity": 1.5}, "transmissivity"),
        ({"thresholds_kw_m2": (2.0, 5.0, 10.0)}, "thresholds_kw_m2"),
        ({"thresholds_kw_m2": (10.0, 10.0)}, "thresholds_kw_m2"),
        ({"thresholds_kw_m2": (10.0, 0.0)}, "thresholds_kw_m2"),
        (
            {"fuel": fire.FuelProperties("bad", -0.01, 40_000.0, 1.0, "test")},
            "fuel.burning_rate_kg_m2_s",
        ),
    ],
)
def test_bad_fire_input_names_the_field(kwargs: dict[str, Any], field: str) -> None:
    args: dict[str, Any] = {"fuel": "gasoline", "diameter_m": 5.0}
    args.update(kwargs)
    with pytest.raises(InvalidInput) as raised:
        fire.fire_threat_distances(args.pop("fuel"), **args)
    assert [e.field for e in raised.value.errors] == [field]


def test_unknown_fuel_lists_the_known_ones() -> None:
    with pytest.raises(InvalidInput) as raised:
        fire.pool_fire("unobtainium", diameter_m=1.0)
    assert "gasoline" in raised.value.errors[0].reason


@given(
    diameter=st.floats(min_value=0.5, max_value=60.0),
    factor=st.floats(min_value=1.05, max_value=4.0),
)
def test_distances_grow_with_the_pool(diameter: float, factor: float) -> None:
    small = fire.fire_threat_distances("gasoline", diameter_m=diameter, thresholds_kw_m2=(1.0,))
    large = fire.fire_threat_distances(
        "gasoline", diameter_m=diameter * factor, thresholds_kw_m2=(1.0,)
    )
    a, b = small.levels[0].distance_m, large.levels[0].distance_m
    assert a is not None and b is not None and b > a


@given(
    diameter=st.floats(min_value=1.0, max_value=50.0),
    low=st.floats(min_value=0.5, max_value=5.0),
    ratio=st.floats(min_value=1.01, max_value=3.0),
)
def test_distances_shrink_for_higher_thresholds(diameter: float, low: float, ratio: float) -> None:
    zones = fire.fire_threat_distances(
        "diesel", diameter_m=diameter, thresholds_kw_m2=(low * ratio, low)
    )
    high_level, low_level = zones.levels
    assert low_level.distance_m is not None
    assert high_level.distance_m is None or high_level.distance_m < low_level.distance_m
