"""The group's layer changes flowing down to a replicated site (issue 18).

Who owns what: a replicated site's **layers are edited at both ends**. The group's planners
edit them at the group (the layers API, OGC API Features, QGIS on PostGIS through the tables'
triggers): every such edit is a row of the group's change log (``changes``), and **flows down**
to the site. The site's own edits of its layers (its planners, an import) **stay at the site**:
they are not sent up in this version. An edit of the same feature at both ends is the planners'
conflict (:mod:`gis.conflicts`), never a silent overwrite.

- **At the group** (:func:`offered_changes`): the changes of the site's layers after the site's
  cursor, oldest first, each with the feature as it was before it at the group (the *common
  base*: what the site holds when it took every change before). Changes made before the site
  became a replica (``replica_links.layers_from``) are the model the site has, and are not
  sent. On PostgreSQL a change's number is taken before its transaction commits, so a later
  number can be visible first: changes are offered only up to the last number taken while no
  transaction was writing to ``changes`` (a change still being written comes on a later pass),
  so the site's cursor never passes one it has not seen.
- **At the site** (:func:`take_changes`): each change in order, in one transaction with the
  cursor (``forward_state.layer_cursor``: a page of changes and the cursor past them commit
  together, or none), so each is taken exactly once, also across a cut or a restart. It goes
  through the site's own write path (:mod:`gis.layers`: the layer's validation and extent,
  the topology rules, the change log), as ``group:<actor>`` with a note naming the group's
  version, so the site's walls get ``layer.changed`` and its incidents follow. Where
  the site's feature is no longer the common base (edited here since), the three-way merge
  applies the group's edit when the two changed different fields; otherwise, and for a
  deletion of a feature changed here, a creation over another feature here, an edit of a
  feature deleted here, or a change the site's checks refuse, the change is kept as a
  conflict (``forward_state.layer_conflicts``: who changed what at both ends), logged, and the
  site's feature left as it is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from command import replication
from gis import conflicts, layers, topology
from gis.errors import FieldError, InvalidInput, NotFound, RallypointError
from gis.geometry import SiteExtent
from gis.model import LAYERS, Layer
from gis.sites import Site, load_site
from gis.storage.db import Database
from gis.storage.tables import LAYER_ROWS, ChangeRow, ForwardStateRow

log = logging.getLogger(__name__)

#: Changes per answer at most.
MAX_PAGE = 500
#: The prefix of the actor a change taken from the group is written with at the site.
GROUP_ACTOR = "group:"

#: The highest change number taken (PostgreSQL), and whether another transaction is writing to
#: ``changes`` now (it holds ROW EXCLUSIVE on it from before it takes a number until it ends).
_LAST_TAKEN = text("SELECT pg_sequence_last_value(pg_get_serial_sequence('changes', 'seq'))")
_WRITERS = text(
    "SELECT count(*) FROM pg_locks WHERE locktype = 'relation' "
    # pg_locks is the whole cluster's: databases made from one template share table oids.
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND relation = 'changes'::regclass AND mode = 'RowExclusiveLock' "
    "AND pid <> pg_backend_pid()"
)


# -- the group's end --------------------------------------------------------------------------


def settled_to(db: Database) -> int | None:
    """The change number up to which every change is committed or never will be (PostgreSQL),
    or None where numbers show in order (SQLite: one writer). Read before the changes are."""
    if db.engine.dialect.name != "postgresql":
        return None
    with db.read() as session:
        last = session.scalar(_LAST_TAKEN)  # first: every number up to it is taken ...
        writers = session.scalar(_WRITERS)  # ... and, none writing, its transaction is over
    if writers:
        return -1  # nothing settled now: a change is being written
    return int(last or 0)


def offered_changes(db: Database, site_id: str, after: int, limit: int) -> dict[str, Any]:
    """The group's changes of ``site_id``'s layers after number ``after``, oldest first, at
    most ``limit``: each with the feature before it at the group (``base``). ``through``: the
    number up to which the site has now been given every change; ``complete``: no more now."""
    bound = settled_to(db)
    with db.read() as session:
        link = replication.link(session, site_id)
        start = max(after, link.layers_from)
        stmt = (
            select(ChangeRow)
            .where(
                ChangeRow.site_id == site_id,
                ChangeRow.layer.in_(list(LAYERS)),
                ChangeRow.seq > start,
            )
            .order_by(ChangeRow.seq)
            .limit(limit)
        )
        if bound is not None:
            stmt = stmt.where(ChangeRow.seq <= bound)
        rows = session.scalars(stmt).all()
        out = [_wire(session, row) for row in rows]
    through = rows[-1].seq if rows else start
    return {
        "site": site_id,
        "after": start,
        "through": through,
        "complete": len(rows) < limit,
        "settled": bound is None or bound >= 0,
        "changes": out,
    }


def _wire(session: Session, row: ChangeRow) -> dict[str, Any]:
    base: dict[str, Any] | None = None
    if row.action == "delete":
        base = row.data  # the feature as it was when deleted
    elif row.action != "create":
        before = session.scalar(
            select(ChangeRow)
            .where(
                ChangeRow.site_id == row.site_id,
                ChangeRow.layer == row.layer,
                ChangeRow.feature_id == row.feature_id,
                ChangeRow.seq < row.seq,
            )
            .order_by(ChangeRow.seq.desc())
            .limit(1)
        )
        if before is not None and before.action != "delete":
            base = before.data
    return {
        "seq": row.seq,
        "layer": row.layer,
        "feature": row.feature_id,
        "action": row.action,
        "version": row.version,
        "actor": row.actor,
        "at": row.at.astimezone(UTC).isoformat(),
        "note": row.note,
        "data": row.data,
        "base": base,
    }


# -- the site's end ---------------------------------------------------------------------------


@dataclass
class LayersTaken:
    """What a site took: the changes applied (``merged`` among them: over a local edit), the
    ones it held already, and the conflicts kept."""

    applied: list[dict[str, Any]] = field(default_factory=list)
    unchanged: int = 0
    conflicts: list[dict[str, Any]] = field(default_factory=list)


def state_of(session: Session, site_id: str, group: str) -> ForwardStateRow:
    """The site's forward state, locked (PostgreSQL) for the change being taken."""
    row = session.get(ForwardStateRow, site_id, with_for_update=True)
    if row is None:
        row = replication.forward_state(session, site_id, group)
    row.group_url = group
    if row.layer_cursor is None:
        row.layer_cursor = 0
    if row.layer_conflicts is None:
        row.layer_conflicts = []
    return row


def cursor(session: Session, site_id: str) -> int:
    """The last of the group's layer changes the site took (0: none)."""
    value = session.scalar(
        select(ForwardStateRow.layer_cursor).where(ForwardStateRow.site_id == site_id)
    )
    return int(value or 0)


def take_changes(
    db: Database,
    site_id: str,
    answer: Mapping[str, Any],
    *,
    group: str,
    now: datetime,
    into: LayersTaken | None = None,
) -> LayersTaken:
    """Take the changes of one answer of :func:`offered_changes`, in order, each once (see the
    module), and move the cursor to the answer's ``through``: all in one transaction with the
    cursor (a commit per change would cost more than the change); when the site's checks
    refuse one of them, that is rolled back and each is taken in a transaction of its own,
    the refused one kept as a conflict."""
    taken = into if into is not None else LayersTaken()
    changes = sorted(answer["changes"], key=lambda c: int(c["seq"]))
    page = LayersTaken()
    try:
        with db.write() as session:
            state = state_of(session, site_id, group)
            site = load_site(session, site_id)
            for change in changes:
                seq = int(change["seq"])
                if state.layer_cursor >= seq:
                    continue
                outcome, conflict = _apply(db, session, site, change, group=group, now=now)
                state.layer_cursor = seq
                if conflict is not None:
                    state.layer_conflicts = [*state.layer_conflicts, conflict]
                _count(page, change, outcome, conflict)
            state.layer_cursor = max(state.layer_cursor, int(answer["through"]))
            state.layers_at = now
    except RallypointError:
        for change in changes:
            take_change(db, site_id, change, group=group, now=now, into=taken)
        with db.write() as session:
            state = state_of(session, site_id, group)
            state.layer_cursor = max(state.layer_cursor, int(answer["through"]))
            state.layers_at = now
        return taken
    taken.applied += page.applied
    taken.unchanged += page.unchanged
    taken.conflicts += page.conflicts
    return taken


def take_change(
    db: Database,
    site_id: str,
    change: Mapping[str, Any],
    *,
    group: str,
    now: datetime,
    into: LayersTaken,
) -> None:
    """Take one of the group's changes, in one transaction with the cursor (nothing when the
    cursor is past it already). A change the site's checks refuse is kept as a conflict."""
    seq = int(change["seq"])
    try:
        with db.write() as session:
            state = state_of(session, site_id, group)
            if state.layer_cursor >= seq:
                return
            site = load_site(session, site_id)
            outcome, conflict = _apply(db, session, site, change, group=group, now=now)
            state.layer_cursor = seq
            if conflict is not None:
                state.layer_conflicts = [*state.layer_conflicts, conflict]
    except RallypointError as exc:  # refused by the site (its model, its rules): rolled back
        conflict = _conflict(
            change,
            None,
            [],
            f"the site refuses it: {exc.detail}"
            + "".join(f"; {e.field}: {e.reason}" for e in exc.errors),
            now,
        )
        with db.write() as session:
            state = state_of(session, site_id, group)
            if state.layer_cursor >= seq:
                return
            state.layer_cursor = seq
            state.layer_conflicts = [*state.layer_conflicts, conflict]
        outcome = "conflict"
    _count(into, change, outcome, conflict)


def _count(
    into: LayersTaken, change: Mapping[str, Any], outcome: str, conflict: dict[str, Any] | None
) -> None:
    if conflict is not None:
        into.conflicts.append(conflict)
    elif outcome == "unchanged":
        into.unchanged += 1
    else:
        into.applied.append(
            {
                "seq": int(change["seq"]),
                "layer": change["layer"],
                "feature": change["feature"],
                "action": change["action"],
                "version": change["version"],
                "merged": outcome == "merged",
            }
        )


def _apply(
    db: Database,
    session: Session,
    site: Site,
    change: Mapping[str, Any],
    *,
    group: str,
    now: datetime,
) -> tuple[str, dict[str, Any] | None]:
    """Apply a change through the site's write path: ``applied``, ``merged``, ``unchanged``
    (the site holds it already), or ``conflict`` with the conflict."""
    layer = LAYERS.get(str(change["layer"]))
    if layer is None:
        return "conflict", _conflict(change, None, [], "no such layer here", now)
    site_id = site.id
    fid, action = str(change["feature"]), str(change["action"])
    actor = f"{GROUP_ACTOR}{change['actor']}"[:200]
    at = datetime.fromisoformat(str(change["at"]))
    note = f"from the group ({group}): its version {change['version']}, change {change['seq']}"
    row = session.get(LAYER_ROWS[layer.name], (site_id, fid), with_for_update=True)
    current = layers._to_feature(layer, row) if row is not None else None
    here = conflicts.snapshot(current.properties, current.geometry) if current else None

    if action == "delete":
        if current is None or row is None:
            return "unchanged", None
        base = _snapshot_of(layer, change.get("data"))
        if base is None or conflicts.changed_fields(layer, base, here or base):
            changed = conflicts.changed_fields(layer, base, here) if base and here else []
            return "conflict", _conflict(
                change,
                current,
                changed,
                f"changed here since the group's version{_what(changed, base, here)}: the "
                "group's deletion is not applied",
                now,
            )
        topology.check_edit(
            db, session, site, layer.name, feature_id=fid, before=current, after=None
        )
        layers.delete_row(session, site_id, layer, row, actor=actor, now=at, note=note)
        return "applied", None

    mine_parsed = _parse(layer, change.get("data"), fid, site.extent)
    mine = conflicts.snapshot(mine_parsed.properties, mine_parsed.geometry)
    if current is None or row is None or here is None:
        if action != "create":
            return "conflict", _conflict(
                change, None, [], f"deleted here{_deleted_by(session, site_id, layer, fid)}", now
            )
        topology.check_edit(
            db, session, site, layer.name, feature_id=fid, before=None, after=mine_parsed
        )
        layers.insert_features(
            session, site_id, layer, [mine_parsed], actor=actor, now=at, note=note
        )
        return "applied", None
    if not conflicts.changed_fields(layer, here, mine):
        return "unchanged", None
    if action == "create":
        changed = conflicts.changed_fields(layer, here, mine)
        return "conflict", _conflict(
            change,
            current,
            changed,
            "the group created it, and a feature of that id here differs"
            + _both(changed, here, mine),
            now,
        )
    base = _snapshot_of(layer, change.get("base"))
    if base is not None and not conflicts.changed_fields(layer, base, here):
        topology.check_edit(
            db, session, site, layer.name, feature_id=fid, before=current, after=mine_parsed
        )
        layers.update_row(session, site_id, layer, row, mine_parsed, actor=actor, now=at, note=note)
        return "applied", None
    # Edited here since the common base: the three-way merge, applied only when clean.
    local = _local_change(layer, current, base, here)
    merge = conflicts.three_way(
        layer,
        fid,
        current.version,
        conflicts.History(base, [local]),
        current_version=current.version,
        theirs=here,
        mine=mine,
    )
    if merge.merged is not None:
        try:
            merged = layers.parse_feature(layer, merge.merged, extent=site.extent)
        except InvalidInput as exc:
            merge.refuse_merge(layers._reasons(exc), layers._field_names(exc))
        else:
            topology.check_edit(
                db, session, site, layer.name, feature_id=fid, before=current, after=merged
            )
            layers.update_row(
                session,
                site_id,
                layer,
                row,
                merged,
                actor=actor,
                now=at,
                note=f"{note}; merged with version {current.version} here by "
                f"{current.updated_by} (it changed {conflicts._names(merge.fields_theirs)})",
            )
            return "merged", None
    reason = (
        f"changed here by {current.updated_by} (version {current.version}) and at the group by "
        f"{change['actor']} (its version {change['version']})"
    )
    if merge.no_base:
        reason += ", and the group's version before is not known here"
    if merge.why_not and not merge.no_base:
        reason += f"; together they make an invalid feature ({merge.why_not})"
    reason += _both(merge.conflicting, here, mine)
    return "conflict", _conflict(change, current, merge.conflicting, reason, now)


def _parse(layer: Layer, data: object, fid: str, extent: SiteExtent | None) -> layers.ParsedFeature:
    """The group's feature as the site's layer validates it (only the layer's fields: the
    server's own keys and a trigger's extra ones are not taken)."""
    if not isinstance(data, Mapping):
        raise InvalidInput(f"the group's change of {fid!r} carries no feature")
    props = data.get("properties")
    props = props if isinstance(props, Mapping) else {}
    body = {
        "type": "Feature",
        "id": fid,
        "geometry": data.get("geometry"),
        "properties": {k: v for k, v in props.items() if k in layer.fields},
    }
    return layers.parse_feature(layer, body, extent=extent)


def _snapshot_of(layer: Layer, data: object) -> conflicts.Snapshot | None:
    if not isinstance(data, Mapping):
        return None
    try:
        parsed = _parse(layer, data, str(data.get("id") or "x"), None)
    except InvalidInput:
        return None
    return conflicts.snapshot(parsed.properties, parsed.geometry)


def _local_change(
    layer: Layer,
    current: layers.Feature,
    base: conflicts.Snapshot | None,
    here: conflicts.Snapshot,
) -> conflicts.Change:
    names = conflicts.changed_fields(layer, base, here) if base is not None else []
    return conflicts.Change(
        current.version,
        "update",
        current.updated_by,
        current.updated_at,
        {n: (base.value(n), here.value(n)) for n in names if n != conflicts.GEOMETRY}
        if base is not None
        else {},
        conflicts.GEOMETRY in names,
    )


def _what(names: Sequence[str], before: conflicts.Snapshot | None, after: Any) -> str:
    if not names or before is None or after is None:
        return ""
    parts = [
        "the geometry"
        if n == conflicts.GEOMETRY
        else f"{n} {conflicts.show(before.value(n))} → {conflicts.show(after.value(n))}"
        for n in names
    ]
    return f" ({'; '.join(parts)})"


def _both(names: Sequence[str], here: conflicts.Snapshot, group: conflicts.Snapshot) -> str:
    if not names:
        return ""
    parts = [
        "both moved or reshaped the geometry"
        if n == conflicts.GEOMETRY
        else f"{n}: here {conflicts.show(here.value(n))}, group {conflicts.show(group.value(n))}"
        for n in names
    ]
    return f": {'; '.join(parts)}"


def _deleted_by(session: Session, site_id: str, layer: Layer, fid: str) -> str:
    row = session.scalar(
        select(ChangeRow)
        .where(
            ChangeRow.site_id == site_id,
            ChangeRow.layer == layer.name,
            ChangeRow.feature_id == fid,
            ChangeRow.action == "delete",
        )
        .order_by(ChangeRow.seq.desc())
        .limit(1)
    )
    if row is None:
        return " (or never here)"
    return f" by {row.actor} at {row.at.astimezone(UTC).isoformat()}"


def _conflict(
    change: Mapping[str, Any],
    current: layers.Feature | None,
    fields: Sequence[str],
    reason: str,
    now: datetime,
) -> dict[str, Any]:
    """A conflict as kept at the site: the group's change (who, which version, the feature),
    the site's feature (who edited it last, its version), the fields both changed, and why."""
    return {
        "seq": int(change["seq"]),
        "layer": str(change["layer"]),
        "feature": str(change["feature"]),
        "action": str(change["action"]),
        "group_version": change.get("version"),
        "group_actor": change.get("actor"),
        "group_at": change.get("at"),
        "local_version": current.version if current else None,
        "local_actor": current.updated_by if current else None,
        "local_at": current.updated_at.astimezone(UTC).isoformat() if current else None,
        "fields": list(fields),
        "reason": reason,
        "group_feature": change.get("data"),
        "at": now.astimezone(UTC).isoformat(),
    }


def describe(conflict: Mapping[str, Any]) -> str:
    """A kept conflict in one line (the log, ``rallypoint forward --status``)."""
    return (
        f"{conflict['layer']} feature {conflict['feature']!r}: the group's {conflict['action']} "
        f"(change {conflict['seq']}, version {conflict['group_version']} by "
        f"{conflict['group_actor']}) not applied: {conflict['reason']}"
    )


# -- the site's planners settle the conflicts -------------------------------------------------

#: What a planner may take when settling a conflict: the group's feature, or the site's.
TAKES = ("group", "site")
MAX_NOTE = 2000


class ConflictSettled(RallypointError):
    """The conflict was settled already (by whom, when: in the detail)."""

    status_code = 409
    slug = "conflict-settled"
    title = "Conflict settled already"


def listed(conflict: Mapping[str, Any]) -> dict[str, Any]:
    """A kept conflict as the site's API shows it: its id (the group's change number, taken
    once, so unique at the site), open or resolved (who, when, which end was kept)."""
    resolution = conflict.get("resolved")
    return {
        "id": int(conflict["seq"]),
        "state": "resolved" if resolution else "open",
        **{k: v for k, v in conflict.items() if k != "resolved"},
        "resolved": resolution,
        "summary": describe(conflict),
    }


def is_open(conflict: Mapping[str, Any]) -> bool:
    return not conflict.get("resolved")


def site_conflicts(db: Database, site_id: str) -> list[dict[str, Any]]:
    """Every conflict kept at ``site_id`` (open and resolved), oldest first."""
    with db.read() as session:
        load_site(session, site_id)
        kept = session.scalar(
            select(ForwardStateRow.layer_conflicts).where(ForwardStateRow.site_id == site_id)
        )
    return [dict(c) for c in kept or []]


def _find(conflicts_kept: Sequence[Mapping[str, Any]], conflict_id: str) -> Mapping[str, Any]:
    for conflict in conflicts_kept:
        if str(conflict["seq"]) == conflict_id:
            if not is_open(conflict):
                done = conflict["resolved"]
                raise ConflictSettled(
                    f"layer conflict {conflict_id} was resolved by {done['by']} at {done['at']} "
                    f"(kept the {done['take']}'s feature)",
                    extra={"resolved": done},
                )
            return conflict
    raise NotFound(f"no layer conflict {conflict_id!r} at this site")


def resolve(
    db: Database,
    site_id: str,
    conflict_id: str,
    *,
    take: object,
    note: object,
    actor: str,
    now: datetime,
    if_match: int | None = None,
    report: layers.EditReport | None = None,
) -> dict[str, Any]:
    """Settle a kept conflict: ``take="group"`` applies the group's feature through the site's
    layer write path (:mod:`gis.layers`: its validation, topology rules and change log, as
    ``actor``, on version ``if_match`` of the site's feature, else the version the conflict
    was kept against: a site feature changed since is refused as the layers API refuses a
    stale edit); ``take="site"`` keeps the site's feature. Either way the conflict is closed in
    the same transaction, kept with who, when and the choice. Returns it as listed."""
    errors = []
    if take not in TAKES:
        errors.append(FieldError("take", "must be 'group' or 'site'"))
    if note is not None and (not isinstance(note, str) or len(note) > MAX_NOTE):
        errors.append(FieldError("note", f"must be a text of at most {MAX_NOTE} characters"))
    if errors:
        raise InvalidInput("cannot resolve the layer conflict", errors=errors)
    conflict = _find(site_conflicts(db, site_id), conflict_id)
    resolution: dict[str, Any] = {
        "by": actor,
        "at": now.astimezone(UTC).isoformat(),
        "take": take,
        "note": note or None,
        "version": None,
    }

    def close(session: Session) -> None:
        state = session.get(ForwardStateRow, site_id, with_for_update=True)
        kept = [dict(c) for c in (state.layer_conflicts if state else None) or []]
        _find(kept, conflict_id)  # settled meanwhile: this transaction is rolled back
        assert state is not None
        session.flush()  # the site's feature as the write left it: its version, or none
        row = session.get(LAYER_ROWS[conflict["layer"]], (site_id, conflict["feature"]))
        resolution["version"] = row.version if row is not None else None
        state.layer_conflicts = [
            {**c, "resolved": resolution} if str(c["seq"]) == conflict_id else c for c in kept
        ]

    if take == "site":
        with db.write() as session:
            close(session)
    else:
        _take_group(db, site_id, conflict, resolution, if_match=if_match, then=close, report=report)
    log.info(
        "layer conflict %s at %s resolved by %s: kept the %s's", conflict_id, site_id, actor, take
    )
    return listed({**conflict, "resolved": resolution})


def _take_group(
    db: Database,
    site_id: str,
    conflict: Mapping[str, Any],
    resolution: dict[str, Any],
    *,
    if_match: int | None,
    then: Callable[[Session], None],
    report: layers.EditReport | None,
) -> None:
    """Apply the group's feature of ``conflict`` at the site (see :func:`resolve`), then
    ``then`` in the same transaction."""
    layer = layers.get_layer(str(conflict["layer"]))
    fid = str(conflict["feature"])
    note = (
        f"layer conflict {conflict['seq']} resolved: the group's version "
        f"{conflict['group_version']} (by {conflict['group_actor']}) taken"
    )
    if resolution["note"]:
        note += f": {resolution['note']}"
    version = if_match if if_match is not None else conflict.get("local_version")
    with db.read() as session:
        exists = session.get(LAYER_ROWS[layer.name], (site_id, fid)) is not None
    if conflict["action"] == "delete":
        if not exists:  # deleted here too meanwhile: nothing left to apply
            with db.write() as session:
                then(session)
            return
        layers.delete_feature(
            db, site_id, layer.name, fid, actor=resolution["by"], version=version,
            note=note, then=then, report=report,
        )  # fmt: skip
        return
    data = conflict.get("group_feature")
    if not isinstance(data, Mapping):
        raise InvalidInput(f"the group's change of {fid!r} carries no feature")
    props = data.get("properties")
    body = {
        "type": "Feature",
        "id": fid,
        "geometry": data.get("geometry"),
        "properties": {
            k: v for k, v in (props if isinstance(props, Mapping) else {}).items()
            if k in layer.fields
        },
    }  # fmt: skip
    if exists:
        layers.replace_feature(
            db, site_id, layer.name, fid, body, actor=resolution["by"], if_match=version,
            note=note, then=then, report=report,
        )  # fmt: skip
    else:
        layers.create_feature(
            db, site_id, layer.name, body, actor=resolution["by"], note=note, then=then,
            report=report,
        )  # fmt: skip
