"""Layer changes, live on the walls: the ``changes`` table followed into ``layer.changed``.

Every write to a layer appends to ``changes``: the layers API, imports and site loads (the
server), and on PostGIS the tables' triggers for edits made in the database itself (migration
0013). :class:`LayerFeed` reads the rows it has not yet published and appends, per site, one
logged ``layer.changed`` event per layer and source (``api``: written by the server;
``database``: by a database user) with each feature's diff; the hub sends it to the walls, and a
reconnecting wall catches up on it by sequence number like on any event.

Each change is published once, also when several server processes share the database
(issue 17): each process follows the table on its own (its site models and incidents follow
the edit), but logs a change's ``layer.changed`` only if no process has (the change's
``published_in``, set in the same transaction; publishers take turns on an advisory lock).
The feed starts at the log's end (history is not replayed) and keeps its place; calls are
serialised. On PostgreSQL a change's number is taken when it is
written but seen only when its transaction commits, so a later number can show first: the
numbers skipped are kept as holes and looked for again until every transaction that could
still fill them has ended (the snapshot's ``xmin`` passed them). SQLite has one writer, so its
numbers show in order.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import shapely
from shapely.errors import ShapelyError
from shapely.geometry import shape
from sqlalchemy import ColumnElement, func, or_, select, text, update
from sqlalchemy.orm import Session

from command import events as event_log
from command.hub import Hub
from gis.errors import NotFound
from gis.layers import META_FIELDS
from gis.model import LAYERS
from gis.storage.db import Database
from gis.storage.tables import ChangeRow
from plans.clock import Clock

log = logging.getLogger(__name__)

EVENT = "layer.changed"
#: A batch of more features than this (per layer) is sent without them: the walls reload.
MAX_FEATURES = 500
#: Nor more than this many bytes of features in one event (a zone may have 5,000 vertices).
MAX_BYTES = 1_000_000
#: Who wrote a change in the database itself (the triggers' actor is ``db:<user>``).
DATABASE_ACTOR = "db:"
#: Holes (numbers skipped while their transaction ran) kept at most; the oldest go first.
MAX_HOLES = 200
#: Change numbers named in one statement at most (PostgreSQL takes 65,535 parameters).
CHUNK = 5000
#: Coordinates closer than this (degrees) are the same: the database writes 15 decimals.
SAME_GEOMETRY_DEG = 1e-9

#: The advisory lock publishers take (PostgreSQL, per transaction): "RP" and 20.
LOCK_KEY = 0x5250_0020
#: The oldest transaction still running, and the next to start (PostgreSQL).
XMIN = text("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
XMAX = text("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint")


@dataclass(frozen=True)
class Hole:
    """Change numbers ``low``..``high`` not seen yet; final once ``xmin`` reaches ``xmax``."""

    low: int
    high: int
    xmax: int


class LayerFeed:
    """Publishes the ``changes`` rows as ``layer.changed`` events (see the module).

    ``lock`` is the command post's: events are appended and published under it, so the hub
    gets every site's events in their order. ``warning`` names a site's active incidents (the
    editor's warning), or None."""

    def __init__(
        self,
        db: Database,
        hub: Hub,
        clock: Clock,
        *,
        lock: threading.RLock,
        warning: Callable[[str], dict[str, Any] | None],
    ) -> None:
        self.db = db
        self.hub = hub
        self.clock = clock
        self._lock = lock
        self._warning = warning
        self._following = threading.Lock()
        with db.read() as session:
            self._cursor: int = session.scalar(select(func.max(ChangeRow.seq))) or 0
        self._holes: tuple[Hole, ...] = ()

    @property
    def cursor(self) -> int:
        """The last change number published (or passed over at start)."""
        return self._cursor

    def _unpublished(self) -> ColumnElement[bool]:
        holes = self._holes
        return or_(
            ChangeRow.seq > self._cursor, *(ChangeRow.seq.between(h.low, h.high) for h in holes)
        )

    def pending_sites(self) -> list[str]:
        """Sites with changes not yet published (a cheap look, for the once-a-second sweep)."""
        with self.db.read() as session:
            found = session.scalars(
                select(ChangeRow.site_id)
                .where(self._unpublished(), ChangeRow.layer.in_(list(LAYERS)))
                .distinct()
            )
            return sorted(found)

    def follow(self) -> list[event_log.LoggedEvent]:
        """Publish every change not yet published: one ``layer.changed`` per site, layer and
        source, logged and then sent. Safe to call from any thread, any number of times, and
        from any number of processes: a change another process sent already is not sent again
        (``changes.published_in``)."""
        with self._following:
            with self.db.read() as session:
                horizon = session.scalar(XMIN) if self.db.is_postgis else None
                rows = session.execute(
                    select(ChangeRow.seq, ChangeRow.site_id, ChangeRow.layer, ChangeRow.actor)
                    .where(self._unpublished())
                    .order_by(ChangeRow.seq)
                ).all()
                xmax = session.scalar(XMAX) if self.db.is_postgis else None
                batches: dict[tuple[str, str, str], list[int]] = {}
                for seq, site_id, layer, actor in rows:
                    if layer in LAYERS:  # not the site's own record, nor its topology rules
                        batches.setdefault((site_id, layer, source_of(actor)), []).append(seq)
                drafts = {
                    key: _draft(session, key[0], key[1], key[2], seqs)
                    for key, seqs in batches.items()
                }
            logged = self._publish(batches, drafts)
            self._advance([int(r.seq) for r in rows], horizon, xmax)
            return logged

    def _publish(
        self,
        batches: Mapping[tuple[str, str, str], list[int]],
        drafts: Mapping[tuple[str, str, str], event_log.Draft],
    ) -> list[event_log.LoggedEvent]:
        """Log the drafts of the changes no process has sent yet (all sites in one
        transaction: all or none, so a retry never sends one twice), mark those changes with
        their event, then send each site's: under the post's lock, in log order."""
        if not batches:
            return []
        with self._lock:
            by_site: dict[str, list[event_log.LoggedEvent]] = {}
            with self.db.write() as session:
                if self.db.is_postgis:  # one publisher at a time among the processes
                    session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
                wanted = [seq for seqs in batches.values() for seq in seqs]
                unsent: set[int] = set()
                for part in _chunks(wanted):  # a statement takes at most 65,535 parameters
                    unsent.update(
                        session.scalars(
                            select(ChangeRow.seq).where(
                                ChangeRow.seq.in_(part), ChangeRow.published_in.is_(None)
                            )
                        )
                    )
                per_site: dict[str, list[tuple[list[int], event_log.Draft]]] = {}
                for key, seqs in batches.items():
                    left = [seq for seq in seqs if seq in unsent]
                    if not left:
                        continue  # another process sent them
                    draft = drafts[key] if left == seqs else _draft(session, *key, left)
                    per_site.setdefault(key[0], []).append((left, draft))
                for site_id in sorted(per_site):
                    warning = self._warning(site_id)
                    wanted_drafts = [
                        event_log.Draft(d.type, d.actor, {**d.data, **(warning or {})})
                        for _, d in per_site[site_id]
                    ]
                    try:
                        logged = event_log.append_many(
                            session, site_id, wanted_drafts, now=self.clock.now()
                        )
                    except NotFound:  # the site was deleted meanwhile: nobody to tell
                        log.info("site %s is gone: its layer changes are not sent", site_id)
                        continue
                    for (seqs, _), event in zip(per_site[site_id], logged, strict=True):
                        for part in _chunks(seqs):
                            session.execute(
                                update(ChangeRow)
                                .where(ChangeRow.seq.in_(part))
                                .values(published_in=event.seq)
                            )
                    by_site[site_id] = logged
            for site_id, logged in by_site.items():
                self.hub.publish(site_id, [_message(e) for e in logged])
        return [e for logged in by_site.values() for e in logged]

    def _advance(self, seqs: Sequence[int], horizon: int | None, xmax: int | None) -> None:
        """Past ``seqs`` (just published): the cursor moves to the last; on PostgreSQL the
        numbers skipped become holes, and holes no transaction can fill any more are let go."""
        top = max([self._cursor, *seqs])
        if horizon is None or xmax is None:  # SQLite: nothing can show later
            self._cursor = top
            return
        found = sorted(seqs)
        holes = [h for h in self._holes if h.xmax > horizon]
        holes = _without(holes, found)
        expected = self._cursor + 1
        for seq in (s for s in found if s > self._cursor):
            if seq > expected:
                holes.append(Hole(expected, seq - 1, xmax))
            expected = seq + 1
        self._holes = tuple(holes[-MAX_HOLES:])
        self._cursor = top


def _chunks(seqs: Sequence[int], size: int = CHUNK) -> list[Sequence[int]]:
    return [seqs[i : i + size] for i in range(0, len(seqs), size)]


def source_of(actor: str) -> str:
    return "database" if actor.startswith(DATABASE_ACTOR) else "api"


def _message(event: event_log.LoggedEvent) -> dict[str, Any]:
    # command.post.event_message, without importing the post (which imports this module).
    return {
        "type": "event",
        "seq": event.seq,
        "incident_id": event.incident_id,
        "event": event.as_dict(),
    }


def _without(holes: Iterable[Hole], found: Sequence[int]) -> list[Hole]:
    """``holes`` less the numbers ``found`` (sorted), split where they were."""
    out = []
    for hole in holes:
        low = hole.low
        for seq in found:
            if seq < low or seq > hole.high:
                continue
            if seq > low:
                out.append(Hole(low, seq - 1, hole.xmax))
            low = seq + 1
        if low <= hole.high:
            out.append(Hole(low, hole.high, hole.xmax))
    return out


def _draft(
    session: Session, site_id: str, layer: str, source: str, seqs: Sequence[int]
) -> event_log.Draft:
    """The ``layer.changed`` event of one site's layer: each change with its feature and the
    fields it changed, or (a batch too large) only the count, for the walls to reload."""
    base: dict[str, Any] = {"layer": layer, "source": source, "count": len(seqs)}
    if len(seqs) > MAX_FEATURES:
        actors = session.scalars(
            select(ChangeRow.actor).where(ChangeRow.seq.in_(seqs[:MAX_FEATURES])).distinct()
        ).all()
        return event_log.Draft(EVENT, _one_actor(actors), {**base, "changes": [], "reload": True})
    rows = session.scalars(
        select(ChangeRow).where(ChangeRow.seq.in_(seqs)).order_by(ChangeRow.seq)
    ).all()
    before = _previous(session, site_id, layer, rows)
    changes = []
    size = 0
    for row in rows:
        after = None if row.action == "delete" else row.data
        changes.append(
            {
                "id": row.feature_id,
                "action": row.action,
                "version": row.version,
                "actor": row.actor,
                "at": row.at.isoformat(),
                "feature": after,
                "fields": changed_fields(row.action, before.get(row.feature_id), row.data),
            }
        )
        before[row.feature_id] = after
        size += len(orjson.dumps(after)) if after is not None else 0
    actor = _one_actor([r.actor for r in rows])
    if size > MAX_BYTES:
        return event_log.Draft(EVENT, actor, {**base, "changes": [], "reload": True})
    return event_log.Draft(EVENT, actor, {**base, "changes": changes, "reload": False})


def _one_actor(actors: Sequence[str]) -> str:
    return actors[0] if len(set(actors)) == 1 else "system"


def _previous(
    session: Session, site_id: str, layer: str, rows: Sequence[ChangeRow]
) -> dict[str, dict[str, Any] | None]:
    """Each updated feature as its change before ``rows`` left it (the feature, or None)."""
    ids = sorted({r.feature_id for r in rows if r.action == "update"})
    if not ids:
        return {}
    last = (
        select(ChangeRow.feature_id, func.max(ChangeRow.seq).label("seq"))
        .where(
            ChangeRow.site_id == site_id,
            ChangeRow.layer == layer,
            ChangeRow.feature_id.in_(ids),
            ChangeRow.seq < rows[0].seq,
        )
        .group_by(ChangeRow.feature_id)
        .subquery()
    )
    found = session.execute(
        select(ChangeRow.feature_id, ChangeRow.action, ChangeRow.data).join(
            last, ChangeRow.seq == last.c.seq
        )
    ).all()
    return {fid: None if action == "delete" else data for fid, action, data in found}


def changed_fields(
    action: str, before: Mapping[str, Any] | None, after: Mapping[str, Any] | None
) -> list[str]:
    """The attributes a change set (and ``geometry``): on a creation those with a value; on an
    update those that differ from the version before (all of them when that is unknown)."""
    if action == "delete" or after is None:
        return []
    props = _attributes(after)
    geometry = after.get("geometry")
    if action == "create" or before is None:
        named = [k for k, v in props.items() if v is not None]
        return sorted(named) + (["geometry"] if geometry is not None else [])
    old = _attributes(before)
    named = [k for k in sorted(props.keys() | old.keys()) if props.get(k) != old.get(k)]
    if not _same_geometry(before.get("geometry"), geometry):
        named.append("geometry")
    return named


def _attributes(feature: Mapping[str, Any]) -> dict[str, Any]:
    props = feature.get("properties") or {}
    return {k: v for k, v in props.items() if k not in META_FIELDS}


def _same_geometry(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> bool:
    if a is None or b is None:
        return a is b
    if a == b:
        return True
    try:
        return bool(
            shapely.equals_exact(shape(dict(a)), shape(dict(b)), tolerance=SAME_GEOMETRY_DEG)
        )
    except (ValueError, TypeError, AttributeError, ShapelyError):
        return False
