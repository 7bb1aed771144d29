"""Geofences: entry rules on zones, temporary fences, and the breaches of both.

A fence is a zone with entry rules (``zone_rules``) or a temporary fence drawn on the wall (a
crane's swing radius, a hot-work area: ``temporary_fences``). Its rules
(``command.monitoring.fence_rules``) say who may be inside (roles, teams, certificates held and
valid, a site induction, or nobody at all), when (time windows in the site's time zone), how
many at once (``max_occupancy``) and for how long (``max_stay_s``, for confined spaces).

Every batch of positions is checked against every fence of the site at once (one STRtree
query for the batch); only the people whose set of fences changed are looked at one by one.
A breach is logged once, on the transition (``fence.breach``): entering a fence whose rules the
person does not meet, a fence going over its occupancy, or a stay going over its maximum
(found by the clock's tick). Each breach notifies the fence's owner through the call tree's
notices (``notification.requested``, role ``fence-owner``) and waits on every wall until
someone acknowledges it (``fence.acknowledged``). A gate's tag reader asks the same rules
(:meth:`FenceWatch.tag_read`: ``access.granted`` or ``access.refused`` with the reasons).

State is in memory, per site, built on first use from the tables and the log: unacknowledged
breaches and who was breaching, so a restart neither forgets an alarm nor raises it again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import shapely
from shapely.geometry import shape
from sqlalchemy import select
from sqlalchemy.orm import Session

from command import events as event_log
from command.auth import find_user
from command.monitoring.contractors import Credentials, read_credentials
from command.monitoring.devices import DeviceEvent
from command.monitoring.fence_rules import (
    Fence,
    Rules,
    parse_rules,
    parse_temporary,
    refusals,
    site_zone,
    temporary_fence,
)
from gis.errors import FieldError, IllegalTransition, InvalidInput, NotFound
from gis.storage.tables import EventRow, TemporaryFenceRow, ZoneRuleRow

if TYPE_CHECKING:
    from command.post import CommandPost
    from command.site_model import SiteModel

log = logging.getLogger(__name__)

#: A zone owner has this long to answer a breach's notice before it is logged unanswered.
OWNER_ANSWER_S = 300.0
#: Occupants are checked again against time windows and expiries this often (clock seconds).
RECHECK_S = 30.0
#: Breaches older than this are not read back on start to seed who is breaching.
SEED_DAYS = 7


@dataclass
class SiteFences:
    """One site's fences and who is inside them."""

    site_id: str
    #: The model build and rules version the fences were made from.
    built: tuple[int, int] = (-1, -1)
    fences: list[Fence] = field(default_factory=list)
    by_key: dict[str, Fence] = field(default_factory=dict)
    tree: shapely.STRtree = field(default_factory=lambda: shapely.STRtree([]))
    rules: dict[str, tuple[Rules, dict[str, Any] | None]] = field(default_factory=dict)
    temporary: dict[str, Fence] = field(default_factory=dict)
    credentials: dict[str, Credentials] = field(default_factory=dict)
    version: int = 0
    #: person -> fence key -> when they were first seen inside (epoch seconds)
    inside: dict[str, dict[str, float]] = field(default_factory=dict)
    occupants: dict[str, set[str]] = field(default_factory=dict)
    #: (person, fence key) breaching its people rules / its stay; fences over occupancy
    breaching: set[tuple[str, str]] = field(default_factory=set)
    overstaying: set[tuple[str, str]] = field(default_factory=set)
    overfull: set[str] = field(default_factory=set)
    #: Unacknowledged breaches: the breach event's seq -> its event (as a dict)
    open: dict[int, dict[str, Any]] = field(default_factory=dict)
    #: Everyone must be checked again against every fence (the fences changed).
    stale: bool = True
    rechecked_at: float = -1.0


class FenceWatch:
    """The fences of every site, checked on each position batch and each tick of the post."""

    def __init__(self, post: CommandPost) -> None:
        self.post = post
        self.sites: dict[str, SiteFences] = {}
        # The post's own lock: fences log through the post, and a position batch checks them
        # under it; one lock cannot be taken in two orders.
        self._lock = post._lock
        self._started = False

    # -- loading --------------------------------------------------------------------------

    def site(self, site_id: str) -> SiteFences:
        with self._lock:
            found = self.sites.get(site_id)
            if found is None:
                found = self._load(site_id)
                self.sites[site_id] = found
            return found

    def _load(self, site_id: str, *, from_log: bool = True) -> SiteFences:
        """The site's rules, fences in force and credentials; with ``from_log``, the waiting
        breaches and who was breaching, from the log (on first use; a reload keeps its own)."""
        state = SiteFences(site_id)
        since = self.post.clock.now() - timedelta(days=SEED_DAYS)
        with self.post.db.read() as session:
            for row in session.scalars(select(ZoneRuleRow).where(ZoneRuleRow.site_id == site_id)):
                state.rules[row.zone_id] = (parse_rules(row.rules), row.owner)
            for t in session.scalars(
                select(TemporaryFenceRow).where(
                    TemporaryFenceRow.site_id == site_id, TemporaryFenceRow.ended_at.is_(None)
                )
            ):
                state.temporary[t.id] = temporary_fence(t)
            state.credentials = read_credentials(session, site_id)
            if not from_log:
                return state
            rows = session.scalars(
                select(EventRow)
                .where(
                    EventRow.site_id == site_id,
                    EventRow.type.in_(("fence.breach", "fence.acknowledged")),
                    EventRow.at >= since,
                )
                .order_by(EventRow.seq)
            ).all()
        for event in rows:
            data = event.data or {}
            if event.type == "fence.breach":
                state.open[event.seq] = _breach_view(event.seq, event.at, data)
                pair = (str(data.get("person_id")), str(data.get("fence_key")))
                if data.get("rule") == "max_stay":
                    state.overstaying.add(pair)
                elif data.get("rule") == "max_occupancy":
                    state.overfull.add(str(data.get("fence_key")))
                else:
                    state.breaching.add(pair)
            else:
                state.open.pop(int(data.get("breach", -1)), None)
        return state

    def _fences(self, state: SiteFences, model: SiteModel) -> None:
        """Make the site's fences again if the zones, the rules or the fences changed."""
        key = (model.build, state.version)
        if state.built == key:
            return
        fences: list[Fence] = []
        zones = {str(f["id"]): f for f in model.layers.get("zones", [])}
        for zone_id, (rules, owner) in sorted(state.rules.items()):
            zone = zones.get(zone_id)
            if zone is None or zone.get("geometry") is None:
                continue
            name = str(zone.get("properties", {}).get("name") or zone_id)
            fences.append(
                Fence(
                    f"zone:{zone_id}", zone_id, "zone", name, shape(zone["geometry"]), rules, owner
                )
            )
        fences += sorted(state.temporary.values(), key=lambda f: f.id)
        state.fences = fences
        state.by_key = {f.key: f for f in fences}
        state.tree = shapely.STRtree([f.geometry for f in fences])
        state.built = key
        state.stale = True

    # -- positions --------------------------------------------------------------------------

    def positions(self, site_id: str, model: SiteModel, rows: np.ndarray) -> list[Any]:
        """After a batch of positions is taken: who entered or left which fence (``rows``:
        the people of ``model`` who moved). Logs and sends the breaches; returns them."""
        with self._lock:
            state = self.site(site_id)
            self._fences(state, model)
            if not state.fences and not state.inside:
                return []
            if state.stale:
                rows = np.arange(len(model.person_ids))
                state.stale = False
            if not len(rows):
                return []
            with model.lock:
                xy = model.person_lonlat[rows]
                seen = model.person_seen_at[rows]
            now = self.post.clock.now()
            people, fence_idx = (
                state.tree.query(shapely.points(xy), predicate="intersects")
                if state.fences
                else (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
            )
            now_in: dict[int, list[int]] = {}
            for p, f in zip(people.tolist(), fence_idx.tolist(), strict=True):
                now_in.setdefault(p, []).append(f)
            ids = model.person_ids
            # The people looked at one by one: those inside a fence now, or before.
            was = {i for i, r in enumerate(rows.tolist()) if ids[r] in state.inside}
            drafts: list[tuple[Fence, event_log.Draft]] = []
            entered: dict[str, list[str]] = {}
            for i in sorted(was | set(now_in)):
                pid = ids[int(rows[i])]
                keys = {state.fences[f].key for f in now_in.get(i, ())}
                before = state.inside.get(pid, {})
                at = float(seen[i]) if np.isfinite(seen[i]) else now.timestamp()
                for gone in set(before) - keys:
                    self._left(state, pid, gone)
                for key in sorted(keys - set(before)):
                    state.inside.setdefault(pid, {})[key] = at
                    state.occupants.setdefault(key, set()).add(pid)
                    entered.setdefault(key, []).append(pid)
                    fence = state.by_key[key]
                    reasons = self._refusals(state, model, fence, pid, now)
                    if reasons and (pid, key) not in state.breaching:
                        state.breaching.add((pid, key))
                        drafts.append((fence, self._draft(model, fence, pid, reasons, xy[i], at)))
            for key, newcomers in entered.items():
                fence = state.by_key[key]
                most = fence.rules.max_occupancy
                count = len(state.occupants.get(key, ()))
                if most is not None and count > most and key not in state.overfull:
                    state.overfull.add(key)
                    pid = newcomers[-1]
                    reason = {
                        "rule": "max_occupancy",
                        "reason": f"{count} inside the {fence.what}, at most {most}",
                    }
                    row = model.person_row[pid]
                    with model.lock:
                        where = model.person_lonlat[row]
                    draft = self._draft(
                        model,
                        fence,
                        pid,
                        [reason],
                        where,
                        now.timestamp(),
                        extra={"inside": sorted(state.occupants[key])},
                    )
                    drafts.append((fence, draft))
            return self._log(site_id, drafts)

    def _left(self, state: SiteFences, pid: str, key: str) -> None:
        state.inside.get(pid, {}).pop(key, None)
        if not state.inside.get(pid):
            state.inside.pop(pid, None)
        occupants = state.occupants.get(key, set())
        occupants.discard(pid)
        state.breaching.discard((pid, key))
        state.overstaying.discard((pid, key))
        fence = state.by_key.get(key)
        most = fence.rules.max_occupancy if fence else None
        if most is None or len(occupants) <= most:
            state.overfull.discard(key)

    def _person(self, model: SiteModel, pid: str) -> dict[str, Any] | None:
        row = _people(model).get(pid)
        return dict(row["properties"]) if row is not None else None

    def _refusals(
        self, state: SiteFences, model: SiteModel, fence: Fence, pid: str, now: datetime
    ) -> list[dict[str, str]]:
        local = now.astimezone(site_zone(model.site.timezone))
        return refusals(
            fence.rules,
            self._person(model, pid),
            state.credentials.get(pid),
            at=now,
            local=local,
            what=fence.what,
        )

    def _draft(
        self,
        model: SiteModel,
        fence: Fence,
        pid: str,
        reasons: list[dict[str, str]],
        where: Any,
        at: float,
        *,
        extra: Mapping[str, Any] | None = None,
    ) -> event_log.Draft:
        person = self._person(model, pid) or {}
        return event_log.Draft(
            "fence.breach",
            "system",
            {
                "person_id": pid,
                "person_name": person.get("name"),
                "employer": person.get("employer"),
                "fence_key": fence.key,
                "fence_id": fence.id,
                "fence_kind": fence.kind,
                "fence_name": fence.name,
                "rule": reasons[0]["rule"],
                "reasons": reasons,
                "lonlat": [float(where[0]), float(where[1])],
                "observed_at": datetime.fromtimestamp(at, UTC).isoformat(),
                "owner": fence.owner,
                **(extra or {}),
            },
        )

    def _log(self, site_id: str, drafts: Sequence[tuple[Fence, event_log.Draft]]) -> list[Any]:
        """Log the breaches, each followed by its owner's notice; send them; track the notices."""
        if not drafts:
            return []
        post = self.post
        out: list[event_log.Draft] = []
        for fence, draft in drafts:
            out.append(draft)
            for contact in self._contacts(site_id, fence.owner):
                data = draft.data
                out.append(
                    event_log.Draft(
                        "notification.requested",
                        "system",
                        {
                            "role": "fence-owner",
                            "contact": contact,
                            "fallbacks": [],
                            "acknowledge_within_s": OWNER_ANSWER_S,
                            "fence_id": fence.id,
                            "fence_kind": fence.kind,
                            "person_id": data["person_id"],
                            "rule": data["rule"],
                            "reason": "; ".join(r["reason"] for r in data["reasons"]),
                        },
                    )
                )
        with post._lock:
            with post.db.write() as session:
                logged = event_log.append_many(session, site_id, out, now=post.clock.now())
            state = self.site(site_id)
            for event in logged:
                if event.type == "fence.breach":
                    state.open[event.seq] = _breach_view(event.seq, event.at, event.data)
            post._track(logged)  # the owners' notices: answer tokens, the outbound gateway
            post.hub.publish(site_id, [_message(e) for e in logged])
        return logged

    def _contacts(self, site_id: str, owner: Mapping[str, Any] | None) -> list[dict[str, Any]]:
        if not owner:
            return []
        phone = {"phone": owner["phone"]} if owner.get("phone") else {}
        channel = "sms" if phone else "app"
        if "username" in owner:
            with self.post.db.read() as session:
                try:
                    name = find_user(session, str(owner["username"])).display_name
                except NotFound:  # gone since the rules were written: named all the same
                    name = str(owner["username"])
            return [{"name": name, "username": owner["username"], "channel": channel, **phone}]
        duty = str(owner["duty"])
        holders = sorted(
            {
                u
                for i in self.post.incidents.values()
                if i.site_id == site_id
                for u in i.duties.get(duty, set())
            }
        )
        if not holders:
            return [{"name": f"duty {duty}", "duty": duty, "channel": channel, **phone}]
        return [{"name": u, "username": u, "duty": duty, "channel": "app"} for u in holders]

    # -- the clock --------------------------------------------------------------------------

    def tick(self, *, expire: bool = True) -> list[Any]:
        """Expire temporary fences past their time (``expire``: the database's fences, one
        process does, the leader), and raise overlong stays (and people whose entry hours or
        certificates ran out while inside, every :data:`RECHECK_S`) of the people whose
        positions this process took."""
        out: list[Any] = []
        if not self._started:  # after a restart: the sites with fences to expire or watch
            self._started = True
            with self.post.db.read() as session:
                held = set(session.scalars(select(ZoneRuleRow.site_id).distinct()))
                held |= set(
                    session.scalars(
                        select(TemporaryFenceRow.site_id)
                        .where(TemporaryFenceRow.ended_at.is_(None))
                        .distinct()
                    )
                )
            for site_id in sorted(held):
                self.site(site_id)
        for site_id in list(self.sites):
            try:
                if expire:
                    out += self._expire(site_id)
                out += self._stays(site_id)
            except Exception:  # one site's trouble stops no other's
                log.exception("fence tick failed at %s", site_id)
        return out

    def _expire(self, site_id: str) -> list[Any]:
        now = self.post.clock.now()
        with self._lock:
            state = self.site(site_id)
            due = sorted(
                (f for f in state.temporary.values() if f.expires_at and f.expires_at <= now),
                key=lambda f: f.id,
            )
        return [self.end_temporary(site_id, f.id, actor="system", expired=True) for f in due]

    def _stays(self, site_id: str) -> list[Any]:
        post = self.post
        now = post.clock.now()
        model = post.model(site_id)
        with self._lock:
            state = self.site(site_id)
            self._fences(state, model)
            drafts: list[tuple[Fence, event_log.Draft]] = []
            recheck = now.timestamp() - state.rechecked_at >= RECHECK_S
            if recheck:
                state.rechecked_at = now.timestamp()
            for pid, keys in sorted(state.inside.items()):
                row = model.person_row.get(pid)
                if row is None:
                    continue
                with model.lock:
                    where = model.person_lonlat[row]
                for key, since in sorted(keys.items()):
                    fence = state.by_key.get(key)
                    if fence is None:
                        continue
                    most = fence.rules.max_stay_s
                    stayed = now.timestamp() - since
                    if most is not None and stayed > most and (pid, key) not in state.overstaying:
                        state.overstaying.add((pid, key))
                        reason = {
                            "rule": "max_stay",
                            "reason": f"inside the {fence.what} for {_minutes(stayed)}, "
                            f"at most {_minutes(most)}",
                        }
                        drafts.append(
                            (
                                fence,
                                self._draft(model, fence, pid, [reason], where, now.timestamp()),
                            )
                        )
                    if recheck and (pid, key) not in state.breaching:
                        reasons = self._refusals(state, model, fence, pid, now)
                        if reasons:
                            state.breaching.add((pid, key))
                            draft = self._draft(model, fence, pid, reasons, where, now.timestamp())
                            drafts.append((fence, draft))
            return self._log(site_id, drafts)

    # -- acknowledging ----------------------------------------------------------------------

    def open_breaches(self, site_id: str) -> list[dict[str, Any]]:
        self.post.model(site_id)  # NotFound for an unknown site
        with self._lock:
            state = self.site(site_id)
            return [state.open[s] for s in sorted(state.open)]

    def acknowledge(
        self, site_id: str, seq: int, *, actor: str, note: str | None = None
    ) -> event_log.LoggedEvent:
        self.post.model(site_id)
        post = self.post
        with self._lock, post._lock:
            state = self.site(site_id)
            breach = state.open.get(seq)
            if breach is None:
                raise IllegalTransition(
                    f"no breach {seq} awaits an acknowledgement at site {site_id}: it is "
                    "unknown or acknowledged already",
                    errors=[FieldError("breach", "unknown or acknowledged")],
                )
            data = {
                "breach": seq,
                "by": actor,
                "person_id": breach["person_id"],
                "fence_id": breach["fence_id"],
                **({"note": note} if note else {}),
            }
            with post.db.write() as session:
                event = event_log.append(
                    session,
                    site_id,
                    "fence.acknowledged",
                    actor=actor,
                    data=data,
                    now=post.clock.now(),
                )
            state.open.pop(seq, None)
            post.hub.publish(site_id, [_message(event)])
            return event

    # -- rules and temporary fences ---------------------------------------------------------

    def fences(self, site_id: str) -> list[Fence]:
        model = self.post.model(site_id)
        with self._lock:
            state = self.site(site_id)
            self._fences(state, model)
            return list(state.fences)

    def put_rules(
        self, site_id: str, zone_id: str, rules: Rules, owner: dict[str, Any] | None, *, actor: str
    ) -> dict[str, Any]:
        model = self.post.model(site_id)
        if zone_id not in {str(f["id"]) for f in model.layers.get("zones", [])}:
            raise NotFound(
                f"no zone '{zone_id}' at site '{site_id}'", errors=[FieldError("zone", "unknown")]
            )
        post = self.post
        now = post.clock.now()
        with self._lock, post._lock:
            with post.db.write() as session:
                row = session.get(ZoneRuleRow, (site_id, zone_id))
                if row is None:
                    row = ZoneRuleRow(
                        site_id=site_id,
                        zone_id=zone_id,
                        version=0,
                        created_at=now,
                        created_by=actor,
                    )
                    session.add(row)
                row.rules = rules.as_dict()
                row.owner = owner
                row.version = (row.version or 0) + 1
                row.updated_at, row.updated_by = now, actor
                session.flush()
                out = _rule_json(row)
                event = event_log.append(
                    session,
                    site_id,
                    "fence.rules_changed",
                    actor=actor,
                    data={
                        "zone_id": zone_id,
                        "rules": out["rules"],
                        "owner": owner,
                        "version": out["version"],
                    },
                    now=now,
                )
            self._reload(site_id)
            post.hub.publish(site_id, [_message(event)])
            return out

    def delete_rules(self, site_id: str, zone_id: str, *, actor: str) -> None:
        post = self.post
        with self._lock, post._lock:
            with post.db.write() as session:
                gone = session.get(ZoneRuleRow, (site_id, zone_id))
                if gone is None:
                    raise NotFound(
                        f"zone '{zone_id}' has no entry rules at site '{site_id}'",
                        errors=[FieldError("zone", "no rules")],
                    )
                session.delete(gone)
                event = event_log.append(
                    session,
                    site_id,
                    "fence.rules_changed",
                    actor=actor,
                    data={"zone_id": zone_id, "rules": None, "owner": None},
                    now=post.clock.now(),
                )
            self._reload(site_id)
            post.hub.publish(site_id, [_message(event)])

    def _reload(self, site_id: str) -> None:
        """Read the rules, fences and credentials again; keep who is inside and breaching."""
        old = self.sites.get(site_id)
        fresh = self._load(site_id, from_log=old is None)
        if old is not None:
            fresh.inside, fresh.occupants, fresh.open = old.inside, old.occupants, old.open
            fresh.breaching |= old.breaching
            fresh.overstaying |= old.overstaying
            fresh.overfull |= old.overfull
        fresh.stale = True
        self.sites[site_id] = fresh

    def credentials_changed(self, site_id: str) -> None:
        with self._lock:
            self._reload(site_id)

    def add_temporary(
        self,
        site_id: str,
        body: Mapping[str, Any],
        *,
        actor: str,
    ) -> Fence:
        """A temporary fence from ``{kind, name, geometry (Polygon) | centre [lon, lat] and
        radius_m, expires_at | expires_in_s, rules?, owner?}``, logged ``fence.created``."""
        model = self.post.model(site_id)
        now = self.post.clock.now()
        fence = parse_temporary(body, model=model, now=now, actor=actor)
        post = self.post
        with self._lock, post._lock:
            with post.db.write() as session:
                session.add(
                    TemporaryFenceRow(
                        site_id=site_id,
                        id=fence.id,
                        kind=fence.kind,
                        name=fence.name,
                        rules=fence.rules.as_dict(),
                        owner=fence.owner,
                        radius_m=fence.radius_m,
                        geom=fence.geometry,
                        created_at=now,
                        created_by=actor,
                        expires_at=fence.expires_at,
                        ended_at=None,
                    )
                )
                session.flush()
                event = event_log.append(
                    session,
                    site_id,
                    "fence.created",
                    actor=actor,
                    data={"fence": fence.as_feature()},
                    now=now,
                )
            self._reload(site_id)
            post.hub.publish(site_id, [_message(event)])
        self.positions(site_id, model, np.zeros(0, dtype=np.int64))  # anyone inside it now
        return fence

    def end_temporary(
        self, site_id: str, fence_id: str, *, actor: str, expired: bool = False
    ) -> event_log.LoggedEvent:
        """A temporary fence expired (by the clock) or removed (by a person)."""
        post = self.post
        now = post.clock.now()
        with self._lock, post._lock:
            with post.db.write() as session:
                row = session.get(TemporaryFenceRow, (site_id, fence_id))
                if row is None or row.ended_at is not None:
                    raise NotFound(
                        f"no temporary fence '{fence_id}' in force at site '{site_id}'",
                        errors=[FieldError("fence", "unknown or ended")],
                    )
                row.ended_at = now
                event = event_log.append(
                    session,
                    site_id,
                    "fence.expired" if expired else "fence.removed",
                    actor=actor,
                    data={
                        "fence_id": fence_id,
                        "kind": row.kind,
                        "name": row.name,
                        "expires_at": row.expires_at.isoformat(),
                    },
                    now=now,
                )
            state = self.site(site_id)
            for pid in list(state.occupants.get(f"temporary:{fence_id}", ())):
                self._left(state, pid, f"temporary:{fence_id}")
            self._reload(site_id)
            post.hub.publish(site_id, [_message(event)])
            return event

    # -- tag reads --------------------------------------------------------------------------

    def tag_read(self, site_id: str, event: DeviceEvent, *, actor: str) -> event_log.LoggedEvent:
        """A gate's reader read a person's helmet or badge: they may enter the zone (or
        temporary fence) it names if they meet its rules and it has room. Logged
        ``access.granted`` or ``access.refused`` with the reasons."""
        model = self.post.model(site_id)
        zone_id = str(event.zone_id or "")
        post = self.post
        now = post.clock.now()
        with self._lock, post._lock:
            state = self.site(site_id)
            self._fences(state, model)
            fence = state.by_key.get(f"zone:{zone_id}") or state.by_key.get(f"temporary:{zone_id}")
            zones = {str(f["id"]) for f in model.layers.get("zones", [])}
            if fence is None and zone_id not in zones:
                raise InvalidInput(
                    f"the reader names zone '{zone_id}', which the site does not have",
                    errors=[FieldError("zone_id", "not a zone or fence of the site")],
                )
            pid = str(event.person_id or "")
            person = self._person(model, pid)
            reasons: list[dict[str, str]]
            if fence is None:  # a zone without rules: anyone of the site may enter
                reasons = (
                    []
                    if person is not None
                    else refusals(Rules(), None, None, at=now, local=now, what="")
                )
            else:
                reasons = self._refusals(state, model, fence, pid, now)
                most = fence.rules.max_occupancy
                inside = state.occupants.get(fence.key, set()) - {pid}
                if most is not None and len(inside) >= most:
                    reasons.append(
                        {
                            "rule": "max_occupancy",
                            "reason": f"{fence.what} full: {len(inside)} inside, at most {most}",
                        }
                    )
            data = {
                "person_id": pid,
                "person_name": (person or {}).get("name"),
                "employer": (person or {}).get("employer"),
                "zone_id": zone_id,
                "fence_kind": fence.kind if fence else "zone",
                "device_id": event.device_id,
                "reasons": reasons,
                **({"observed_at": event.observed_at.isoformat()} if event.observed_at else {}),
            }
            kind = "access.refused" if reasons else "access.granted"
            with post.db.write() as session:
                logged = event_log.append(session, site_id, kind, actor=actor, data=data, now=now)
            post.hub.publish(site_id, [_message(logged)])
            return logged


# -- helpers ----------------------------------------------------------------------------------


# -- helpers ----------------------------------------------------------------------------------


def _rule_json(row: ZoneRuleRow) -> dict[str, Any]:
    return {
        "zone_id": row.zone_id,
        "rules": row.rules,
        "owner": row.owner,
        "version": row.version,
        "updated_at": row.updated_at.isoformat(),
        "updated_by": row.updated_by,
    }


def rules_of(session: Session, site_id: str, zone_id: str) -> dict[str, Any]:
    row = session.get(ZoneRuleRow, (site_id, zone_id))
    if row is None:
        raise NotFound(
            f"zone '{zone_id}' has no entry rules at site '{site_id}'",
            errors=[FieldError("zone", "no rules")],
        )
    return _rule_json(row)


def _breach_view(seq: int, at: datetime, data: Mapping[str, Any]) -> dict[str, Any]:
    return {"seq": seq, "at": at.isoformat(), **data}


def _message(event: event_log.LoggedEvent) -> dict[str, Any]:
    return {"type": "event", "seq": event.seq, "incident_id": None, "event": event.as_dict()}


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"


_PEOPLE: dict[int, dict[str, dict[str, Any]]] = {}


def _people(model: SiteModel) -> dict[str, dict[str, Any]]:
    """The people layer's features by id (kept per model build)."""
    found = _PEOPLE.get(model.build)
    if found is None:
        found = {str(f["id"]): f for f in model.layers.get("people", [])}
        if len(_PEOPLE) > 16:
            _PEOPLE.clear()
        _PEOPLE[model.build] = found
    return found
