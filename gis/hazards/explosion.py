"""Explosion threat distances: TNT equivalence and Kingery-Bulmash air blast.

Model
-----
1. **TNT equivalence.** A mass ``m`` (kg) of fuel with heat of combustion ``ΔHc`` (kJ/kg) in
   a vapour-cloud explosion is represented by the TNT charge

       W = η · m · ΔHc / E_TNT                                        (kg TNT)

   ``η`` is the explosion yield (efficiency) factor. Published guidance (CCPS, "Guidelines for
   Evaluating the Characteristics of Vapor Cloud Explosions, Flash Fires, and BLEVEs", 1994;
   TNO) puts it between 1 % and 10 % for hydrocarbon clouds; the default ``0.03`` is the
   central value commonly used for screening and is a policy choice, not a measured constant.
   ``E_TNT = 4680 kJ/kg`` is the blast energy of TNT used with that method (Crowl & Louvar,
   "Chemical Process Safety", give 1120 cal/g = 4686 kJ/kg; the 0.1 % difference is far inside
   the method's uncertainty).

2. **Hopkinson-Cranz scaling.** Blast parameters depend on range ``R`` (m) and charge ``W``
   (kg TNT) only through the scaled distance ``Z = R / W^(1/3)`` (m/kg^(1/3)).

3. **Peak incident (side-on) overpressure** of a hemispherical TNT surface burst, from the
   Kingery & Bulmash (1984, BRL ARBRL-TR-02555) curves in the simplified form of
   M. M. Swisdak Jr., "Simplified Kingery Airblast Calculations", Minutes of the 26th DoD
   Explosives Safety Seminar, 1994 (DTIC ADA526744), Table 1 (metric):

       P = exp(A + B·ln Z + C·(ln Z)² + D·(ln Z)³ + E·(ln Z)⁴)        (kPa)

   ===============  ========  ========  =======  =======  ========
   Z (m/kg^(1/3))   A         B         C        D        E
   ===============  ========  ========  =======  =======  ========
   0.2 - 2.9        7.2106    -2.1069   -0.3229  0.1117   0.0685
   2.9 - 23.8       7.5938    -3.0523   0.40977  0.0261   -0.01267
   23.8 - 198.5     6.0536    -1.4066   0        0        0
   ===============  ========  ========  =======  =======  ========

   Swisdak reports the fits within about 1 % of the Kingery-Bulmash curves, and that they
   "should not be extrapolated beyond the ranges shown". So the valid range for incident
   pressure is **0.2 ≤ Z ≤ 198.5 m/kg^(1/3)** (about 17 300 kPa down to 0.25 kPa). Outside it
   this module refuses to evaluate the fit and the inverse returns a result that says so.

4. **Inverse.** Each band falls monotonically with Z, but the bands do not quite meet: at
   Z = 2.9 the pressure steps down by 0.04 %, at Z = 23.8 it steps *up* by 0.7 %
   (4.89 -> 4.93 kPa). The distance at which the overpressure falls to a threshold is found
   with :func:`scipy.optimize.brentq` on ``ln P(Z) - ln P_threshold`` band by band from the far
   end, so where a pressure is met twice near Z = 23.8 the farther (conservative) distance is
   returned; a pressure inside a step maps to the join.

5. **Threat levels.** ALOHA's default overpressure levels of concern are 8.0 psi (level 3,
   innermost: destruction of buildings), 3.5 psi (level 2: serious injury likely) and 1.0 psi
   (level 1: shattered glass); 1 psi = 6.894757 kPa.

Limits: a surface burst of a condensed charge is an idealisation of a vapour-cloud explosion
(the TNT-equivalence method is known to overpredict near field and underpredict far field);
weather and terrain are ignored; the curves are for sea-level ambient conditions.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy.optimize import brentq

from gis.hazards.checks import decreasing_thresholds, positive, refuse

__all__ = [
    "ALOHA_THRESHOLDS_PSI",
    "DEFAULT_YIELD_FACTOR",
    "KPA_PER_PSI",
    "SCALED_DISTANCE_MAX",
    "SCALED_DISTANCE_MIN",
    "TNT_ENERGY_KJ_KG",
    "ExplosionDistance",
    "ExplosionThreatLevel",
    "distance_to_overpressure",
    "explosion_threat_distances",
    "incident_overpressure_kpa",
    "scaled_distance",
    "tnt_equivalent_kg",
]

#: kPa in one psi (1 lbf/in² = 6.894757 kPa, NIST SP 811 conversion factor, rounded).
KPA_PER_PSI = 6.894757

#: Blast energy of TNT, kJ/kg, as used by the TNT-equivalence method (see module docstring).
TNT_ENERGY_KJ_KG = 4680.0

#: Screening yield factor: CCPS/TNO guidance spans 0.01-0.10 for hydrocarbon vapour clouds.
DEFAULT_YIELD_FACTOR = 0.03

#: ALOHA's default overpressure levels of concern, psi, level 3 (innermost) first.
ALOHA_THRESHOLDS_PSI: tuple[float, float, float] = (8.0, 3.5, 1.0)

#: Swisdak (1994) Table 1, metric incident pressure: (Z_low, Z_high, coefficients A..E).
_INCIDENT_PRESSURE_BANDS: tuple[tuple[float, float, tuple[float, ...]], ...] = (
    (0.2, 2.9, (7.2106, -2.1069, -0.3229, 0.1117, 0.0685)),
    (2.9, 23.8, (7.5938, -3.0523, 0.40977, 0.0261, -0.01267)),
    (23.8, 198.5, (6.0536, -1.4066)),
)

#: Valid scaled-distance range of the incident-pressure fit, m/kg^(1/3).
SCALED_DISTANCE_MIN = _INCIDENT_PRESSURE_BANDS[0][0]
SCALED_DISTANCE_MAX = _INCIDENT_PRESSURE_BANDS[-1][1]


@dataclass(frozen=True, slots=True)
class ExplosionDistance:
    """Where the incident overpressure falls to ``overpressure_kpa``.

    ``within_valid_range`` is False when the answer lies outside the Kingery-Bulmash fit
    (0.2-198.5 m/kg^(1/3)); then ``distance_m`` is only the bound the fit can vouch for
    (an upper bound when the pressure is too high, a lower bound when it is too low) and
    ``note`` says which.
    """

    overpressure_kpa: float
    distance_m: float
    scaled_distance: float
    within_valid_range: bool
    note: str | None = None


@dataclass(frozen=True, slots=True)
class ExplosionThreatLevel:
    """One threat zone: ``level`` 3 is the innermost (highest overpressure)."""

    level: int
    threshold_psi: float
    result: ExplosionDistance

    @property
    def distance_m(self) -> float:
        return self.result.distance_m


def tnt_equivalent_kg(
    mass_kg: float,
    heat_of_combustion_kj_kg: float,
    *,
    yield_factor: float = DEFAULT_YIELD_FACTOR,
    tnt_energy_kj_kg: float = TNT_ENERGY_KJ_KG,
) -> float:
    """TNT-equivalent charge W = η·m·ΔHc / E_TNT, kg (see module docstring for sources)."""
    mass = positive(mass_kg, "mass_kg")
    heat = positive(heat_of_combustion_kj_kg, "heat_of_combustion_kj_kg")
    energy = positive(tnt_energy_kj_kg, "tnt_energy_kj_kg")
    eta = positive(yield_factor, "yield_factor")
    if eta > 1.0:
        raise refuse("yield_factor", f"must be in (0, 1], got {yield_factor!r}")
    return eta * mass * heat / energy


def scaled_distance(distance_m: float, tnt_kg: float) -> float:
    """Hopkinson-Cranz scaled distance Z = R / W^(1/3), m/kg^(1/3)."""
    distance = positive(distance_m, "distance_m")
    charge = positive(tnt_kg, "tnt_kg")
    return float(distance / charge ** (1.0 / 3.0))


def _ln_pressure(z: float) -> float:
    """ln of the Swisdak fit (kPa) at z, which the caller has checked is in range."""
    coefficients = _INCIDENT_PRESSURE_BANDS[-1][2]
    for _low, high, band in _INCIDENT_PRESSURE_BANDS:
        if z <= high:
            coefficients = band
            break
    return _band_ln_pressure(coefficients, z)


def incident_overpressure_kpa(scaled_distance_m_kg: float) -> float:
    """Peak incident overpressure (kPa) of a hemispherical TNT surface burst at scaled distance Z.

    Raises :class:`InvalidInput` outside 0.2-198.5 m/kg^(1/3), where Swisdak's fit is not valid.
    """
    z = positive(scaled_distance_m_kg, "scaled_distance")
    if not SCALED_DISTANCE_MIN <= z <= SCALED_DISTANCE_MAX:
        raise refuse(
            "scaled_distance",
            f"{z:g} m/kg^(1/3) is outside the Kingery-Bulmash fit "
            f"({SCALED_DISTANCE_MIN:g}-{SCALED_DISTANCE_MAX:g} m/kg^(1/3))",
        )
    return math.exp(_ln_pressure(z))


def _band_ln_pressure(coefficients: tuple[float, ...], z: float) -> float:
    u = math.log(z)
    total = 0.0
    for c in reversed(coefficients):  # Horner's rule on the polynomial in ln Z
        total = total * u + c
    return total


def _farthest_scaled_distance(target: float) -> float:
    """Largest Z in the fit's range with ln P(Z) = target (the caller checked one exists).

    Each band falls monotonically, but the bands do not meet exactly: at Z = 2.9 the pressure
    steps down by 0.04 % and at Z = 23.8 it steps *up* by 0.7 % (4.89 -> 4.93 kPa). Near 23.8 a
    pressure can therefore be met twice; searching the bands from the far end returns the
    farther, i.e. the more conservative, distance.
    """
    for low, high, coefficients in reversed(_INCIDENT_PRESSURE_BANDS):
        at_low = _band_ln_pressure(coefficients, low)
        at_high = _band_ln_pressure(coefficients, high)
        if at_high <= target <= at_low:
            if target == at_high:
                return high
            if target == at_low:
                return low
            root = brentq(
                lambda ln_z, c=coefficients: _band_ln_pressure(c, math.exp(ln_z)) - target,
                math.log(low),
                math.log(high),
                xtol=1e-13,
            )
            return min(high, max(low, math.exp(float(root))))
    # Only reachable inside a step between bands: take the join the pressure steps across.
    for (_l1, join, c_near), (_j, _h2, c_far) in itertools.pairwise(_INCIDENT_PRESSURE_BANDS):
        lo, hi = sorted((_band_ln_pressure(c_near, join), _band_ln_pressure(c_far, join)))
        if lo <= target <= hi:
            return join
    raise AssertionError(f"no scaled distance for ln P = {target}")  # pragma: no cover


def _distance(tnt_kg: float, overpressure_kpa: float) -> ExplosionDistance:
    """The inverse, on inputs already validated."""
    cube_root = tnt_kg ** (1.0 / 3.0)
    p_near = math.exp(_ln_pressure(SCALED_DISTANCE_MIN))
    p_far = math.exp(_ln_pressure(SCALED_DISTANCE_MAX))
    if overpressure_kpa > p_near:
        return ExplosionDistance(
            overpressure_kpa=overpressure_kpa,
            distance_m=SCALED_DISTANCE_MIN * cube_root,
            scaled_distance=SCALED_DISTANCE_MIN,
            within_valid_range=False,
            note=(
                f"{overpressure_kpa:g} kPa exceeds the fit's largest pressure ({p_near:.0f} kPa at "
                f"Z = {SCALED_DISTANCE_MIN:g}); it is reached closer than this distance, "
                "which is an upper bound"
            ),
        )
    if overpressure_kpa < p_far:
        return ExplosionDistance(
            overpressure_kpa=overpressure_kpa,
            distance_m=SCALED_DISTANCE_MAX * cube_root,
            scaled_distance=SCALED_DISTANCE_MAX,
            within_valid_range=False,
            note=(
                f"{overpressure_kpa:g} kPa is below the fit's smallest pressure ({p_far:.2f} kPa "
                f"at Z = {SCALED_DISTANCE_MAX:g}); it extends beyond this distance, "
                "which is a lower bound"
            ),
        )
    z = _farthest_scaled_distance(math.log(overpressure_kpa))
    return ExplosionDistance(
        overpressure_kpa=overpressure_kpa,
        distance_m=z * cube_root,
        scaled_distance=z,
        within_valid_range=True,
    )


def distance_to_overpressure(tnt_kg: float, overpressure_kpa: float) -> ExplosionDistance:
    """Distance (m) at which a ``tnt_kg`` surface burst's incident overpressure falls to a level."""
    charge = positive(tnt_kg, "tnt_kg")
    pressure = positive(overpressure_kpa, "overpressure_kpa")
    return _distance(charge, pressure)


def explosion_threat_distances(
    tnt_kg: float, thresholds_psi: Sequence[float] = ALOHA_THRESHOLDS_PSI
) -> tuple[ExplosionThreatLevel, ...]:
    """Threat-zone distances for a TNT-equivalent charge, innermost (highest level) first.

    With n thresholds the first is level n and the last level 1; with ALOHA's defaults that is
    level 3 = 8 psi, level 2 = 3.5 psi, level 1 = 1 psi.
    """
    charge = positive(tnt_kg, "tnt_kg")
    thresholds = decreasing_thresholds(thresholds_psi, "thresholds_psi")
    count = len(thresholds)
    return tuple(
        ExplosionThreatLevel(
            level=count - index,
            threshold_psi=psi,
            result=_distance(charge, psi * KPA_PER_PSI),
        )
        for index, psi in enumerate(thresholds)
    )
