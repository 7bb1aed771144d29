"""Alarm tiers by the standard, with deadband and delays, confirmation, shelving and test mode.

**Tiers.** A gas detector has up to three thresholds, warning < alarm < high alarm
(``command.sensors.TIERS``). They map onto GB/T 50493-2019's two tiers (§5.5.2) thus:
- ``warning`` is the standard's **first tier** (一级报警): it asks the post to check
  (``sensor.check_requested``);
- ``alarm`` is its **second tier** (二级报警): the alarm that escalates once confirmed;
- ``high_alarm`` lies beyond the standard: a site's own third tier (no default).

A sensor that gives none of the three (neither in its layer nor in its settings) gets the
standard's figures as defaults (:func:`default_thresholds`): combustible gas (%LEL) 25 and
50 %LEL; a toxic gas 100 % and 200 % of its occupational exposure limit (:data:`EXPOSURE_LIMITS`,
GBZ 2.1-2019: MAC, else PC-STEL, else PC-TWA). The standard sets upper bounds (≤); the
defaults are those bounds. Thresholds a layer gives stay as they are.

**Deadband and delays** (ISA-18.2, per sensor, :class:`AlarmSettings`): a tier is entered when
the reading has stayed at or above its threshold for ``on_delay_s``, and left when it has stayed
below the threshold minus the deadband for ``off_delay_s``. No deadband given: 10 % of the
threshold (the old fixed hysteresis). Delays run on the post's clock; one that completes without
a new reading is settled by the post's tick (:func:`settle`).

**Confirmation.** An alarm is confirmed by voting in its area (the smallest zone holding the
detector; detectors of the same kind and substance vote together) or by a person on the wall.
A detector votes while it stands at the second tier (``alarm``) or above, in service and not in
test mode (:func:`votes_needed`):
- ``1oo1``: one detector watches the area; its own second-tier alarm is confirmed;
- ``1oo2``: two or more watch it and any one at the second tier confirms (for a gas where a
  missed leak costs more than a false alarm);
- ``2oo2``: two detectors at the second tier are needed (GB 16808's and GB 50116's two
  independent signals); one alone stays an unconfirmed alarm, the post checks.
Default: ``2oo2`` where the area has two or more such detectors, else ``1oo1``. With fewer
detectors in service than the mode needs (one shelved, out of service or in test), the vote
degrades to what is left (2oo2 with one detector in service is 1oo1), as a bypassed channel of
a voting safety system does; the event says so. Only a confirmed alarm proposes a plan at L2 or
above; an unconfirmed one proposes at L1 only.

**Modes** (:data:`MODES`): shelved (a reason and an expiry; the clock unshelves it), out of
service, and maintenance/test. Shelved or out of service, a detector's readings are kept as the
latest but move no tier; in test, tiers move and alarms are raised, marked ``test``, and
propose, confirm and vote nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import shapely
from shapely.geometry import shape
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from command.events import Draft
from command.sensors import HYSTERESIS, TIERS, Sensor, physical_range, proposed_plans
from gis.errors import FieldError, InvalidInput
from gis.storage.tables import AlarmAreaRow, SensorAlarmSettingsRow
from plans.model import Level, PlanTemplate

#: Molar volume of an ideal gas at 20 °C and 101.325 kPa, litres: R·T/p =
#: 8.314462 * 293.15 / 101.325 = 24.055. ppm = mg/m³ * 24.055 / M (M in g/mol).
MOLAR_VOLUME_L = 24.055

VOTING = ("1oo1", "1oo2", "2oo2")
MODES = ("shelved", "out_of_service", "test")
#: Longest delay (seconds): an alarm held back longer than an hour is no alarm.
MAX_DELAY_S = 3600.0
#: Longest shelving: a shelved alarm is a hidden one (ISA-18.2 asks for a time limit).
MAX_SHELVE_S = 7 * 24 * 3600.0
TEXT_MAX = 500
#: Zone kinds that are no area for voting (a muster point is where people gather).
NOT_AREAS = frozenset({"muster_point"})


@dataclass(frozen=True)
class ExposureLimit:
    """A substance's occupational exposure limit (GBZ 2.1-2019, table 1), the one GB/T
    50493-2019 uses: MAC if it has one, else PC-STEL, else PC-TWA."""

    name: str
    cas: str
    kind: str  # MAC, PC-STEL or PC-TWA
    mg_m3: float
    molar_mass: float  # g/mol

    @property
    def ppm(self) -> float:
        return self.mg_m3 * MOLAR_VOLUME_L / self.molar_mass


#: GBZ 2.1-2019 limits of the substances the demo and its plans use, and a few more, keyed by
#: formula in lower case. ppm at 20 °C and 101.325 kPa (:data:`MOLAR_VOLUME_L`).
EXPOSURE_LIMITS: dict[str, ExposureLimit] = {
    "h2s": ExposureLimit("hydrogen sulfide", "7783-06-4", "MAC", 10.0, 34.08),
    "nh3": ExposureLimit("ammonia", "7664-41-7", "PC-STEL", 30.0, 17.03),
    "cl2": ExposureLimit("chlorine", "7782-50-5", "MAC", 1.0, 70.90),
    "co": ExposureLimit("carbon monoxide", "630-08-0", "PC-STEL", 30.0, 28.01),
    "c6h6": ExposureLimit("benzene", "71-43-2", "PC-STEL", 10.0, 78.11),
    "c7h8": ExposureLimit("toluene", "108-88-3", "PC-STEL", 100.0, 92.14),
    "hcl": ExposureLimit("hydrogen chloride", "7647-01-0", "MAC", 7.5, 36.46),
    "so2": ExposureLimit("sulfur dioxide", "7446-09-5", "PC-STEL", 10.0, 64.07),
    "ch3oh": ExposureLimit("methanol", "67-56-1", "PC-STEL", 50.0, 32.04),
    "hcho": ExposureLimit("formaldehyde", "50-00-0", "MAC", 0.5, 30.03),
    "c3h3n": ExposureLimit("acrylonitrile", "107-13-1", "PC-STEL", 2.0, 53.06),
    "c2h3cl": ExposureLimit("vinyl chloride", "75-01-4", "PC-TWA", 10.0, 62.50),
    "c2h4o": ExposureLimit("ethylene oxide", "75-21-8", "PC-TWA", 2.0, 44.05),
}
#: Other names a sensor's substance may go by.
ALIASES = {
    "hydrogen sulfide": "h2s",
    "hydrogen sulphide": "h2s",
    "ammonia": "nh3",
    "chlorine": "cl2",
    "carbon monoxide": "co",
    "benzene": "c6h6",
    "toluene": "c7h8",
    "hydrogen chloride": "hcl",
    "sulfur dioxide": "so2",
    "methanol": "ch3oh",
    "formaldehyde": "hcho",
    "acrylonitrile": "c3h3n",
    "vinyl chloride": "c2h3cl",
    "vcm": "c2h3cl",
    "ethylene oxide": "c2h4o",
}
#: GB/T 50493-2019 §5.5.2: first tier ≤ 25 %LEL, second ≤ 50 %LEL; toxic ≤ 100 % and ≤ 200 %
#: of the occupational exposure limit.
COMBUSTIBLE_LEL = (25.0, 50.0)
TOXIC_OEL_SHARE = (1.0, 2.0)


def exposure_limit(substance: str | None) -> ExposureLimit | None:
    key = (substance or "").strip().lower()
    return EXPOSURE_LIMITS.get(ALIASES.get(key, key))


def _unit(sensor: Sensor) -> str:
    return (sensor.unit or "").replace(" ", "").lower()


def combustible(sensor: Sensor) -> bool:
    return sensor.kind == "gas" and (
        _unit(sensor) == "%lel" or (sensor.substance or "").strip().lower() == "lel"
    )


def standard_limits(sensor: Sensor) -> dict[str, Any] | None:
    """What GB/T 50493-2019 allows the sensor's first and second tiers, in its unit, and why
    (None: the standard says nothing of it: not a gas, or a gas and unit not in the table)."""
    if combustible(sensor):
        return {
            "class": "combustible",
            "first_tier_max": COMBUSTIBLE_LEL[0],
            "second_tier_max": COMBUSTIBLE_LEL[1],
            "unit": "%LEL",
            "basis": "GB/T 50493-2019 5.5.2: first tier <= 25 %LEL, second <= 50 %LEL",
        }
    limit = exposure_limit(sensor.substance) if sensor.kind == "gas" else None
    unit = _unit(sensor)
    if limit is None or unit not in ("ppm", "mg/m3", "mg/m³"):
        return None
    oel = limit.ppm if unit == "ppm" else limit.mg_m3
    return {
        "class": "toxic",
        "first_tier_max": round(oel * TOXIC_OEL_SHARE[0], 4),
        "second_tier_max": round(oel * TOXIC_OEL_SHARE[1], 4),
        "unit": sensor.unit,
        "basis": (
            f"GB/T 50493-2019 5.5.2: first tier <= 100 %, second <= 200 % of the OEL; "
            f"GBZ 2.1-2019 {limit.name} {limit.kind} {limit.mg_m3:g} mg/m3 "
            f"= {limit.ppm:.3g} ppm at 20 degC"
        ),
    }


def default_thresholds(sensor: Sensor) -> tuple[float | None, float | None, float | None] | None:
    """The standard's bounds as the sensor's warning and alarm (no high alarm), or None."""
    limits = standard_limits(sensor)
    if limits is None:
        return None
    return (limits["first_tier_max"], limits["second_tier_max"], None)


# -- per-sensor settings ------------------------------------------------------------------------


@dataclass(frozen=True)
class AlarmSettings:
    """A sensor's overrides (None: not overridden)."""

    thresholds: tuple[float | None, float | None, float | None] | None = None
    deadband: float | None = None  # in the sensor's unit
    on_delay_s: float = 0.0
    off_delay_s: float = 0.0
    #: ISA-18.2 rationalization, per tier: what the alarm means and what to do.
    meanings: Mapping[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "thresholds": dict(zip(TIERS, self.thresholds, strict=True))
            if self.thresholds is not None
            else None,
            "deadband": self.deadband,
            "on_delay_s": self.on_delay_s,
            "off_delay_s": self.off_delay_s,
            "meanings": dict(self.meanings),
        }


NO_SETTINGS = AlarmSettings()


def thresholds_of(
    sensor: Sensor, settings: AlarmSettings
) -> tuple[tuple[float | None, float | None, float | None], str]:
    """The thresholds in force and where they come from: ``settings``, ``layer``, ``standard``
    or ``none``."""
    if settings.thresholds is not None:
        return settings.thresholds, "settings"
    if any(t is not None for t in sensor.thresholds):
        return sensor.thresholds, "layer"
    defaults = default_thresholds(sensor)
    if defaults is not None:
        return defaults, "standard"
    return sensor.thresholds, "none"


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def parse_settings(body: Any, sensor: Sensor) -> AlarmSettings:
    """``{"thresholds"?: {"warning", "alarm", "high_alarm"}, "deadband"?, "on_delay_s"?,
    "off_delay_s"?, "meanings"?: {tier: text}}``, every field checked; :class:`InvalidInput`
    names each bad one."""
    if not isinstance(body, dict):
        raise InvalidInput("send the settings as an object", errors=[FieldError("body", "object")])
    errors: list[FieldError] = []
    known = {"thresholds", "deadband", "on_delay_s", "off_delay_s", "meanings"}
    errors += [FieldError(k or "body", f"unknown field {k!r}") for k in sorted(set(body) - known)]
    thresholds: tuple[float | None, float | None, float | None] | None = None
    raw = body.get("thresholds")
    low, high = physical_range(sensor)
    if raw is not None:
        if not isinstance(raw, dict) or set(raw) - set(TIERS):
            errors.append(FieldError("thresholds", f"an object of {', '.join(TIERS)}"))
        else:
            values: list[float | None] = []
            for tier in TIERS:
                v = raw.get(tier)
                if v is not None and not (_number(v) and low <= v <= high):
                    errors.append(
                        FieldError(f"thresholds.{tier}", f"a number from {low:g} to {high:g}")
                    )
                    v = None
                values.append(None if v is None else float(v))
            given = [v for v in values if v is not None]
            if not given and not errors:
                errors.append(FieldError("thresholds", "at least one threshold"))
            for tier, a, b in zip(TIERS[1:], given, given[1:], strict=False):
                if b <= a:
                    errors.append(FieldError(f"thresholds.{tier}", "thresholds must rise"))
                    break
            thresholds = (values[0], values[1], values[2])
    deadband = body.get("deadband")
    if deadband is not None:
        if not (_number(deadband) and 0 <= deadband <= 1e6):
            errors.append(FieldError("deadband", "a number from 0 in the sensor's unit"))
            deadband = None
        else:
            deadband = float(deadband)
            in_force = thresholds or thresholds_of(sensor, NO_SETTINGS)[0]
            lowest = min((t for t in in_force if t is not None), default=None)
            # A concentration cannot fall below zero: a deadband as wide as the lowest
            # threshold would hold the alarm for ever.
            if low == 0 and lowest is not None and deadband >= lowest:
                errors.append(FieldError("deadband", f"less than the lowest threshold {lowest:g}"))
    delays = {}
    for name in ("on_delay_s", "off_delay_s"):
        v = body.get(name, 0)
        if not (_number(v) and 0 <= v <= MAX_DELAY_S):
            errors.append(FieldError(name, f"seconds from 0 to {MAX_DELAY_S:g}"))
            v = 0
        delays[name] = float(v)
    meanings = body.get("meanings") or {}
    if not isinstance(meanings, dict):
        errors.append(FieldError("meanings", "an object of tier: text"))
        meanings = {}
    for tier, text in meanings.items():
        if tier not in TIERS:
            errors.append(FieldError(f"meanings.{tier}", f"one of {', '.join(TIERS)}"))
        elif not isinstance(text, str) or not 1 <= len(text.strip()) <= TEXT_MAX:
            errors.append(FieldError(f"meanings.{tier}", f"text of 1 to {TEXT_MAX} characters"))
    if errors:
        raise InvalidInput(f"{len(errors)} bad alarm setting(s); nothing changed", errors=errors)
    return AlarmSettings(
        thresholds,
        deadband,
        delays["on_delay_s"],
        delays["off_delay_s"],
        {k: str(v).strip() for k, v in meanings.items()},
    )


# -- tiers with deadband and delays ------------------------------------------------------------


@dataclass
class Debounce:
    """One sensor's timers: since when its reading has stood at or above each tier's threshold
    (``on_since``) and below it minus the deadband (``off_since``), and its last value."""

    value: float = 0.0
    on_since: list[datetime | None] = field(default_factory=lambda: [None, None, None])
    off_since: list[datetime | None] = field(default_factory=lambda: [None, None, None])


def settle(
    timers: Debounce,
    thresholds: Sequence[float | None],
    settings: AlarmSettings,
    current: str | None,
    now: datetime,
    value: float | None = None,
) -> tuple[str | None, bool]:
    """The sensor's tier at ``now`` after ``value`` (None: no new reading, the tick), given the
    tier it is in; and whether a delay is still running (the tick must look again)."""
    if value is not None:
        timers.value = value
        for i, threshold in enumerate(thresholds):
            if threshold is None:
                timers.on_since[i] = timers.off_since[i] = None
                continue
            band = settings.deadband if settings.deadband is not None else threshold * HYSTERESIS
            timers.on_since[i] = (timers.on_since[i] or now) if value >= threshold else None
            timers.off_since[i] = (timers.off_since[i] or now) if value < threshold - band else None
    on = timedelta(seconds=settings.on_delay_s)
    off = timedelta(seconds=settings.off_delay_s)
    held = TIERS.index(current) if current is not None else -1
    rank = -1
    for i in range(held + 1, len(TIERS)):
        since = timers.on_since[i]
        if thresholds[i] is not None and since is not None and now - since >= on:
            rank = i
    if rank < 0:
        for i in range(held, -1, -1):
            since = timers.off_since[i]
            if thresholds[i] is not None and not (since is not None and now - since >= off):
                rank = i
                break
    pending = any(
        thresholds[i] is not None
        and (
            (i > rank and timers.on_since[i] is not None)
            or (i <= rank and timers.off_since[i] is not None)
        )
        for i in range(len(TIERS))
    )
    return (TIERS[rank] if rank >= 0 else None), pending


# -- areas and voting ---------------------------------------------------------------------------


def areas_of(zones: Iterable[Mapping[str, Any]], sensors: Mapping[str, Sensor]) -> dict[str, str]:
    """Sensor id -> its area: the smallest zone holding it (muster points aside). A sensor in
    no zone is an area of its own, named by its id."""
    polygons = []
    ids = []
    for zone in zones:
        if zone.get("properties", {}).get("kind") in NOT_AREAS or not zone.get("geometry"):
            continue
        polygons.append(shape(zone["geometry"]))
        ids.append(str(zone["id"]))
    tree = shapely.STRtree(polygons) if polygons else None
    out: dict[str, str] = {}
    for sensor in sensors.values():
        found: list[int] = []
        if sensor.lonlat is not None and tree is not None:
            point = shapely.Point(sensor.lonlat)
            found = [int(i) for i in tree.query(point, predicate="intersects")]
        best = min(found, key=lambda i: (polygons[i].area, ids[i]), default=None)
        out[sensor.id] = ids[best] if best is not None else sensor.id
    return out


def voting_group(sensor: Sensor) -> tuple[str, str]:
    return sensor.kind, (sensor.substance or "").strip().lower()


def default_voting(detectors: int) -> str:
    return "2oo2" if detectors >= 2 else "1oo1"


def votes_needed(mode: str, in_service: int) -> tuple[int, str]:
    """Votes that confirm an alarm under ``mode`` with ``in_service`` detectors of the group in
    service, and the mode as it stands (degraded when too few are in service)."""
    needed = 2 if mode == "2oo2" else 1
    if in_service < needed:
        return max(in_service, 1), f"{max(in_service, 1)}oo{max(in_service, 1)}"
    return needed, mode


# -- modes: shelved, out of service, test -------------------------------------------------------


@dataclass(frozen=True)
class SensorMode:
    mode: str  # one of MODES
    reason: str
    by: str
    since: datetime
    until: datetime | None = None  # shelved: when the clock unshelves it

    def as_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "reason": self.reason,
            "by": self.by,
            "since": self.since.isoformat(),
            "until": self.until.isoformat() if self.until else None,
        }


def parse_mode(body: Any, mode: str, now: datetime) -> tuple[str, datetime | None]:
    """``{"reason", "until"? | "for_s"?}`` (shelving needs an expiry): the reason and expiry."""
    if not isinstance(body, dict):
        raise InvalidInput("send an object with a reason", errors=[FieldError("body", "object")])
    errors = []
    allowed = {"reason", "until", "for_s"} if mode == "shelved" else {"reason"}
    errors += [FieldError(k or "body", f"unknown field {k!r}") for k in sorted(set(body) - allowed)]
    reason = body.get("reason")
    if not isinstance(reason, str) or not 1 <= len(reason.strip()) <= TEXT_MAX:
        errors.append(FieldError("reason", f"text of 1 to {TEXT_MAX} characters"))
    until: datetime | None = None
    if mode == "shelved":
        raw_until, for_s = body.get("until"), body.get("for_s")
        if (raw_until is None) == (for_s is None):
            errors.append(FieldError("until", "an expiry: until (ISO 8601) or for_s, one of them"))
        elif for_s is not None:
            if not (_number(for_s) and 0 < for_s <= MAX_SHELVE_S):
                errors.append(FieldError("for_s", f"seconds from 1 to {MAX_SHELVE_S:g}"))
            else:
                until = now + timedelta(seconds=float(for_s))
        else:
            try:
                until = datetime.fromisoformat(str(raw_until).replace("Z", "+00:00"))
            except ValueError:
                until = None
            if until is None or until.tzinfo is None:
                errors.append(FieldError("until", "an ISO 8601 time with a UTC offset"))
                until = None
            elif not now < until <= now + timedelta(seconds=MAX_SHELVE_S):
                errors.append(FieldError("until", "in the future, at most 7 days ahead"))
                until = None
    if errors:
        raise InvalidInput(f"{len(errors)} bad field(s); nothing changed", errors=errors)
    return str(reason).strip(), until


# -- proposals ----------------------------------------------------------------------------------


def proposal_level(plan: PlanTemplate, confirmed: bool) -> Level | None:
    """The level a plan is proposed at: its L1 while the alarm is unconfirmed (none if it has
    no L1 pack), its lowest level from L2 once confirmed."""
    if not confirmed:
        return Level.L1 if Level.L1 in plan.levels else None
    return min((lv for lv in plan.levels if lv.rank >= 2), key=lambda lv: lv.rank, default=None)


# -- the event data ----------------------------------------------------------------------------


def state_event_data(
    sensor: Sensor,
    before: str | None,
    after: str | None,
    value: float,
    *,
    mark: Mapping[str, Any],
    test: bool = False,
    flags: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The data of a ``sensor.state`` event: the one place an alarm event's data is built
    (detector health adds its ``flags`` here)."""
    data: dict[str, Any] = {
        "sensor_id": sensor.id,
        "substance": sensor.substance,
        "from": before,
        "to": after,
        "value": value,
        **mark,
    }
    if test:
        data["test"] = True
    if flags:
        data["flags"] = dict(flags)
    return data


# -- storage -------------------------------------------------------------------------------------


@dataclass
class SiteAlarmSetup:
    """A site's stored alarm setup: per-sensor settings and modes, per-zone voting."""

    settings: dict[str, AlarmSettings] = field(default_factory=dict)
    modes: dict[str, SensorMode] = field(default_factory=dict)
    voting: dict[str, str] = field(default_factory=dict)


def load_setup(session: Session, site_id: str) -> SiteAlarmSetup:
    setup = SiteAlarmSetup()
    for row in session.scalars(
        select(SensorAlarmSettingsRow).where(SensorAlarmSettingsRow.site_id == site_id)
    ):
        setup.settings[row.sensor_id] = AlarmSettings(
            _triple(row.warning, row.alarm, row.high_alarm) if row.thresholds_set else None,
            row.deadband,
            row.on_delay_s,
            row.off_delay_s,
            dict(row.meanings or {}),
        )
        if row.mode is not None and row.mode_since is not None:
            setup.modes[row.sensor_id] = SensorMode(
                row.mode, row.mode_reason or "", row.mode_by or "", row.mode_since, row.mode_until
            )
    for area in session.scalars(select(AlarmAreaRow).where(AlarmAreaRow.site_id == site_id)):
        setup.voting[area.zone_id] = area.voting
    return setup


def stored_sites(session: Session) -> list[str]:
    """Sites with a sensor's stored settings or mode."""
    return list(session.scalars(select(SensorAlarmSettingsRow.site_id).distinct()))


def _triple(
    a: float | None, b: float | None, c: float | None
) -> tuple[float | None, float | None, float | None]:
    return (a, b, c)


def store_sensor(
    session: Session,
    site_id: str,
    sensor_id: str,
    settings: AlarmSettings,
    mode: SensorMode | None,
    *,
    actor: str,
    now: datetime,
) -> None:
    """Write one sensor's settings and mode (a row with neither is removed)."""
    row = session.get(SensorAlarmSettingsRow, (site_id, sensor_id))
    if settings == NO_SETTINGS and mode is None:
        if row is not None:
            session.delete(row)
        return
    if row is None:
        row = SensorAlarmSettingsRow(site_id=site_id, sensor_id=sensor_id)
        session.add(row)
    t = settings.thresholds
    row.thresholds_set = t is not None
    row.warning, row.alarm, row.high_alarm = t if t is not None else (None, None, None)
    row.deadband = settings.deadband
    row.on_delay_s = settings.on_delay_s
    row.off_delay_s = settings.off_delay_s
    row.meanings = dict(settings.meanings)
    row.mode = mode.mode if mode else None
    row.mode_reason = mode.reason if mode else None
    row.mode_by = mode.by if mode else None
    row.mode_since = mode.since if mode else None
    row.mode_until = mode.until if mode else None
    row.updated_at = now
    row.updated_by = actor


def store_voting(
    session: Session, site_id: str, zone_id: str, voting: str | None, *, actor: str, now: datetime
) -> None:
    """Write a zone's voting mode (None: back to the default)."""
    session.execute(
        delete(AlarmAreaRow).where(AlarmAreaRow.site_id == site_id, AlarmAreaRow.zone_id == zone_id)
    )
    if voting is not None:
        session.add(
            AlarmAreaRow(
                site_id=site_id, zone_id=zone_id, voting=voting, updated_at=now, updated_by=actor
            )
        )


# -- the board: a site's (or a drill's) tiers, timers and confirmations -------------------------

#: Per mode, the events that set and clear it.
SET_EVENTS = {
    "shelved": "sensor.shelved",
    "out_of_service": "sensor.out_of_service",
    "test": "sensor.test_started",
}
CLEAR_EVENTS = {
    "shelved": "sensor.unshelved",
    "out_of_service": "sensor.in_service",
    "test": "sensor.test_ended",
}
#: Modes in which a detector's readings move no tier.
SILENT = ("shelved", "out_of_service")
#: The tier from which a detector votes (the standard's second tier).
VOTING_TIER = TIERS.index("alarm")

#: (site, drill or None): a site's real alarms, or one drill's own.
Scope = tuple[str, str | None]
#: Plan id and sensor -> the incident of that plan already running at the sensor's place.
RunningAt = Callable[[str, Sensor], str | None]


@dataclass
class Outcome:
    """What one evaluation decided: the events to log, and the state memory takes once they
    are logged (:meth:`AlarmBoard.apply`)."""

    drafts: list[Draft]
    timers: dict[str, Debounce]
    pending: set[str]
    confirmed: dict[str, dict[str, Any]]
    checks: set[str]


class AlarmBoard:
    """The alarm side of the command post: each site's stored setup (loaded on first use and
    kept as it is changed through the post), and per scope the detectors' timers, the sensors
    with a delay running, the alarms confirmed and the checks asked for. Only :meth:`apply`
    and the setters change it, once the events are logged."""

    def __init__(self) -> None:
        self.setups: dict[str, SiteAlarmSetup] = {}
        self.timers: dict[Scope, dict[str, Debounce]] = {}
        self.pending: dict[Scope, set[str]] = {}
        self.confirmed: dict[Scope, dict[str, dict[str, Any]]] = {}
        self.checks: dict[Scope, set[str]] = {}
        self._areas: dict[int, dict[str, str]] = {}  # model build -> sensor -> area
        self.loaded_all = False  # whether every site with stored settings is loaded

    def setup(self, site_id: str, session: Session) -> SiteAlarmSetup:
        if site_id not in self.setups:
            self.setups[site_id] = load_setup(session, site_id)
        return self.setups[site_id]

    def areas(
        self, build: int, zones: Iterable[Mapping[str, Any]], sensors: Mapping[str, Sensor]
    ) -> dict[str, str]:
        if build not in self._areas:
            if len(self._areas) > 8:
                self._areas.clear()
            self._areas[build] = areas_of(zones, sensors)
        return self._areas[build]

    def mode(self, scope: Scope, sensor_id: str) -> SensorMode | None:
        """A sensor's mode; a drill's injects know none (its scenario is what it is)."""
        if scope[1] is not None:
            return None
        return self.setups.get(scope[0], SiteAlarmSetup()).modes.get(sensor_id)

    def voting_of(
        self,
        scope: Scope,
        area: str,
        members: Sequence[Sensor],
        tiers: Mapping[str, str | None],
    ) -> dict[str, Any]:
        """The area's vote for a group of detectors: mode, as it stands, needed, voters."""
        setup = self.setups.get(scope[0], SiteAlarmSetup())
        mode = setup.voting.get(area) or default_voting(len(members))
        in_service = [m for m in members if self.mode(scope, m.id) is None]
        needed, as_voted = votes_needed(mode, len(in_service))
        voters = [
            m.id
            for m in in_service
            if (tier := tiers.get(m.id)) is not None and TIERS.index(tier) >= VOTING_TIER
        ]
        return {
            "area": area,
            "voting": mode,
            "as_voted": as_voted,
            "needed": needed,
            "in_service": len(in_service),
            "voters": sorted(voters),
        }

    def evaluate(
        self,
        scope: Scope,
        *,
        build: int,
        sensors: Mapping[str, Sensor],
        zones: Iterable[Mapping[str, Any]],
        tiers: dict[str, str | None],
        values: Sequence[tuple[str, float]] | None,
        now: datetime,
        actor: str,
        plans: Sequence[PlanTemplate],
        running_at: RunningAt,
        flags: Callable[[str], Mapping[str, Any] | None] | None = None,
    ) -> Outcome:
        """Readings (``values``, in order) or the clock (None: the sensors with a delay
        running) against the tiers: the events, with ``tiers`` updated in place."""
        site_id, exercise = scope
        setup = self.setups.get(site_id, SiteAlarmSetup())
        timers = dict(self.timers.get(scope, {}))
        pending = set(self.pending.get(scope, set()))
        confirmed = dict(self.confirmed.get(scope, {}))
        checks = set(self.checks.get(scope, set()))
        mark: dict[str, Any] = {"exercise": exercise} if exercise is not None else {}
        todo: Sequence[tuple[str, float | None]] = (
            values if values is not None else [(s, None) for s in sorted(pending)]
        )
        drafts: list[Draft] = []
        changed: list[tuple[Sensor, str | None, str | None, bool]] = []
        copied: set[str] = set()
        for sensor_id, value in todo:
            sensor = sensors.get(sensor_id)
            mode = self.mode(scope, sensor_id)
            if sensor is None or sensor.kind == "wind" or (mode and mode.mode in SILENT):
                timers.pop(sensor_id, None)
                pending.discard(sensor_id)
                continue
            settings = setup.settings.get(sensor_id, NO_SETTINGS)
            thresholds, _ = thresholds_of(sensor, settings)
            if sensor_id not in copied:  # memory keeps the old timers until logged
                old = timers.get(sensor_id)
                timers[sensor_id] = (
                    Debounce(old.value, list(old.on_since), list(old.off_since))
                    if old
                    else Debounce()
                )
                copied.add(sensor_id)
            timer = timers[sensor_id]
            before = tiers.get(sensor_id)
            after, waiting = settle(timer, thresholds, settings, before, now, value)
            (pending.add if waiting else pending.discard)(sensor_id)
            if after == before:
                continue
            tiers[sensor_id] = after
            test = mode is not None and mode.mode == "test"
            extra = flags(sensor_id) if flags is not None else None
            data = state_event_data(
                sensor, before, after, timer.value, mark=mark, test=test, flags=extra
            )
            drafts.append(Draft("sensor.state", actor, data))
            changed.append((sensor, before, after, test))
            if after is None:
                confirmed.pop(sensor_id, None)
                checks.discard(sensor_id)
        real = [c for c in changed if not c[3]]
        # Voting: each area and group a real change touched.
        areas = self.areas(build, zones, sensors)
        groups = {(areas.get(s.id, s.id), voting_group(s)) for s, _, after, _ in real if after}
        newly: dict[str, dict[str, Any]] = {}
        for area, group in sorted(groups):
            members = [
                m
                for m in sensors.values()
                if areas.get(m.id, m.id) == area and voting_group(m) == group
            ]
            vote = self.voting_of(scope, area, members, tiers)
            if len(vote["voters"]) < vote["needed"]:
                continue
            for voter in vote["voters"]:
                if voter in confirmed:
                    continue
                how = {
                    "how": "voting",
                    "voting": vote["voting"],
                    "as_voted": vote["as_voted"],
                    "area": area,
                    "detectors": vote["voters"],
                }
                confirmed[voter] = {**how, "at": now.isoformat()}
                newly[voter] = how
                checks.discard(voter)  # the check is answered
        for voter, how in newly.items():
            data = {"sensor_id": voter, "tier": tiers.get(voter), **how, **mark}
            drafts.append(Draft("sensor.confirmed", "system", data))
        # The post is asked to check each alarm that rose from normal unconfirmed.
        for sensor, before, after, _ in real:
            if before is None and after is not None and sensor.id not in confirmed:
                checks.add(sensor.id)
                drafts.append(
                    Draft(
                        "sensor.check_requested",
                        "system",
                        {
                            "sensor_id": sensor.id,
                            "substance": sensor.substance,
                            "tier": after,
                            "value": timers[sensor.id].value,
                            "area": areas.get(sensor.id, sensor.id),
                            "meaning": setup.settings.get(sensor.id, NO_SETTINGS).meanings.get(
                                after
                            ),
                            **mark,
                        },
                    )
                )
        # Plans: on a rise, at L1 unconfirmed or from L2 confirmed; on a confirmation, from L2.
        rose = {
            s.id
            for s, before, after, _ in real
            if after is not None and (before is None or TIERS.index(after) > TIERS.index(before))
        }
        for sensor_id in sorted(rose | set(newly), key=lambda s: (s not in rose, s)):
            tier = tiers.get(sensor_id)
            if tier is None:
                continue
            drafts += proposals(
                sensors[sensor_id],
                tier,
                plans,
                confirmed=sensor_id in confirmed,
                running_at=running_at,
                mark=mark,
            )
        return Outcome(drafts, timers, pending, confirmed, checks)

    def apply(self, scope: Scope, outcome: Outcome) -> None:
        self.timers[scope] = outcome.timers
        self.pending[scope] = outcome.pending
        self.confirmed[scope] = outcome.confirmed
        self.checks[scope] = outcome.checks

    def follow(self, events: Iterable[Any]) -> None:
        """Replay logged real events (a restart): confirmations and checks."""
        for event in events:
            data = event.data
            if data.get("exercise") is not None or "sensor_id" not in data:
                continue
            scope: Scope = (event.site_id, None)
            sensor_id = str(data["sensor_id"])
            if event.type == "sensor.confirmed":
                how = {k: v for k, v in data.items() if k not in ("sensor_id", "tier")}
                self.confirmed.setdefault(scope, {})[sensor_id] = {
                    **how,
                    "at": event.at.isoformat(),
                }
                self.checks.get(scope, set()).discard(sensor_id)
            elif event.type == "sensor.check_requested":
                self.checks.setdefault(scope, set()).add(sensor_id)
            elif event.type == "sensor.state" and data.get("to") is None:
                self.confirmed.get(scope, {}).pop(sensor_id, None)
                self.checks.get(scope, set()).discard(sensor_id)

    def conditions(self, site_id: str) -> dict[str, Any]:
        """For the wall: alarms confirmed (and how), checks asked for, sensors in a mode."""
        scope: Scope = (site_id, None)
        modes = self.setups.get(site_id, SiteAlarmSetup()).modes
        return {
            "confirmed": {k: dict(v) for k, v in sorted(self.confirmed.get(scope, {}).items())},
            "checks": sorted(self.checks.get(scope, set())),
            "modes": {k: m.as_dict() for k, m in sorted(modes.items())},
        }


def proposals(
    sensor: Sensor,
    tier: str,
    plans: Sequence[PlanTemplate],
    *,
    confirmed: bool,
    running_at: RunningAt,
    mark: Mapping[str, Any],
) -> list[Draft]:
    """``plan.proposed`` events for the plans whose trigger ``tier`` meets, one per level they
    are proposed at (:func:`proposal_level`); a plan already running at the sensor's place is
    pointed to (``running``) instead."""
    by_level: dict[Level, list[str]] = {}
    for plan_id in proposed_plans(sensor, tier, plans):
        plan = next(p for p in plans if p.id == plan_id)
        level = proposal_level(plan, confirmed)
        if level is not None:
            by_level.setdefault(level, []).append(plan_id)
    out = []
    for level, plan_ids in sorted(by_level.items(), key=lambda kv: kv[0].rank):
        running = {p: found for p in plan_ids if (found := running_at(p, sensor)) is not None}
        out.append(
            Draft(
                "plan.proposed",
                "system",
                {
                    "sensor_id": sensor.id,
                    "tier": tier,
                    "plans": [p for p in plan_ids if p not in running],
                    "running": running,
                    "level": level.value,
                    "confirmed": confirmed,
                    **mark,
                },
            )
        )
    return out
