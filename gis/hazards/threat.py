"""Threat zones on the map for each kind of hazard: the models of this package, placed.

Each function takes the site CRS, the source position (lon/lat) and the model's inputs, and
returns a :class:`~gis.hazards.zones.ThreatAssessment` with zones in WGS84, innermost first.

- :func:`toxic_release`: Gaussian plume footprints (:mod:`gis.hazards.plume`) for levels of
  concern from the substance table (AEGL by default, as ALOHA) or given in ppm, turned
  downwind, with the wind-direction uncertainty area. In calm air (below 1 m/s) the direction
  is unknown: each zone becomes a circle of its downwind reach, and the notes say so.
- :func:`pool_fire` and :func:`jet_fire`: thermal radiation circles (:mod:`gis.hazards.fire`).
- :func:`explosion`: overpressure circles from TNT equivalence (:mod:`gis.hazards.explosion`).
- :func:`erg_zones`: the ERG isolation circle and the downwind protective-action square.
- :func:`radius_zones`: plain circles for hazards without a model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from itertools import pairwise
from typing import Literal, cast

import numpy as np
from shapely.geometry import Point, Polygon, box

from gis.crs import SiteCRS
from gis.errors import FieldError, InvalidInput
from gis.hazards import erg as erg_table
from gis.hazards import explosion as blast
from gis.hazards import fire as fires
from gis.hazards import plume
from gis.hazards.checks import within
from gis.hazards.exposure import Exposure, ExposureChange, SiteIndex, exposure, exposure_change
from gis.hazards.substances import (
    AIR_MOLECULAR_WEIGHT_G_MOL,
    Substance,
    get_substance,
    heavier_than_air,
    levels_of_concern,
    missing_levels,
)
from gis.hazards.zones import (
    MAX_REACH_M,
    SourceFrame,
    ThreatAssessment,
    ThreatZone,
    check_wind_direction,
)

Scheme = Literal["AEGL", "ERPG", "IDLH"]


@dataclass(frozen=True)
class Weather:
    """The weather a plume is computed for.

    ``stability`` overrides the Pasquill-Turner class otherwise derived from wind speed, day or
    night, insolation (day) and cloud cover (night).
    """

    wind_speed_m_s: float
    wind_from_deg: float
    daytime: bool = True
    insolation: Literal["strong", "moderate", "slight"] | None = "moderate"
    cloud_cover_octas: float | None = None
    stability: str | None = None

    def __post_init__(self) -> None:
        check_wind_direction(self.wind_from_deg)
        within(self.wind_speed_m_s, "wind_speed_m_s", low_inclusive=True, high=MAX_WIND)
        if not isinstance(self.daytime, bool):
            raise InvalidInput(
                "daytime must be true or false", errors=[FieldError("daytime", "true or false")]
            )
        if self.cloud_cover_octas is not None:
            within(self.cloud_cover_octas, "cloud_cover_octas", low_inclusive=True, high=8)
        if self.stability is not None and not isinstance(self.stability, str):
            raise InvalidInput(
                "stability must be a class letter", errors=[FieldError("stability", "A to F")]
            )

    def stability_class(self) -> str:
        if self.stability is not None:
            return self.stability
        return plume.stability_class(
            self.wind_speed_m_s,
            daytime=self.daytime,
            insolation=self.insolation if self.daytime else None,
            cloud_cover_octas=self.cloud_cover_octas,
        )


@dataclass(frozen=True)
class ToxicRelease:
    """A continuous release of a toxic gas from a point.

    ``levels_ppm`` (three values, most severe first) replaces the substance's levels of concern.
    """

    substance: str
    rate_g_s: float
    release_height_m: float = 0.0
    sigma_set: str = "briggs-rural"
    scheme: Scheme | None = None
    levels_ppm: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        within(self.rate_g_s, "rate_g_s", high=MAX_RATE_G_S)
        within(self.release_height_m, "release_height", low_inclusive=True, high=1000.0)
        if self.scheme not in (None, "AEGL", "ERPG", "IDLH"):
            raise InvalidInput(
                f"unknown levels-of-concern scheme {self.scheme!r}",
                errors=[FieldError("scheme", "AEGL, ERPG or IDLH")],
            )
        if not isinstance(self.sigma_set, str):
            raise InvalidInput(
                "the sigma set must be named", errors=[FieldError("sigma_set", "a set's name")]
            )
        if self.levels_ppm is not None:
            if not isinstance(self.levels_ppm, list | tuple) or not 1 <= len(self.levels_ppm) <= 3:
                raise InvalidInput(
                    "give one to three levels of concern",
                    errors=[FieldError("levels_ppm", "1 to 3 values in ppm, most severe first")],
                )
            for i, value in enumerate(self.levels_ppm):
                within(value, f"levels_ppm.{i}", high=1e6)


#: Beyond these an input is impossible for an industrial site (a wind of 60 m/s is a
#: category-5 typhoon; 10 t/s of gas, 10 kt of TNT, a 1 km pool are past any plant's inventory).
MAX_WIND = 60.0
MAX_RATE_G_S = 1e7
MAX_TNT_KG = 1e7
MAX_POOL_DIAMETER_M = 1000.0
#: The release point itself belongs to a ground-level footprint, which narrows to nothing there.
SOURCE_RADIUS_M = 10.0


def _thresholds(values: Sequence[float], field_name: str) -> tuple[float, ...]:
    if not isinstance(values, list | tuple) or not 1 <= len(values) <= 3:
        raise InvalidInput(
            "give one to three thresholds",
            errors=[FieldError(field_name, "1 to 3 values, most severe first")],
        )
    return tuple(within(v, f"{field_name}.{i}", high=1e6) for i, v in enumerate(values))


def toxic_release(
    crs: SiteCRS,
    source: tuple[float, float],
    release: ToxicRelease,
    weather: Weather,
) -> ThreatAssessment:
    """Plume footprints for the substance's three levels of concern, turned downwind."""
    frame = SourceFrame.at(crs, source)
    substance = get_substance(release.substance)
    levels, labels, values, scheme = _levels(substance, release)
    if substance.molecular_weight_g_mol is None:
        raise InvalidInput(
            f"{substance.name_en} has no molecular weight in the substance table",
            errors=[FieldError("substance", "no molecular weight: give one in the table")],
        )
    stability = weather.stability_class()
    result = plume.plume_footprints(
        rate_g_s=release.rate_g_s,
        molecular_weight=substance.molecular_weight_g_mol,
        wind_speed=weather.wind_speed_m_s,
        stability=stability,
        sigma_set=release.sigma_set,
        release_height=release.release_height_m,
        thresholds_ppm=values,
    )
    zones: list[ThreatZone] = []
    notes = [*_substance_notes(substance, scheme, levels), *result.notes]
    outer = None
    for level, label, zone in zip(levels, labels, result.zones, strict=True):
        if zone.polygon is None or zone.polygon.is_empty:
            notes.append(f"{label} ({zone.threshold_ppm:g} ppm) is not reached at ground level")
            continue
        local = zone.polygon
        if zone.min_downwind_m == 0:
            joined = local.union(Point(0.0, 0.0).buffer(SOURCE_RADIUS_M, 8))
            local = joined if isinstance(joined, Polygon) else local
        reach = float(np.hypot(*np.asarray(local.exterior.coords).T).max())
        if result.calm:
            geometry = frame.circle(reach)
        else:
            geometry = frame.downwind(local, weather.wind_from_deg)
            outer = zone.polygon  # the sweep turns about the source; the footprint proper
        zones.append(ThreatZone(level, geometry, zone.threshold_ppm, "ppm", label, reach))
    uncertainty = None
    if result.calm:
        notes.append(
            "calm wind: the direction is unknown, so each zone is a circle of its downwind reach"
        )
        uncertainty = zones[-1].geometry if zones else None
    elif outer is not None:
        angle = plume.uncertainty_half_angle_deg(result.wind_speed_m_s, result.stability)
        swept = frame.downwind(plume.uncertainty_area(outer, angle), weather.wind_from_deg)
        uncertainty = swept.union(zones[-1].geometry)  # with the source's own circle
    return ThreatAssessment(
        model="gaussian-plume",
        source_lonlat=frame.lonlat,
        zones=tuple(zones),
        uncertainty=uncertainty,
        notes=tuple(notes),
        parameters={
            "substance": substance.id,
            "levels_of_concern": scheme,
            "rate_g_s": release.rate_g_s,
            "release_height_m": release.release_height_m,
            "sigma_set": result.sigma_set,
            "stability": result.stability,
            "stability_given": weather.stability is not None,
            "wind_speed_m_s": result.wind_speed_m_s,
            "wind_from_deg": weather.wind_from_deg,
            "calm": result.calm,
            "truncated_at_m": result.truncated_at_m,
        },
    )


def _substance_notes(substance: Substance, scheme: str, levels: Sequence[int]) -> list[str]:
    """What the commander must know of the substance: a gas heavier than air, which the
    Gaussian plume cannot represent, and every level of concern that draws no zone."""
    notes = []
    if heavier_than_air(substance):
        notes.append(
            f"{substance.name_en} is heavier than air ({substance.molecular_weight_g_mol:g} "
            f"g/mol against {AIR_MOLECULAR_WEIGHT_G_MOL:g} g/mol): the Gaussian plume model "
            "assumes neutral buoyancy, and a dense gas may spread wider near the ground and "
            "travel shorter than these zones show"
        )
    if scheme == "user":
        return notes + [
            f"no level-{level} zone: no level-{level} threshold was given"
            for level in (3, 2, 1)
            if level not in levels
        ]
    used = cast(Scheme, scheme)  # _levels returns a Scheme whenever it is not "user"
    preferred: tuple[Scheme, ...] = ("AEGL", "ERPG", "IDLH")
    lacking = [s for s in preferred[: preferred.index(used)] if not levels_of_concern(substance, s)]
    if lacking:
        notes.append(
            f"{substance.name_en} has no {' or '.join(lacking)} in the substance table: "
            f"the {used} is used instead"
        )
    notes.extend(
        f"no level-{gap.level} zone for {substance.name_en}: {gap.label} {gap.reason}"
        for gap in missing_levels(substance, used)
    )
    return notes


def _levels(
    substance: Substance, release: ToxicRelease
) -> tuple[list[int], list[str], list[float], str]:
    """Levels, labels and ppm values, most severe first, and the scheme they come from."""
    if release.levels_ppm is not None:
        values = [float(v) for v in release.levels_ppm]
        if not 1 <= len(values) <= 3:
            raise InvalidInput(
                "give one to three levels of concern",
                errors=[FieldError("levels_ppm", "1 to 3 values in ppm, most severe first")],
            )
        levels = [3 - i for i in range(len(values))]
        return (
            levels,
            [f"level {lv} ({v:g} ppm)" for lv, v in zip(levels, values, strict=True)],
            values,
            "user",
        )
    schemes: Sequence[Scheme] = (release.scheme,) if release.scheme else ("AEGL", "ERPG", "IDLH")
    for scheme in schemes:
        pairs = levels_of_concern(substance, scheme)
        if pairs:
            # "AEGL-2 (60 min)" is level 2; an IDLH stands alone as level 3.
            levels = [int(label.split("-")[1][0]) if "-" in label else 3 for label, _ in pairs]
            return levels, [label for label, _ in pairs], [value for _, value in pairs], scheme
    raise InvalidInput(
        f"{substance.name_en} has no {'/'.join(schemes)} levels of concern",
        errors=[FieldError("levels_ppm", "give the levels of concern in ppm")],
    )


def _circles(
    frame: SourceFrame,
    distances: Sequence[tuple[int, float | None, float, str, str]],
) -> tuple[ThreatZone, ...]:
    """Circles for (level, distance, threshold, unit, label); levels with no distance dropped."""
    return tuple(
        ThreatZone(level, frame.circle(distance), threshold, unit, label, distance)
        for level, distance, threshold, unit, label in distances
        if distance is not None and distance > 0
    )


def pool_fire(
    crs: SiteCRS,
    source: tuple[float, float],
    *,
    fuel: str,
    diameter_m: float | None = None,
    area_m2: float | None = None,
    thresholds_kw_m2: Sequence[float] = (10.0, 5.0, 2.0),
    relative_humidity_pct: float = fires.DEFAULT_RELATIVE_HUMIDITY_PCT,
    air_temperature_c: float = fires.DEFAULT_AIR_TEMPERATURE_C,
) -> ThreatAssessment:
    """Thermal radiation zones of a pool fire (point-source model)."""
    frame = SourceFrame.at(crs, source)
    if diameter_m is not None:
        within(diameter_m, "diameter_m", high=MAX_POOL_DIAMETER_M)
    if area_m2 is not None:
        within(area_m2, "area_m2", high=MAX_POOL_DIAMETER_M**2)
    result = fires.fire_threat_distances(
        fuel,
        diameter_m=diameter_m,
        area_m2=area_m2,
        thresholds_kw_m2=_thresholds(thresholds_kw_m2, "thresholds_kw_m2"),
        relative_humidity_pct=relative_humidity_pct,
        air_temperature_c=air_temperature_c,
    )
    return _fire_assessment(frame, "pool-fire", result)


def jet_fire(
    crs: SiteCRS,
    source: tuple[float, float],
    *,
    mass_rate_kg_s: float,
    heat_of_combustion_kj_kg: float,
    radiative_fraction: float,
    source_height_m: float = 0.0,
    thresholds_kw_m2: Sequence[float] = (10.0, 5.0, 2.0),
) -> ThreatAssessment:
    """Thermal radiation zones of a jet fire (point-source model)."""
    frame = SourceFrame.at(crs, source)
    within(mass_rate_kg_s, "mass_rate_kg_s", high=MAX_RATE_G_S / 1000)
    within(heat_of_combustion_kj_kg, "heat_of_combustion_kj_kg", high=150_000.0)
    result = fires.jet_fire_threat_distances(
        mass_rate_kg_s,
        heat_of_combustion_kj_kg,
        radiative_fraction=radiative_fraction,
        thresholds_kw_m2=_thresholds(thresholds_kw_m2, "thresholds_kw_m2"),
        source_height_m=source_height_m,
    )
    return _fire_assessment(frame, "jet-fire", result)


def _fire_assessment(
    frame: SourceFrame, model: str, result: fires.FireThreatZones
) -> ThreatAssessment:
    notes = [level.note for level in result.levels if level.note]
    zones = _circles(
        frame,
        [
            (lv.level, lv.distance_m, lv.threshold_kw_m2, "kW/m2", f"{lv.threshold_kw_m2:g} kW/m2")
            for lv in result.levels
        ],
    )
    source = asdict(result.source)
    if "fuel" in source:
        source["fuel"] = source["fuel"]["name"]
    return ThreatAssessment(
        model=model,
        source_lonlat=frame.lonlat,
        zones=zones,
        notes=tuple(notes),
        parameters={**source, "transmissivity": result.transmissivity},
    )


def explosion(
    crs: SiteCRS,
    source: tuple[float, float],
    *,
    mass_kg: float | None = None,
    substance: str | None = None,
    tnt_kg: float | None = None,
    yield_factor: float = blast.DEFAULT_YIELD_FACTOR,
    thresholds_psi: Sequence[float] = blast.ALOHA_THRESHOLDS_PSI,
) -> ThreatAssessment:
    """Overpressure zones of a vapour cloud or charge, by TNT equivalence.

    Give ``tnt_kg`` directly, or ``mass_kg`` of a ``substance`` whose heat of combustion the
    table holds.
    """
    frame = SourceFrame.at(crs, source)
    within(yield_factor, "yield_factor", high=1.0)
    thresholds_psi = _thresholds(thresholds_psi, "thresholds_psi")
    if tnt_kg is None:
        if mass_kg is None or substance is None:
            raise InvalidInput(
                "give tnt_kg, or mass_kg and substance",
                errors=[FieldError("mass_kg", "required with substance when tnt_kg is absent")],
            )
        found = get_substance(substance)
        if found.heat_of_combustion_kj_kg is None:
            raise InvalidInput(
                f"{found.name_en} has no heat of combustion in the substance table",
                errors=[FieldError("substance", "not a fuel with a known heat of combustion")],
            )
        tnt_kg = blast.tnt_equivalent_kg(
            within(mass_kg, "mass_kg", high=MAX_TNT_KG * 100),
            found.heat_of_combustion_kj_kg,
            yield_factor=yield_factor,
        )
        within(tnt_kg, "mass_kg", high=MAX_TNT_KG)
    else:
        within(tnt_kg, "tnt_kg", high=MAX_TNT_KG)
    levels = blast.explosion_threat_distances(tnt_kg, thresholds_psi)
    notes = [lv.result.note for lv in levels if lv.result.note]
    zones = _circles(
        frame,
        [
            (lv.level, lv.distance_m, lv.threshold_psi, "psi", f"{lv.threshold_psi:g} psi")
            for lv in levels
        ],
    )
    return ThreatAssessment(
        model="tnt-equivalence",
        source_lonlat=frame.lonlat,
        zones=zones,
        notes=tuple(notes),
        parameters={
            "tnt_kg": tnt_kg,
            "mass_kg": mass_kg,
            "substance": substance,
            "yield_factor": yield_factor,
        },
    )


def erg_zones(
    crs: SiteCRS,
    source: tuple[float, float],
    *,
    substance: str,
    spill: Literal["small", "large"],
    daytime: bool,
    wind_from_deg: float,
    container: str | None = None,
    wind: Literal["low", "moderate", "high"] | None = None,
) -> ThreatAssessment:
    """ERG initial isolation (level 3, a circle) and protective action (level 2, a square).

    The square's side is the protective action distance; it reaches downwind from the source,
    centred on the wind's line, as the ERG draws it.
    """
    frame = SourceFrame.at(crs, source)
    entry = erg_table.erg_entry(substance)
    distances = erg_table.protective_distances(
        entry, spill=spill, daytime=daytime, container=container, wind=wind
    )
    d = distances.protect_m
    square: Polygon = box(0.0, -d / 2, d, d / 2)
    isolation = frame.circle(distances.isolate_m)
    protect = frame.downwind(square, wind_from_deg).union(isolation)
    label = f"{distances.edition} {distances.table}"
    return ThreatAssessment(
        model="erg",
        source_lonlat=frame.lonlat,
        zones=(
            ThreatZone(
                3, isolation, distances.isolate_m, "m", f"{label}: isolate", distances.isolate_m
            ),
            ThreatZone(2, protect, d, "m", f"{label}: protect", d),
        ),
        notes=tuple(
            note
            for note in (
                f"ERG figures: {distances.verification}" if distances.verification else "",
                f"{label} prints this protective distance with '+': it can be larger in certain "
                "atmospheric conditions"
                if distances.at_least
                else "",
            )
            if note
        ),
        parameters={
            "un": entry.un,
            "guide": entry.guide,
            "edition": distances.edition,
            "table": distances.table,
            "spill": spill,
            "daytime": daytime,
            "container": container,
            "wind": wind,
            "wind_from_deg": wind_from_deg,
        },
    )


def radius_zones(
    crs: SiteCRS,
    source: tuple[float, float],
    radii_m: Sequence[float],
    *,
    label: str = "radius",
) -> ThreatAssessment:
    """Plain circles, innermost first (level 3, 2, 1), for hazards without a model."""
    frame = SourceFrame.at(crs, source)
    if not isinstance(radii_m, list | tuple) or not 1 <= len(radii_m) <= 3:
        raise InvalidInput(
            "give one to three positive radii",
            errors=[FieldError("radii_m", "1 to 3 positive distances in metres, innermost first")],
        )
    radii = [within(r, f"radii_m.{i}", high=MAX_REACH_M) for i, r in enumerate(radii_m)]
    if any(b <= a for a, b in pairwise(radii)):
        raise InvalidInput(
            "radii must grow outwards",
            errors=[FieldError("radii_m", "strictly increasing, innermost first")],
        )
    zones = _circles(frame, [(3 - i, r, r, "m", f"{label} {r:g} m") for i, r in enumerate(radii)])
    return ThreatAssessment(
        model="radius", source_lonlat=frame.lonlat, zones=zones, parameters={"radii_m": radii}
    )


@dataclass(frozen=True)
class WindChange:
    """A release re-evaluated for a new wind, and who entered or left its zones."""

    assessment: ThreatAssessment
    exposure: Exposure
    change: ExposureChange


def toxic_release_after_wind_change(
    crs: SiteCRS,
    source: tuple[float, float],
    release: ToxicRelease,
    weather: Weather,
    *,
    previous: Exposure,
    index: SiteIndex,
) -> WindChange:
    """The same release under ``weather`` (the new wind), compared with ``previous``."""
    assessment = toxic_release(crs, source, release, weather)
    now = exposure(assessment, index)
    return WindChange(assessment, now, exposure_change(previous, now))
