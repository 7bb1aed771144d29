"""The command post's wristband side (a mixin of ``command.post.CommandPost``): device events
(SOS, fall, low battery, tag reads), the man-down and signal-lost timers on each tick, the
people's alarms and their acknowledgement, the position samples and each site's settings."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from command import events as event_log
from command.monitoring import wristbands as bands
from command.monitoring.devices import DeviceEvent
from command.monitoring.wristband_report import dwell, heatmap_png
from gis.errors import FieldError, IllegalTransition, InvalidInput, NotFound
from gis.storage.tables import TemporaryFenceRow

if TYPE_CHECKING:
    import threading

    from command.hub import Hub
    from command.incidents import Incident
    from command.site_model import SiteModel
    from gis.storage.db import Database
    from plans.clock import Clock


def _message(event: event_log.LoggedEvent) -> dict[str, Any]:
    return {
        "type": "event",
        "seq": event.seq,
        "incident_id": event.incident_id,
        "event": event.as_dict(),
    }


class WristbandDesk:
    """Methods of the command post for wristbands; state in ``self.wristbands``."""

    if TYPE_CHECKING:  # the command post's, which this is a part of
        db: Database
        hub: Hub
        clock: Clock
        _lock: threading.RLock
        wristbands: bands.Wristbands
        incidents: dict[str, Incident]
        exercises: dict[str, str]

        def model(self, site_id: str, *, wait: bool = False) -> SiteModel: ...

        def tag_read(
            self, site_id: str, event: DeviceEvent, *, actor: str
        ) -> event_log.LoggedEvent: ...

    def device_events(
        self, site_id: str, events: Sequence[DeviceEvent], *, actor: str
    ) -> list[event_log.LoggedEvent]:
        """Take device events whole or not at all: ``sos`` raises ``person.sos`` and ``fall``
        ``person.man_down``, each with the person's last known position (the event's own, if
        it gives one); ``battery_low`` logs ``person.battery_low``; ``tag_read`` goes to
        :meth:`tag_read` (the zone's gate reader). A person not of the site is refused, naming
        the event, and nothing is taken."""
        model = self.model(site_id)
        unknown = [
            FieldError(f"events[{i}].person_id", f"no person {e.person_id!r} at site {site_id}")
            for i, e in enumerate(events)
            if e.person_id is not None and e.person_id not in model.person_row
        ]
        reads = [(i, e) for i, e in enumerate(events) if e.kind == "tag_read"]
        if reads:  # checked here too, so that no read is refused after others were taken
            with self.db.read() as session:
                fences = set(
                    session.scalars(
                        select(TemporaryFenceRow.id).where(
                            TemporaryFenceRow.site_id == site_id,
                            TemporaryFenceRow.ended_at.is_(None),
                        )
                    )
                )
            zones = {str(f["id"]) for f in model.layers.get("zones", [])} | fences
            unknown += [
                FieldError(f"events[{i}].zone_id", f"no zone or fence {e.zone_id!r}")
                for i, e in reads
                if e.zone_id not in zones
            ]
        if unknown:
            raise InvalidInput(
                f"{len(unknown)} device event(s) name unknown people or zones; none was taken",
                errors=unknown[:100],
            )
        # The gate readers first: the fences' own path (its checks, its log, its lock).
        logged = [self.tag_read(site_id, read, actor=actor) for _, read in reads]
        with self._lock:
            with model.lock:
                lonlat, seen = model.person_lonlat, model.person_seen_at
            drafts: list[event_log.Draft] = []
            for event in events:
                if event.kind == "tag_read":
                    continue
                data: dict[str, Any] = {"device_id": event.device_id, "person_id": event.person_id}
                if event.person_id is not None:
                    row = model.person_row[event.person_id]
                    data.update(self._last_position(site_id, event, lonlat[row], seen[row]))
                if event.observed_at is not None:
                    data["observed_at"] = event.observed_at.isoformat()
                if event.detail:
                    data["detail"] = event.detail
                if event.kind == "battery_low":
                    drafts.append(event_log.Draft("person.battery_low", actor, data))
                else:
                    kind = "sos" if event.kind == "sos" else "man_down"
                    data["source"] = "device" if kind == "sos" else "fall"
                    drafts.append(event_log.Draft(bands.ALARM_EVENTS[kind], actor, data))
            if drafts:
                with self.db.write() as session:
                    logged += event_log.append_many(
                        session, site_id, drafts, exercises=self.exercises, now=self.clock.now()
                    )
                mine = logged[len(reads) :]
                for done in mine:
                    if done.type == "person.man_down":
                        self.wristbands.fell(site_id, str(done.data["person_id"]))
                self.wristbands.alarms.follow(mine)
                self.hub.publish(site_id, [_message(e) for e in mine])
        return logged

    def _last_position(
        self, site_id: str, event: DeviceEvent, lonlat: Any, seen: float
    ) -> dict[str, Any]:
        """Where the person was last known: the event's own position, else the band's last
        fix, else the site model's (the people layer's)."""
        assert event.person_id is not None
        if event.lonlat is not None:
            lon, lat = event.lonlat
            at = event.observed_at.isoformat() if event.observed_at else None
            return {"lon": lon, "lat": lat, "accuracy_m": None, "seen_at": at, "zone_id": None}
        tracked = self.wristbands.last_position(site_id, event.person_id)
        if tracked is not None:
            fix, zone = tracked
            return bands._position(fix, zone)
        return {
            "lon": float(lonlat[0]),
            "lat": float(lonlat[1]),
            "accuracy_m": None,
            "seen_at": bands._iso(float(seen)),
            "zone_id": None,
        }

    def watch_wristbands(self) -> list[event_log.LoggedEvent]:
        """Raise the man-down and signal-lost alarms due now (called on each tick)."""
        now = self.clock.now()
        out: list[event_log.LoggedEvent] = []
        for site_id in sorted(self.wristbands.tracks):
            settings = self.wristband_settings(site_id)
            model = self.model(site_id)
            with self._lock:
                threatened: set[str] = set()
                for incident in self.incidents.values():
                    if (
                        incident.site_id == site_id
                        and incident.exercise is None
                        and incident.run.active
                        and len(incident.levels) == len(model.person_ids)
                    ):
                        rows = incident.levels.nonzero()[0]
                        threatened |= {model.person_ids[int(r)] for r in rows}
                zones = self.wristbands.zones(
                    model.site, model.build, model.layers.get("zones", [])
                )
                drafts = self.wristbands.due(model.site, zones, now, settings, threatened)
                if not drafts:
                    continue
                with self.db.write() as session:
                    logged = event_log.append_many(
                        session, site_id, drafts, exercises=self.exercises, now=now
                    )
                self.wristbands.alarms.follow(logged)
                self.hub.publish(site_id, [_message(e) for e in logged])
                out += logged
        return out

    def person_alarms(self, site_id: str) -> list[dict[str, Any]]:
        self.model(site_id)  # an unknown site is a 404
        with self._lock:
            return self.wristbands.alarms.listed(site_id)

    def acknowledge_person_alarm(
        self,
        site_id: str,
        person_id: str,
        kind: str,
        *,
        actor: str,
        by_name: str | None = None,
        note: str | None = None,
    ) -> event_log.LoggedEvent:
        """``person.alarm_acknowledged``, naming who; 404 for an unknown person or kind, 409
        when no such alarm awaits an acknowledgement (nothing logged)."""
        model = self.model(site_id)
        if kind not in bands.ALARM_KINDS:
            raise NotFound(
                f"no alarm kind '{kind}'",
                errors=[FieldError("kind", f"one of {', '.join(bands.ALARM_KINDS)}")],
            )
        with self._lock:
            alarm = self.wristbands.alarms.of(site_id, person_id, kind)
            if alarm is None and person_id not in model.person_row:
                raise NotFound(
                    f"no person '{person_id}' at site '{site_id}'",
                    errors=[FieldError("person", "unknown")],
                )
            if alarm is None or alarm.acknowledged is not None:
                state = "none" if alarm is None else f"acknowledged by {alarm.acknowledged}"
                raise IllegalTransition(
                    f"{person_id} has no {kind} alarm awaiting an acknowledgement ({state})",
                    errors=[FieldError("kind", "no alarm awaits an acknowledgement")],
                )
            data = {
                "person_id": person_id,
                "kind": kind,
                "since": alarm.since,
                "by": actor,
                "by_name": by_name,
                "note": note,
            }
            with self.db.write() as session:
                event = event_log.append(
                    session,
                    site_id,
                    "person.alarm_acknowledged",
                    actor=actor,
                    data=data,
                    now=self.clock.now(),
                )
            self.wristbands.alarms.follow([event])
            self.hub.publish(site_id, [_message(event)])
            return event

    def wristband_settings(self, site_id: str) -> bands.Settings:
        cached = self.wristbands.settings.get(site_id)
        if cached is None:
            with self.db.read() as session:
                cached = bands.load_settings(session, site_id)
            self.wristbands.settings[site_id] = cached
        return cached

    def set_wristband_settings(
        self, site_id: str, settings: bands.Settings, *, actor: str
    ) -> bands.Settings:
        self.model(site_id)
        with self.db.write() as session:
            bands.save_settings(session, site_id, settings, actor=actor, now=self.clock.now())
        self.wristbands.settings[site_id] = settings
        return settings

    def save_samples(self) -> int:
        """Store the position samples taken since the last call (with the positions, once a
        second), and delete samples past ``RETENTION_DAYS`` (once an hour per site)."""
        with self._lock:
            pending = self.wristbands.pending_samples()
        now = self.clock.now()
        saved = 0
        for done, (site_id, rows) in enumerate(pending.items()):
            try:
                with self.db.write() as session:
                    saved += bands.store_samples(session, site_id, rows)
                    if self.wristbands.prune_due(site_id, now.timestamp()):
                        bands.prune_samples(session, site_id, now)
            except Exception:
                with self._lock:  # not lost: this site's and those after it go next time
                    for later, kept in list(pending.items())[done:]:
                        newer = self.wristbands.samples.get(later, [])
                        self.wristbands.samples[later] = [*kept, *newer]
                raise
        return saved

    def dwell_report(self, site_id: str, day: date) -> dict[str, Any]:
        self.save_samples()  # today's report includes the last second
        model = self.model(site_id)
        names = {
            str(f["id"]): str((f.get("properties") or {}).get("name"))
            for f in model.layers.get("people", [])
        }
        with self.db.read() as session:
            return dwell(session, model.site, day, model.layers.get("zones", []), names)

    def heatmap(self, site_id: str, day: date) -> bytes:
        self.save_samples()
        model = self.model(site_id)
        with self.db.read() as session:
            return heatmap_png(session, model.site, day, model.layers.get("zones", []))
