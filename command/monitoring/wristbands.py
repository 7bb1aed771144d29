"""Wristbands: positions with their accuracy, jitter filtered; SOS, fall, man-down and signal
lost as alarms on the wall; positions sampled for the daily report (``docs/monitoring.md``).

The rule for a fix (a position with its time and, from a wristband, its accuracy ``accuracy_m``,
the radius the device gives for it) of a person already tracked (their *anchor*: the last fix
taken):

- no accuracy: taken as exact, as every position was before wristbands (drills, phones);
- accuracy worse than ``POOR_ACCURACY_M``: *imprecise*: the person stays where they were, heard
  now (the band is alive), and the fix drives no zone or fence decision;
- closer to the anchor than the two accuracies combined (``hypot(a_anchor, a_fix)``): *jitter*:
  the person stays where they were, heard now;
- farther than the combined accuracies plus ``MAX_SPEED_M_S`` times the time since the anchor:
  *implausible* (a multipath jump): held, the person stays where they were, until a second fix
  agrees with it (within the same bound from it): then the person moves there;
- otherwise the person moves, and has moved (man-down is reset).

A person's first fix since the server started is taken unless imprecise. Injects of a drill
and the restores after one pass unfiltered and touch no wristband state.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import shapely
from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from command import events as event_log
from gis.errors import FieldError, InvalidInput
from gis.sites import Site
from gis.storage.tables import PositionSampleRow, WristbandSettingsRow

#: A fix whose accuracy radius is wider than this (metres) moves nobody and decides no zone:
#: 50 m is a building's width, the scale at which zones differ.
POOR_ACCURACY_M = 50.0
#: The fastest a person on foot is believed to move (m/s): a running evacuee makes 4-6 m/s for
#: a short while, a walking worker 1.4 m/s; a jump faster than this waits for a second fix.
MAX_SPEED_M_S = 5.0
#: The largest accuracy a position may carry (metres): a bigger one is a device error.
MAX_ACCURACY_M = 10_000.0
#: Defaults of a site's timers (seconds): man-down after 90 s without movement while the band
#: still reports (a worker at a panel moves more often than that; a fall detector's own window
#: is 30-60 s), signal lost after 120 s without any position.
MAN_DOWN_S = 90
SIGNAL_LOST_S = 120
#: Bounds of the timers a site may set (seconds).
TIMER_RANGE_S = (10, 3_600)
#: Position history for the daily report: at most one sample per person this often (seconds),
#: plus one at each change of zone; kept this many days.
SAMPLE_EVERY_S = 10.0
RETENTION_DAYS = 90
#: Zone kinds where a lost signal raises an alarm (the person may have collapsed out of reach
#: of the radio); an active incident's threat area counts too.
HAZARD_ZONE_KINDS = frozenset(
    {"process_unit", "tank_farm", "storage", "restricted_area", "confined_space", "wastewater"}
)
#: Alarm kinds on a person: each raised with the person's last position.
ALARM_KINDS = ("sos", "man_down", "signal_lost")
#: Event type of each alarm kind.
ALARM_EVENTS = {
    "sos": "person.sos",
    "man_down": "person.man_down",
    "signal_lost": "person.signal_lost",
}


class Moves(dict[str, tuple[float, float, datetime | None]]):
    """Positions as ``command.routes.live.parse_positions`` gives them (person -> lon, lat,
    observed at), with the accuracy of those that carry one (``accuracy``: person -> metres).
    Any other mapping of positions carries no accuracy (exact)."""

    accuracy: dict[str, float]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.accuracy = {}


def accuracy_of(moves: Mapping[str, Any]) -> dict[str, float]:
    return dict(moves.accuracy) if isinstance(moves, Moves) else {}


@dataclass
class Fix:
    lon: float
    lat: float
    x: float
    y: float
    at: float  # seconds since the epoch
    accuracy: float | None


@dataclass
class Track:
    """One person's wristband state."""

    anchor: Fix
    heard_at: float
    still_since: float
    zone: str | None = None
    suspect: Fix | None = None
    sampled_at: float = -math.inf
    sampled_zone: str | None = None
    #: Alarms raised by a timer or a fall, cleared by movement (man-down) or a fix (signal).
    man_down: bool = False
    signal_lost: bool = False


@dataclass(frozen=True)
class Settings:
    man_down_s: int = MAN_DOWN_S
    signal_lost_s: int = SIGNAL_LOST_S
    work_from: str | None = None
    work_to: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "man_down_s": self.man_down_s,
            "signal_lost_s": self.signal_lost_s,
            "work_from": self.work_from,
            "work_to": self.work_to,
        }

    def working(self, at: datetime, timezone: str) -> bool:
        """Whether ``at`` lies in the working hours (the site's time zone; none: always; a
        window past midnight, such as 22:00-06:00, wraps)."""
        if self.work_from is None or self.work_to is None:
            return True
        local = at.astimezone(ZoneInfo(timezone)).time()
        start, end = time.fromisoformat(self.work_from), time.fromisoformat(self.work_to)
        return start <= local < end if start <= end else local >= start or local < end


@dataclass
class Taken:
    """What the filter made of a batch: the positions to apply, the fixes held by kind, and
    the clearing events of people who moved or were heard again."""

    timed: dict[str, tuple[float, float, float]]
    held: dict[str, int]
    drafts: list[event_log.Draft]


@dataclass
class ZoneIndex:
    ids: list[str]
    hazard: np.ndarray  # bool per zone
    tree: shapely.STRtree
    boundary: shapely.Geometry
    hazards: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        self.hazards = frozenset(
            z for z, h in zip(self.ids, self.hazard.tolist(), strict=True) if h
        )

    def zone_of(self, lonlat: np.ndarray) -> list[str | None]:
        """Per position, the first zone (by id) holding it, or None."""
        n = len(lonlat)
        if not n or not self.ids:
            return [None] * n
        at, zone = self.tree.query(shapely.points(lonlat), predicate="intersects")
        first = np.full(n, len(self.ids), dtype=np.int64)
        np.minimum.at(first, at, zone)
        return [self.ids[z] if z < len(self.ids) else None for z in first.tolist()]


def zone_index(site: Site, zones: Sequence[Mapping[str, Any]]) -> ZoneIndex:
    shaped = sorted(
        (
            (str(f["id"]), shapely.geometry.shape(f["geometry"]), (f.get("properties") or {}))
            for f in zones
            if f.get("geometry")
        ),
        key=lambda z: z[0],
    )
    boundary = site.boundary
    shapely.prepare(boundary)
    return ZoneIndex(
        [z[0] for z in shaped],
        np.array([str(z[2].get("kind")) in HAZARD_ZONE_KINDS for z in shaped], dtype=bool),
        shapely.STRtree([z[1] for z in shaped]),
        boundary,
    )


@dataclass
class Wristbands:
    """Every site's tracks, the people's alarms (followed from the log), the samples not yet
    stored and each site's settings. Callers hold the command post's lock."""

    tracks: dict[str, dict[str, Track]] = field(default_factory=dict)
    alarms: PersonAlarms = field(default_factory=lambda: PersonAlarms())
    samples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    settings: dict[str, Settings] = field(default_factory=dict)
    _zones: dict[str, tuple[int, ZoneIndex]] = field(default_factory=dict)
    _pruned: dict[str, float] = field(default_factory=dict)
    #: People whose band reported a fall before any fix of theirs was tracked.
    _fallen: dict[str, set[str]] = field(default_factory=dict)

    def zones(self, site: Site, build: int, features: Sequence[Mapping[str, Any]]) -> ZoneIndex:
        cached = self._zones.get(site.id)
        if cached is None or cached[0] != build:
            cached = (build, zone_index(site, features))
            self._zones[site.id] = cached
        return cached[1]

    def take(
        self,
        site: Site,
        zones: ZoneIndex,
        known: Mapping[str, int],
        timed: Mapping[str, tuple[float, float, float]],
        accuracy: Mapping[str, float],
    ) -> Taken:
        """Filter a batch (see the module's rule): unknown people and fixes older than the
        anchor pass as they are (the site model ignores and counts them)."""
        out = dict(timed)
        held = {"jitter": 0, "imprecise": 0, "implausible": 0}
        drafts: list[event_log.Draft] = []
        ids = [pid for pid in timed if pid in known]
        if not ids:
            return Taken(out, held, drafts)
        lonlat = np.array([timed[pid][:2] for pid in ids], dtype=np.float64)
        xy = site.crs.transform_xy(lonlat)
        zone_at = zones.zone_of(lonlat)
        tracks = self.tracks.setdefault(site.id, {})
        samples = self.samples.setdefault(site.id, [])
        for i, pid in enumerate(ids):
            lon, lat, at = timed[pid]
            acc = accuracy.get(pid)
            fix = Fix(lon, lat, float(xy[i, 0]), float(xy[i, 1]), at, acc)
            track = tracks.get(pid)
            if track is None:
                if acc is not None and acc > POOR_ACCURACY_M:
                    held["imprecise"] += 1
                    del out[pid]
                    continue
                track = tracks[pid] = Track(fix, at, at, zone_at[i])
                track.man_down = pid in self._fallen.get(site.id, set())
                self._fallen.get(site.id, set()).discard(pid)
                self._sample(samples, pid, track, fix)
                continue
            anchor = track.anchor
            if at < anchor.at:
                continue  # older than what is held: stale, counted by the site model
            if track.signal_lost:
                track.signal_lost = False
                drafts.append(_cleared(pid, "signal_lost", anchor, at, "reported again"))
            track.heard_at = max(track.heard_at, at)
            verdict = _judge(anchor, track.suspect, fix)
            if verdict == "moved":
                if track.man_down:
                    track.man_down = False
                    drafts.append(_cleared(pid, "man_down", fix, at, "moved"))
                track.anchor, track.suspect, track.zone = fix, None, zone_at[i]
                track.still_since = at
            elif verdict == "exact":  # no accuracy: taken as it is; a move only if it is one
                if fix.x != anchor.x or fix.y != anchor.y:
                    track.still_since = at
                    if track.man_down:
                        track.man_down = False
                        drafts.append(_cleared(pid, "man_down", fix, at, "moved"))
                track.anchor, track.suspect, track.zone = fix, None, zone_at[i]
            else:
                held[verdict] += 1
                if verdict == "implausible":
                    track.suspect = fix
                out[pid] = (anchor.lon, anchor.lat, at)
            self._sample(samples, pid, track, fix if out[pid][:2] == (lon, lat) else anchor, at)
        return Taken(out, held, drafts)

    def _sample(
        self,
        samples: list[dict[str, Any]],
        pid: str,
        track: Track,
        where: Fix,
        at: float | None = None,
    ) -> None:
        when = where.at if at is None else at
        if when - track.sampled_at < SAMPLE_EVERY_S and track.zone == track.sampled_zone:
            return
        track.sampled_at, track.sampled_zone = when, track.zone
        samples.append(
            {
                "person_id": pid,
                "at": datetime.fromtimestamp(when, UTC),
                "lon": where.lon,
                "lat": where.lat,
                "accuracy_m": where.accuracy,
                "zone_id": track.zone,
            }
        )

    def due(
        self,
        site: Site,
        zones: ZoneIndex,
        now: datetime,
        settings: Settings,
        threatened: Iterable[str],
    ) -> list[event_log.Draft]:
        """Man-down and signal-lost alarms due at ``now`` on the site (each raised once, until
        the person moves or reports again). Man-down needs the band's own word: fixes spanning
        ``man_down_s`` without a move, the last one less than ``signal_lost_s`` ago (a silent
        band is a lost signal, not a still wearer)."""
        tracks = self.tracks.get(site.id, {})
        t = now.timestamp()
        working = settings.working(now, site.timezone)
        threat = set(threatened)
        drafts: list[event_log.Draft] = []
        for pid, track in sorted(tracks.items()):
            anchor = track.anchor
            silent = t - track.heard_at
            if (
                not track.signal_lost
                and silent >= settings.signal_lost_s
                and (_in_hazard(zones, track.zone) or pid in threat)
            ):
                track.signal_lost = True
                drafts.append(
                    _alarm(pid, "signal_lost", anchor, track.zone, silent_s=round(silent, 1))
                )
            if (
                not track.man_down
                and working
                and silent < settings.signal_lost_s
                and track.heard_at - track.still_since >= settings.man_down_s
                and shapely.contains_xy(zones.boundary, anchor.lon, anchor.lat)
            ):
                track.man_down = True
                still = round(t - track.still_since, 1)
                drafts.append(_alarm(pid, "man_down", anchor, track.zone, still_s=still))
        return drafts

    def last_position(self, site_id: str, pid: str) -> tuple[Fix, str | None] | None:
        track = self.tracks.get(site_id, {}).get(pid)
        return None if track is None else (track.anchor, track.zone)

    def fell(self, site_id: str, pid: str) -> None:
        """A fall detected by the band: man-down raised, cleared as a timer's is."""
        track = self.tracks.get(site_id, {}).get(pid)
        if track is not None:
            track.man_down = True
        else:  # cleared by their first move once tracked
            self._fallen.setdefault(site_id, set()).add(pid)

    def pending_samples(self) -> dict[str, list[dict[str, Any]]]:
        out = {site: rows for site, rows in self.samples.items() if rows}
        self.samples = {}
        return out

    def prune_due(self, site_id: str, now: float) -> bool:
        """Whether the site's old samples are due for deleting (once an hour)."""
        if now - self._pruned.get(site_id, -math.inf) < 3600:
            return False
        self._pruned[site_id] = now
        return True


def _judge(anchor: Fix, suspect: Fix | None, fix: Fix) -> str:
    """``exact``, ``imprecise``, ``jitter``, ``implausible`` or ``moved`` (the module's rule)."""
    if fix.accuracy is None:
        return "exact"
    if fix.accuracy > POOR_ACCURACY_M:
        return "imprecise"
    d = math.hypot(fix.x - anchor.x, fix.y - anchor.y)
    gate = math.hypot(anchor.accuracy or 0.0, fix.accuracy)
    if d <= gate:
        return "jitter"
    if d - gate <= MAX_SPEED_M_S * (fix.at - anchor.at):
        return "moved"
    if suspect is not None and suspect.accuracy is not None:
        again = math.hypot(fix.x - suspect.x, fix.y - suspect.y)
        slack = math.hypot(suspect.accuracy, fix.accuracy)
        if again - slack <= MAX_SPEED_M_S * max(fix.at - suspect.at, 0.0):
            return "moved"  # a second fix agrees: the jump was real
    return "implausible"


def _in_hazard(zones: ZoneIndex, zone: str | None) -> bool:
    return zone is not None and zone in zones.hazards


def _position(fix: Fix, zone: str | None) -> dict[str, Any]:
    return {
        "lon": fix.lon,
        "lat": fix.lat,
        "accuracy_m": fix.accuracy,
        "seen_at": _iso(fix.at),
        "zone_id": zone,
    }


def _alarm(pid: str, kind: str, fix: Fix, zone: str | None, **extra: Any) -> event_log.Draft:
    return event_log.Draft(
        ALARM_EVENTS[kind], "system", {"person_id": pid, **_position(fix, zone), **extra}
    )


def _cleared(pid: str, kind: str, fix: Fix, at: float, reason: str) -> event_log.Draft:
    return event_log.Draft(
        "person.alarm_cleared",
        "system",
        {
            "person_id": pid,
            "kind": kind,
            "reason": reason,
            "lon": fix.lon,
            "lat": fix.lat,
            "seen_at": _iso(at),
        },
    )


def _iso(epoch_s: float) -> str | None:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat() if math.isfinite(epoch_s) else None


# -- the alarms, followed from the log ---------------------------------------------------------


@dataclass
class PersonAlarm:
    kind: str
    since: str
    position: dict[str, Any]
    detail: dict[str, Any]
    cleared: str | None = None
    acknowledged: dict[str, Any] | None = None

    def as_dict(self, pid: str) -> dict[str, Any]:
        return {
            "person_id": pid,
            "kind": self.kind,
            "since": self.since,
            **self.position,
            "detail": self.detail,
            "cleared": self.cleared,
            "acknowledged": self.acknowledged,
        }


class PersonAlarms:
    """Per site, person and kind, the alarm, from the logged ``person.*`` events (live, and
    replayed on a restart). An alarm stays listed until it is acknowledged *and* cleared (the
    person moved or reported again; an SOS is cleared by its acknowledgement), as a sensor's
    alarm does (ISA-18.2's "return to normal unacknowledged")."""

    def __init__(self) -> None:
        self.sites: dict[str, dict[tuple[str, str], PersonAlarm]] = {}

    def follow(self, events: Iterable[Any]) -> None:
        kinds = {v: k for k, v in ALARM_EVENTS.items()}
        for event in events:
            data = event.data
            at = event.at.isoformat()
            alarms = self.sites.setdefault(event.site_id, {})
            if event.type in kinds:
                kind = kinds[event.type]
                key = (str(data["person_id"]), kind)
                position = {k: data.get(k) for k in ("lon", "lat", "accuracy_m", "seen_at")}
                position["zone_id"] = data.get("zone_id")
                detail = {k: v for k, v in data.items() if k not in position and k != "person_id"}
                earlier = alarms.get(key)
                if earlier is None or earlier.acknowledged is not None:
                    alarms[key] = PersonAlarm(kind, at, position, detail)
                else:  # raised again before anyone acknowledged it: one alarm, newest place
                    earlier.position, earlier.detail, earlier.cleared = position, detail, None
                if kind == "sos":
                    alarms[key].cleared = at
            elif event.type == "person.alarm_cleared":
                key = (str(data["person_id"]), str(data["kind"]))
                alarm = alarms.get(key)
                if alarm is not None:
                    if alarm.acknowledged is not None:
                        del alarms[key]
                    else:
                        alarm.cleared = at
            elif event.type == "person.alarm_acknowledged":
                key = (str(data["person_id"]), str(data["kind"]))
                alarm = alarms.get(key)
                if alarm is None or alarm.acknowledged is not None:
                    continue
                if alarm.cleared is not None:
                    del alarms[key]
                else:
                    alarm.acknowledged = {
                        "by": data.get("by"),
                        "by_name": data.get("by_name"),
                        "at": at,
                    }

    def of(self, site_id: str, pid: str, kind: str) -> PersonAlarm | None:
        return self.sites.get(site_id, {}).get((pid, kind))

    def listed(self, site_id: str) -> list[dict[str, Any]]:
        """The site's person alarms, oldest first (the wall's list, with the last positions)."""
        out = [a.as_dict(pid) for (pid, _), a in self.sites.get(site_id, {}).items()]
        return sorted(out, key=lambda a: (a["since"], a["person_id"], a["kind"]))


# -- settings and samples in the database ------------------------------------------------------


def load_settings(session: Session, site_id: str) -> Settings:
    row = session.get(WristbandSettingsRow, site_id)
    if row is None:
        return Settings()
    return Settings(row.man_down_s, row.signal_lost_s, row.work_from, row.work_to)


def parse_settings(body: Any) -> Settings:
    """``{"man_down_s", "signal_lost_s", "work_from"?, "work_to"?}`` checked: the timers in
    ``TIMER_RANGE_S``, the hours as ``HH:MM``, both or neither."""
    if not isinstance(body, dict):
        raise InvalidInput("send the settings as an object", errors=[FieldError("body", "object")])
    errors: list[FieldError] = []
    low, high = TIMER_RANGE_S
    timers: dict[str, int] = {}
    for name, default in (("man_down_s", MAN_DOWN_S), ("signal_lost_s", SIGNAL_LOST_S)):
        value = body.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            errors.append(FieldError(name, f"whole seconds from {low} to {high}"))
        else:
            timers[name] = value
    hours: dict[str, str | None] = {}
    for name in ("work_from", "work_to"):
        value = body.get(name)
        if value is None:
            hours[name] = None
            continue
        try:
            ok = isinstance(value, str) and len(value) == 5 and bool(time.fromisoformat(value))
        except ValueError:
            ok = False
        if not ok:
            errors.append(FieldError(name, "a time of day HH:MM"))
        hours[name] = value if ok else None
    if (body.get("work_from") is None) != (body.get("work_to") is None):
        errors.append(FieldError("work_to", "give both work_from and work_to, or neither"))
    unknown = sorted(set(body) - {"man_down_s", "signal_lost_s", "work_from", "work_to"})
    errors += [FieldError(name or "body", f"{name!r} is not a setting") for name in unknown]
    if errors:
        raise InvalidInput("bad wristband settings; nothing was changed", errors=errors)
    return Settings(timers["man_down_s"], timers["signal_lost_s"], **hours)


def save_settings(
    session: Session, site_id: str, settings: Settings, *, actor: str, now: datetime
) -> None:
    row = session.get(WristbandSettingsRow, site_id)
    if row is None:
        row = WristbandSettingsRow(site_id=site_id)
        session.add(row)
    row.man_down_s, row.signal_lost_s = settings.man_down_s, settings.signal_lost_s
    row.work_from, row.work_to = settings.work_from, settings.work_to
    row.updated_at, row.updated_by = now, actor
    session.flush()


def store_samples(session: Session, site_id: str, rows: Sequence[Mapping[str, Any]]) -> int:
    if rows:
        session.execute(insert(PositionSampleRow), [{"site_id": site_id, **r} for r in rows])
    return len(rows)


def prune_samples(session: Session, site_id: str, now: datetime) -> None:
    """Delete the site's samples older than ``RETENTION_DAYS``."""
    cutoff = now - timedelta(days=RETENTION_DAYS)
    session.execute(
        delete(PositionSampleRow).where(
            PositionSampleRow.site_id == site_id, PositionSampleRow.at < cutoff
        )
    )


def read_samples(
    session: Session, site_id: str, start: datetime, end: datetime
) -> list[tuple[str, datetime, float, float, str | None]]:
    """The site's samples from ``start`` to ``end`` (and the last one of each person before
    ``start``, so a stay across midnight counts from midnight), by person and time."""
    rows = session.execute(
        select(
            PositionSampleRow.person_id,
            PositionSampleRow.at,
            PositionSampleRow.lon,
            PositionSampleRow.lat,
            PositionSampleRow.zone_id,
        )
        .where(
            PositionSampleRow.site_id == site_id,
            PositionSampleRow.at >= start - timedelta(seconds=MAX_GAP_S),
            PositionSampleRow.at < end,
        )
        .order_by(PositionSampleRow.person_id, PositionSampleRow.at, PositionSampleRow.id)
    )
    return [(str(p), at, float(x), float(y), z) for p, at, x, y, z in rows]


#: A sample stands for the time until the person's next one, at most this long (seconds): a
#: band silent longer says nothing of where its wearer was.
MAX_GAP_S = 120.0
