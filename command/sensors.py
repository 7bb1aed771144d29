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

A rise also raises an alarm that someone must acknowledge (:class:`SensorAlarms`, ISA-18.2
style): ``sensor.acknowledged`` names who did.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
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


# -- alarm acknowledgement (ISA-18.2) -----------------------------------------------------------


@dataclass
class Alarm:
    """A sensor's alarm as the operators see it: the highest tier reached since the last
    acknowledgement, when it was reached and the reading that reached it, and who
    acknowledged it (None: not yet)."""

    tier: str
    since: str  # ISO 8601, the time of the sensor.state event that reached ``tier``
    value: float
    acknowledged: dict[str, Any] | None = None  # {by, by_name, at}
    current: str | None = None  # the sensor's tier now (it may have fallen since)
    #: The detector's health flags when the alarm rose, with their evidence (the event's
    #: ``flags``: an overdue or unhealthy detector's alarm says so for as long as it is listed).
    flags: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "tier": self.tier,
            "since": self.since,
            "value": self.value,
            "acknowledged": dict(self.acknowledged) if self.acknowledged else None,
            "flags": dict(self.flags) if self.flags else None,
        }


class SensorAlarms:
    """Per site and sensor, its alarm, followed from the logged ``sensor.state`` and
    ``sensor.acknowledged`` events (live, and replayed on a restart: the same code both ways).

    ISA-18.2's rules:
    - A rise to a tier (warning, alarm or high alarm) makes the alarm *unacknowledged* at that
      tier, or at the highest tier reached since the last acknowledgement.
    - It stays unacknowledged when the reading falls back, down to normal ("return to normal
      unacknowledged"), until someone acknowledges it.
    - Acknowledged, it stays listed while the sensor is in a tier and goes once it is normal.
      A rise above the acknowledged tier makes it unacknowledged again; a rise back to the
      acknowledged tier (or below) does not.
    """

    def __init__(self) -> None:
        self.sites: dict[str, dict[str, Alarm]] = {}

    def of(self, site_id: str, sensor_id: str) -> Alarm | None:
        return self.sites.get(site_id, {}).get(sensor_id)

    def follow(self, events: Iterable[Any]) -> None:
        """Apply logged events (``site_id``, ``type``, ``at``, ``data``); other types pass."""
        for event in events:
            if event.type == "sensor.state":
                self._state(event.site_id, event.data, event.at.isoformat())
            elif event.type == "sensor.acknowledged":
                self._acknowledged(event.site_id, event.data, event.at.isoformat())

    def _state(self, site_id: str, data: Mapping[str, Any], at: str) -> None:
        alarms = self.sites.setdefault(site_id, {})
        sensor_id = str(data["sensor_id"])
        before, after = data.get("from"), data.get("to")
        alarm = alarms.get(sensor_id)
        if alarm is not None:
            alarm.current = after
        if after is None:  # back to normal: only an acknowledged alarm goes
            if alarm is not None and alarm.acknowledged is not None:
                del alarms[sensor_id]
            return
        rising = before is None or TIERS.index(after) > TIERS.index(before)
        if not rising:
            return
        if alarm is None or TIERS.index(after) > TIERS.index(alarm.tier):
            flags = data.get("flags")
            alarms[sensor_id] = Alarm(
                after, at, float(data["value"]), None, after, dict(flags) if flags else None
            )

    def _acknowledged(self, site_id: str, data: Mapping[str, Any], at: str) -> None:
        alarms = self.sites.get(site_id, {})
        sensor_id = str(data["sensor_id"])
        alarm = alarms.get(sensor_id)
        if alarm is None or alarm.acknowledged is not None:
            return  # nothing waited for it (a log edited by hand): nothing to undo
        if alarm.current is None:  # back to normal already: acknowledged, it is over
            del alarms[sensor_id]
            return
        alarm.acknowledged = {"by": data.get("by"), "by_name": data.get("by_name"), "at": at}

    def unacknowledged(self, site_id: str, sensors: Mapping[str, Sensor]) -> list[dict[str, Any]]:
        """The site's alarms not yet acknowledged, for a wall that (re)connects: oldest first."""
        out = [
            {
                "id": sensor_id,
                "tier": alarm.tier,
                "since": alarm.since,
                "value": alarm.value,
                "substance": sensors[sensor_id].substance if sensor_id in sensors else None,
                "flags": dict(alarm.flags) if alarm.flags else None,
            }
            for sensor_id, alarm in self.sites.get(site_id, {}).items()
            if alarm.acknowledged is None
        ]
        return sorted(out, key=lambda a: (a["since"], a["id"]))


def nothing_to_acknowledge(sensor_id: str, tier: str | None, alarm: Alarm | None) -> str:
    """Why an acknowledgement of ``sensor_id`` changes nothing, naming its state."""
    now = f"in {tier}" if tier else "normal"
    if alarm is None or alarm.acknowledged is None:
        return f"{sensor_id} has no alarm to acknowledge: it is {now}"
    by = alarm.acknowledged.get("by_name") or alarm.acknowledged.get("by")
    return (
        f"{sensor_id}'s alarm ({alarm.tier}) was acknowledged already, by {by} at "
        f"{alarm.acknowledged.get('at')}; it is {now}"
    )
