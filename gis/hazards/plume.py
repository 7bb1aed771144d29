"""Toxic gas threat zones: Gaussian plume from a continuous point release.

Everything here works in a **local downwind frame**: ``x`` metres downwind of the source
(``x ≥ 0``), ``y`` metres crosswind (left of the wind positive), ``z`` metres above ground.
Placing a footprint on the map (rotation by wind direction, site CRS, WGS84) is the caller's job.

Model
-----
1. **Ground-reflected Gaussian plume** (Turner 1970, *Workbook of Atmospheric Dispersion
   Estimates*, eq. 3.1; Boubel, Fox, Turner & Stern 1994, *Fundamentals of Air Pollution*
   3rd ed., eq. 19-2). For an emission rate ``Q`` (g/s), wind speed ``u`` (m/s) at release
   height and effective release height ``H`` (m)::

       χ(x, y, z) = Q / (2π u σy σz) · exp(−y² / 2σy²)
                    · [exp(−(z − H)² / 2σz²) + exp(−(z + H)² / 2σz²)]        (g/m³)

   At ground level on the centreline this is ``χ(x,0,0) = Q/(π u σy σz) · exp(−H²/2σz²)``.
   No reflection from an inversion lid (no mixing height), no deposition or decay, no plume
   rise (pass the *effective* height), passive (neutrally buoyant) gas only: dense gases
   (chlorine, ammonia from a pressurised release, LPG) need a heavy-gas model.

2. **Dispersion coefficients** ``σy(x)``, ``σz(x)``, chosen by name (``sigma_set``):

   ``"pasquill-gifford"`` — the Pasquill–Gifford curves of Turner (1970) Figs 3-2/3-3 in the
   analytic form of the ISC3 User's Guide Vol. II (EPA-454/B-95-003b, Tables 1-1 and 1-2),
   also printed as Tables 19-4/19-5 of Boubel et al. (1994), with ``x`` in **km**::

       θ  = 0.017453293 · (c − d · ln x)          σy = 465.11628 · x · tan θ     (m)
       σz = a · x^b   (a, b piecewise in x; σz ≤ 5000 m for classes A–C)         (m)

   ====  =======  =======
   cls   c        d
   ====  =======  =======
   A     24.1670  2.5334
   B     18.3330  1.8096
   C     12.5000  1.0857
   D      8.3330  0.72382
   E      6.2500  0.54287
   F      4.1667  0.36191
   ====  =======  =======

   (the σz table is :data:`_PG_SIGMA_Z` below). These are the curves Turner's worked examples
   were read from, so those examples can be reproduced.

   ``"briggs-rural"`` — Briggs (1973) open-country formulas as tabulated by Gifford (1976) and
   printed in Hanna, Briggs & Hosker (1982) and Boubel et al. (1994) Table 19-7 (x in m)::

       A  σy = 0.22x(1+0.0001x)^-½   σz = 0.20x
       B  σy = 0.16x(1+0.0001x)^-½   σz = 0.12x
       C  σy = 0.11x(1+0.0001x)^-½   σz = 0.08x(1+0.0002x)^-½
       D  σy = 0.08x(1+0.0001x)^-½   σz = 0.06x(1+0.0015x)^-½
       E  σy = 0.06x(1+0.0001x)^-½   σz = 0.03x(1+0.0003x)^-1
       F  σy = 0.04x(1+0.0001x)^-½   σz = 0.016x(1+0.0003x)^-1

   ``"briggs-urban"`` — Briggs' urban formulas (fitted to the McElroy–Pooler St. Louis data),
   Boubel et al. (1994) Table 19-6::

       A–B  σy = 0.32x(1+0.0004x)^-½   σz = 0.24x(1+0.001x)^+½
       C    σy = 0.22x(1+0.0004x)^-½   σz = 0.20x
       D    σy = 0.16x(1+0.0004x)^-½   σz = 0.14x(1+0.0003x)^-½
       E–F  σy = 0.11x(1+0.0004x)^-½   σz = 0.08x(1+0.0015x)^-½

   **Valid range.** Both Briggs tables are stated "for distances between 100 and 10 000 m".
   Turner's PG charts run from 100 m to 100 km (their reliability falls with distance; the
   ISC3 formulas are defined over the whole range). Below 100 m every set is extrapolated
   (the formulas go to zero at the source); results there are indicative and flagged. The
   footprint stops at ``min(end of the set's range, max_distance_m)``; the default
   ``max_distance_m`` is 10 km, where ALOHA also stops reporting threat zones.

3. **Stability class** from the Pasquill (1961) / Turner (1970) table (Boubel et al. 1994
   Table 19-3; NOAA READY "Pasquill Stability Classes")::

       u10 (m/s)  day: strong  moderate  slight   night: ≥4/8 low cloud  ≤3/8 cloud
       < 2             A       A–B       B               E*               F*
       2–3             A–B     B         C               E                F
       3–5             B       B–C       C               D                E
       5–6             C       C–D       D               D                D
       > 6             C       D         D               D                D

   Overcast (8/8) day or night → D. (*) Pasquill/Turner leave night < 2 m/s blank; NOAA READY
   fills it with E/F, which is what we use. Turner says to *average* the values of the two
   classes for "A–B" etc.; a single class has to be returned here, so we take the **more
   stable** of the two — it gives the larger ground-level footprint for near-ground releases,
   the conservative side for emergency zoning. Row boundaries: the lower bound is inclusive
   (2.0 m/s falls in "2–3"); fractional cloud between 3/8 and 4/8 counts as "≤ 3/8" (again the
   more stable side).

4. **Threat-zone footprint** for a concentration ``C``: the centreline extent where
   ``χ(x,0,0) ≥ C`` and, at each ``x``, the half-width ``y(x) = σy · sqrt(2 ln(χ(x,0,0)/C))``
   (solve ``χ(x,y,0) = C`` for ``y``). ppm ↔ mass at 25 °C, 1 atm:
   ``ppm = mg/m³ · 24.45 / MW`` (24.45 L/mol is the molar volume of an ideal gas there).

5. **Calm.** The plume formula divides by ``u``; it has no meaning as ``u → 0``. ALOHA does
   not accept winds below 1 m/s (ALOHA Technical Documentation, Jones et al. 2013, NOAA TM
   NOS OR&R 43 — limit taken from the brief; not re-read in that document here). Below
   :data:`CALM_WIND_LIMIT_M_S` we compute at 1 m/s, set ``calm=True`` and say so: the caller
   should draw the zone as a full circle of the largest downwind distance, since the direction
   is unknown.

6. **Wind-direction uncertainty.** ALOHA draws "wind direction confidence lines" enclosing the
   area the footprint stays within about 95 % of the time; its exact rule could not be found
   in the sources available here, so this module uses its own documented rule:
   half-angle ``= min(180°, 2 σθ)`` (≈ 95 % of a normal distribution of direction) with
   ``σθ = max(σθ_class, atan(σv_min / u))``. ``σθ_class`` is the standard deviation of wind
   direction per Pasquill class (A 25°, B 20°, C 15°, D 10°, E 5°, F 2.5°; NOAA READY
   "Pasquill Stability Classes" table); the second term is low-wind meander with a floor
   ``σv_min = 0.5 m/s`` on the crosswind turbulence (CALPUFF's default ``SVMIN`` over land),
   which widens the angle as the wind drops. Below the calm limit the half-angle is 180° (a
   full circle).

Averaging time: the PG σy are for roughly 10-minute averages (Turner 1970); peak short-term
concentrations are higher. These are screening estimates for emergency zoning, not a
regulatory model.
"""

# The equations are written as in the sources, in Greek (σ, θ, α) and with true minus signs.
# ruff: noqa: RUF001, RUF002, RUF003

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal, get_args

import numpy as np
import shapely
from numpy.typing import ArrayLike, NDArray
from shapely.geometry import MultiPolygon, Point, Polygon

from gis.errors import FieldError, InvalidInput

__all__ = [
    "ALOHA_MAX_DISTANCE_M",
    "CALM_WIND_LIMIT_M_S",
    "MAX_RELEASE_HEIGHT_M",
    "MAX_VERTICES",
    "MOLAR_VOLUME_L_PER_MOL_25C_1ATM",
    "SIGMA_SETS",
    "SIGMA_THETA_DEG",
    "SIGMA_V_MIN_M_S",
    "STABILITY_CLASSES",
    "VALID_RANGE_M",
    "Insolation",
    "PlumeResult",
    "PlumeZone",
    "SigmaSet",
    "StabilityClass",
    "concentration_g_m3",
    "dispersion_sigmas",
    "mg_m3_to_ppm",
    "plume_footprints",
    "ppm_to_mg_m3",
    "stability_class",
    "uncertainty_area",
    "uncertainty_half_angle_deg",
    "wind_speed_at_height",
]

StabilityClass = Literal["A", "B", "C", "D", "E", "F"]
SigmaSet = Literal["briggs-rural", "briggs-urban", "pasquill-gifford"]
Insolation = Literal["strong", "moderate", "slight"]

STABILITY_CLASSES: Final[tuple[StabilityClass, ...]] = get_args(StabilityClass)
SIGMA_SETS: Final[tuple[SigmaSet, ...]] = get_args(SigmaSet)

#: Molar volume of an ideal gas at 25 °C and 1 atm (L/mol): ppm = mg/m³ · 24.45 / MW.
MOLAR_VOLUME_L_PER_MOL_25C_1ATM: Final = 24.45
#: Below this wind speed (m/s) the plume is computed at this speed and flagged ``calm``
#: (ALOHA's lower limit for wind speed).
CALM_WIND_LIMIT_M_S: Final = 1.0
#: ALOHA does not report threat zones beyond 10 km; our default ``max_distance_m``.
ALOHA_MAX_DISTANCE_M: Final = 10_000.0
#: Release heights above this (m) are refused: no industrial release starts that high, and the
#: near-ground σ curves say nothing useful about it.
MAX_RELEASE_HEIGHT_M: Final = 1000.0
#: Most vertices a footprint polygon gets.
MAX_VERTICES: Final = 200
#: (start, end) of the downwind distances (m) each σ set is stated for; see the module notes.
VALID_RANGE_M: Final[dict[SigmaSet, tuple[float, float]]] = {
    "briggs-rural": (100.0, 10_000.0),
    "briggs-urban": (100.0, 10_000.0),
    "pasquill-gifford": (100.0, 100_000.0),
}
#: Standard deviation of horizontal wind direction (degrees) by Pasquill class
#: (NOAA READY "Pasquill Stability Classes" table).
SIGMA_THETA_DEG: Final[dict[StabilityClass, float]] = {
    "A": 25.0,
    "B": 20.0,
    "C": 15.0,
    "D": 10.0,
    "E": 5.0,
    "F": 2.5,
}
#: Floor on crosswind turbulence σv (m/s) for low-wind meander (CALPUFF default SVMIN, land).
SIGMA_V_MIN_M_S: Final = 0.5
#: ppm cannot exceed pure gas.
_MAX_PPM: Final = 1e6

FloatArray = NDArray[np.float64]

# ---------------------------------------------------------------------------------------------
# σ coefficient tables
# ---------------------------------------------------------------------------------------------

# ISC3 Vol. II Table 1-1 (and Boubel et al. 1994 Table 19-4): σy = 465.11628·x·tan(θ), x in km.
_PG_SIGMA_Y: Final[dict[StabilityClass, tuple[float, float]]] = {
    "A": (24.1670, 2.5334),
    "B": (18.3330, 1.8096),
    "C": (12.5000, 1.0857),
    "D": (8.3330, 0.72382),
    "E": (6.2500, 0.54287),
    "F": (4.1667, 0.36191),
}

# ISC3 Vol. II Table 1-2 (and Boubel et al. 1994 Table 19-5): σz = a·x^b for x (km) up to and
# including each upper bound; the last row runs to infinity.
_PG_SIGMA_Z: Final[dict[StabilityClass, tuple[tuple[float, float, float], ...]]] = {
    "A": (
        (0.10, 122.800, 0.94470),
        (0.15, 158.080, 1.05420),
        (0.20, 170.220, 1.09320),
        (0.25, 179.520, 1.12620),
        (0.30, 217.410, 1.26440),
        (0.40, 258.890, 1.40940),
        (0.50, 346.750, 1.72830),
        (math.inf, 453.850, 2.11660),
    ),
    "B": (
        (0.20, 90.673, 0.93198),
        (0.40, 98.483, 0.98332),
        (math.inf, 109.300, 1.09710),
    ),
    "C": ((math.inf, 61.141, 0.91465),),
    "D": (
        (0.30, 34.459, 0.86974),
        (1.00, 32.093, 0.81066),
        (3.00, 32.093, 0.64403),
        (10.00, 33.504, 0.60486),
        (30.00, 36.650, 0.56589),
        (math.inf, 44.053, 0.51179),
    ),
    "E": (
        (0.10, 24.260, 0.83660),
        (0.30, 23.331, 0.81956),
        (1.00, 21.628, 0.75660),
        (2.00, 21.628, 0.63077),
        (4.00, 22.534, 0.57154),
        (10.00, 24.703, 0.50527),
        (20.00, 26.970, 0.46713),
        (40.00, 35.420, 0.37615),
        (math.inf, 47.618, 0.29592),
    ),
    "F": (
        (0.20, 15.209, 0.81558),
        (0.70, 14.457, 0.78407),
        (1.00, 13.953, 0.68465),
        (2.00, 13.953, 0.63227),
        (3.00, 14.823, 0.54503),
        (7.00, 16.187, 0.46490),
        (15.00, 17.836, 0.41507),
        (30.00, 22.651, 0.32681),
        (60.00, 27.074, 0.27436),
        (math.inf, 34.219, 0.21716),
    ),
}
# ISC3 caps σz at 5000 m for the unstable classes, where the power laws grow fastest.
_PG_SIGMA_Z_CAP_M: Final = 5000.0
_PG_CAPPED: Final = frozenset({"A", "B", "C"})

# Briggs: σy = ky·x·(1 + ay·x)^-½ ; σz = kz·x·(1 + az·x)^pz   (x in m)
_BriggsRow = tuple[float, float, float, float, float]  # ky, ay, kz, az, pz
_BRIGGS: Final[dict[SigmaSet, dict[StabilityClass, _BriggsRow]]] = {
    "briggs-rural": {
        "A": (0.22, 0.0001, 0.20, 0.0, 0.0),
        "B": (0.16, 0.0001, 0.12, 0.0, 0.0),
        "C": (0.11, 0.0001, 0.08, 0.0002, -0.5),
        "D": (0.08, 0.0001, 0.06, 0.0015, -0.5),
        "E": (0.06, 0.0001, 0.03, 0.0003, -1.0),
        "F": (0.04, 0.0001, 0.016, 0.0003, -1.0),
    },
    "briggs-urban": {
        "A": (0.32, 0.0004, 0.24, 0.001, 0.5),
        "B": (0.32, 0.0004, 0.24, 0.001, 0.5),
        "C": (0.22, 0.0004, 0.20, 0.0, 0.0),
        "D": (0.16, 0.0004, 0.14, 0.0003, -0.5),
        "E": (0.11, 0.0004, 0.08, 0.0015, -0.5),
        "F": (0.11, 0.0004, 0.08, 0.0015, -0.5),
    },
}

# Power-law wind-profile exponents, ISC3 Vol. II (Irwin 1979): rural, urban.
_WIND_EXPONENT: Final[dict[str, dict[StabilityClass, float]]] = {
    "rural": {"A": 0.07, "B": 0.07, "C": 0.10, "D": 0.15, "E": 0.35, "F": 0.55},
    "urban": {"A": 0.15, "B": 0.15, "C": 0.20, "D": 0.25, "E": 0.30, "F": 0.30},
}

# Pasquill–Turner table, (more stable of a pair), rows by the lower wind bound (m/s).
_DAY_TABLE: Final[tuple[tuple[float, dict[str, StabilityClass]], ...]] = (
    (6.0, {"strong": "C", "moderate": "D", "slight": "D"}),
    (5.0, {"strong": "C", "moderate": "D", "slight": "D"}),
    (3.0, {"strong": "B", "moderate": "C", "slight": "C"}),
    (2.0, {"strong": "B", "moderate": "B", "slight": "C"}),
    (0.0, {"strong": "A", "moderate": "B", "slight": "B"}),
)
_NIGHT_TABLE: Final[tuple[tuple[float, StabilityClass, StabilityClass], ...]] = (
    # lower bound, ≥ 4/8 low cloud (or thin overcast), ≤ 3/8 cloud
    (5.0, "D", "D"),
    (3.0, "D", "E"),
    (0.0, "E", "F"),
)


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlumeZone:
    """Where ground-level concentration is at least one threshold (local downwind frame)."""

    threshold_ppm: float
    threshold_g_m3: float
    #: ``None`` when the threshold is never reached at ground level within the computed range.
    polygon: Polygon | None
    #: Farthest downwind extent (m); 0 when empty.
    max_downwind_m: float
    #: Where the zone starts (m): 0 for a ground release, further out for an elevated one.
    min_downwind_m: float
    #: Largest crosswind half-width (m); 0 when empty.
    max_half_width_m: float
    #: The zone reaches the end of the computed range and was cut there.
    truncated: bool


@dataclass(frozen=True, slots=True)
class PlumeResult:
    """Threat zones for one release, most severe (highest threshold) first."""

    zones: tuple[PlumeZone, ...]
    stability: StabilityClass
    sigma_set: SigmaSet
    #: Wind speed the plume was computed with (m/s): the input, or the calm limit below it.
    wind_speed_m_s: float
    wind_speed_input_m_s: float
    #: Wind below :data:`CALM_WIND_LIMIT_M_S`: draw each zone as a circle of its max distance.
    calm: bool
    rate_g_s: float
    molecular_weight: float
    release_height_m: float
    #: Downwind range (m) the σ set is stated for.
    valid_range_m: tuple[float, float]
    #: Where the computation stopped (m) if any zone reached it; else ``None``.
    truncated_at_m: float | None
    notes: tuple[str, ...]


# ---------------------------------------------------------------------------------------------
# Validation helpers
# ---------------------------------------------------------------------------------------------


def _refuse(errors: list[FieldError]) -> InvalidInput:
    detail = "; ".join(f"{e.field}: {e.reason}" for e in errors)
    return InvalidInput(detail, errors=errors)


def _finite(value: float) -> bool:
    # Real numbers of any kind (numpy scalars included), but not bools and not NaN/inf.
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    return math.isfinite(value)


def _check_stability(value: str, errors: list[FieldError]) -> StabilityClass:
    for known in STABILITY_CLASSES:
        if value == known:
            return known
    errors.append(FieldError("stability", f"unknown class {value!r}; expected one of A–F"))
    return "D"


def _check_sigma_set(value: str, errors: list[FieldError]) -> SigmaSet:
    for known in SIGMA_SETS:
        if value == known:
            return known
    errors.append(
        FieldError("sigma_set", f"unknown set {value!r}; expected one of {', '.join(SIGMA_SETS)}")
    )
    return "pasquill-gifford"


def _need(
    errors: list[FieldError], field: str, value: float, *, low: float, low_ok: bool, what: str
) -> None:
    if not _finite(value) or value < low or (value == low and not low_ok):
        errors.append(FieldError(field, f"must be {what}, got {value!r}"))


# ---------------------------------------------------------------------------------------------
# Stability, wind, units
# ---------------------------------------------------------------------------------------------


def stability_class(
    wind_speed: float,
    *,
    daytime: bool,
    insolation: Insolation | None = None,
    cloud_cover_octas: float | None = None,
) -> StabilityClass:
    """Pasquill stability class from the 10 m wind speed (m/s) and sky (see module notes).

    Day needs ``insolation`` (strong / moderate / slight) unless the sky is overcast; night
    needs ``cloud_cover_octas`` (0–8). Overcast (8/8) gives D day or night. ``insolation`` is
    ignored at night.
    """
    errors: list[FieldError] = []
    _need(errors, "wind_speed", wind_speed, low=0.0, low_ok=True, what="a finite speed ≥ 0 m/s")
    if cloud_cover_octas is not None and (
        not _finite(cloud_cover_octas) or not 0.0 <= cloud_cover_octas <= 8.0
    ):
        errors.append(FieldError("cloud_cover_octas", "must be between 0 and 8 octas"))
    overcast = cloud_cover_octas is not None and cloud_cover_octas >= 8.0
    if daytime and not overcast:
        if insolation is None:
            errors.append(FieldError("insolation", "daytime needs strong, moderate or slight"))
        elif insolation not in ("strong", "moderate", "slight"):
            errors.append(FieldError("insolation", "must be strong, moderate or slight"))
    if not daytime and cloud_cover_octas is None:
        errors.append(FieldError("cloud_cover_octas", "night needs the cloud cover in octas"))
    if errors:
        raise _refuse(errors)
    if overcast:
        return "D"
    if daytime:
        assert insolation is not None
        for lower, row in _DAY_TABLE:
            if wind_speed >= lower:
                return row[insolation]
    else:
        assert cloud_cover_octas is not None
        cloudy = cloud_cover_octas >= 4.0
        for lower, cloudy_class, clear_class in _NIGHT_TABLE:
            if wind_speed >= lower:
                return cloudy_class if cloudy else clear_class
    raise AssertionError("unreachable: the tables start at 0 m/s")  # pragma: no cover


def wind_speed_at_height(
    wind_speed_10m: float,
    height_m: float,
    *,
    stability: str,
    terrain: Literal["rural", "urban"] = "rural",
    reference_height_m: float = 10.0,
) -> float:
    """Power-law wind speed at ``height_m``: ``u = u_ref · (z / z_ref)^p`` (ISC3 exponents).

    ``p`` by class, rural A–F: 0.07 0.07 0.10 0.15 0.35 0.55; urban: 0.15 0.15 0.20 0.25 0.30
    0.30 (ISC3 User's Guide Vol. II, after Irwin 1979). Heights below the reference height are
    taken at the reference height: the power law is not meant for the layer among the
    roughness elements, so we do not extrapolate it downwards.
    """
    errors: list[FieldError] = []
    cls = _check_stability(stability, errors)
    _need(errors, "wind_speed", wind_speed_10m, low=0.0, low_ok=True, what="finite and ≥ 0 m/s")
    _need(errors, "height_m", height_m, low=0.0, low_ok=True, what="finite and ≥ 0 m")
    _need(errors, "reference_height_m", reference_height_m, low=0.0, low_ok=False, what="> 0 m")
    if terrain not in _WIND_EXPONENT:
        errors.append(FieldError("terrain", "must be rural or urban"))
    if errors:
        raise _refuse(errors)
    z = max(height_m, reference_height_m)
    return float(wind_speed_10m * (z / reference_height_m) ** _WIND_EXPONENT[terrain][cls])


def mg_m3_to_ppm(mg_m3: float, molecular_weight: float) -> float:
    """ppm (by volume) from mg/m³ at 25 °C, 1 atm: ``mg/m³ · 24.45 / MW``."""
    return mg_m3 * MOLAR_VOLUME_L_PER_MOL_25C_1ATM / molecular_weight


def ppm_to_mg_m3(ppm: float, molecular_weight: float) -> float:
    """mg/m³ from ppm (by volume) at 25 °C, 1 atm: ``ppm · MW / 24.45``."""
    return ppm * molecular_weight / MOLAR_VOLUME_L_PER_MOL_25C_1ATM


# ---------------------------------------------------------------------------------------------
# σ curves and concentration
# ---------------------------------------------------------------------------------------------


def _sigmas(x_m: FloatArray, cls: StabilityClass, sigma_set: SigmaSet) -> tuple[FloatArray, ...]:
    """σy, σz (m) for ``x_m > 0`` (no validation; the hot path of the footprint)."""
    if sigma_set == "pasquill-gifford":
        x_km = x_m / 1000.0
        c, d = _PG_SIGMA_Y[cls]
        sy = 465.11628 * x_km * np.tan(0.017453293 * (c - d * np.log(x_km)))
        rows = _PG_SIGMA_Z[cls]
        bounds = np.array([r[0] for r in rows])
        i = np.searchsorted(bounds, x_km, side="left")  # x ≤ bound[i]
        a = np.array([r[1] for r in rows])[i]
        b = np.array([r[2] for r in rows])[i]
        sz = a * x_km**b
        if cls in _PG_CAPPED:
            sz = np.minimum(sz, _PG_SIGMA_Z_CAP_M)
        return sy, sz
    ky, ay, kz, az, pz = _BRIGGS[sigma_set][cls]
    sy = ky * x_m / np.sqrt(1.0 + ay * x_m)
    sz = kz * x_m * (1.0 + az * x_m) ** pz
    return sy, sz


def dispersion_sigmas(
    x_m: ArrayLike, *, stability: str, sigma_set: str
) -> tuple[FloatArray, FloatArray]:
    """σy and σz (m) at downwind distances ``x_m`` (m, > 0) for a class and σ set."""
    errors: list[FieldError] = []
    cls = _check_stability(stability, errors)
    sset = _check_sigma_set(sigma_set, errors)
    x = np.asarray(x_m, dtype=np.float64)
    if not np.all(np.isfinite(x)) or np.any(x <= 0):
        errors.append(FieldError("x_m", "downwind distances must be finite and > 0"))
    if errors:
        raise _refuse(errors)
    sy, sz = _sigmas(x, cls, sset)
    return sy, sz


def _ground_centreline(
    x_m: FloatArray, q: float, u: float, h: float, cls: StabilityClass, sset: SigmaSet
) -> tuple[FloatArray, FloatArray]:
    """χ(x, 0, 0) (g/m³) and σy at ``x_m > 0``."""
    sy, sz = _sigmas(x_m, cls, sset)
    chi = q / (math.pi * u * sy * sz) * np.exp(-0.5 * (h / sz) ** 2)
    return chi, sy


def concentration_g_m3(
    x_m: ArrayLike,
    y_m: ArrayLike = 0.0,
    z_m: ArrayLike = 0.0,
    *,
    rate_g_s: float,
    wind_speed: float,
    stability: str,
    sigma_set: str,
    release_height: float = 0.0,
) -> FloatArray:
    """Ground-reflected Gaussian plume concentration χ(x, y, z) in g/m³ (broadcasts arrays).

    ``wind_speed`` (m/s, > 0) is used as given — the calm substitution is
    :func:`plume_footprints`' business. Upwind and at the source (``x ≤ 0``) χ is 0.
    """
    errors: list[FieldError] = []
    cls = _check_stability(stability, errors)
    sset = _check_sigma_set(sigma_set, errors)
    _need(errors, "rate_g_s", rate_g_s, low=0.0, low_ok=False, what="finite and > 0 g/s")
    _need(errors, "wind_speed", wind_speed, low=0.0, low_ok=False, what="finite and > 0 m/s")
    _check_height(release_height, errors)
    x, y, z = np.broadcast_arrays(
        np.asarray(x_m, dtype=np.float64),
        np.asarray(y_m, dtype=np.float64),
        np.asarray(z_m, dtype=np.float64),
    )
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y)) and np.all(np.isfinite(z))):
        errors.append(FieldError("x_m", "coordinates must be finite"))
    elif np.any(z < 0):
        errors.append(FieldError("z_m", "receptor height must be ≥ 0 m"))
    if errors:
        raise _refuse(errors)
    out = np.zeros(x.shape, dtype=np.float64)
    down = x > 0
    if np.any(down):
        sy, sz = _sigmas(x[down], cls, sset)
        h = release_height
        vertical = np.exp(-0.5 * ((z[down] - h) / sz) ** 2) + np.exp(
            -0.5 * ((z[down] + h) / sz) ** 2
        )
        out[down] = (
            rate_g_s
            / (2.0 * math.pi * wind_speed * sy * sz)
            * np.exp(-0.5 * (y[down] / sy) ** 2)
            * vertical
        )
    return out


def _check_height(release_height: float, errors: list[FieldError]) -> None:
    if not _finite(release_height) or not 0.0 <= release_height <= MAX_RELEASE_HEIGHT_M:
        errors.append(
            FieldError(
                "release_height",
                f"must be between 0 and {MAX_RELEASE_HEIGHT_M:g} m, got {release_height!r}",
            )
        )


# ---------------------------------------------------------------------------------------------
# Footprints
# ---------------------------------------------------------------------------------------------

# Dense search grid: geometric from 1 cm to the end of the range. 480 points over ≤ 7 decades
# is a ≤ 3.4 % step; crossings are then refined by bisection, so the grid only has to find them.
_GRID_START_M: Final = 0.01
_GRID_POINTS: Final = 480
_BISECTIONS: Final = 40
# Per polygon: geometric spacing from each end of the zone, where the width changes fastest
# (it grows like sqrt of the distance from a crossing). 2·(n−1)+2 x-samples, two vertices each.
_HALF_SAMPLES: Final = (MAX_VERTICES // 2 - 2) // 2 + 1
_MIN_INTERIOR_HALF_WIDTH_M: Final = 1e-6


def plume_footprints(
    *,
    rate_g_s: float,
    molecular_weight: float,
    wind_speed: float,
    stability: str,
    sigma_set: str,
    release_height: float = 0.0,
    thresholds_ppm: Sequence[float],
    max_distance_m: float = ALOHA_MAX_DISTANCE_M,
) -> PlumeResult:
    """Ground-level threat-zone footprints, one per threshold, in the local downwind frame.

    ``thresholds_ppm`` must be strictly decreasing (level 3, the most severe, first); the zones
    come back in the same order, so each lies inside the next. ``wind_speed`` (m/s) is the
    speed at release height; below :data:`CALM_WIND_LIMIT_M_S` it is raised to that limit and
    the result is flagged ``calm``.
    """
    errors: list[FieldError] = []
    cls = _check_stability(stability, errors)
    sset = _check_sigma_set(sigma_set, errors)
    _need(errors, "rate_g_s", rate_g_s, low=0.0, low_ok=False, what="finite and > 0 g/s")
    _need(errors, "molecular_weight", molecular_weight, low=0.0, low_ok=False, what="> 0 g/mol")
    _need(errors, "wind_speed", wind_speed, low=0.0, low_ok=True, what="finite and ≥ 0 m/s")
    _check_height(release_height, errors)
    _need(errors, "max_distance_m", max_distance_m, low=1.0, low_ok=True, what="finite and ≥ 1 m")
    levels = list(thresholds_ppm)
    if not levels:
        errors.append(FieldError("thresholds_ppm", "give at least one threshold"))
    elif not all(_finite(c) and 0.0 < c <= _MAX_PPM for c in levels):
        errors.append(FieldError("thresholds_ppm", "each threshold must be > 0 and ≤ 1e6 ppm"))
    elif any(b >= a for a, b in itertools.pairwise(levels)):
        errors.append(
            FieldError("thresholds_ppm", "must be strictly decreasing (most severe level first)")
        )
    if errors:
        raise _refuse(errors)

    notes: list[str] = []
    calm = wind_speed < CALM_WIND_LIMIT_M_S
    u = CALM_WIND_LIMIT_M_S if calm else float(wind_speed)
    if calm:
        notes.append(
            f"Calm: wind {wind_speed:g} m/s is below {CALM_WIND_LIMIT_M_S:g} m/s, where a "
            f"Gaussian plume is not valid (ALOHA's lower limit). Computed at "
            f"{CALM_WIND_LIMIT_M_S:g} m/s; the direction is unknown, so draw each zone as a "
            "circle of its maximum downwind distance."
        )
    valid_start, valid_end = VALID_RANGE_M[sset]
    x_end = min(valid_end, float(max_distance_m))
    if x_end > ALOHA_MAX_DISTANCE_M:
        notes.append(
            f"Computed beyond {ALOHA_MAX_DISTANCE_M / 1000:g} km, where ALOHA stops: a "
            "straight-line steady plume is unlikely to hold that far."
        )

    c_g_m3 = np.array([ppm_to_mg_m3(c, molecular_weight) / 1000.0 for c in levels])
    grid = np.geomspace(min(_GRID_START_M, x_end / 10.0), x_end, _GRID_POINTS)
    chi_grid, sy_grid = _ground_centreline(grid, rate_g_s, u, release_height, cls, sset)

    # Bracket every crossing on the grid, then refine them all together by bisection.
    # ``inside`` is the bracket end with χ ≥ C, so a refined boundary never has negative width.
    starts = np.zeros(len(levels))
    ends = np.full(len(levels), x_end)
    present = np.zeros(len(levels), dtype=bool)
    truncated = np.zeros(len(levels), dtype=bool)
    inside: list[float] = []
    outside: list[float] = []
    threshold: list[float] = []
    slot: list[tuple[int, bool]] = []  # (level, is_start)
    for k, c in enumerate(c_g_m3):
        above = np.flatnonzero(chi_grid >= c)
        if above.size == 0:
            continue
        present[k] = True
        first, last = int(above[0]), int(above[-1])
        if first > 0:  # elevated source: the zone starts downwind
            inside.append(float(grid[first]))
            outside.append(float(grid[first - 1]))
            threshold.append(float(c))
            slot.append((k, True))
        if last < grid.size - 1:
            inside.append(float(grid[last]))
            outside.append(float(grid[last + 1]))
            threshold.append(float(c))
            slot.append((k, False))
        else:
            truncated[k] = True
    if inside:
        a = np.array(inside)
        b = np.array(outside)
        cs = np.array(threshold)
        for _ in range(_BISECTIONS):
            mid = np.sqrt(a * b)
            chi_mid, _sy = _ground_centreline(mid, rate_g_s, u, release_height, cls, sset)
            hit = chi_mid >= cs
            a = np.where(hit, mid, a)
            b = np.where(hit, b, mid)
        for (k, is_start), x_cross in zip(slot, a, strict=True):
            if is_start:
                starts[k] = x_cross
            else:
                ends[k] = x_cross

    # All zones' sample positions in one σ evaluation.
    samples: list[FloatArray] = []
    for k in range(len(levels)):
        samples.append(_sample_positions(starts[k], ends[k]) if present[k] else np.empty(0))
    xs_all = np.concatenate(samples) if samples else np.empty(0)
    positive = np.maximum(xs_all, _GRID_START_M * 1e-3)  # x = 0 is the source vertex itself
    chi_all, sy_all = _ground_centreline(positive, rate_g_s, u, release_height, cls, sset)

    zones: list[PlumeZone] = []
    offset = 0
    for k, c in enumerate(c_g_m3):
        ppm = float(levels[k])
        xs = samples[k]
        n = xs.size
        chi, sy = chi_all[offset : offset + n], sy_all[offset : offset + n]
        offset += n
        if not present[k]:
            zones.append(PlumeZone(ppm, float(c), None, 0.0, 0.0, 0.0, False))
            continue
        half = sy * np.sqrt(2.0 * np.log(np.maximum(chi / c, 1.0)))
        # Ends of the zone are points on the centreline (width 0) unless the zone was cut at the
        # end of the range; in between keep a hair of width so the ring never touches itself
        # (a dip below threshold mid-plume is filled in: the conservative side).
        half[1:-1] = np.maximum(half[1:-1], _MIN_INTERIOR_HALF_WIDTH_M)
        half[0] = 0.0
        if not truncated[k]:
            half[-1] = 0.0
        polygon = _zone_polygon(xs, half)
        in_zone = (grid >= starts[k]) & (grid <= ends[k])
        grid_half = sy_grid[in_zone] * np.sqrt(2.0 * np.log(np.maximum(chi_grid[in_zone] / c, 1.0)))
        max_half = float(max(half.max(), grid_half.max(initial=0.0)))
        zones.append(
            PlumeZone(
                threshold_ppm=ppm,
                threshold_g_m3=float(c),
                polygon=polygon,
                max_downwind_m=float(ends[k]),
                min_downwind_m=float(starts[k]),
                max_half_width_m=max_half,
                truncated=bool(truncated[k]),
            )
        )

    notes.extend(
        _zone_notes(zones, sset, valid_start, valid_end, x_end, release_height, float(grid[0]))
    )
    return PlumeResult(
        zones=tuple(zones),
        stability=cls,
        sigma_set=sset,
        wind_speed_m_s=u,
        wind_speed_input_m_s=float(wind_speed),
        calm=calm,
        rate_g_s=float(rate_g_s),
        molecular_weight=float(molecular_weight),
        release_height_m=float(release_height),
        valid_range_m=(valid_start, valid_end),
        truncated_at_m=x_end if any(z.truncated for z in zones) else None,
        notes=tuple(notes),
    )


def _sample_positions(start: float, end: float) -> FloatArray:
    """Downwind sample positions in [start, end], dense near both ends."""
    length = end - start
    if length <= 0.0:
        return np.array([start, start + max(1e-6, 1e-9 * start)])
    t = np.geomspace(length * 1e-4, length, _HALF_SAMPLES)[:-1]
    xs = np.concatenate(([start], start + t, end - t, [end]))
    return np.unique(np.clip(xs, start, end))


def _zone_polygon(xs: FloatArray, half: FloatArray) -> Polygon:
    """Symmetric ring: out along +y, back along −y, single vertices where the width is 0."""
    upper = np.column_stack((xs, half))
    lower = np.column_stack((xs, -half))[::-1]
    if half[-1] == 0.0:
        lower = lower[1:]
    if half[0] == 0.0:
        lower = lower[:-1]
    return Polygon(np.vstack((upper, lower)))


def _zone_notes(
    zones: Sequence[PlumeZone],
    sset: SigmaSet,
    valid_start: float,
    valid_end: float,
    x_end: float,
    release_height: float,
    grid_start: float,
) -> list[str]:
    notes: list[str] = []
    set_range = f"{sset} σ curves are stated for {valid_start:g}–{valid_end:g} m"
    for zone in zones:
        label = f"{zone.threshold_ppm:g} ppm"
        if zone.polygon is None:
            if release_height > 0:
                notes.append(
                    f"{label}: not reached at ground level within {x_end:g} m (the elevated "
                    f"plume stays above the threshold height or dilutes first)."
                )
            else:
                notes.append(
                    f"{label}: not reached at ground level between {grid_start:g} m and "
                    f"{x_end:g} m from the source."
                )
            continue
        if zone.truncated:
            why = "the end of the σ curves' range" if x_end == valid_end else "max_distance_m"
            if x_end == ALOHA_MAX_DISTANCE_M:
                why += ", the 10 km where ALOHA also stops"
            notes.append(
                f"{label}: truncated at {x_end:g} m ({why}); the real zone extends further."
            )
        if zone.min_downwind_m < valid_start:
            notes.append(
                f"{label}: part of the zone is within {valid_start:g} m of the source, where the "
                f"{set_range} and are extrapolated: near-source values are indicative only."
            )
        if zone.min_downwind_m > 0:
            notes.append(
                f"{label}: elevated release; the zone starts {zone.min_downwind_m:.0f} m "
                "downwind and does not touch the source."
            )
    return notes


# ---------------------------------------------------------------------------------------------
# Wind-direction uncertainty
# ---------------------------------------------------------------------------------------------


def uncertainty_half_angle_deg(wind_speed: float, stability: str) -> float:
    """Half-angle (degrees) either side of the mean wind that holds the plume ~95 % of the time.

    ``min(180, 2·max(σθ_class, atan(σv_min / u)))``; 180 (a full circle) below the calm limit.
    See the module notes for sources; this is our rule, not ALOHA's (which we could not find).
    """
    errors: list[FieldError] = []
    cls = _check_stability(stability, errors)
    _need(errors, "wind_speed", wind_speed, low=0.0, low_ok=True, what="finite and ≥ 0 m/s")
    if errors:
        raise _refuse(errors)
    if wind_speed < CALM_WIND_LIMIT_M_S:
        return 180.0
    meander = math.degrees(math.atan(SIGMA_V_MIN_M_S / wind_speed))
    return min(180.0, 2.0 * max(SIGMA_THETA_DEG[cls], meander))


_UNCERTAINTY_RADII: Final = 128
_ARC_STEP_DEG: Final = 2.0


def uncertainty_area(outer_footprint: Polygon, half_angle_deg: float) -> Polygon:
    """The footprint swept about the source through ±``half_angle_deg`` (local frame).

    At every distance ``r`` from the source the footprint covers an arc of directions
    ``[φmin(r), φmax(r)]``; the swept area covers ``[φmin − α, φmax + α]``. A full disc of the
    footprint's farthest reach when ``α ≥ 180``. The footprint must lie downwind (``x ≥ 0``).
    Approximations all err on the large side: gaps within ``[φmin, φmax]`` are filled, and
    slivers left uncovered behind the source at angles near 180° are filled.
    """
    errors: list[FieldError] = []
    if not _finite(half_angle_deg) or half_angle_deg < 0:
        errors.append(FieldError("half_angle_deg", "must be finite and ≥ 0"))
    if not isinstance(outer_footprint, Polygon):
        errors.append(FieldError("outer_footprint", "must be a Polygon"))
    elif not outer_footprint.is_empty and outer_footprint.bounds[0] < -1e-6 * (
        1.0 + outer_footprint.bounds[2]
    ):
        errors.append(FieldError("outer_footprint", "must lie downwind of the source (x ≥ 0)"))
    if errors:
        raise _refuse(errors)
    if outer_footprint.is_empty:
        return Polygon()
    alpha = float(half_angle_deg)
    ring = np.asarray(outer_footprint.exterior.coords)
    reach = float(np.hypot(ring[:, 0], ring[:, 1]).max())
    if alpha >= 180.0:
        return Point(0.0, 0.0).buffer(reach, quad_segs=45)
    if alpha == 0.0:
        return outer_footprint

    dense = shapely.segmentize(outer_footprint.exterior, max_segment_length=reach / 256.0)
    pts = np.asarray(dense.coords)
    r = np.hypot(pts[:, 0], pts[:, 1])
    r_in = float(r.min())
    radii = np.unique(
        np.concatenate(
            (
                np.linspace(r_in, reach, _UNCERTAINTY_RADII),
                r_in + np.geomspace((reach - r_in) * 1e-4, reach - r_in, _UNCERTAINTY_RADII // 4),
            )
        )
    )
    lo, hi = _angular_extent(pts, r, radii)
    lo, hi = lo - alpha, hi + alpha
    wraps = hi - lo >= 360.0
    centre = 0.5 * (lo + hi)
    lo = np.where(wraps, centre - 179.99, lo)
    hi = np.where(wraps, centre + 179.99, hi)

    boundary: list[FloatArray] = [_polar(radii, hi)]
    boundary.append(_polar(np.array([reach]), _arc(hi[-1], lo[-1])))
    boundary.append(_polar(radii[::-1], lo[::-1]))
    if radii[0] > 0.0:
        boundary.append(_polar(np.array([radii[0]]), _arc(lo[0], hi[0])))
    shape = shapely.make_valid(Polygon(np.vstack(boundary)))
    if np.any(wraps):
        # Where the arc of directions closes on itself the area is a full ring; add it whole
        # (from the first to the last such radius: any band in between is filled too).
        idx = np.flatnonzero(wraps)
        r0 = float(radii[idx[0]]) * (1 - 1e-3)
        r1 = min(float(radii[idx[-1]]) * (1 + 1e-3), reach)
        ring_area: shapely.Geometry = Point(0.0, 0.0).buffer(r1, quad_segs=45)
        if r0 > 0:
            ring_area = shapely.difference(ring_area, Point(0.0, 0.0).buffer(r0, quad_segs=45))
        shape = shapely.union(shape, ring_area)
    # Simplifying may shave the footprint's own corners: the sweep always holds the footprint.
    shape = _largest_polygon(shapely.union(shape.simplify(reach * 2e-4), outer_footprint))
    # Rotating almost all the way round leaves slivers behind the source uncovered: real, but
    # nothing anyone should draw as "safe". Fill holes under 0.1 % of the area.
    keep = [hole for hole in shape.interiors if Polygon(hole).area > 1e-3 * shape.area]
    return Polygon(shape.exterior, keep)


def _angular_extent(
    pts: FloatArray, r: FloatArray, radii: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Least and greatest direction (deg) of the ring's crossings of each circle."""
    x0, y0, r0 = pts[:-1, 0], pts[:-1, 1], r[:-1]
    x1, y1, r1 = pts[1:, 0], pts[1:, 1], r[1:]
    rr = radii[:, None]
    span = r1 - r0
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(span != 0.0, (rr - r0) / span, 0.0)
    t = np.clip(t, 0.0, 1.0)
    hit = (rr >= np.minimum(r0, r1)) & (rr <= np.maximum(r0, r1))
    phi = np.degrees(np.arctan2(y0 + t * (y1 - y0), x0 + t * (x1 - x0)))
    lo = np.where(hit, phi, np.inf).min(axis=1)
    hi = np.where(hit, phi, -np.inf).max(axis=1)
    # A circle the ring does not cross (rounding at the extremes): borrow the neighbour's arc.
    missing = ~np.isfinite(lo)
    if np.any(missing):
        good = np.flatnonzero(~missing)
        nearest = good[np.abs(good[None, :] - np.flatnonzero(missing)[:, None]).argmin(axis=1)]
        lo[missing] = lo[nearest]
        hi[missing] = hi[nearest]
    return lo, hi


def _arc(start_deg: float, end_deg: float) -> FloatArray:
    steps = max(2, math.ceil(abs(end_deg - start_deg) / _ARC_STEP_DEG) + 1)
    return np.linspace(start_deg, end_deg, steps)[1:-1]


def _polar(r: FloatArray, phi_deg: FloatArray) -> FloatArray:
    phi = np.radians(phi_deg)
    return np.column_stack((r * np.cos(phi), r * np.sin(phi)))


def _largest_polygon(shape: shapely.Geometry) -> Polygon:
    if isinstance(shape, Polygon):
        return shape
    parts = [g for g in getattr(shape, "geoms", ()) if isinstance(g, Polygon | MultiPolygon)]
    polygons = [p for g in parts for p in (g.geoms if isinstance(g, MultiPolygon) else [g])]
    return max(polygons, key=lambda p: p.area) if polygons else Polygon()
