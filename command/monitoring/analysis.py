"""False-alarm analysis of a site's alarm history (``docs/monitoring.md``, "False-alarm analysis").

:func:`analyse` takes plain frames (alarms, 10-minute reading periods, hot-work permits, the
sensors and the sources of each substance) and computes, vectorised with numpy and pandas:

- per sensor and per area (the zone holding the sensor): counts, durations, chattering
  (ISA-18.2: three or more alarms of one sensor within 60 s), standing alarms (active for more
  than 24 h: ISA-18.2's stale alarms), outcomes;
- the top-10 bad actors (most alarms) and their share of all alarms;
- the ISA-18.2 / EEMUA 191 figures per console (one per site): alarms per 10 minutes, the
  peak, and the share of 10-minute periods in flood (more than 10 alarms);
- correlation with hot-work permits (a permit active near the sensor when the alarm rose) and
  with the weather (the wind at the nearest wind station);
- the plume check: given the wind when the alarm rose, could a known source of the substance
  upwind explain it? An alarm with no possible source upwind is *suspect*;
- drift (a baseline trend) and stuck detectors (a flat trace) from the reading history;
- recommendations (relocate, recalibrate, add on-delay, add deadband), each with its figures.

:func:`load_inputs` reads those frames from the database for one site and period.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import shapely
from shapely.geometry import shape
from sqlalchemy import func, select

from command.monitoring.history import PERIOD_S, sync_journal
from gis.storage.db import Database
from gis.storage.tables import AlarmJournalRow, HotWorkPermitRow, ReadingHistoryRow

# -- the standards' figures ------------------------------------------------------------------------

#: ISA-18.2 chattering: this many alarms of one sensor ...
CHATTER_COUNT = 3
#: ... within this many seconds.
CHATTER_WINDOW_S = 60.0
#: ISA-18.2's stale alarm: in alarm for longer than this.
STANDING_S = 24 * 3600.0
#: ISA-18.2 / EEMUA 191: a 10-minute period with more than this many alarms is a flood.
FLOOD_ALARMS = 10
#: ISA-18.2's targets per console (operator position), shown beside the figures.
TARGETS = {
    "avg_per_10min_acceptable": 1.0,  # about 1 a 10 minutes: very likely acceptable
    "avg_per_10min_manageable": 2.0,  # about 2: the most that is manageable
    "peak_per_10min": 10,  # at most 10 in any 10 minutes
    "flood_share": 0.01,  # under ~1 % of 10-minute periods in flood
    "top10_share": 0.05,  # the ten most frequent: ~1 % to 5 % at most of all alarms
    "chattering": 0,  # none
    "standing_per_day": 5,  # fewer than 5 stale alarms on any day
}

# -- the plume check -------------------------------------------------------------------------------

#: Within this many metres a source explains an alarm whatever the wind (the detector stands
#: at the source).
NEAR_M = 15.0
#: A source farther than this explains nothing (a small leak's plume is below a detector's
#: warning level well before).
MAX_RANGE_M = 600.0
#: Below this wind speed (m/s) the air is calm: gas spreads every way, up to ``CALM_RANGE_M``.
CALM_M_S = 0.5
CALM_RANGE_M = 100.0
#: The plume's half-width as an angle: a Gaussian plume's 2 sigma-y over distance is about
#: 15 degrees in neutral air; the wind's direction also wanders within a 10-minute mean,
#: so 30 degrees either side, 45 in light wind (under 2 m/s).
SECTOR_DEG = 30.0
LIGHT_WIND_M_S = 2.0
LIGHT_SECTOR_DEG = 45.0
#: A wind reading older than this (seconds before the alarm) does not say the wind then.
WIND_MAX_AGE_S = 1800

# -- correlations and recommendations --------------------------------------------------------------

#: A permit counts as near a sensor up to its radius and this many metres more (fumes drift).
HOT_WORK_MARGIN_M = 30.0
#: Relocate when at least this share of a sensor's alarms rose during hot work nearby ...
HOT_WORK_SHARE = 0.5
#: ... and its alarm rate during hot work is at least this many times the rate without.
HOT_WORK_LIFT = 3.0
#: Relocate (or look for an interfering source) when this share of a sensor's checked alarms
#: had no possible source upwind, over at least ``MIN_ALARMS`` alarms.
SUSPECT_SHARE = 0.7
MIN_ALARMS = 5
#: An alarm shorter than this is fleeting: an on-delay would have kept it quiet.
FLEETING_S = 60.0
#: Drift: the daily baseline's trend moved by at least this share of the warning threshold
#: over the period, with a straight line explaining at least ``DRIFT_R2`` of it.
DRIFT_SHARE = 0.25
DRIFT_R2 = 0.6
MIN_DRIFT_DAYS = 3
#: Stuck: the reading did not move at all for at least this many hours (at a value other
#: than 0: a zero-suppressed detector reads a steady 0 in clean air).
STUCK_HOURS = 6.0
#: Deadband: chattering alarms whose peak stays within this share above the threshold.
DEADBAND_SHARE = 0.10

SECTORS = ("N", "NE", "E", "SE", "S", "SW", "W", "NW")
OUTCOME_KEYS = ("real", "false", "test", "maintenance", "unknown")


@dataclass
class Inputs:
    """What :func:`analyse` reads. Times are seconds since 1970 (UTC).

    - ``sensors``: id, name, kind, substance, unit, warning, lon, lat, zone_id, zone_name;
    - ``alarms``: id, sensor_id, tier, start_s, end_s (NaN: still active), peak, outcome,
      test, shelved;
    - ``periods``: sensor_id, period_s, n, low, mean, high, direction_deg;
    - ``permits``: id, kind, geometry (shapely, lon/lat), radius_m, from_s, to_s;
    - ``sources``: substance (lower case) -> [(zone id, zone name, lon, lat)].
    """

    site_id: str
    start_s: float
    end_s: float
    sensors: pd.DataFrame
    alarms: pd.DataFrame
    periods: pd.DataFrame
    permits: pd.DataFrame
    sources: dict[str, list[tuple[str, str, float, float]]] = field(default_factory=dict)
    console: str = "site"
    #: :func:`period_summaries` of the periods (None: computed from ``periods``, which then
    #: hold every sensor's; else ``periods`` need hold only the wind stations').
    daily: pd.DataFrame | None = None
    flat: pd.DataFrame | None = None


# -- geometry --------------------------------------------------------------------------------------


class LocalMetres:
    """Lon/lat to metres east and north of a site's middle (equirectangular: within a
    kilometre or two of the middle, off by less than 0.1 %)."""

    def __init__(self, lon0: float, lat0: float) -> None:
        self.lon0, self.lat0 = lon0, lat0
        self.kx = 111_320.0 * math.cos(math.radians(lat0))
        self.ky = 110_540.0

    def xy(self, lon: Any, lat: Any) -> tuple[np.ndarray, np.ndarray]:
        return (
            (np.asarray(lon, dtype=float) - self.lon0) * self.kx,
            (np.asarray(lat, dtype=float) - self.lat0) * self.ky,
        )

    def geometry(self, geom: shapely.Geometry) -> shapely.Geometry:
        return shapely.transform(geom, lambda c: np.column_stack(self.xy(c[:, 0], c[:, 1])))


def sources_from_site(
    sensors: pd.DataFrame, zones: Sequence[Mapping[str, Any]]
) -> dict[str, list[tuple[str, str, float, float]]]:
    """Where each substance may come from: every zone holding a detector of it (a detector is
    put where its gas is handled: GB/T 50493) or naming it in a ``substances`` property; its
    release point is taken at the zone's middle."""
    found: dict[str, dict[str, tuple[str, str, float, float]]] = {}
    shapes = [(z, shape(z["geometry"])) for z in zones if z.get("geometry")]
    for z, geom in shapes:
        named = z.get("properties", {}).get("substances") or []
        for substance in named if isinstance(named, list) else []:
            middle = geom.centroid
            found.setdefault(str(substance).lower(), {})[str(z["id"])] = (
                str(z["id"]),
                str(z["properties"].get("name", z["id"])),
                middle.x,
                middle.y,
            )
    for s in sensors.to_dict("records"):
        if not isinstance(s["substance"], str) or not isinstance(s["zone_id"], str):
            continue
        for z, geom in shapes:
            if str(z["id"]) == s["zone_id"]:
                middle = geom.centroid
                found.setdefault(str(s["substance"]).lower(), {})[str(z["id"])] = (
                    str(z["id"]),
                    str(z["properties"].get("name", z["id"])),
                    middle.x,
                    middle.y,
                )
    return {k: list(v.values()) for k, v in found.items()}


# -- the analysis ----------------------------------------------------------------------------------


def analyse(inp: Inputs) -> dict[str, Any]:
    """The whole analysis as plain JSON-ready data (see the module's docstring)."""
    sensors = inp.sensors.set_index("id", drop=False)
    middle = (
        (float(sensors["lon"].mean()), float(sensors["lat"].mean())) if len(sensors) else (0.0, 0.0)
    )
    metres = LocalMetres(*middle)
    alarms = _alarm_frame(inp, sensors)
    verdicts = _plume_check(inp, alarms, sensors, metres)
    alarms = alarms.join(verdicts)
    hot = _hot_work(inp, alarms, sensors, metres)
    alarms = alarms.join(hot["per_alarm"])
    counted = alarms[alarms["in_period"] & ~alarms["test"] & ~alarms["shelved"]]
    health = _trace_health(inp, sensors)
    weather = _weather(inp, counted, sensors)
    per_sensor = _per_sensor(inp, alarms, counted, sensors, hot["time_share"], health, weather)
    total = len(counted)
    bad = sorted(per_sensor, key=lambda r: (-r["count"], r["sensor_id"]))[:10]
    top = [
        {
            "sensor_id": r["sensor_id"],
            "name": r["name"],
            "area": r["area"],
            "count": r["count"],
            "share": r["count"] / total if total else 0.0,
        }
        for r in bad
        if r["count"] > 0
    ]
    return {
        "site_id": inp.site_id,
        "from": _iso(inp.start_s),
        "to": _iso(inp.end_s),
        "hours": (inp.end_s - inp.start_s) / 3600.0,
        "totals": _totals(alarms, counted),
        "consoles": [_console(inp, counted)],
        "targets": TARGETS,
        "bad_actors": top,
        "top10_share": float(sum(r["count"] for r in top) / total) if total else 0.0,
        "sensors": per_sensor,
        "areas": _per_area(per_sensor),
        "daily": _daily(inp, counted),
        "suspect": _suspects(counted, sensors),
        "recommendations": [rec for r in per_sensor for rec in r["recommendations"]],
        "alarm_verdicts": {
            str(k): v for k, v in alarms["plume"].value_counts().sort_index().items()
        },
    }


def alarm_verdicts(inp: Inputs) -> pd.DataFrame:
    """Each alarm with its plume verdict (``plume``, ``source``, ``wind_from_deg``,
    ``wind_m_s``) and whether hot work was near (``hot_work``, ``permit``)."""
    sensors = inp.sensors.set_index("id", drop=False)
    metres = LocalMetres(float(sensors["lon"].mean()), float(sensors["lat"].mean()))
    alarms = _alarm_frame(inp, sensors)
    alarms = alarms.join(_plume_check(inp, alarms, sensors, metres))
    return alarms.join(_hot_work(inp, alarms, sensors, metres)["per_alarm"])


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()


def _alarm_frame(inp: Inputs, sensors: pd.DataFrame) -> pd.DataFrame:
    a = inp.alarms.copy()
    if a.empty:
        a = pd.DataFrame(
            {
                "id": pd.Series(dtype=str),
                "sensor_id": pd.Series(dtype=str),
                "tier": pd.Series(dtype=str),
                "start_s": pd.Series(dtype=float),
                "end_s": pd.Series(dtype=float),
                "peak": pd.Series(dtype=float),
                "outcome": pd.Series(dtype=object),
                "test": pd.Series(dtype=bool),
                "shelved": pd.Series(dtype=bool),
            }
        )
    a = a[a["sensor_id"].isin(sensors.index)].reset_index(drop=True)
    a["start_s"] = a["start_s"].astype(float)
    a["end_s"] = a["end_s"].astype(float)
    a["test"] = a["test"].astype(bool) | a["outcome"].isin(["test", "maintenance"])
    a["shelved"] = a["shelved"].astype(bool)
    until = np.where(np.isnan(a["end_s"]), inp.end_s, np.minimum(a["end_s"], inp.end_s))
    a["active_s"] = np.maximum(until - a["start_s"], 0.0)
    a["open"] = np.isnan(a["end_s"]) | (a["end_s"] > inp.end_s)
    a["in_period"] = (a["start_s"] >= inp.start_s) & (a["start_s"] < inp.end_s)
    a["outcome"] = a["outcome"].fillna("unknown")
    return a


def wind_at(
    inp: Inputs, sensors: pd.DataFrame, metres: LocalMetres, sensor_ids: np.ndarray, at: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The 10-minute wind (speed, from-direction) at the wind station nearest each sensor,
    at each time: the period holding it, else the latest before it up to WIND_MAX_AGE_S."""
    speed = np.full(len(at), np.nan)
    direction = np.full(len(at), np.nan)
    stations = sensors[sensors["kind"] == "wind"]
    if stations.empty or not len(at):
        return speed, direction
    sx, sy = metres.xy(stations["lon"], stations["lat"])
    px, py = metres.xy(sensors.loc[sensor_ids, "lon"], sensors.loc[sensor_ids, "lat"])
    d2 = (px[:, None] - sx[None, :]) ** 2 + (py[:, None] - sy[None, :]) ** 2
    order = np.argsort(d2, axis=1)
    periods = inp.periods
    wind = periods[periods["sensor_id"].isin(stations.index)].dropna(subset=["direction_deg"])
    tables = {
        sid: (
            g["period_s"].to_numpy(float),
            g["mean"].to_numpy(float),
            g["direction_deg"].to_numpy(float),
        )
        for sid, g in wind.sort_values("period_s").groupby("sensor_id")
    }
    names = stations.index.to_numpy()
    # Nearest station first; a station with no reading then gives way to the next nearest.
    for rank in range(len(names)):
        missing = np.isnan(speed)
        if not missing.any():
            break
        chosen = names[order[:, rank]]
        for sid in np.unique(chosen[missing]):
            table = tables.get(str(sid))
            if table is None:
                continue
            rows = np.flatnonzero(missing & (chosen == sid))
            t = at[rows]
            i = np.searchsorted(table[0], t, side="right") - 1
            ok = (i >= 0) & (t - table[0][np.maximum(i, 0)] <= WIND_MAX_AGE_S)
            speed[rows[ok]] = table[1][i[ok]]
            direction[rows[ok]] = table[2][i[ok]]
    return speed, direction


def _plume_check(
    inp: Inputs, alarms: pd.DataFrame, sensors: pd.DataFrame, metres: LocalMetres
) -> pd.DataFrame:
    n = len(alarms)
    plume = np.full(n, "n/a", dtype=object)
    source = np.full(n, None, dtype=object)
    ids = alarms["sensor_id"].to_numpy()
    speed, direction = wind_at(inp, sensors, metres, ids, alarms["start_s"].to_numpy(float))
    substance = sensors.loc[ids, "substance"].to_numpy() if n else np.array([])
    px, py = (
        metres.xy(sensors.loc[ids, "lon"], sensors.loc[ids, "lat"]) if n else (np.zeros(0),) * 2
    )
    for sub in {str(s) for s in substance if isinstance(s, str) and s}:
        rows = np.flatnonzero(substance == sub)
        known = inp.sources.get(sub.lower(), [])
        if not known:
            plume[rows] = "suspect"  # nothing on the site holds it
            continue
        sx, sy = metres.xy([s[2] for s in known], [s[3] for s in known])
        dx = px[rows, None] - sx[None, :]  # from each source to the detector
        dy = py[rows, None] - sy[None, :]
        dist = np.hypot(dx, dy)
        bearing = np.degrees(np.arctan2(dx, dy)) % 360.0  # where the detector lies from it
        downwind = (direction[rows] + 180.0) % 360.0
        off = np.abs((bearing - downwind[:, None] + 180.0) % 360.0 - 180.0)
        sp = speed[rows, None]
        half = np.where(sp < LIGHT_WIND_M_S, LIGHT_SECTOR_DEG, SECTOR_DEG)
        calm = sp < CALM_M_S
        explains = (dist <= NEAR_M) | np.where(
            calm, dist <= CALM_RANGE_M, (off <= half) & (dist <= MAX_RANGE_M)
        )
        no_wind = np.isnan(speed[rows])
        explains = np.where(no_wind[:, None], dist <= NEAR_M, explains)
        any_source = explains.any(axis=1)
        first = np.argmax(np.where(explains, -dist, -np.inf), axis=1)
        plume[rows] = np.where(any_source, "explained", np.where(no_wind, "no_wind", "suspect"))
        names = np.array([s[0] for s in known], dtype=object)
        source[rows] = np.where(any_source, names[first], None)
    return pd.DataFrame(
        {"plume": plume, "source": source, "wind_m_s": speed, "wind_from_deg": direction},
        index=alarms.index,
    )


def _hot_work(
    inp: Inputs, alarms: pd.DataFrame, sensors: pd.DataFrame, metres: LocalMetres
) -> dict[str, Any]:
    """Per alarm: a permit active near its sensor when it rose; per sensor: the share of the
    period some permit was active near it."""
    permits = inp.permits
    per_alarm = pd.DataFrame(
        {"hot_work": np.zeros(len(alarms), bool), "permit": np.full(len(alarms), None, object)},
        index=alarms.index,
    )
    time_share = pd.Series(0.0, index=sensors.index)
    if permits.empty or sensors.empty:
        return {"per_alarm": per_alarm, "time_share": time_share}
    geoms = [metres.geometry(g) for g in permits["geometry"]]
    sx, sy = metres.xy(sensors["lon"], sensors["lat"])
    points = np.asarray(shapely.points(sx, sy), dtype=object)
    dist = np.asarray(
        shapely.distance(points[:, None], np.array(geoms, dtype=object)[None, :]), dtype=float
    )
    near = dist <= (permits["radius_m"].to_numpy(float) + HOT_WORK_MARGIN_M)[None, :]
    row_of = {sid: i for i, sid in enumerate(sensors.index)}
    if len(alarms):
        rows = np.array([row_of[s] for s in alarms["sensor_id"]])
        t = alarms["start_s"].to_numpy(float)[:, None]
        active = (t >= permits["from_s"].to_numpy(float)[None, :]) & (
            t < permits["to_s"].to_numpy(float)[None, :]
        )
        hit = active & near[rows]
        ids = permits["id"].to_numpy(object)
        per_alarm = pd.DataFrame(
            {
                "hot_work": hit.any(axis=1),
                "permit": np.where(hit.any(axis=1), ids[np.argmax(hit, axis=1)], None),
            },
            index=alarms.index,
        )
    span = max(inp.end_s - inp.start_s, 1.0)
    starts = np.clip(permits["from_s"].to_numpy(float), inp.start_s, inp.end_s)
    ends = np.clip(permits["to_s"].to_numpy(float), inp.start_s, inp.end_s)
    for i, sid in enumerate(sensors.index):
        cols = np.flatnonzero(near[i])
        if len(cols):
            time_share[sid] = _union_length(starts[cols], ends[cols]) / span
    return {"per_alarm": per_alarm, "time_share": time_share}


def _union_length(starts: np.ndarray, ends: np.ndarray) -> float:
    order = np.argsort(starts)
    total, reach = 0.0, -math.inf
    for s, e in zip(starts[order], ends[order], strict=True):
        if e <= reach:
            continue
        total += e - max(s, reach)
        reach = e
    return total


def period_summaries(
    periods: pd.DataFrame, start_s: float, end_s: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """What drift and stuck checks read of the periods in [start_s, end_s): each sensor's
    daily mean of the periods whose reading moved (``sensor_id``, ``day``, ``mean``), and the
    periods whose reading did not move at all, off zero (``sensor_id``, ``period_s``,
    ``mean``). :func:`load_inputs` has the database compute the same."""
    p = periods[(periods["period_s"] >= start_s) & (periods["period_s"] < end_s)]
    still = p["high"].to_numpy() == p["low"].to_numpy()
    moving = p[~still]
    daily = (
        pd.DataFrame(
            {
                "sensor_id": moving["sensor_id"].to_numpy(),
                "day": ((moving["period_s"].to_numpy(float) - start_s) // 86400).astype(int),
                "mean": moving["mean"].to_numpy(float),
            }
        )
        .groupby(["sensor_id", "day"], as_index=False)["mean"]
        .mean()
    )
    flat = p.loc[still & (p["mean"].to_numpy() != 0.0), ["sensor_id", "period_s", "mean"]]
    return pd.DataFrame(daily), pd.DataFrame(flat).reset_index(drop=True)


def _trace_health(inp: Inputs, sensors: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Drift and stuck detectors (gas detectors only), from their 10-minute periods."""
    out: dict[str, dict[str, Any]] = {}
    gas = sensors[sensors["substance"].notna()]
    if inp.daily is None or inp.flat is None:
        inp.daily, inp.flat = period_summaries(inp.periods, inp.start_s, inp.end_s)
    d = inp.daily[inp.daily["sensor_id"].isin(gas.index)]
    if not d.empty:
        _drift(inp, sensors, d.pivot(index="sensor_id", columns="day", values="mean"), out)
    f = inp.flat[inp.flat["sensor_id"].isin(gas.index)].sort_values(["sensor_id", "period_s"])
    if f.empty:
        return out
    # Stuck: the longest run of consecutive flat periods.
    sid_arr = f["sensor_id"].to_numpy()
    t = f["period_s"].to_numpy(float)
    new_run = np.ones(len(f), bool)
    new_run[1:] = (sid_arr[1:] != sid_arr[:-1]) | (t[1:] - t[:-1] != PERIOD_S)
    runs = pd.DataFrame(
        {"run": np.cumsum(new_run), "sensor_id": sid_arr, "t": t, "v": f["mean"].to_numpy()}
    )
    agg = runs.groupby("run").agg(
        sensor_id=("sensor_id", "first"),
        start=("t", "min"),
        end=("t", "max"),
        value=("v", "first"),
        k=("t", "size"),
    )
    agg["hours"] = agg["k"] * PERIOD_S / 3600.0
    longest = agg.sort_values("hours").groupby("sensor_id").tail(1)
    for row in longest.to_dict("records"):
        if row["hours"] >= STUCK_HOURS:
            out.setdefault(str(row["sensor_id"]), {})["stuck"] = {
                "hours": float(row["hours"]),
                "value": float(row["value"]),
                "from": _iso(float(row["start"])),
                "to": _iso(float(row["end"]) + PERIOD_S),
            }
    return out


def _drift(
    inp: Inputs, sensors: pd.DataFrame, daily: pd.DataFrame, out: dict[str, dict[str, Any]]
) -> None:
    """A least-squares line through each sensor's daily means (vectorised over sensors)."""
    x = daily.columns.to_numpy(float) + 0.5
    y = daily.to_numpy(float)
    ok = ~np.isnan(y)
    n = ok.sum(axis=1)
    xm = np.where(ok, x[None, :], 0.0).sum(axis=1) / np.maximum(n, 1)
    ym = np.where(ok, y, 0.0).sum(axis=1) / np.maximum(n, 1)
    dx = np.where(ok, x[None, :] - xm[:, None], 0.0)
    dy = np.where(ok, y - ym[:, None], 0.0)
    sxx = (dx * dx).sum(axis=1)
    sxy = (dx * dy).sum(axis=1)
    syy = (dy * dy).sum(axis=1)
    slope = np.where(sxx > 0, sxy / np.where(sxx > 0, sxx, 1.0), 0.0)
    r2 = np.where((sxx > 0) & (syy > 0), sxy**2 / np.where(sxx * syy > 0, sxx * syy, 1.0), 0.0)
    for i, sid in enumerate(daily.index):
        warning = sensors.at[sid, "warning"]
        if not (isinstance(warning, float | int) and warning > 0) or n[i] < MIN_DRIFT_DAYS:
            continue
        days_seen = np.flatnonzero(ok[i])
        span = float(x[days_seen[-1]] - x[days_seen[0]])
        change = float(slope[i] * span)
        if abs(change) >= DRIFT_SHARE * warning and r2[i] >= DRIFT_R2:
            out.setdefault(str(sid), {})["drift"] = {
                "per_day": float(slope[i]),
                "change": change,
                "share_of_warning": change / warning,
                "r2": float(r2[i]),
                "baseline_first_day": float(y[i, days_seen[0]]),
                "baseline_last_day": float(y[i, days_seen[-1]]),
            }


def _weather(
    inp: Inputs, counted: pd.DataFrame, sensors: pd.DataFrame
) -> dict[str, dict[str, Any]]:
    """Per sensor: the wind when its alarms rose against the wind over the whole period (at
    the site's wind stations): the share in calm air, and the sector the wind blew from most
    often during its alarms, with its share of alarms and of the time."""
    stations = sensors[sensors["kind"] == "wind"].index
    w = inp.periods[
        inp.periods["sensor_id"].isin(stations)
        & (inp.periods["period_s"] >= inp.start_s)
        & (inp.periods["period_s"] < inp.end_s)
    ].dropna(subset=["direction_deg"])
    out: dict[str, dict[str, Any]] = {}
    if w.empty or counted.empty:
        return out
    calm_time = float((w["mean"] < 1.0).mean())
    sector_time = np.bincount(_sector(w["direction_deg"].to_numpy(float)), minlength=8) / len(w)
    known = counted.dropna(subset=["wind_from_deg"])
    for sid, g in known.groupby("sensor_id"):
        sectors = np.bincount(_sector(g["wind_from_deg"].to_numpy(float)), minlength=8) / len(g)
        top = int(np.argmax(sectors))
        out[str(sid)] = {
            "alarms_with_wind": len(g),
            "calm_alarm_share": float((g["wind_m_s"] < 1.0).mean()),
            "calm_time_share": calm_time,
            "mean_wind_m_s": float(g["wind_m_s"].mean()),
            "sector": SECTORS[top],
            "sector_alarm_share": float(sectors[top]),
            "sector_time_share": float(sector_time[top]),
        }
    return out


def _sector(direction: np.ndarray) -> np.ndarray:
    return (((direction % 360.0) + 22.5) // 45.0).astype(int) % 8


def _chatter_episodes(starts: np.ndarray) -> int:
    """Windows in which CHATTER_COUNT alarms rose within CHATTER_WINDOW_S (overlapping
    windows counted once: an episode is a run of them)."""
    k = CHATTER_COUNT - 1
    if len(starts) <= k:
        return 0
    s = np.sort(starts)
    hit = (s[k:] - s[:-k]) <= CHATTER_WINDOW_S
    if not hit.any():
        return 0
    # Count runs of consecutive hits whose windows overlap.
    idx = np.flatnonzero(hit)
    return int(1 + np.count_nonzero(idx[1:] - idx[:-1] > k))


def _per_sensor(
    inp: Inputs,
    alarms: pd.DataFrame,
    counted: pd.DataFrame,
    sensors: pd.DataFrame,
    hot_time: pd.Series,
    health: Mapping[str, Mapping[str, Any]],
    weather: Mapping[str, Mapping[str, Any]],
) -> list[dict[str, Any]]:
    out = []
    groups: dict[str, pd.DataFrame] = {str(k): g for k, g in counted.groupby("sensor_id")}
    overlapping = alarms[
        (alarms["start_s"] < inp.end_s) & (alarms["start_s"] + alarms["active_s"] > inp.start_s)
    ]
    standing = overlapping[(overlapping["active_s"] > STANDING_S) & ~overlapping["test"]]
    standing_by = standing.groupby("sensor_id").size()
    all_in = alarms[alarms["in_period"]]
    outcomes = all_in.groupby(["sensor_id", "outcome"]).size()
    span = max(inp.end_s - inp.start_s, 1.0)
    for s in sensors.to_dict("records"):
        sid = str(s["id"])
        g = groups.get(sid)
        count = 0 if g is None else len(g)
        h = health.get(str(sid), {})
        if count == 0 and not h and str(sid) not in standing_by.index:
            continue
        durations = np.array([]) if g is None else g["active_s"].to_numpy(float)
        starts = np.array([]) if g is None else g["start_s"].to_numpy(float)
        checked = 0 if g is None else int((g["plume"].isin(["explained", "suspect"])).sum())
        suspects = 0 if g is None else int((g["plume"] == "suspect").sum())
        during = 0 if g is None else int(g["hot_work"].sum())
        share_t = float(hot_time.get(sid, 0.0))
        rate_in = during / (share_t * span) if share_t > 0 else 0.0
        rate_out = (count - during) / ((1 - share_t) * span) if share_t < 1 else 0.0
        lift = rate_in / rate_out if rate_out > 0 else (math.inf if rate_in > 0 else 0.0)
        record = {
            "sensor_id": str(sid),
            "name": s["name"],
            "kind": s["kind"],
            "substance": s["substance"] if isinstance(s["substance"], str) else None,
            "area": s["zone_id"] if isinstance(s["zone_id"], str) else None,
            "area_name": s["zone_name"] if isinstance(s["zone_name"], str) else None,
            "count": count,
            "per_day": count / (span / 86400.0),
            "total_duration_s": float(durations.sum()),
            "median_duration_s": float(np.median(durations)) if count else 0.0,
            "fleeting": int((durations < FLEETING_S).sum()),
            "chattering": _chatter_episodes(starts),
            "standing": int(standing_by.get(sid, 0)),
            "outcomes": {k: int(outcomes.get((sid, k), 0)) for k in OUTCOME_KEYS},
            "plume": {"checked": checked, "suspect": suspects, "explained": checked - suspects},
            "hot_work": {
                "alarms": during,
                "share": during / count if count else 0.0,
                "time_share": share_t,
                "lift": None if math.isinf(lift) else lift,
            },
            "weather": dict(weather.get(str(sid), {})),
            "drift": h.get("drift"),
            "stuck": h.get("stuck"),
            "peak_over_warning": (
                float(g["peak"].median() / s["warning"])
                if g is not None
                and count
                and isinstance(s["warning"], float | int)
                and s["warning"] > 0
                else None
            ),
        }
        record["recommendations"] = _recommend(record)
        out.append(record)
    return out


def _recommend(r: Mapping[str, Any]) -> list[dict[str, Any]]:
    """What to change, each with the figures that call for it."""
    out: list[dict[str, Any]] = []
    base = {"sensor_id": r["sensor_id"], "name": r["name"], "area": r["area"]}
    count = r["count"]
    hw = r["hot_work"]
    lift = hw["lift"]
    if (
        count >= MIN_ALARMS
        and hw["share"] >= HOT_WORK_SHARE
        and (lift is None or lift >= HOT_WORK_LIFT)
    ):
        out.append(
            {
                **base,
                "action": "relocate",
                "why": "its alarms rise during hot work nearby",
                "evidence": {
                    "alarms": count,
                    "during_hot_work": hw["alarms"],
                    "share": hw["share"],
                    "hot_work_time_share": hw["time_share"],
                    "rate_lift": lift,
                    "suspect_share": r["plume"]["suspect"] / max(r["plume"]["checked"], 1),
                },
            }
        )
    elif (
        r["plume"]["checked"] >= MIN_ALARMS
        and r["plume"]["suspect"] >= SUSPECT_SHARE * r["plume"]["checked"]
    ):
        out.append(
            {
                **base,
                "action": "relocate",
                "why": "most of its alarms had no possible source upwind: it sees something else",
                "evidence": {
                    "checked": r["plume"]["checked"],
                    "suspect": r["plume"]["suspect"],
                    "suspect_share": r["plume"]["suspect"] / r["plume"]["checked"],
                },
            }
        )
    if r["drift"]:
        out.append(
            {
                **base,
                "action": "recalibrate",
                "why": "its baseline drifts",
                "evidence": dict(r["drift"]),
            }
        )
    if r["stuck"]:
        out.append(
            {
                **base,
                "action": "recalibrate",
                "why": "its reading is stuck: bump-test, repair or replace it",
                "evidence": {**r["stuck"], "standing_alarms": r["standing"]},
            }
        )
    if r["chattering"] or (count >= MIN_ALARMS and r["fleeting"] >= count / 2):
        short = r["median_duration_s"]
        out.append(
            {
                **base,
                "action": "on_delay",
                "why": "fleeting and chattering alarms: an on-delay keeps them quiet",
                "evidence": {
                    "alarms": count,
                    "chattering_episodes": r["chattering"],
                    "fleeting": r["fleeting"],
                    "median_duration_s": short,
                    "suggested_on_delay_s": float(min(60, max(5, 5 * math.ceil(short / 5)))),
                },
            }
        )
        peak = r["peak_over_warning"]
        if r["chattering"] and peak is not None and peak <= 1 + DEADBAND_SHARE:
            out.append(
                {
                    **base,
                    "action": "deadband",
                    "why": "it chatters at the threshold: a deadband holds it",
                    "evidence": {
                        "chattering_episodes": r["chattering"],
                        "median_peak_over_warning": peak,
                    },
                }
            )
    return out


def _per_area(per_sensor: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    areas: dict[str | None, dict[str, Any]] = {}
    for r in per_sensor:
        a = areas.setdefault(
            r["area"],
            {
                "area": r["area"],
                "name": r["area_name"],
                "count": 0,
                "total_duration_s": 0.0,
                "chattering": 0,
                "standing": 0,
                "sensors": 0,
                "false": 0,
                "real": 0,
            },
        )
        a["count"] += r["count"]
        a["total_duration_s"] += r["total_duration_s"]
        a["chattering"] += r["chattering"]
        a["standing"] += r["standing"]
        a["sensors"] += 1
        a["false"] += r["outcomes"]["false"]
        a["real"] += r["outcomes"]["real"]
    return sorted(areas.values(), key=lambda a: (-a["count"], str(a["area"])))


def _console(inp: Inputs, counted: pd.DataFrame) -> dict[str, Any]:
    bins = max(math.ceil((inp.end_s - inp.start_s) / 600.0), 1)
    k = ((counted["start_s"].to_numpy(float) - inp.start_s) // 600).astype(int)
    per = np.bincount(k, minlength=bins)[:bins]
    days = max((inp.end_s - inp.start_s) / 86400.0, 1e-9)
    avg = float(per.mean())
    rating = (
        "very likely acceptable"
        if avg <= TARGETS["avg_per_10min_acceptable"]
        else "manageable"
        if avg <= TARGETS["avg_per_10min_manageable"]
        else "overloaded"
    )
    return {
        "console": inp.console,
        "alarms": int(per.sum()),
        "per_day": float(per.sum() / days),
        "per_hour": float(per.sum() / (days * 24)),
        "avg_per_10min": avg,
        "peak_per_10min": int(per.max()) if len(per) else 0,
        "periods": bins,
        "flood_periods": int((per > FLOOD_ALARMS).sum()),
        "flood_share": float((per > FLOOD_ALARMS).mean()),
        "over_2_share": float((per > 2).mean()),
        "rating": rating,
        "per_10min": per.tolist(),
    }


def _daily(inp: Inputs, counted: pd.DataFrame) -> dict[str, Any]:
    days = max(math.ceil((inp.end_s - inp.start_s) / 86400.0), 1)
    k = ((counted["start_s"].to_numpy(float) - inp.start_s) // 86400).astype(int)
    out: dict[str, Any] = {"days": [_iso(inp.start_s + 86400 * d)[:10] for d in range(days)]}
    for outcome in OUTCOME_KEYS:
        mask = (counted["outcome"] == outcome).to_numpy()
        out[outcome] = np.bincount(k[mask], minlength=days)[:days].tolist()
    return out


def _suspects(counted: pd.DataFrame, sensors: pd.DataFrame, limit: int = 50) -> dict[str, Any]:
    s = counted[counted["plume"] == "suspect"]
    rows = s.sort_values("start_s", ascending=False).head(limit)
    return {
        "count": len(s),
        "false_confirmed": int((s["outcome"] == "false").sum()),
        "latest": [
            {
                "id": str(r["id"]),
                "sensor_id": str(r["sensor_id"]),
                "substance": sensors.at[r["sensor_id"], "substance"],
                "at": _iso(float(r["start_s"])),
                "wind_m_s": _number(r["wind_m_s"]),
                "wind_from_deg": _number(r["wind_from_deg"]),
                "outcome": str(r["outcome"]),
            }
            for r in rows.to_dict("records")
        ],
    }


def _number(value: Any) -> float | None:
    return None if value is None or math.isnan(float(value)) else float(value)


def _totals(alarms: pd.DataFrame, counted: pd.DataFrame) -> dict[str, Any]:
    inside = alarms[alarms["in_period"]]
    return {
        "alarms": len(inside),
        "counted": len(counted),
        "test_or_maintenance": int(inside["test"].sum()),
        "shelved": int(inside["shelved"].sum()),
        "outcomes": {k: int((inside["outcome"] == k).sum()) for k in OUTCOME_KEYS},
    }


# -- reading the inputs ----------------------------------------------------------------------------


def _epoch(at: datetime) -> float:
    return at.timestamp()


def sensor_frame(
    features: Sequence[Mapping[str, Any]], zones: Sequence[Mapping[str, Any]]
) -> pd.DataFrame:
    """The site's sensors (GeoJSON features of the sensors layer) with the zone each stands
    in (the innermost, when zones nest)."""
    shapes = [
        (str(z["id"]), str(z.get("properties", {}).get("name", z["id"])), shape(z["geometry"]))
        for z in zones
        if z.get("geometry")
    ]
    tree = shapely.STRtree([g for _, _, g in shapes]) if shapes else None
    rows = []
    for f in features:
        geometry = f.get("geometry") or {}
        if geometry.get("type") != "Point":
            continue
        lon, lat = (float(c) for c in geometry["coordinates"][:2])
        p = f.get("properties") or {}
        zone_id = zone_name = None
        if tree is not None:
            hits = tree.query(shapely.Point(lon, lat), predicate="intersects")
            if len(hits):
                best = min(hits, key=lambda i: shapes[i][2].area)
                zone_id, zone_name = shapes[best][0], shapes[best][1]
        thresholds = [p.get(k) for k in ("warning", "alarm", "high_alarm")]
        warning = next((float(t) for t in thresholds if isinstance(t, int | float)), np.nan)
        rows.append(
            {
                "id": str(f["id"]),
                "name": str(p.get("name") or f["id"]),
                "kind": str(p.get("kind")),
                "substance": p.get("substance"),
                "unit": p.get("unit"),
                "warning": warning,
                "lon": lon,
                "lat": lat,
                "zone_id": zone_id,
                "zone_name": zone_name,
            }
        )
    return pd.DataFrame(rows, columns=SENSOR_COLUMNS)


SENSOR_COLUMNS = [
    "id",
    "name",
    "kind",
    "substance",
    "unit",
    "warning",
    "lon",
    "lat",
    "zone_id",
    "zone_name",
]


def load_inputs(
    db: Database,
    site_id: str,
    sensors: pd.DataFrame,
    sources: dict[str, list[tuple[str, str, float, float]]],
    start: datetime,
    end: datetime,
) -> Inputs:
    """The site's alarms overlapping [start, end) (the journal brought up to date with the
    log first), the reading periods from a day before ``start`` (the wind then), and the
    permits valid in the period."""
    with db.write() as session:
        sync_journal(session, site_id)
    s0, s1 = _epoch(start), _epoch(end)
    with db.read() as session:
        a = session.execute(
            select(
                AlarmJournalRow.id,
                AlarmJournalRow.sensor_id,
                AlarmJournalRow.tier,
                AlarmJournalRow.started_at,
                AlarmJournalRow.ended_at,
                AlarmJournalRow.peak,
                AlarmJournalRow.outcome,
                AlarmJournalRow.test,
                AlarmJournalRow.shelved,
            ).where(
                AlarmJournalRow.site_id == site_id,
                AlarmJournalRow.started_at < end,
                (AlarmJournalRow.ended_at.is_(None)) | (AlarmJournalRow.ended_at > start),
            )
        ).all()
        s0_i, s1_i = int(s0), int(s1)
        winds = sensors.loc[sensors["kind"] == "wind", "id"].tolist()
        history = ReadingHistoryRow
        in_site = history.site_id == site_id
        p = session.execute(
            select(
                history.sensor_id,
                history.period_s,
                history.n,
                history.low,
                history.mean,
                history.high,
                history.direction_deg,
            ).where(
                in_site,
                history.sensor_id.in_(winds),
                history.period_s >= s0_i - 86400,
                history.period_s < s1_i,
            )
        ).all()
        in_period = (history.period_s >= s0_i, history.period_s < s1_i)
        day = ((history.period_s - s0_i) // 86400).label("day")
        d = session.execute(
            select(history.sensor_id, day, func.avg(history.mean))
            .where(in_site, *in_period, history.high != history.low)
            .group_by(history.sensor_id, day)
        ).all()
        f = session.execute(
            select(history.sensor_id, history.period_s, history.mean).where(
                in_site, *in_period, history.high == history.low, history.mean != 0.0
            )
        ).all()
        h = session.scalars(
            select(HotWorkPermitRow).where(
                HotWorkPermitRow.site_id == site_id,
                HotWorkPermitRow.valid_from < end,
                HotWorkPermitRow.valid_to > start,
            )
        ).all()
    alarms = pd.DataFrame(
        {
            "id": [r[0] for r in a],
            "sensor_id": [r[1] for r in a],
            "tier": [r[2] for r in a],
            "start_s": np.array([_epoch(r[3]) for r in a], dtype=float),
            "end_s": np.array([np.nan if r[4] is None else _epoch(r[4]) for r in a], dtype=float),
            "peak": np.array([r[5] for r in a], dtype=float),
            "outcome": pd.Series([r[6] for r in a], dtype=object),
            "test": np.array([bool(r[7]) for r in a], dtype=bool),
            "shelved": np.array([bool(r[8]) for r in a], dtype=bool),
        }
    )
    periods = pd.DataFrame.from_records(
        p, columns=["sensor_id", "period_s", "n", "low", "mean", "high", "direction_deg"]
    )
    periods["direction_deg"] = periods["direction_deg"].astype(float)
    daily = pd.DataFrame.from_records(d, columns=["sensor_id", "day", "mean"])
    daily["day"] = daily["day"].astype(int)
    daily["mean"] = daily["mean"].astype(float)
    flat = pd.DataFrame.from_records(f, columns=["sensor_id", "period_s", "mean"])
    permits = pd.DataFrame(
        {
            "id": [r.id for r in h],
            "kind": [r.kind for r in h],
            "geometry": [shape(r.location) for r in h],
            "radius_m": np.array([r.radius_m for r in h], dtype=float),
            "from_s": np.array([_epoch(r.valid_from) for r in h], dtype=float),
            "to_s": np.array([_epoch(r.valid_to) for r in h], dtype=float),
        }
    )
    return Inputs(
        site_id, s0, s1, sensors, alarms, periods, permits, sources, daily=daily, flat=flat
    )
