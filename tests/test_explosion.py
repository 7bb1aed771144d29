"""TNT equivalence and Kingery-Bulmash air blast (gis.hazards.explosion): pure functions."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gis.errors import InvalidInput
from gis.hazards import explosion as ex


def _kingery_bulmash_1984_kpa(z: float) -> float:
    """The original Kingery & Bulmash (1984, ARBRL-TR-02555) surface-burst incident-pressure
    polynomial in U = -0.214362789151 + 1.35034249993·log10 Z (Z in m/kg^(1/3), P in kPa),
    as reproduced in NATO AASTP-1 and in several public implementations (coefficients identical
    across them). It is the curve Swisdak (1994) simplified, so it checks the transcription of
    his coefficients independently of them."""
    u = -0.214362789151 + 1.35034249993 * math.log10(z)
    c = (
        2.78076916577,
        -1.6958988741,
        -0.154159376846,
        0.514060730593,
        0.0988534365274,
        -0.293912623038,
        -0.0268112345019,
        0.109097496421,
        0.00162846756311,
        -0.0214631030242,
        0.0001456723382,
        0.00167847752266,
    )
    return float(10 ** sum(ci * u**i for i, ci in enumerate(c)))


@pytest.mark.parametrize("z", [0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 40.0])
def test_swisdak_fit_matches_the_kingery_bulmash_1984_curve(z: float) -> None:
    # Source: Swisdak (1994), "Simplified Kingery Airblast Calculations", Table 1, whose fits
    # he reports within about 1 % of the Kingery-Bulmash curves. Tolerance: 1 %.
    assert ex.incident_overpressure_kpa(z) == pytest.approx(_kingery_bulmash_1984_kpa(z), rel=0.01)


@pytest.mark.parametrize(
    ("charge_kg", "range_m", "printed_kpa"),
    [(1_000.0, 50.0, 43.0), (10_000.0, 50.0, 202.0), (100_000.0, 50.0, 1150.0)],
)
def test_iatg_01_80_worked_examples(charge_kg: float, range_m: float, printed_kpa: float) -> None:
    # Source: UNODA, International Ammunition Technical Guidelines IATG 01.80 "Formulae for
    # ammunition management" (3rd ed., 2021), Table 5: Kingery-Bulmash incident pressure for
    # 1, 10 and 100 t at 50 m, printed to 2-3 significant figures. Tolerance: 1 % (the fit's
    # own accuracy; the printed figures carry about 0.5 % rounding).
    z = ex.scaled_distance(range_m, charge_kg)
    assert ex.incident_overpressure_kpa(z) == pytest.approx(printed_kpa, rel=0.01)


@pytest.mark.parametrize(("low", "high"), [(0.2, 2.9), (2.9, 23.8), (23.8, 198.5)])
def test_each_band_of_the_fit_falls_monotonically(low: float, high: float) -> None:
    n = 2000
    zs = [low * (high / low) ** (i / n) for i in range(1, n)] + [high]
    pressures = [ex.incident_overpressure_kpa(z) for z in zs]
    assert all(b < a for a, b in itertools.pairwise(pressures))


def test_the_bands_meet_within_one_percent() -> None:
    # Swisdak's bands are fitted separately; at 23.8 the far band starts 0.7 % higher.
    for join in (2.9, 23.8):
        below = ex.incident_overpressure_kpa(join)
        above = ex.incident_overpressure_kpa(join * (1 + 1e-12))
        assert above == pytest.approx(below, rel=0.01)


@pytest.mark.parametrize("z", [0.2, 0.3, 1.0, 2.9, 3.5, 12.0, 23.0, 24.5, 60.0, 198.5])
def test_inverse_recovers_the_scaled_distance(z: float) -> None:
    charge = 500.0
    result = ex.distance_to_overpressure(charge, ex.incident_overpressure_kpa(z))
    assert result.within_valid_range and result.note is None
    assert result.scaled_distance == pytest.approx(z, rel=1e-9)
    assert result.distance_m == pytest.approx(z * charge ** (1 / 3), rel=1e-9)


def test_inverse_takes_the_farther_distance_where_the_bands_overlap() -> None:
    # P(23.8) on the near band (4.894 kPa) is met again just beyond 23.8 on the far band,
    # whose start is 0.7 % higher; the farther, conservative distance is returned.
    pressure = ex.incident_overpressure_kpa(23.8)
    result = ex.distance_to_overpressure(1.0, pressure)
    assert result.within_valid_range
    assert result.scaled_distance > 23.8
    assert ex.incident_overpressure_kpa(result.scaled_distance) == pytest.approx(pressure)


def test_threat_distances_use_alohas_levels_innermost_first() -> None:
    zones = ex.explosion_threat_distances(1_000.0)
    assert [z.level for z in zones] == [3, 2, 1]
    assert [z.threshold_psi for z in zones] == [8.0, 3.5, 1.0]
    assert [z.result.overpressure_kpa for z in zones] == pytest.approx(
        [8.0 * 6.894757, 3.5 * 6.894757, 6.894757]
    )
    distances = [z.distance_m for z in zones]
    assert distances == sorted(distances)
    for zone in zones:
        z = ex.scaled_distance(zone.distance_m, 1_000.0)
        assert ex.incident_overpressure_kpa(z) == pytest.approx(zone.result.overpressure_kpa)


def test_pressure_beyond_the_fit_is_reported_as_a_bound_not_extrapolated() -> None:
    far = ex.distance_to_overpressure(1.0, 0.1)
    assert not far.within_valid_range
    assert far.scaled_distance == ex.SCALED_DISTANCE_MAX
    assert far.note is not None and "lower bound" in far.note
    near = ex.distance_to_overpressure(8.0, 50_000.0)
    assert not near.within_valid_range
    assert near.distance_m == pytest.approx(0.4)  # 0.2 * 8^(1/3)
    assert near.note is not None and "upper bound" in near.note
    with pytest.raises(InvalidInput) as raised:
        ex.incident_overpressure_kpa(0.1)
    assert raised.value.errors[0].field == "scaled_distance"


def test_tnt_equivalent_is_yield_times_combustion_energy_over_tnt_energy() -> None:
    # W = eta * m * dHc / E_TNT with the documented defaults (eta 0.03, E_TNT 4680 kJ/kg).
    assert ex.tnt_equivalent_kg(1_000.0, 46_350.0) == pytest.approx(0.03 * 1_000 * 46_350 / 4680)
    assert ex.tnt_equivalent_kg(10.0, 4680.0, yield_factor=1.0) == pytest.approx(10.0)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"mass_kg": 0.0}, "mass_kg"),
        ({"mass_kg": -5.0}, "mass_kg"),
        ({"mass_kg": math.nan}, "mass_kg"),
        ({"mass_kg": math.inf}, "mass_kg"),
        ({"heat_of_combustion_kj_kg": 0.0}, "heat_of_combustion_kj_kg"),
        ({"yield_factor": 0.0}, "yield_factor"),
        ({"yield_factor": 1.5}, "yield_factor"),
        ({"yield_factor": math.nan}, "yield_factor"),
        ({"tnt_energy_kj_kg": -1.0}, "tnt_energy_kj_kg"),
    ],
)
def test_bad_tnt_input_names_the_field(kwargs: dict[str, float], field: str) -> None:
    args: dict[str, float] = {"mass_kg": 100.0, "heat_of_combustion_kj_kg": 46_000.0}
    args.update(kwargs)
    with pytest.raises(InvalidInput) as raised:
        ex.tnt_equivalent_kg(args.pop("mass_kg"), args.pop("heat_of_combustion_kj_kg"), **args)
    assert [e.field for e in raised.value.errors] == [field]


@pytest.mark.parametrize(
    "thresholds", [(), (8.0, 8.0, 1.0), (1.0, 3.5, 8.0), (8.0, 0.0), (8.0, -1.0), (8.0, math.nan)]
)
def test_bad_thresholds_are_refused(thresholds: tuple[float, ...]) -> None:
    with pytest.raises(InvalidInput) as raised:
        ex.explosion_threat_distances(100.0, thresholds)
    assert raised.value.errors[0].field == "thresholds_psi"


@pytest.mark.parametrize("charge", [0.0, -1.0, math.nan, math.inf])
def test_bad_charge_is_refused(charge: float) -> None:
    with pytest.raises(InvalidInput) as raised:
        ex.explosion_threat_distances(charge)
    assert raised.value.errors[0].field == "tnt_kg"
    with pytest.raises(InvalidInput):
        ex.distance_to_overpressure(charge, 10.0)


@given(
    charge=st.floats(min_value=0.01, max_value=1e7),
    factor=st.floats(min_value=1.01, max_value=1e3),
)
def test_distances_grow_with_the_charge(charge: float, factor: float) -> None:
    small = ex.explosion_threat_distances(charge)
    large = ex.explosion_threat_distances(charge * factor)
    for a, b in zip(small, large, strict=True):
        assert b.distance_m > a.distance_m
        # Cube-root scaling is exact for the fit.
        assert b.distance_m == pytest.approx(a.distance_m * factor ** (1 / 3), rel=1e-7)


@given(
    charge=st.floats(min_value=0.01, max_value=1e7),
    low=st.floats(min_value=0.3, max_value=10_000.0),
    ratio=st.floats(min_value=1.001, max_value=100.0),
)
def test_distances_shrink_for_higher_thresholds(charge: float, low: float, ratio: float) -> None:
    high = min(low * ratio, 17_000.0)
    if high <= low:
        return
    assert (
        ex.distance_to_overpressure(charge, high).distance_m
        < ex.distance_to_overpressure(charge, low).distance_m
    )
