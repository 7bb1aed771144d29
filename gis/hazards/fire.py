"""Fire threat distances: thermal radiation from pool and jet fires, point-source model.

Pool fire (US NRC NUREG-1805, "Fire Dynamics Tools", 2004 and Supplement 1, chapter 5,
point source radiation model, after Drysdale; burning-rate data after Babrauskas, SFPE Handbook)
------------------------------------------------------------------------------------------------
* Heat release rate of a circular pool of diameter D (m), area A = πD²/4 (m²)::

      Q = m'' · ΔHc · (1 - exp(-kβ·D)) · A                                  (kW)

  m'' is the large-pool mass burning rate (kg/m²·s), ΔHc the effective heat of combustion
  (kJ/kg) and kβ the empirical extinction-absorption constant (1/m); see :data:`FUELS`.
* Radiant heat flux at distance R (m) from the point source::

      q'' = τ · χr · Q / (4π R²)                                            (kW/m²)

  χr is the radiative fraction. NUREG-1805's spreadsheet uses χr = 0.30 by default, as does
  this module; measured values lie between about 0.15 and 0.40 depending on fuel and size.
  NUREG-1805's equation has no atmospheric attenuation, i.e. τ = 1.
* Where the point sits. The point source is put on the fire axis at half the Heskestad
  flame height (NUREG-1805 chapter 3)::

      L_f = 0.235 · Q^(2/5) - 1.02 · D                                     (m, Q in kW)

  and a target at height ``target_height_m`` (default 0: ground level) at horizontal
  distance x from the fire centre sees ``R = √(x² + (L_f/2 - h_t)²)``. All distances this
  module returns are such horizontal ground distances from the centre of the fire.
* Validity. NUREG-1805 warns that the point source "overestimates the intensity of thermal
  radiation at the observer's (target) locations close to the fire". This module flags as
  outside the model's valid range every distance closer than one pool diameter to the fire
  centre (within half a diameter of the pool edge) — a project heuristic, not a number from
  NUREG-1805. A threshold whose flux is not reached at the pool edge is reported as not
  reached outside the fire (``distance_m`` None).

Jet fire
--------
The same point source, with ``Q = ṁ · ΔHc`` for a release of ṁ (kg/s) and a radiative fraction
the caller must give (it depends strongly on the gas and the exit velocity; API 521 tabulates
values for flares). The point sits at ``source_height_m``. The flame's own length is not
modelled; if the caller gives ``flame_length_m``, distances inside it are flagged invalid.

Atmospheric transmissivity
--------------------------
With ``transmissivity=None`` the flux is attenuated by water vapour with the correlation in
CCPS, "Guidelines for Chemical Process Quantitative Risk Analysis" (2nd ed., 2000), after
Pietersen & Huerta (1985)::

    τ = 2.02 · (P_w · X)^(-0.09),   clamped to τ ≤ 1

with X the path length (m; here the slant distance R from the point source, which slightly
understates τ compared with the distance to the flame surface) and P_w the partial pressure of
water vapour (Pa) = RH/100 · e_s(T), e_s from the Magnus formula of Alduchov & Eskridge (1996,
J. Appl. Meteor. 35, 601-609)::

    e_s = 610.94 · exp(17.625 · T / (T + 243.04))                           (Pa, T in °C)

Give a float instead to fix τ (e.g. ``1.0`` to reproduce NUREG-1805).

Threat levels: by default 10, 5 and 2 kW/m² (level 3 innermost), ALOHA's thermal-radiation
levels of concern (potentially lethal within 60 s; second-degree burns within 60 s; pain
within 60 s).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from scipy.optimize import brentq

from gis.hazards.checks import decreasing_thresholds, finite, non_negative, positive, refuse

__all__ = [
    "ALOHA_THRESHOLDS_KW_M2",
    "DEFAULT_RADIATIVE_FRACTION",
    "FUELS",
    "FireThreatLevel",
    "FireThreatZones",
    "FuelProperties",
    "JetFire",
    "PoolFire",
    "atmospheric_transmissivity",
    "fire_flux_kw_m2",
    "fire_threat_distances",
    "heskestad_flame_height_m",
    "jet_fire",
    "jet_fire_flux_kw_m2",
    "jet_fire_threat_distances",
    "point_source_flux_kw_m2",
    "pool_diameter_from_area",
    "pool_fire",
    "pool_fire_flux_kw_m2",
    "pool_heat_release_kw",
    "saturation_vapour_pressure_pa",
    "water_vapour_partial_pressure_pa",
]

#: ALOHA's default thermal-radiation levels of concern, kW/m², level 3 (innermost) first.
ALOHA_THRESHOLDS_KW_M2: tuple[float, float, float] = (10.0, 5.0, 2.0)

#: NUREG-1805 spreadsheet 05.1 default radiative fraction.
DEFAULT_RADIATIVE_FRACTION = 0.30

#: Defaults for the computed transmissivity: mid-range conditions, a choice, not a source value.
DEFAULT_RELATIVE_HUMIDITY_PCT = 50.0
DEFAULT_AIR_TEMPERATURE_C = 20.0

#: Closer than this many pool diameters from the centre the point source is flagged invalid.
_VALID_FROM_DIAMETERS = 1.0

_NUREG_TABLE = (
    "NUREG-1805 FDT spreadsheet 05.1 (point source), 'Burning rate data for fuels' table "
    "(after Babrauskas, SFPE Handbook)"
)


@dataclass(frozen=True, slots=True)
class FuelProperties:
    """Large-pool burning data: m'' (kg/m²·s), ΔHc (kJ/kg), kβ (1/m), and where they came from."""

    name: str
    burning_rate_kg_m2_s: float
    heat_of_combustion_kj_kg: float
    k_beta_per_m: float
    source: str


def _fuel(name: str, m: float, dhc: float, kb: float, source: str = _NUREG_TABLE) -> FuelProperties:
    return FuelProperties(name, m, dhc, kb, source)


#: Fuels whose three figures were read from a public copy of the NUREG-1805 spreadsheet.
#: Gasoline's kβ and the diesel row are marked where the reading is indirect (see ``source``).
FUELS: Mapping[str, FuelProperties] = MappingProxyType(
    {
        "methanol": _fuel("methanol", 0.017, 20_000.0, 100.0),
        "ethanol": _fuel("ethanol", 0.015, 26_800.0, 100.0),
        "butane": _fuel("butane", 0.078, 45_700.0, 2.7),
        "benzene": _fuel("benzene", 0.085, 40_100.0, 2.7),
        "hexane": _fuel("hexane", 0.074, 44_700.0, 1.9),
        "heptane": _fuel("heptane", 0.101, 44_600.0, 1.1),
        "xylene": _fuel("xylene", 0.090, 40_800.0, 1.4),
        "acetone": _fuel("acetone", 0.041, 25_800.0, 1.9),
        "dioxane": _fuel("dioxane", 0.018, 26_200.0, 5.4),
        "diesel": _fuel(
            "diesel",
            0.045,
            44_400.0,
            2.1,
            _NUREG_TABLE + "; m'' from the table, dHc and k-beta from the spreadsheet's "
            "worked input block for the fuel with m'' = 0.045",
        ),
        "gasoline": _fuel(
            "gasoline",
            0.055,
            43_700.0,
            2.1,
            _NUREG_TABLE + " for m''; dHc = 43.7 MJ/kg from NUREG-1805's heat-of-combustion "
            "table; k-beta = 2.1 1/m is Babrauskas's value as usually reproduced, not re-read "
            "from a copy (it changes Q by < 1.5 % for D > 2 m)",
        ),
    }
)


@dataclass(frozen=True, slots=True)
class PoolFire:
    """A circular pool fire and its point source (all lengths m, powers kW)."""

    fuel: FuelProperties
    diameter_m: float
    area_m2: float
    heat_release_kw: float
    flame_height_m: float
    source_height_m: float
    radiative_fraction: float


@dataclass(frozen=True, slots=True)
class JetFire:
    """A jet fire treated as a point source at ``source_height_m``."""

    mass_rate_kg_s: float
    heat_of_combustion_kj_kg: float
    heat_release_kw: float
    radiative_fraction: float
    source_height_m: float
    flame_length_m: float | None


@dataclass(frozen=True, slots=True)
class FireThreatLevel:
    """Ground distance (m, from the fire centre) at which the flux falls to ``threshold_kw_m2``.

    ``reached_outside_fire`` is False when the threshold is not reached anywhere outside the
    fire (outside the pool edge; for a jet, anywhere at the target height); ``distance_m`` is then
    None. ``within_valid_range`` is False when the distance is too close to the fire for the
    point-source model. ``note`` explains either.
    """

    level: int
    threshold_kw_m2: float
    distance_m: float | None
    reached_outside_fire: bool
    within_valid_range: bool
    note: str | None = None


@dataclass(frozen=True, slots=True)
class FireThreatZones:
    """Threat levels of one fire, innermost (highest level) first.

    ``transmissivity`` is the fixed τ used, or None when it was computed at each distance.
    """

    source: PoolFire | JetFire
    transmissivity: float | None
    levels: tuple[FireThreatLevel, ...]


# -- validation -----------------------------------------------------------------------------


def _fraction(value: float, field: str) -> float:
    number = finite(value, field)
    if not 0.0 < number < 1.0:
        raise refuse(field, f"must be in (0, 1), got {value!r}")
    return number


def _transmissivity(value: float, field: str = "transmissivity") -> float:
    number = finite(value, field)
    if not 0.0 < number <= 1.0:
        raise refuse(field, f"must be in (0, 1], got {value!r}")
    return number


def _humidity(value: float) -> float:
    number = finite(value, "relative_humidity_pct")
    if not 0.0 <= number <= 100.0:
        raise refuse("relative_humidity_pct", f"must be between 0 and 100, got {value!r}")
    return number


def _temperature(value: float) -> float:
    number = finite(value, "air_temperature_c")
    # The Magnus fit of Alduchov & Eskridge is stated for -40..50 °C.
    if not -40.0 <= number <= 50.0:
        raise refuse("air_temperature_c", f"must be between -40 and 50 degC, got {value!r}")
    return number


def _resolve_fuel(fuel: str | FuelProperties) -> FuelProperties:
    if isinstance(fuel, FuelProperties):
        positive(fuel.burning_rate_kg_m2_s, "fuel.burning_rate_kg_m2_s")
        positive(fuel.heat_of_combustion_kj_kg, "fuel.heat_of_combustion_kj_kg")
        positive(fuel.k_beta_per_m, "fuel.k_beta_per_m")
        return fuel
    if isinstance(fuel, str) and fuel.strip().lower() in FUELS:
        return FUELS[fuel.strip().lower()]
    known = ", ".join(sorted(FUELS))
    raise refuse("fuel", f"unknown fuel {fuel!r}; known fuels: {known}")


# -- the model ------------------------------------------------------------------------------


def saturation_vapour_pressure_pa(air_temperature_c: float) -> float:
    """Saturation vapour pressure over water, Pa (Alduchov & Eskridge 1996 Magnus form)."""
    t = _temperature(air_temperature_c)
    return float(610.94 * math.exp(17.625 * t / (t + 243.04)))


def water_vapour_partial_pressure_pa(
    relative_humidity_pct: float, air_temperature_c: float
) -> float:
    """Partial pressure of water vapour, Pa: RH/100 · e_s(T)."""
    rh = _humidity(relative_humidity_pct)
    return rh / 100.0 * saturation_vapour_pressure_pa(air_temperature_c)


def _ccps_tau(partial_pressure_pa: float, path_m: float) -> float:
    product = partial_pressure_pa * path_m
    if product <= 0.0:
        return 1.0  # dry air or no path: nothing to absorb
    # The correlation exceeds 1 for short, dry paths; a transmissivity cannot.
    return min(1.0, 2.02 * math.pow(product, -0.09))


def atmospheric_transmissivity(
    path_length_m: float,
    *,
    relative_humidity_pct: float = DEFAULT_RELATIVE_HUMIDITY_PCT,
    air_temperature_c: float = DEFAULT_AIR_TEMPERATURE_C,
) -> float:
    """τ = 2.02 (P_w·X)^(-0.09), clamped to ≤ 1 (CCPS CPQRA, after Pietersen & Huerta)."""
    path = non_negative(path_length_m, "path_length_m")
    pw = water_vapour_partial_pressure_pa(relative_humidity_pct, air_temperature_c)
    return _ccps_tau(pw, path)


def pool_diameter_from_area(area_m2: float) -> float:
    """Diameter (m) of the circle of the given area: NUREG-1805's equivalent pool diameter."""
    area = positive(area_m2, "area_m2")
    return math.sqrt(4.0 * area / math.pi)


def pool_heat_release_kw(fuel: str | FuelProperties, *, diameter_m: float) -> float:
    """Q = m''·ΔHc·(1 - e^(-kβD))·πD²/4, kW (NUREG-1805 chapter 3/5)."""
    props = _resolve_fuel(fuel)
    diameter = positive(diameter_m, "diameter_m")
    return _heat_release(props, diameter, math.pi * diameter**2 / 4.0)


def _heat_release(props: FuelProperties, diameter: float, area: float) -> float:
    # -expm1 keeps precision for small kβD, where 1 - exp() would cancel.
    return (
        props.burning_rate_kg_m2_s
        * props.heat_of_combustion_kj_kg
        * -math.expm1(-props.k_beta_per_m * diameter)
        * area
    )


def heskestad_flame_height_m(heat_release_kw: float, diameter_m: float) -> float:
    """Heskestad mean flame height L = 0.235·Q^(2/5) - 1.02·D (m), floored at 0."""
    q = positive(heat_release_kw, "heat_release_kw")
    diameter = positive(diameter_m, "diameter_m")
    return float(max(0.0, 0.235 * q**0.4 - 1.02 * diameter))


def point_source_flux_kw_m2(
    heat_release_kw: float,
    distance_m: float,
    *,
    radiative_fraction: float = DEFAULT_RADIATIVE_FRACTION,
    transmissivity: float = 1.0,
) -> float:
    """q'' = τ·χr·Q / (4πR²), kW/m², R measured from the point source (NUREG-1805 eq. 5-1 form)."""
    q = positive(heat_release_kw, "heat_release_kw")
    r = positive(distance_m, "distance_m")
    chi = _fraction(radiative_fraction, "radiative_fraction")
    tau = _transmissivity(transmissivity)
    return tau * chi * q / (4.0 * math.pi * r * r)


def pool_fire(
    fuel: str | FuelProperties,
    *,
    diameter_m: float | None = None,
    area_m2: float | None = None,
    radiative_fraction: float = DEFAULT_RADIATIVE_FRACTION,
) -> PoolFire:
    """A pool fire from its fuel and either its diameter or its area (not both)."""
    props = _resolve_fuel(fuel)
    if (diameter_m is None) == (area_m2 is None):
        raise refuse("diameter_m", "give exactly one of diameter_m and area_m2")
    if diameter_m is not None:
        diameter = positive(diameter_m, "diameter_m")
        area = math.pi * diameter**2 / 4.0
    else:
        assert area_m2 is not None
        area = positive(area_m2, "area_m2")
        diameter = math.sqrt(4.0 * area / math.pi)
    chi = _fraction(radiative_fraction, "radiative_fraction")
    q = _heat_release(props, diameter, area)
    flame = max(0.0, 0.235 * q**0.4 - 1.02 * diameter)
    return PoolFire(
        fuel=props,
        diameter_m=diameter,
        area_m2=area,
        heat_release_kw=q,
        flame_height_m=flame,
        source_height_m=flame / 2.0,
        radiative_fraction=chi,
    )


def jet_fire(
    mass_rate_kg_s: float,
    heat_of_combustion_kj_kg: float,
    *,
    radiative_fraction: float,
    source_height_m: float = 0.0,
    flame_length_m: float | None = None,
) -> JetFire:
    """A jet fire: Q = ṁ·ΔHc, radiating χr·Q from a point at ``source_height_m``."""
    rate = positive(mass_rate_kg_s, "mass_rate_kg_s")
    heat = positive(heat_of_combustion_kj_kg, "heat_of_combustion_kj_kg")
    chi = _fraction(radiative_fraction, "radiative_fraction")
    height = non_negative(source_height_m, "source_height_m")
    length = None if flame_length_m is None else positive(flame_length_m, "flame_length_m")
    return JetFire(rate, heat, rate * heat, chi, height, length)


def _flux_at(
    source: PoolFire | JetFire,
    ground_distance: float,
    target_height: float,
    transmissivity: float | None,
    partial_pressure: float,
) -> float:
    dz = source.source_height_m - target_height
    r = math.hypot(ground_distance, dz)
    if r == 0.0:
        return math.inf
    tau = _ccps_tau(partial_pressure, r) if transmissivity is None else transmissivity
    return tau * source.radiative_fraction * source.heat_release_kw / (4.0 * math.pi * r * r)


def fire_flux_kw_m2(
    fire: PoolFire | JetFire,
    ground_distance_m: float,
    *,
    target_height_m: float = 0.0,
    transmissivity: float | None = None,
    relative_humidity_pct: float = DEFAULT_RELATIVE_HUMIDITY_PCT,
    air_temperature_c: float = DEFAULT_AIR_TEMPERATURE_C,
) -> float:
    """Flux (kW/m²) at a horizontal distance from a pool's centre or a jet's point source."""
    distance = non_negative(ground_distance_m, "ground_distance_m")
    height = non_negative(target_height_m, "target_height_m")
    tau = None if transmissivity is None else _transmissivity(transmissivity)
    pw = water_vapour_partial_pressure_pa(relative_humidity_pct, air_temperature_c)
    return _flux_at(fire, distance, height, tau, pw)


#: The same point-source flux, by the names each fire's callers know it by.
pool_fire_flux_kw_m2 = fire_flux_kw_m2
jet_fire_flux_kw_m2 = fire_flux_kw_m2


def _ground_distance_to(
    flux: Callable[[float], float],
    threshold: float,
    start: float,
    upper_bound: float,
) -> float | None:
    """Smallest x ≥ start with flux(x) = threshold, or None if flux(start) < threshold.

    flux falls monotonically with x (R grows and τ shrinks), and ``upper_bound`` is where the
    unattenuated flux equals the threshold, so the root lies in [start, upper_bound].
    """
    at_start = flux(start) - threshold
    if at_start < 0.0:
        return None
    if at_start == 0.0:
        return start
    hi = max(upper_bound, start) * (1.0 + 1e-9) + 1e-9
    root = brentq(lambda x: flux(x) - threshold, start, hi, xtol=1e-9, rtol=1e-12)
    return float(root)


def _levels(
    source: PoolFire | JetFire,
    thresholds: tuple[float, ...],
    target_height: float,
    transmissivity: float | None,
    partial_pressure: float,
) -> tuple[FireThreatLevel, ...]:
    if isinstance(source, PoolFire):
        start = source.diameter_m / 2.0  # the pool edge
        valid_from = _VALID_FROM_DIAMETERS * source.diameter_m
        outside = "outside the pool edge"
    else:
        # Directly under a point source level with the target the flux is infinite; start a
        # micrometre out so the root finder sees finite values.
        start = 0.0 if source.source_height_m != target_height else 1e-6
        valid_from = source.flame_length_m or 0.0
        outside = f"at {target_height:g} m above ground"
    dz = source.source_height_m - target_height
    tau_max = 1.0 if transmissivity is None else transmissivity
    count = len(thresholds)
    levels = []
    for index, threshold in enumerate(thresholds):
        # Unattenuated (or fixed-τ) distance: an upper bound, since a computed τ is ≤ 1.
        r_bound = math.sqrt(
            tau_max
            * source.radiative_fraction
            * source.heat_release_kw
            / (4.0 * math.pi * threshold)
        )
        x_bound = math.sqrt(max(r_bound * r_bound - dz * dz, 0.0))
        distance = _ground_distance_to(
            lambda x: _flux_at(source, x, target_height, transmissivity, partial_pressure),
            threshold,
            start,
            x_bound,
        )
        level = count - index
        if distance is None:
            levels.append(
                FireThreatLevel(
                    level=level,
                    threshold_kw_m2=threshold,
                    distance_m=None,
                    reached_outside_fire=False,
                    within_valid_range=True,
                    note=f"{threshold:g} kW/m2 is not reached {outside}",
                )
            )
            continue
        valid = distance >= valid_from
        note = None
        if not valid:
            if isinstance(source, PoolFire):
                note = (
                    f"{distance:.1f} m is within one pool diameter ({source.diameter_m:.1f} m) of "
                    "the centre, where the point-source model overestimates the flux"
                )
            else:
                note = (
                    f"{distance:.1f} m is within the flame length ({valid_from:.1f} m), where "
                    "the point-source model is not valid"
                )
        levels.append(
            FireThreatLevel(
                level=level,
                threshold_kw_m2=threshold,
                distance_m=distance,
                reached_outside_fire=True,
                within_valid_range=valid,
                note=note,
            )
        )
    return tuple(levels)


def fire_threat_distances(
    fuel: str | FuelProperties,
    *,
    diameter_m: float | None = None,
    area_m2: float | None = None,
    thresholds_kw_m2: Sequence[float] = ALOHA_THRESHOLDS_KW_M2,
    radiative_fraction: float = DEFAULT_RADIATIVE_FRACTION,
    transmissivity: float | None = None,
    relative_humidity_pct: float = DEFAULT_RELATIVE_HUMIDITY_PCT,
    air_temperature_c: float = DEFAULT_AIR_TEMPERATURE_C,
    target_height_m: float = 0.0,
) -> FireThreatZones:
    """Pool-fire threat zones: per level, the ground distance from the centre to the threshold."""
    fire = pool_fire(
        fuel, diameter_m=diameter_m, area_m2=area_m2, radiative_fraction=radiative_fraction
    )
    thresholds = decreasing_thresholds(thresholds_kw_m2, "thresholds_kw_m2")
    tau = None if transmissivity is None else _transmissivity(transmissivity)
    pw = water_vapour_partial_pressure_pa(relative_humidity_pct, air_temperature_c)
    height = non_negative(target_height_m, "target_height_m")
    return FireThreatZones(fire, tau, _levels(fire, thresholds, height, tau, pw))


def jet_fire_threat_distances(
    mass_rate_kg_s: float,
    heat_of_combustion_kj_kg: float,
    *,
    radiative_fraction: float,
    thresholds_kw_m2: Sequence[float] = ALOHA_THRESHOLDS_KW_M2,
    source_height_m: float = 0.0,
    flame_length_m: float | None = None,
    transmissivity: float | None = None,
    relative_humidity_pct: float = DEFAULT_RELATIVE_HUMIDITY_PCT,
    air_temperature_c: float = DEFAULT_AIR_TEMPERATURE_C,
    target_height_m: float = 0.0,
) -> FireThreatZones:
    """Jet-fire threat zones, point source at ``source_height_m`` (see module docstring)."""
    fire = jet_fire(
        mass_rate_kg_s,
        heat_of_combustion_kj_kg,
        radiative_fraction=radiative_fraction,
        source_height_m=source_height_m,
        flame_length_m=flame_length_m,
    )
    thresholds = decreasing_thresholds(thresholds_kw_m2, "thresholds_kw_m2")
    tau = None if transmissivity is None else _transmissivity(transmissivity)
    pw = water_vapour_partial_pressure_pa(relative_humidity_pct, air_temperature_c)
    height = non_negative(target_height_m, "target_height_m")
    return FireThreatZones(fire, tau, _levels(fire, thresholds, height, tau, pw))
