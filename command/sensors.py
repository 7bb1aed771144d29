"""Sensor readings against tiered thresholds, with hysteresis, and the plans an alarm proposes.

A gas detector has up to three thresholds, warning < alarm < high alarm.
- **Rising.** A reading at or above a threshold raises the sensor to that tier at once.
- **Falling.** It falls back only when the reading drops below the tier's threshold minus a
  margin: ``HYSTERESIS`` (10 %) of that threshold. A reading hovering at a threshold thus
  changes the state once, not with every wobble.

A reading must be physically possible for the sensor's unit (:func:`refuse_impossible`): a
concentration is not negative and not above a million ppm, a %LEL reading lies from 0 to 100, a
wind speed from 0 to 120 m/s. A detector's fault or a forged ±1e308 would otherwise raise alarms,
propose plans and move a plume.

Only changes of state are events (``sensor.state``). When a sensor reaches the tier a plan's
trigger names, for the same kind of sensor and substance, the plan is proposed
(``plan.proposed``); the commander decides whether to activate it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gis.errors import FieldError, InvalidInput
from plans.model import PlanTemplate

TIERS = ("warning", "alarm", "high_alarm")
HYSTERESIS = 0.10


@dataclass(frozen=True)
class Sensor:
    id: str
    kind: str
    substance: str | None
    thresholds: tuple[float | None, float | None, float | None]  # warning, alarm, high alarm
    lonlat: tuple[float, float] | None = None  # where it stands
    unit: str | None = None  # e.g. ppm, %LEL, m/s, degC

    @classmethod
    def from_feature(cls, feature: Mapping[str, Any]) -> Sensor:
        p = feature["properties"]
        return cls(
            str(feature["id"]),
            str(p["kind"]),
            p.get("substance"),
            (p.get("warning"), p.get("alarm"), p.get("high_alarm")),
            _point(feature.get("geometry")),
            p.get("unit"),
        )


def tier_after(sensor: Sensor, value: float, current: str | None) -> str | None:
    """The sensor's tier after ``value``, given the tier it is in."""
    rank = -1
    for i, threshold in enumerate(sensor.thresholds):
        if threshold is not None and value >= threshold:
            rank = i
    if current is not None:
        # Stay in a tier (or the highest below it) until the value clearly leaves it.
        held = TIERS.index(current)
        for i in range(held, -1, -1):
            threshold = sensor.thresholds[i]
            if threshold is not None and value >= threshold * (1 - HYSTERESIS):
                rank = max(rank, i)
                break
    return TIERS[rank] if rank >= 0 else None


@dataclass(frozen=True)
class Reading:
    sensor_id: str
    value: float
    direction_deg: float | None = None  # wind stations: where the wind comes from


def parse_readings(body: Any, *, limit: int = 10_000) -> list[Reading]:
    """``{"readings": [{"sensor_id", "value", "direction_deg"?}, ...]}``, every row checked."""
    rows = body.get("readings") if isinstance(body, dict) else None
    if not isinstance(rows, list) or not 1 <= len(rows) <= limit:
        raise InvalidInput(
            "send readings as a list", errors=[FieldError("readings", f"1 to {limit} readings")]
        )
    out: list[Reading] = []
    errors: list[FieldError] = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            errors.append(FieldError(f"readings[{i}]", "an object"))
            continue
        sensor = row.get("sensor_id")
        value: Any = row.get("value")
        direction = row.get("direction_deg")
        bad: list[FieldError] = []
        if not isinstance(sensor, str) or not sensor:
            bad.append(FieldError(f"readings[{i}].sensor_id", "a sensor id"))
        if not _number(value):
            bad.append(FieldError(f"readings[{i}].value", "a finite number"))
        if direction is not None and not (_number(direction) and 0 <= direction <= 360):
            bad.append(FieldError(f"readings[{i}].direction_deg", "degrees from 0 to 360"))
        errors += bad
        if not bad:
            out.append(Reading(str(sensor), float(value), direction))
    if errors:
        raise InvalidInput(f"{len(errors)} bad reading(s); none was taken", errors=errors)
    return out


#: What a reading can be, per unit (lower case, without spaces): the physical range, not the
#: instrument's. Concentrations: none below zero; a million ppm is the pure gas. Temperatures:
#: from below the coldest weather to above a hydrocarbon fire.
PHYSICAL_RANGES: dict[str, tuple[float, float]] = {
    "ppm": (0.0, 1e6),
    "ppb": (0.0, 1e9),
    "%lel": (0.0, 100.0),
    "%vol": (0.0, 100.0),
    "%": (0.0, 100.0),
    "mg/m3": (0.0, 1e7),
    "mg/m³": (0.0, 1e7),
    "degc": (-100.0, 2000.0),
    "°c": (-100.0, 2000.0),
    "c": (-100.0, 2000.0),
    "k": (0.0, 2300.0),
    "degf": (-150.0, 3600.0),
    "°f": (-150.0, 3600.0),
    "m/s": (0.0, 120.0),
    "km/h": (0.0, 432.0),
    "kn": (0.0, 233.0),
    "kt": (0.0, 233.0),
}
#: The unit a sensor of each kind reports in when its feature names none.
DEFAULT_UNITS = {"wind": "m/s", "temperature": "degC"}
#: Any other unit: still a bound, so that no ±1e308 passes.
ANY_UNIT = (-1e9, 1e9)


def physical_range(sensor: Sensor) -> tuple[float, float]:
    unit = (sensor.unit or DEFAULT_UNITS.get(sensor.kind, "")).replace(" ", "").lower()
    return PHYSICAL_RANGES.get(unit, ANY_UNIT)


def refuse_impossible(readings: Sequence[Reading], sensors: Mapping[str, Sensor]) -> None:
    """:class:`InvalidInput` naming each reading its sensor could not have made (a value
    outside the physical range of the sensor's unit), and nothing is taken."""
    errors = []
    for i, reading in enumerate(readings):
        sensor = sensors.get(reading.sensor_id)
        if sensor is None:
            continue
        low, high = physical_range(sensor)
        if not low <= reading.value <= high:
            unit = sensor.unit or DEFAULT_UNITS.get(sensor.kind, "its unit")
            errors.append(
                FieldError(
                    f"readings[{i}].value",
                    f"{reading.value:g} is impossible for {sensor.id}: {low:g} to {high:g} {unit}",
                )
            )
    if errors:
        raise InvalidInput(
            f"{len(errors)} impossible reading(s); none of the readings was taken",
            errors=errors[:100],
        )


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def proposed_plans(sensor: Sensor, tier: str, plans: Sequence[PlanTemplate]) -> list[str]:
    """Plans whose trigger this sensor's tier meets."""
    out = []
    for plan in plans:
        for trigger in plan.scenario.triggers:
            if (
                trigger.sensor_kind == sensor.kind
                and (trigger.substance is None or _same(trigger.substance, sensor.substance))
                and TIERS.index(tier) >= TIERS.index(trigger.tier)
            ):
                out.append(plan.id)
                break
    return out


def _point(geometry: Any) -> tuple[float, float] | None:
    if not isinstance(geometry, Mapping) or geometry.get("type") != "Point":
        return None
    x, y = geometry["coordinates"][:2]
    return float(x), float(y)


def _same(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and a.strip().lower() == b.strip().lower()
