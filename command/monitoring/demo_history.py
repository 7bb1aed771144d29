"""Made-up alarm history for the demo and the tests (``rallypoint demo history``).

Thirty days (or ``days``) of 10-minute reading periods for every sensor of a site, the alarms
they raised and the hot-work permits of the time, all marked ``generated`` and written to the
history tables only, never to the event log. Beside ordinary noise (each detector a few
alarms a month, most found false or tests) it plants:

- **chattering**: the gas detector nearest the maintenance workshop (a zone of kind
  ``workshop``) chatters at its warning threshold while welding permits are active there
  (arc welding's ozone and nitrogen dioxide cross-react with electrochemical cells);
- **drifting**: one combustible-gas detector's baseline creeps up to its warning threshold
  and it starts to alarm in the last days;
- **stuck**: one detector's reading freezes above its warning threshold partway through and
  stays there (a standing alarm);
- **a real leak**: one small leak at a storage zone, seen for 25 minutes by a detector of
  the zone that lies downwind of the zone's middle at the time; its outcome is ``real``.

The same seed gives the same history; which detectors are planted depends on the seed too
(the chattering one excepted: it is the one by the workshop).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from shapely.geometry import Point, mapping, shape
from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from command.monitoring.analysis import LocalMetres
from command.monitoring.history import PERIOD_S
from gis.errors import FieldError, InvalidInput
from gis.layers import read_features
from gis.sites import load_site
from gis.storage.tables import AlarmJournalRow, HotWorkPermitRow, ReadingHistoryRow

DEMO_SEED = 16
#: The outcomes of ordinary noise: mostly found false, some tests and maintenance, some
#: never recorded.
OUTCOMES = ("false", "false", "false", "test", "maintenance", None)
CHUNK = 20_000


@dataclass(frozen=True)
class Planted:
    chattering: str
    drifting: str
    stuck: str
    leak: str
    leak_alarm: str
    workshop: str
    leak_source: str

    def as_dict(self) -> dict[str, str]:
        return dict(self.__dict__)


def has_generated(session: Session, site_id: str) -> bool:
    return bool(
        session.scalar(
            select(func.count())
            .select_from(AlarmJournalRow)
            .where(AlarmJournalRow.site_id == site_id, AlarmJournalRow.generated.is_(True))
        )
    )


def clear_generated(session: Session, site_id: str) -> None:
    for table in (AlarmJournalRow, ReadingHistoryRow, HotWorkPermitRow):
        session.execute(delete(table).where(table.site_id == site_id, table.generated.is_(True)))


def generate_history(
    session: Session,
    site_id: str,
    *,
    days: int = 30,
    seed: int = DEMO_SEED,
    end: datetime | None = None,
) -> dict[str, Any]:
    """Replace the site's generated history with ``days`` days ending at ``end`` (now),
    planted as the module says. What was planted, and how many rows were written."""
    if not 7 <= days <= 90:
        raise InvalidInput("days: 7 to 90", errors=[FieldError("days", "7 to 90")])
    site = load_site(session, site_id)
    sensors = [f.to_geojson() for f in read_features(session, site_id, "sensors")]
    zones = [f.to_geojson() for f in read_features(session, site_id, "zones")]
    rng = np.random.default_rng(seed)
    stop = int((end or datetime.now(UTC)).timestamp()) // PERIOD_S * PERIOD_S
    start = stop - days * 86400
    t = np.arange(start, stop, PERIOD_S, dtype=np.int64)
    plan = _pick(sensors, zones, rng)
    centre = site.boundary.centroid
    metres = LocalMetres(centre.x, centre.y)
    tz = ZoneInfo(site.timezone)

    # The wind: a slow random walk of direction, speed with a daily cycle.
    walk = np.cumsum(rng.normal(0.0, 8.0, len(t)))
    wind_from = (45.0 + walk) % 360.0
    hour = ((t % 86400) / 3600.0 + 8.0) % 24.0
    speed = np.clip(2.5 + 1.5 * np.sin((hour - 9.0) / 24.0 * 2 * math.pi), 0.2, None)
    speed = np.clip(speed * rng.lognormal(0.0, 0.3, len(t)), 0.1, 25.0)

    # The leak: at a time in the middle third, the wind blows from the zone's middle over the
    # detector, for the hour around it.
    leak_sensor = plan["leak"]
    leak_at = int(
        start + rng.integers(days // 3, 2 * days // 3) * 86400 + rng.integers(0, 144) * 600
    )
    sx, sy = metres.xy(*plan["leak_source_xy"])
    dx, dy = metres.xy(*plan["xy"][leak_sensor])
    toward = math.degrees(math.atan2(float(dx - sx), float(dy - sy))) % 360.0
    k = (leak_at - start) // PERIOD_S
    wind_from[max(k - 3, 0) : k + 4] = (toward + 180.0) % 360.0
    speed[max(k - 3, 0) : k + 4] = 2.5

    periods: list[tuple[Any, ...]] = []
    alarms: list[dict[str, Any]] = []
    permits: list[dict[str, Any]] = []

    def alarm(
        sensor: dict[str, Any],
        tier: str,
        at: float,
        end_s: float | None,
        peak: float,
        outcome: str | None,
        note: str | None = None,
    ) -> str:
        alarm_id = f"g{len(alarms) + 1}"
        alarms.append(
            {
                "site_id": site_id,
                "id": alarm_id,
                "sensor_id": str(sensor["id"]),
                "substance": sensor["properties"].get("substance"),
                "tier": tier,
                "started_at": _at(at),
                "ended_at": None if end_s is None else _at(end_s),
                "peak": float(peak),
                "outcome": outcome,
                "outcome_by": None if outcome is None else "demo-responder",
                "outcome_at": None if outcome is None else _at((end_s or at) + 900),
                "outcome_note": note,
                "test": outcome in ("test", "maintenance"),
                "shelved": False,
                "generated": True,
            }
        )
        return alarm_id

    # Welding permits at the workshop: working days, 08:00-12:00 and 13:00-17:00 local time.
    workshop = plan["workshop_shape"]
    for day in range(days):
        midnight = datetime.fromtimestamp(start + day * 86400, tz).replace(
            hour=0, minute=0, second=0, microsecond=0
        )
        if midnight.weekday() >= 5 or rng.random() < 0.25:
            continue
        for h0, h1 in ((8, 12), (13, 17)):
            a, b = midnight.replace(hour=h0), midnight.replace(hour=h1)
            if a.timestamp() < start or b.timestamp() > stop:
                continue
            permits.append(
                {
                    "site_id": site_id,
                    "id": f"HW-G{len(permits) + 1:04d}",
                    "kind": "welding",
                    "location": mapping(workshop),
                    "radius_m": 10.0,
                    "valid_from": a.astimezone(UTC),
                    "valid_to": b.astimezone(UTC),
                    "issued_by": "demo-maintenance-supervisor",
                    "note": "Pipe welding in the maintenance workshop (generated)",
                    "recorded_at": a.astimezone(UTC) - timedelta(minutes=30),
                    "recorded_by": "demo-history",
                    "generated": True,
                }
            )

    for sensor in sensors:
        sid = str(sensor["id"])
        p = sensor["properties"]
        n = len(t)
        if p.get("kind") == "wind":
            local = (wind_from + rng.normal(0.0, 4.0, n)) % 360.0
            v = np.clip(speed * rng.lognormal(0.0, 0.08, n), 0.05, 60.0)
            periods += _rows(site_id, sid, t, v * 0.6, v, v * 1.6, local)
            continue
        warning = p.get("warning")
        if not isinstance(warning, int | float) or warning <= 0:
            base = 20.0 if p.get("kind") == "temperature" else 1.0
            mean = base + rng.normal(0.0, base * 0.02, n)
            periods += _rows(site_id, sid, t, mean - 0.3, mean, mean + 0.3, None)
            continue
        alarm_at = float(p.get("alarm") or warning * 2)
        baseline = warning * rng.uniform(0.02, 0.08)
        mean = np.abs(baseline + rng.normal(0.0, warning * 0.01, n)) + 1e-3
        high = mean + np.abs(rng.normal(warning * 0.03, warning * 0.01, n))
        low = np.maximum(mean - np.abs(rng.normal(warning * 0.02, warning * 0.01, n)), 0.0)

        if sid == plan["drifting"]:
            mean = mean + np.linspace(0.0, warning * 0.95, n)
            high = mean + np.abs(rng.normal(warning * 0.06, warning * 0.02, n))
            low = np.maximum(mean - np.abs(rng.normal(warning * 0.04, warning * 0.01, n)), 0.0)
            over = np.flatnonzero(high >= warning)
            last = -1e18
            for i in over.tolist():
                if t[i] - last < 3600 or rng.random() < 0.5:
                    continue
                at = float(t[i] + rng.integers(0, 540))
                alarm(
                    sensor,
                    "warning",
                    at,
                    at + rng.uniform(120, 480),
                    high[i],
                    _pick_outcome(rng, ("false", None)),
                )
                last = float(t[i])
        elif sid == plan["stuck"]:
            k0 = int(rng.integers(len(t) // 4, len(t) // 2))
            value = round(warning * 1.24, 2)
            mean[k0:] = value
            high[k0:] = value
            low[k0:] = value
            alarm(sensor, "warning", float(t[k0]), None, value, None)
        elif sid == leak_sensor:
            k = (leak_at - start) // PERIOD_S
            peak = round(alarm_at * 1.6, 2)
            high[k : k + 3] = peak
            mean[k : k + 3] = peak * 0.6
            alarm(
                sensor,
                "alarm",
                float(leak_at + 120),
                float(leak_at + 120 + 25 * 60),
                peak,
                "real",
                "Small leak at a valve flange of the storage: isolated and repaired",
            )
        if sid == plan["chattering"]:
            for permit in permits:
                a0 = permit["valid_from"].timestamp()
                a1 = permit["valid_to"].timestamp()
                at = a0 + rng.exponential(1800)
                while at < a1 - 300:
                    burst = int(rng.integers(3, 7))
                    for _ in range(burst):
                        length = float(rng.uniform(4, 18))
                        peak = warning * rng.uniform(1.0, 1.08)
                        alarm(
                            sensor,
                            "warning",
                            at,
                            at + length,
                            peak,
                            _pick_outcome(rng, ("false", "false", None)),
                            None,
                        )
                        i = int((at - start) // PERIOD_S)
                        high[i] = max(high[i], peak)
                        at += length + float(rng.uniform(3, 12))
                    at += rng.exponential(2400) + 600
        elif sid not in (leak_sensor, plan["stuck"]):
            for _ in range(int(rng.poisson(rng.uniform(0.2, 1.5) * days / 30))):
                i = int(rng.integers(0, n))
                at = float(t[i] + rng.integers(0, 540))
                peak = warning * rng.uniform(1.0, 1.3)
                high[i] = max(high[i], peak)
                alarm(
                    sensor,
                    "warning",
                    at,
                    at + rng.lognormal(math.log(240), 0.6),
                    peak,
                    _pick_outcome(rng, OUTCOMES),
                )
        periods += _rows(site_id, sid, t, low, mean, high, None)

    clear_generated(session, site_id)
    _insert_periods(session, periods)
    if alarms:
        session.execute(insert(AlarmJournalRow), alarms)
    if permits:
        session.execute(insert(HotWorkPermitRow), permits)
    session.flush()
    leak_alarm = next(
        a["id"] for a in alarms if a["sensor_id"] == leak_sensor and a["outcome"] == "real"
    )
    planted = Planted(
        plan["chattering"],
        plan["drifting"],
        plan["stuck"],
        leak_sensor,
        leak_alarm,
        plan["workshop"],
        plan["leak_source"],
    )
    return {
        "site_id": site_id,
        "from": _at(start).isoformat(),
        "to": _at(stop).isoformat(),
        "seed": seed,
        "periods": len(periods),
        "alarms": len(alarms),
        "permits": len(permits),
        "planted": planted.as_dict(),
    }


PERIOD_COLUMNS = (
    "site_id",
    "sensor_id",
    "period_s",
    "n",
    "low",
    "mean",
    "high",
    "direction_deg",
    "generated",
)


def _insert_periods(session: Session, rows: list[tuple[Any, ...]]) -> None:
    """Straight through the driver's executemany: the ORM's bulk insert spends ten times as
    long on a month of periods (330,000 rows for the demo site)."""
    style = session.get_bind().dialect.paramstyle
    mark = "?" if style == "qmark" else "%s"
    sql = (
        f"INSERT INTO {ReadingHistoryRow.__tablename__} ({', '.join(PERIOD_COLUMNS)}) "
        f"VALUES ({', '.join([mark] * len(PERIOD_COLUMNS))})"
    )
    connection = session.connection()
    for c in range(0, len(rows), CHUNK):
        connection.exec_driver_sql(sql, rows[c : c + CHUNK])


def _pick_outcome(rng: np.random.Generator, choices: tuple[str | None, ...]) -> str | None:
    return choices[int(rng.integers(0, len(choices)))]


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(float(seconds), UTC)


def _rows(
    site_id: str,
    sensor_id: str,
    t: np.ndarray,
    low: np.ndarray,
    mean: np.ndarray,
    high: np.ndarray,
    direction: np.ndarray | None,
) -> list[tuple[Any, ...]]:
    """Periods as rows of :data:`PERIOD_COLUMNS`."""
    lo = np.minimum(low, mean).round(4).tolist()
    me = np.asarray(mean).round(4).tolist()
    hi = np.maximum(high, mean).round(4).tolist()
    di = [None] * len(t) if direction is None else np.asarray(direction).round(1).tolist()
    return [
        (site_id, sensor_id, ts, 600, a, b, c, d, True)
        for ts, a, b, c, d in zip(t.tolist(), lo, me, hi, di, strict=True)
    ]


def _pick(
    sensors: list[dict[str, Any]], zones: list[dict[str, Any]], rng: np.random.Generator
) -> dict[str, Any]:
    """Which detectors the patterns are planted in."""
    gas = [s for s in sensors if s["properties"].get("substance") and s["geometry"]]
    winds = [s for s in sensors if s["properties"].get("kind") == "wind"]
    if len(gas) < 4 or not winds:
        raise InvalidInput(
            "the site needs at least four gas detectors and a wind station",
            errors=[FieldError("sensors", "four gas detectors and a wind station")],
        )
    shapes = {str(z["id"]): shape(z["geometry"]) for z in zones if z.get("geometry")}
    kinds = {str(z["id"]): z["properties"].get("kind") for z in zones}
    shops = [zid for zid, kind in kinds.items() if kind == "workshop"] or sorted(shapes)[:1]
    workshop = shops[0]
    xy = {str(s["id"]): tuple(s["geometry"]["coordinates"][:2]) for s in gas}
    chattering = min(gas, key=lambda s: shapes[workshop].distance(Point(xy[str(s["id"])])))
    chattering_id = str(chattering["id"])
    # The leak: a detector standing in a zone with other detectors of its substance.
    zone_of: dict[str, str] = {}
    for s in gas:
        for zid, geom in shapes.items():
            if geom.intersects(Point(xy[str(s["id"])])):
                zone_of[str(s["id"])] = zid
                break
    candidates = [
        sid
        for sid in sorted(zone_of)
        if sid != chattering_id
        and shapes[zone_of[sid]].centroid.distance(Point(xy[sid])) * 111_000 > 20
        and any(zone_of.get(o) == zone_of[sid] and o != chattering_id for o in zone_of if o != sid)
    ]
    leak = str(
        rng.choice(sorted(c for c in candidates if _substance(gas, c) == _toxic(gas, candidates)))
    )
    rest = [str(s["id"]) for s in gas if str(s["id"]) not in (chattering_id, leak)]
    lel = [sid for sid in rest if "lel" in str(_substance(gas, sid)).lower()] or rest
    drifting = str(rng.choice(sorted(lel)))
    stuck = str(rng.choice(sorted(sid for sid in rest if sid != drifting)))
    source = shapes[zone_of[leak]].centroid
    return {
        "chattering": chattering_id,
        "drifting": drifting,
        "stuck": stuck,
        "leak": leak,
        "leak_source": zone_of[leak],
        "leak_source_xy": (source.x, source.y),
        "workshop": workshop,
        "workshop_shape": shapes[workshop],
        "xy": xy,
    }


def _substance(gas: list[dict[str, Any]], sensor_id: str) -> str | None:
    for s in gas:
        if str(s["id"]) == sensor_id:
            value = s["properties"].get("substance")
            return str(value) if value else None
    return None


def _toxic(gas: list[dict[str, Any]], candidates: list[str]) -> str | None:
    """The substance of the leak: chlorine where the site has it, else the first toxic one,
    else any."""
    names = [_substance(gas, c) for c in candidates]
    for wanted in ("cl2", "nh3", "h2s"):
        for n in names:
            if n and n.lower() == wanted:
                return n
    return names[0] if names else None
