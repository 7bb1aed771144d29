"""Detector health: is a detector's reading worth trusting (``docs/monitoring.md``, "Detector
health")?

Each detector is checked for
- ``stale``: no reading for ``stale_after_s`` (on the post's tick, each second);
- ``stuck``: exactly the same reading, away from what it reads in clean air, for
  ``stuck_after_s`` and at least ``stuck_readings`` readings (a healthy detector's output
  always carries some noise; one that sits at 0 in clean air is *not* stuck: a dead cell that
  reads clean air is what a bump test finds, not the data);
- ``out_of_range``: at or above the instrument's full scale, or below its negative zero-drift
  limit (the instrument's range, narrower than :func:`command.sensors.refuse_impossible`'s
  physical one);
- ``drifting``: the baseline (the 10th percentile of each hour's readings) moves by more than
  ``drift_pct_per_day`` % of the span a day, fitted over at least ``drift_min_hours`` hours;
- ``overdue_calibration``, ``overdue_bump_test``: its last record's due date has passed
  (:mod:`command.monitoring.maintenance`).

The limits are the detector's class defaults (:func:`rules_for`), under its own settings where
a planner set them (:mod:`command.monitoring.health_settings`). Only a change of a detector's
flags is an event (``sensor.health``, with the flags raised and cleared and the evidence of
each flag held); an alarm of a flagged detector carries them
(:meth:`DetectorHealth.alarm_flags`). Per sensor, memory is bounded: a few numbers, one
hour's 64 decimated readings and a week of hourly baselines, in numpy arrays shared by a site's
detectors, so that a batch of readings costs a few vectorised operations.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from command import events as event_log
from command.monitoring.health_settings import HealthSettings, apply, parse_settings, rules_dict
from command.monitoring.health_settings import load as load_settings
from command.monitoring.health_settings import store as store_settings
from command.monitoring.maintenance import add_record, due_dates, parse_record, record_dict, summary
from command.sensors import DEFAULT_UNITS, Reading, Sensor
from gis.errors import FieldError, NotFound

if TYPE_CHECKING:
    from command.post import CommandPost

log = logging.getLogger(__name__)

#: The flags a detector can carry, in the order they are listed.
FLAGS = (
    "stale",
    "stuck",
    "out_of_range",
    "drifting",
    "overdue_calibration",
    "overdue_bump_test",
)
#: Flags that come from the readings (the rest from the maintenance records).
READING_FLAGS = FLAGS[:4]
#: Readings kept per hour per sensor for its baseline (later readings of a slot replace it).
WINDOW_SLOTS = 64
#: A window with fewer readings (slots) than this gives no baseline (a mostly silent hour).
MIN_WINDOW_READINGS = 6
#: One baseline per window of this many seconds.
WINDOW_S = 3600.0
#: Baselines kept per sensor: a week of hours.
BASELINES = 168
#: The baseline is this percentile of a window's readings: an alarm, a puff of gas or a
#: bump test lasting less than most of the hour does not move it.
BASELINE_PERCENTILE = 10.0

#: Typical instrument ranges (full scale) of fixed toxic-gas transmitters, in ppm. GB/T
#: 50493-2019 asks for a range of 0 to 300 % of the occupational exposure limit; these common
#: ranges cover it. A sensor whose highest alarm point is above half of its entry gets twice
#: that point instead (no instrument alarms near the end of its own range).
TOXIC_FULL_SCALE_PPM: dict[str, float] = {
    "h2s": 100.0,
    "co": 1000.0,
    "cl2": 10.0,
    "nh3": 500.0,
    "so2": 20.0,
    "no2": 20.0,
    "no": 100.0,
    "hcn": 50.0,
    "hcl": 20.0,
    "hf": 10.0,
    "ph3": 5.0,
    "cocl2": 1.0,
    "c2h4o": 20.0,
    "eto": 20.0,
    "h2": 1000.0,
    "o3": 1.0,
    "ch2o": 10.0,
}
#: Full scale of %vol instruments by substance; oxygen reads 20.9 %vol in clean air.
VOL_FULL_SCALE: dict[str, float] = {"o2": 25.0, "co2": 5.0}
CLEAN_O2_VOL = 20.9


@dataclass(frozen=True)
class HealthRules:
    """What healthy means for one detector (``rules_for`` gives the defaults of its class)."""

    stale_after_s: float
    #: Instrument range: below ``range_low`` (its negative zero-drift limit) or at/above
    #: ``full_scale`` is out of range. None: not checked.
    range_low: float | None = None
    full_scale: float | None = None
    #: The smallest step it reports (1 % of full scale unless known).
    resolution: float = 1.0
    #: What it reads in clean air (None: it has no such value, no stuck check).
    clean_value: float | None = None
    stuck_after_s: float = 1800.0
    stuck_readings: int = 10
    #: Baseline drift check (None: not checked).
    drift_pct_per_day: float | None = None
    drift_min_hours: float = 24.0


def rules_for(sensor: Sensor) -> HealthRules:
    """The class defaults for ``sensor`` (``docs/monitoring.md`` lists them)."""
    unit = (sensor.unit or DEFAULT_UNITS.get(sensor.kind, "")).replace(" ", "").lower()
    substance = (sensor.substance or "").replace(" ", "").lower()
    top = max((t for t in sensor.thresholds if t is not None), default=None)
    if sensor.kind == "wind":
        # A cup or ultrasonic anemometer reads to about 60 m/s; calm air is 0.
        return HealthRules(60.0, 0.0, 60.0, 0.1, 0.0)
    if sensor.kind == "temperature":
        # A Pt100 transmitter's usual range; open or short circuits read beyond it.
        return HealthRules(300.0, -40.0, 150.0, 0.1)
    if sensor.kind != "gas":
        return HealthRules(300.0)
    full: float | None
    clean = 0.0
    if unit == "%lel":
        full = 100.0
    elif unit == "%vol":
        full = VOL_FULL_SCALE.get(substance, 100.0)
        clean = CLEAN_O2_VOL if substance == "o2" else 0.0
    elif unit in ("ppm", "ppb", "mg/m3", "mg/m³"):
        table = TOXIC_FULL_SCALE_PPM.get(substance) if unit == "ppm" else None
        full = table if table is not None and (top is None or top <= table / 2) else None
        if full is None and top is not None:
            full = 2.0 * top
    else:
        full = 2.0 * top if top is not None else None
    if full is None:
        return HealthRules(60.0, clean_value=clean, drift_pct_per_day=1.0)
    # NAMUR NE 43: a 4-20 mA transmitter below 3.6 mA (-2.5 % of span) reports a fault.
    return HealthRules(
        60.0,
        range_low=clean - 0.025 * full,
        full_scale=full,
        resolution=0.01 * full,
        clean_value=clean,
        drift_pct_per_day=1.0,
    )


class SiteHealth:
    """The health state of one site's detectors, one row of each array per sensor."""

    def __init__(
        self, sensors: Mapping[str, Sensor], settings: Mapping[str, HealthSettings] | None = None
    ) -> None:
        self.index: dict[str, int] = {}
        self.ids: list[str] = []
        self.rules: list[HealthRules] = []
        n = 0
        self.stale_after = np.zeros(n)
        self.low = np.zeros(n)
        self.full = np.zeros(n)
        self.clean = np.zeros(n)
        self.band = np.zeros(n)
        self.stuck_after = np.zeros(n)
        self.stuck_count = np.zeros(n, dtype=np.int64)
        self.last_at = np.zeros(n)
        self.last_value = np.zeros(n)
        self.flat_since = np.zeros(n)
        self.flat_count = np.zeros(n, dtype=np.int64)
        self.window_start = np.zeros(n)
        self.window = np.zeros((n, WINDOW_SLOTS))
        self.base_t = np.zeros((n, BASELINES))
        self.base_v = np.zeros((n, BASELINES))
        self.base_n = np.zeros(n, dtype=np.int64)
        self.flags = np.zeros((n, len(READING_FLAGS)), dtype=bool)
        #: sensor -> flag -> its evidence, for the flags raised now.
        self.evidence: dict[str, dict[str, dict[str, Any]]] = {}
        self.add(sensors, settings)

    def add(
        self, sensors: Mapping[str, Sensor], settings: Mapping[str, HealthSettings] | None = None
    ) -> None:
        """Give rows to sensors not seen yet (a layer edit may add some), with their class's
        rules under their own ``settings``."""
        new = [s for s in sensors.values() if s.id not in self.index]
        if not new:
            return
        own = settings or {}
        rules = [apply(rules_for(s), own.get(s.id)) for s in new]
        for sensor, rule in zip(new, rules, strict=True):
            self.index[sensor.id] = len(self.ids)
            self.ids.append(sensor.id)
            self.rules.append(rule)
        k = len(new)
        nan = np.full(k, np.nan)

        def col(values: list[float | None]) -> np.ndarray:
            return np.array([np.nan if v is None else v for v in values], dtype=float)

        self.stale_after = np.concatenate([self.stale_after, col([r.stale_after_s for r in rules])])
        self.low = np.concatenate([self.low, col([r.range_low for r in rules])])
        self.full = np.concatenate([self.full, col([r.full_scale for r in rules])])
        self.clean = np.concatenate([self.clean, col([r.clean_value for r in rules])])
        self.band = np.concatenate([self.band, col([r.resolution for r in rules])])
        self.stuck_after = np.concatenate([self.stuck_after, col([r.stuck_after_s for r in rules])])
        self.stuck_count = np.concatenate(
            [self.stuck_count, np.array([r.stuck_readings for r in rules], dtype=np.int64)]
        )
        self.last_at = np.concatenate([self.last_at, nan])
        self.last_value = np.concatenate([self.last_value, nan])
        self.flat_since = np.concatenate([self.flat_since, nan])
        self.flat_count = np.concatenate([self.flat_count, np.zeros(k, dtype=np.int64)])
        self.window_start = np.concatenate([self.window_start, nan])
        self.window = np.concatenate([self.window, np.full((k, WINDOW_SLOTS), np.nan)])
        self.base_t = np.concatenate([self.base_t, np.full((k, BASELINES), np.nan)])
        self.base_v = np.concatenate([self.base_v, np.full((k, BASELINES), np.nan)])
        self.base_n = np.concatenate([self.base_n, np.zeros(k, dtype=np.int64)])
        self.flags = np.concatenate([self.flags, np.zeros((k, len(READING_FLAGS)), dtype=bool)])

    def set_rules(self, row: int, rules: HealthRules) -> None:
        """New rules for one detector (its own settings changed)."""
        self.rules[row] = rules
        nan = float("nan")
        self.stale_after[row] = rules.stale_after_s
        self.low[row] = nan if rules.range_low is None else rules.range_low
        self.full[row] = nan if rules.full_scale is None else rules.full_scale
        self.clean[row] = nan if rules.clean_value is None else rules.clean_value
        self.band[row] = rules.resolution
        self.stuck_after[row] = rules.stuck_after_s
        self.stuck_count[row] = rules.stuck_readings
        if not math.isnan(self.last_value[row]):  # the latest reading, against the new range
            rows = np.array([row])
            self._flag_range(rows, self.flags[rows, 2].copy())

    # -- readings ---------------------------------------------------------------------------------

    def observe(self, rows: np.ndarray, values: np.ndarray, at: float) -> np.ndarray:
        """Take a batch of readings made at ``at`` (epoch seconds), in order; ``rows`` are the
        sensors' rows. Returns the rows whose flags changed."""
        if rows.size == 0:
            return rows
        # Per sensor, in batch order: did any reading differ from the one before it?
        order = np.argsort(rows, kind="stable")
        r, v = rows[order], values[order]
        first = np.ones(r.size, dtype=bool)
        first[1:] = r[1:] != r[:-1]
        before = np.empty_like(v)
        before[1:] = v[:-1]
        before[first] = self.last_value[r[first]]
        changed = v != before  # NaN (no reading yet) compares unequal: a change
        touched = r[first]
        last = np.ones(r.size, dtype=bool)
        last[:-1] = r[1:] != r[:-1]
        latest = v[last]
        counts = np.diff(np.append(np.flatnonzero(first), r.size))
        moved = np.bitwise_or.reduceat(changed, np.flatnonzero(first))
        moved |= np.isnan(self.flat_since[touched])
        self.flat_since[touched] = np.where(moved, at, self.flat_since[touched])
        self.flat_count[touched] = np.where(moved, 1, self.flat_count[touched] + counts)
        self.last_value[touched] = latest
        # A batch relayed by another process may be older than one taken here meanwhile.
        self.last_at[touched] = np.fmax(self.last_at[touched], at)
        old = self.flags[touched].copy()  # before the window: it may close, and fit drift
        self._window(touched, latest, at)
        self.flags[touched, 0] = False  # a reading came: not stale
        self._flag_stuck(touched, at, old[:, 1])
        self._flag_range(touched, old[:, 2])
        for row in touched[old[:, 0]]:
            self._clear(int(row), "stale")
        differs = (self.flags[touched] != old).any(axis=1)
        return np.asarray(touched[differs], dtype=np.int64)

    def _window(self, rows: np.ndarray, values: np.ndarray, at: float) -> None:
        start = self.window_start[rows]
        fresh = np.isnan(start)
        self.window_start[rows[fresh]] = at
        start = self.window_start[rows]
        closed = at >= start + WINDOW_S
        for row in rows[closed]:  # once an hour per sensor: plain Python is fine
            self._close_window(int(row), at)
        slot = np.clip(
            ((at - self.window_start[rows]) / WINDOW_S * WINDOW_SLOTS).astype(np.int64),
            0,  # a relayed reading from just before the window (another process's)
            WINDOW_SLOTS - 1,
        )
        self.window[rows, slot] = values

    def _close_window(self, row: int, at: float) -> None:
        kept = self.window[row][~np.isnan(self.window[row])]
        start = self.window_start[row]
        if kept.size >= MIN_WINDOW_READINGS:
            i = self.base_n[row] % BASELINES
            self.base_t[row, i] = start + WINDOW_S / 2
            self.base_v[row, i] = np.percentile(kept, BASELINE_PERCENTILE)
            self.base_n[row] += 1
            self._flag_drift(row)
        self.window[row] = np.nan
        # The next window starts at the hour boundary the reading falls in.
        self.window_start[row] = start + WINDOW_S * math.floor((at - start) / WINDOW_S)

    def _flag_stuck(self, rows: np.ndarray, at: float, was: np.ndarray) -> None:
        value = self.last_value[rows]
        away = np.abs(value - self.clean[rows]) > self.band[rows]  # NaN clean: False
        flat = (at - self.flat_since[rows] >= self.stuck_after[rows]) & (
            self.flat_count[rows] >= self.stuck_count[rows]
        )
        stuck = away & flat
        self.flags[rows, 1] = stuck
        for row in rows[stuck & ~was]:
            self._evidence(
                int(row),
                "stuck",
                {
                    "value": float(self.last_value[row]),
                    "since": _iso(float(self.flat_since[row])),
                    "readings": int(self.flat_count[row]),
                    "clean_air_value": float(self.clean[row]),
                    "resolution": float(self.band[row]),
                },
            )
        for row in rows[was & ~stuck]:
            self._clear(int(row), "stuck")

    def _flag_range(self, rows: np.ndarray, was: np.ndarray) -> None:
        value = self.last_value[rows]
        out = (value >= self.full[rows]) | (value < self.low[rows])  # NaN bounds: False
        self.flags[rows, 2] = out
        for row in rows[out & ~was]:
            self._evidence(
                int(row),
                "out_of_range",
                {
                    "value": float(self.last_value[row]),
                    "range": [float(self.low[row]), float(self.full[row])],
                },
            )
        for row in rows[was & ~out]:
            self._clear(int(row), "out_of_range")

    def _flag_drift(self, row: int) -> None:
        rule = self.rules[row]
        if rule.drift_pct_per_day is None or math.isnan(self.full[row]):
            return
        ok = ~np.isnan(self.base_v[row])
        t, v = self.base_t[row, ok], self.base_v[row, ok]
        hours = (t.max() - t.min()) / 3600 if t.size else 0.0
        drifting = False
        slope_day = 0.0
        if t.size >= 3 and hours >= rule.drift_min_hours:
            tc = t - t.mean()
            slope_day = float((tc * (v - v.mean())).sum() / (tc * tc).sum()) * 86400
            limit = rule.drift_pct_per_day / 100 * (self.full[row] - self.clean[row])
            # A fitted trend smaller than one reporting step over the whole fit is quantisation.
            drifting = abs(slope_day) >= limit and abs(slope_day) * hours / 24 > self.band[row]
        self.flags[row, 3] = drifting
        if drifting:
            order = np.argsort(t)
            self._evidence(
                row,
                "drifting",
                {
                    "slope_per_day": round(slope_day, 4),
                    "pct_of_span_per_day": round(
                        100 * slope_day / (self.full[row] - self.clean[row]), 3
                    ),
                    "limit_pct_per_day": rule.drift_pct_per_day,
                    "hours": round(hours, 1),
                    "baseline_from": round(float(v[order[0]]), 4),
                    "baseline_to": round(float(v[order[-1]]), 4),
                },
            )
        else:
            self._clear(row, "drifting")

    # -- time -------------------------------------------------------------------------------------

    def tick(self, at: float) -> np.ndarray:
        """Flag detectors silent for longer than their limit; the rows that changed."""
        silent = at - self.last_at > self.stale_after  # never read: NaN, not stale
        changed = np.flatnonzero(silent != self.flags[:, 0])
        self.flags[changed, 0] = silent[changed]
        for row in changed:
            if silent[row]:
                self._evidence(
                    int(row),
                    "stale",
                    {
                        "last_reading_at": _iso(float(self.last_at[row])),
                        "silent_s": round(at - float(self.last_at[row]), 1),
                        "limit_s": float(self.stale_after[row]),
                    },
                )
            else:
                self._clear(int(row), "stale")
        return changed

    # -- flags ------------------------------------------------------------------------------------

    def _evidence(self, row: int, flag: str, evidence: dict[str, Any]) -> None:
        held = self.evidence.setdefault(self.ids[row], {})
        if flag not in held:  # the evidence of when it was raised
            held[flag] = evidence

    def _clear(self, row: int, flag: str) -> None:
        held = self.evidence.get(self.ids[row])
        if held is not None:
            held.pop(flag, None)
            if not held:
                del self.evidence[self.ids[row]]

    def reading_flags(self, sensor_id: str) -> list[str]:
        row = self.index.get(sensor_id)
        if row is None:
            return []
        return [f for f, on in zip(READING_FLAGS, self.flags[row], strict=True) if on]

    def last_reading_at(self, sensor_id: str) -> float | None:
        row = self.index.get(sensor_id)
        if row is None or math.isnan(self.last_at[row]):
            return None
        return float(self.last_at[row])


def _iso(epoch_s: float) -> str | None:
    if math.isnan(epoch_s):
        return None
    return datetime.fromtimestamp(epoch_s, UTC).isoformat()


class DetectorHealth:
    """Every site's detector health, fed by :class:`CommandPost`: its accepted real readings
    (:meth:`observe`) and its tick (:meth:`tick`); each change of a detector's flags is logged
    and published (``sensor.health``) under the post's lock."""

    def __init__(self, post: CommandPost) -> None:
        self.post = post
        self.sites: dict[str, SiteHealth] = {}
        #: site -> sensor -> the flags last logged, so that only a change is an event.
        self.logged: dict[str, dict[str, list[str]]] = {}
        #: site -> sensor -> kind -> when it is due (epoch s), from its latest records; read
        #: from the database on the first tick, then kept as records are added.
        self.due: dict[str, dict[str, dict[str, float]]] = {}
        self._due_read = False
        #: site -> sensor -> its own range and silence limit (``health_settings``), read once.
        self.settings: dict[str, dict[str, HealthSettings]] = {}
        #: Whether this process led at its last tick (one that takes over logs what its
        #: memory holds and the log does not: :meth:`tick`).
        self._led = False

    def site(self, site_id: str) -> SiteHealth:
        """The site's detectors (called under the post's lock: the model the post plans on,
        which its readings were checked against)."""
        model = self.post._planned_model(site_id)
        health = self.sites.get(site_id)
        settings = self._site_settings(site_id)
        if health is None:
            health = self.sites[site_id] = SiteHealth(model.sensors, settings)
            self._seed(site_id, health)
        else:
            health.add(model.sensors, settings)
        return health

    def _site_settings(self, site_id: str) -> dict[str, HealthSettings]:
        settings = self.settings.get(site_id)
        if settings is None:
            with self.post.db.read() as session:
                settings = self.settings[site_id] = load_settings(session, site_id).get(site_id, {})
        return settings

    # -- a detector's own settings ------------------------------------------------------------

    def settings_of(self, site_id: str, sensor_id: str) -> dict[str, Any]:
        """The detector's class defaults, its own settings and the rules in force."""
        sensor = self._sensor(site_id, sensor_id)
        with self.post._lock:
            own = self._site_settings(site_id).get(sensor_id)
        defaults = rules_for(sensor)
        return {
            "sensor_id": sensor_id,
            "defaults": rules_dict(defaults),
            "settings": own.as_dict() if own is not None else None,
            "effective": rules_dict(apply(defaults, own)),
        }

    def configure(
        self, site_id: str, sensor_id: str, body: Any, *, actor: str
    ) -> tuple[dict[str, Any], list[event_log.LoggedEvent]]:
        """Set the detector's own settings (checked whole first), logged
        (``sensor.health_settings``); its flags follow at once where its range changed them."""
        sensor = self._sensor(site_id, sensor_id)
        parsed = parse_settings(body, rules_for(sensor))
        post = self.post
        now = post.clock.now()
        with post._lock:
            with post.db.write() as session:
                store_settings(session, site_id, sensor_id, parsed, actor=actor, now=now)
                event = event_log.append(
                    session,
                    site_id,
                    "sensor.health_settings",
                    actor=actor,
                    data={"sensor_id": sensor_id, **parsed.as_dict()},
                    now=now,
                )
            own = self._site_settings(site_id)
            if parsed == HealthSettings():
                own.pop(sensor_id, None)
            else:
                own[sensor_id] = parsed
            post.hub.publish(site_id, [_message(event)])
            health = self.site(site_id)
            health.set_rules(health.index[sensor_id], apply(rules_for(sensor), own.get(sensor_id)))
            logged = [event, *self._log(site_id, [sensor_id])]
        return self.settings_of(site_id, sensor_id), logged

    def _sensor(self, site_id: str, sensor_id: str) -> Sensor:
        sensor = self.post.model(site_id).sensors.get(sensor_id)
        if sensor is None:
            raise NotFound(
                f"no sensor '{sensor_id}' at site '{site_id}'",
                errors=[FieldError("sensor", "unknown")],
            )
        return sensor

    def _prepare(self, site_id: str) -> None:
        """Before a site's first check, without the post's lock: its model built, and the
        flags last logged read from the log (a scan of the site's events, once)."""
        self.post.model(site_id)
        if site_id not in self.logged:
            flags = logged_flags(self.post, site_id)
            with self.post._lock:
                self.logged.setdefault(site_id, flags)

    def _seed(self, site_id: str, health: SiteHealth) -> None:
        """A restarted server knows each sensor's stored last reading (``sensor_readings``)
        and the flags last logged: a detector silent since before the restart is stale, and a
        flag held across the restart is not an event again."""
        for sensor_id, latest in self.post.last_readings.get(site_id, {}).items():
            row = health.index.get(sensor_id)
            at = latest.get("at")
            if row is not None and isinstance(at, str):
                health.last_at[row] = datetime.fromisoformat(at).timestamp()
        if site_id not in self.logged:
            self.logged[site_id] = logged_flags(self.post, site_id)

    # -- the post's hooks -------------------------------------------------------------------------

    def observe(
        self,
        site_id: str,
        readings: Sequence[Reading],
        *,
        exercise: str | None = None,
        at: datetime | None = None,
    ) -> list[event_log.LoggedEvent]:
        """Take a batch of accepted readings (a drill's injected ones: nothing), taken ``at``
        (now, unless another process took them: ``CommandPost.relayed_readings``)."""
        if exercise is not None or not readings:
            return []
        if site_id not in self.logged:
            self._prepare(site_id)
        with self.post._lock:
            health = self.site(site_id)
            index = health.index
            rows = np.fromiter(
                (index.get(r.sensor_id, -1) for r in readings), np.int64, len(readings)
            )
            values = np.fromiter((r.value for r in readings), float, len(readings))
            if (rows < 0).any():  # a sensor deleted since the batch was checked
                values, rows = values[rows >= 0], rows[rows >= 0]
            taken = (at or self.post.clock.now()).timestamp()
            changed = health.observe(rows, values, taken)
            if changed.size == 0:
                return []
            return self._log(site_id, [health.ids[int(r)] for r in changed])

    def tick(self) -> list[event_log.LoggedEvent]:
        """Stale detectors and passed due dates (call each second)."""
        out: list[event_log.LoggedEvent] = []
        with self.post._lock:
            if not self._due_read:
                with self.post.db.read() as session:
                    self.due = due_dates(session)
                self._due_read = True
            sites = set(self.sites) | set(self.post.last_readings) | set(self.due)
        for site_id in sorted(sites - set(self.sites)):  # the heavy part outside the lock
            with contextlib.suppress(NotFound):
                self._prepare(site_id)
        with self.post._lock:
            now = self.post.clock.now().timestamp()
            took_over, self._led = self.post.leading and not self._led, self.post.leading
            for site_id in sorted(sites):
                try:
                    out += self._tick_site(site_id, now, took_over=took_over)
                except NotFound:  # a site deleted meanwhile: nothing to watch
                    self.sites.pop(site_id, None)
                    self.due.pop(site_id, None)
                except Exception:  # one site's failure stops neither the others nor the tick
                    log.exception(
                        "detector health of site %s not checked; next tick retries", site_id
                    )
        return out

    def _tick_site(
        self, site_id: str, now: float, *, took_over: bool = False
    ) -> list[event_log.LoggedEvent]:
        health = self.site(site_id)
        changed = {health.ids[int(r)] for r in health.tick(now)}
        if took_over:
            # Flags the last leader had no time to log: of the detectors read since this
            # process started (a restart knows nothing of the others' held flags but the log).
            read = ~np.isnan(health.flat_since) | health.flags.any(axis=1)
            changed |= {health.ids[int(r)] for r in np.flatnonzero(read)}
        logged = self.logged.get(site_id, {})
        for sensor_id in self._site_due(site_id):
            overdue = set(self._overdue(site_id, sensor_id, now))
            if overdue != {f for f in logged.get(sensor_id, []) if f.startswith("overdue_")}:
                changed.add(sensor_id)
        return self._log(site_id, sorted(changed)) if changed else []

    # -- maintenance records ------------------------------------------------------------------

    def record(
        self, site_id: str, sensor_id: str, body: Any, *, actor: str
    ) -> tuple[dict[str, Any], list[event_log.LoggedEvent]]:
        """Add a calibration or bump-test record (checked whole first: nothing half-applied),
        log it (``sensor.maintenance``), and log the detector's health if that changes."""
        post = self.post
        self._sensor(site_id, sensor_id)
        now = post.clock.now()
        parsed = parse_record(body, now=now)
        with post._lock:
            with post.db.write() as session:
                row = add_record(session, site_id, sensor_id, parsed, actor=actor, now=now)
                saved = record_dict(row)
                event = event_log.append(
                    session, site_id, "sensor.maintenance", actor=actor, data=saved, now=now
                )
                due = due_dates(session, site_id).get(site_id, {})
            self.due[site_id] = due
            post.hub.publish(site_id, [_message(event)])
            self.site(site_id)
            return saved, [event, *self._log(site_id, [sensor_id])]

    def _site_due(self, site_id: str) -> dict[str, dict[str, float]]:
        """The site's due dates, read once (under the post's lock)."""
        due = self.due.get(site_id)
        if due is None:
            with self.post.db.read() as session:
                due = self.due[site_id] = due_dates(session, site_id).get(site_id, {})
        return due

    def due_of(self, site_id: str, sensor_id: str) -> dict[str, Any]:
        """When the detector's calibration and bump test are due, and whether overdue."""
        with self.post._lock:
            due = dict(self._site_due(site_id).get(sensor_id, {}))
        return summary(due, self.post.clock.now())

    def _overdue(self, site_id: str, sensor_id: str, now: float) -> dict[str, dict[str, Any]]:
        kinds = self._site_due(site_id).get(sensor_id, {})
        return {
            f"overdue_{kind}": {"due": _iso(at)} for kind, at in sorted(kinds.items()) if now >= at
        }

    # -- flags ------------------------------------------------------------------------------------

    def flags(self, site_id: str, sensor_id: str) -> list[str]:
        """The detector's current health flags, e.g. ``["stale", "overdue_calibration"]``:
        what an alarm of this detector carries."""
        with self.post._lock:
            health = self.sites.get(site_id)
            held = set(health.reading_flags(sensor_id)) if health is not None else set()
            held |= set(self._overdue(site_id, sensor_id, self.post.clock.now().timestamp()))
        return [f for f in FLAGS if f in held]

    def alarm_flags(self, site_id: str, sensor_id: str) -> dict[str, dict[str, Any]] | None:
        """What a ``sensor.state`` event of the detector carries as its ``flags``: each health
        flag held when the reading came, with its evidence (None: healthy)."""
        with self.post._lock:
            held = self.flags(site_id, sensor_id)
            if not held:
                return None
            evidence = self.evidence(site_id, sensor_id)
        return {flag: evidence.get(flag, {}) for flag in held}

    def evidence(self, site_id: str, sensor_id: str) -> dict[str, dict[str, Any]]:
        """Each current flag's evidence."""
        with self.post._lock:
            health = self.sites.get(site_id)
            held = dict(health.evidence.get(sensor_id, {})) if health is not None else {}
            held.update(self._overdue(site_id, sensor_id, self.post.clock.now().timestamp()))
        return held

    def _log(self, site_id: str, sensor_ids: Sequence[str]) -> list[event_log.LoggedEvent]:
        """Log and publish ``sensor.health`` for each sensor whose flags differ from those
        last logged (called under the post's lock). Only the leading process logs them: every
        process takes every reading (relayed) and keeps the same flags, the leader says them
        once, and the others follow its events (:meth:`follow`)."""
        if not self.post.leading:
            return []
        logged = self.logged.setdefault(site_id, {})
        drafts = []
        now_flags: dict[str, list[str]] = {}
        for sensor_id in sensor_ids:
            flags = self.flags(site_id, sensor_id)
            before = logged.get(sensor_id, [])
            if flags == before:
                continue
            now_flags[sensor_id] = flags
            evidence = self.evidence(site_id, sensor_id)
            drafts.append(
                event_log.Draft(
                    "sensor.health",
                    "system",
                    {
                        "sensor_id": sensor_id,
                        "flags": flags,
                        "raised": [f for f in flags if f not in before],
                        "cleared": [f for f in before if f not in flags],
                        "evidence": {f: evidence[f] for f in flags if f in evidence},
                    },
                )
            )
        if not drafts:
            return []
        post = self.post
        with post.db.write() as session:
            out = event_log.append_many(session, site_id, drafts, now=post.clock.now())
        for sensor_id, flags in now_flags.items():
            if flags:
                logged[sensor_id] = flags
            else:
                logged.pop(sensor_id, None)
        post.hub.publish(site_id, [_message(e) for e in out])
        return out

    # -- other processes' events ------------------------------------------------------------------

    def follow(self, site_id: str, event: event_log.LoggedEvent) -> None:
        """Another process's event (under the post's lock, in log order): the flags it logged
        are those last logged here too; a detector's own settings or a maintenance record
        made there apply here, and the leader logs the flags they change."""
        sensor_id = str(event.data.get("sensor_id"))
        if event.type == "sensor.health":
            held = self.logged.get(site_id)  # not read yet: read whole from the log later
            if held is not None:
                flags = [str(f) for f in event.data.get("flags", [])]
                if flags:
                    held[sensor_id] = flags
                else:
                    held.pop(sensor_id, None)
        elif event.type == "sensor.health_settings":
            self.settings.pop(site_id, None)  # read again
            health = self.sites.get(site_id)
            if health is None or sensor_id not in health.index:
                return  # its rules are read with the site's first check
            sensor = self.post._planned_model(site_id).sensors.get(sensor_id)
            if sensor is not None:
                own = self._site_settings(site_id).get(sensor_id)
                health.set_rules(health.index[sensor_id], apply(rules_for(sensor), own))
                if site_id in self.logged:
                    self._log(site_id, [sensor_id])
        elif event.type == "sensor.maintenance":
            self.due.pop(site_id, None)  # read again
            if site_id in self.logged:
                self._log(site_id, [sensor_id])

    # -- the wall ---------------------------------------------------------------------------------

    def state(self, site_id: str) -> list[dict[str, Any]]:
        """Each detector with a flag or a maintenance record: its flags and their evidence,
        when it last read, and when its calibration and bump test are due."""
        model = self.post.model(site_id)
        now = self.post.clock.now()
        with self.post._lock:
            due = dict(self._site_due(site_id))
            health = self.sites.get(site_id)
            ids = set(due)
            if health is not None:
                ids |= {health.ids[int(r)] for r in np.flatnonzero(health.flags.any(axis=1))}
            out = []
            for sensor_id in sorted(ids):
                sensor = model.sensors.get(sensor_id)
                at = health.last_reading_at(sensor_id) if health is not None else None
                out.append(
                    {
                        "id": sensor_id,
                        "kind": sensor.kind if sensor else None,
                        "substance": sensor.substance if sensor else None,
                        "flags": self.flags(site_id, sensor_id),
                        "evidence": self.evidence(site_id, sensor_id),
                        "last_reading_at": _iso(at) if at is not None else None,
                        **summary(due.get(sensor_id, {}), now),
                    }
                )
        return out


def _message(event: event_log.LoggedEvent) -> dict[str, Any]:
    from command.post import event_message  # the post imports this module

    return event_message(event)


def logged_flags(post: CommandPost, site_id: str, *, limit: int = 20_000) -> dict[str, list[str]]:
    """Each sensor's flags as last logged (``sensor.health``), from the newest events back."""
    from sqlalchemy import select

    from gis.storage.tables import EventRow

    out: dict[str, list[str]] = {}
    with post.db.read() as session:
        rows = session.execute(
            select(EventRow.data)
            .where(EventRow.site_id == site_id, EventRow.type == "sensor.health")
            .order_by(EventRow.seq.desc())
            .limit(limit)
        ).scalars()
        for data in rows:
            sensor_id = str(data.get("sensor_id"))
            if sensor_id not in out:
                out[sensor_id] = [str(f) for f in data.get("flags", [])]
    return {k: v for k, v in out.items() if v}
