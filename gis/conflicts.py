"""Stale edits explained and, where they can be, merged.

A planner edits version 2 of a feature while alice has meanwhile made version 3. The change log
holds version 2 (the base) and every version since, so a refusal can say who changed what and
when, and a three-way merge (base, theirs = the current feature, mine = the edit) can combine
two edits that touched different fields. The geometry counts as one field. When a field was
changed by both edits to different values, the planner chooses; nothing is guessed.

This module knows the change log and the layer schemas, not HTTP and not how features are
parsed: :mod:`gis.layers` validates the merged feature and applies it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any

import shapely
from pydantic import ValidationError
from shapely.geometry import mapping, shape
from shapely.geometry.base import BaseGeometry
from sqlalchemy import select
from sqlalchemy.orm import Session

from gis.errors import FieldError, PreconditionFailed, VersionConflict
from gis.model import Layer
from gis.storage.tables import ChangeRow

#: The name the geometry goes by among the fields of a merge.
GEOMETRY = "geometry"
#: Feature ids per change-log query (SQLite allows some 32,000 bound values).
HISTORY_CHUNK = 1000


@dataclass(frozen=True)
class Snapshot:
    """A feature's attributes (as JSON values) and geometry at one version."""

    properties: dict[str, Any]
    geometry: BaseGeometry | None

    def value(self, name: str) -> Any:
        return self.geometry if name == GEOMETRY else self.properties.get(name)


def snapshot(properties: Mapping[str, Any], geometry: BaseGeometry | None) -> Snapshot:
    """A snapshot of stored or parsed attributes (datetimes and enums become JSON values)."""
    return Snapshot({k: _plain(v) for k, v in properties.items()}, geometry)


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _same(name: str, a: Any, b: Any) -> bool:
    if name != GEOMETRY:
        return bool(a == b)
    if a is None or b is None:
        return a is None and b is None
    return bool(shapely.equals_exact(a, b, tolerance=1e-9))


def changed_fields(layer: Layer, before: Snapshot, after: Snapshot) -> list[str]:
    """The attributes, then ``geometry``, that differ between two snapshots."""
    return [
        name
        for name in (*layer.fields, GEOMETRY)
        if not _same(name, before.value(name), after.value(name))
    ]


@dataclass(frozen=True)
class Change:
    """One logged change since the caller's version: who, when, and what it changed."""

    version: int
    action: str
    actor: str
    at: datetime
    #: Attribute name -> (before, after); empty when the version before is unknown.
    fields: dict[str, tuple[Any, Any]]
    geometry: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "action": self.action,
            "actor": self.actor,
            "at": self.at.astimezone(UTC).isoformat(),
            "fields": {k: {"before": b, "after": a} for k, (b, a) in self.fields.items()},
            "geometry": self.geometry,
        }

    def describe(self) -> str:
        what = [f"{k} {show(b)} → {show(a)}" for k, (b, a) in self.fields.items()]
        if self.geometry:
            what.append("the geometry")
        if self.action != "update":
            what.insert(0, self.action)
        when = self.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
        return (
            f"by {self.actor} at {when} UTC (version {self.version}): "
            f"{'; '.join(what) or 'no attribute or geometry change'}"
        )


def show(value: Any) -> str:
    """A value as a planner reads it in a message."""
    if value is None:
        return "(empty)"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return f"'{value}'"
    return str(value)


@dataclass(frozen=True)
class History:
    """The feature at the caller's version (None when the log does not hold it) and every
    change since."""

    base: Snapshot | None
    changes: list[Change]


def logged_changes(
    session: Session, site_id: str, layer_name: str, feature_ids: Collection[str]
) -> dict[str, list[ChangeRow]]:
    """Each feature's change-log rows, oldest first, since it was last created (a feature
    deleted and created again starts at version 1 anew)."""
    out: dict[str, list[ChangeRow]] = {fid: [] for fid in feature_ids}
    wanted = sorted(feature_ids)
    for i in range(0, len(wanted), HISTORY_CHUNK):
        stmt = (
            select(ChangeRow)
            .where(
                ChangeRow.site_id == site_id,
                ChangeRow.layer == layer_name,
                ChangeRow.feature_id.in_(wanted[i : i + HISTORY_CHUNK]),
            )
            .order_by(ChangeRow.seq)
        )
        for row in session.scalars(stmt):
            if row.action == "create":
                out[row.feature_id] = []
            out[row.feature_id].append(row)
    return out


def history(
    layer: Layer,
    rows: Sequence[ChangeRow],
    yours: int,
    *,
    current_version: int,
    current: Snapshot,
    updated_by: str,
    updated_at: datetime,
) -> History:
    """What happened between version ``yours`` and the current one, from the feature's log
    ``rows``. A version the log lacks (an edit that bypassed the server) is described from the
    feature itself: its last editor, time and state."""
    base: Snapshot | None = None
    changes: list[Change] = []
    previous: Snapshot | None = None
    last = 0
    for row in rows:
        if row.action == "delete":
            continue
        state = _logged_snapshot(layer, row.data)
        if row.version == yours:
            base = state
        elif row.version > yours and row.version <= current_version:
            changes.append(
                _change(layer, row.version, row.action, row.actor, row.at, previous, state)
            )
        previous, last = state, row.version
    if current_version > max(last, yours):
        changes.append(
            _change(layer, current_version, "update", updated_by, updated_at, previous, current)
        )
    return History(base, changes)


def _change(
    layer: Layer,
    version: int,
    action: str,
    actor: str,
    at: datetime,
    before: Snapshot | None,
    after: Snapshot | None,
) -> Change:
    if before is None or after is None:
        return Change(version, action, actor, at, {}, False)
    names = changed_fields(layer, before, after)
    return Change(
        version,
        action,
        actor,
        at,
        {n: (before.value(n), after.value(n)) for n in names if n != GEOMETRY},
        GEOMETRY in names,
    )


def _logged_snapshot(layer: Layer, data: Mapping[str, Any] | None) -> Snapshot | None:
    """The feature as a change-log row stored it (its GeoJSON after the change)."""
    if not isinstance(data, Mapping):
        return None
    props = data.get("properties")
    props = props if isinstance(props, Mapping) else {}
    known = {k: v for k, v in props.items() if k in layer.fields}
    try:
        # Through the schema, so logged values compare as stored ones do; a field added to
        # the schema since then takes its default.
        known = layer.properties.model_validate(known).model_dump()
    except ValidationError:
        known = {name: known.get(name) for name in layer.fields}
    geometry: BaseGeometry | None = None
    raw = data.get("geometry")
    if isinstance(raw, Mapping):
        try:
            geometry = shape(dict(raw))
        except (ValueError, TypeError, AttributeError, shapely.errors.GEOSException):
            return None
    return snapshot(known, geometry)


@dataclass
class Conflict:
    """A stale edit of one feature: what changed since the caller's version, which fields
    both edits changed differently, and the three-way merge when there is one."""

    layer: str
    feature: str
    yours: int
    current: int
    changes: list[Change]
    fields_theirs: list[str]
    fields_mine: list[str]
    conflicting: list[str]
    theirs: Snapshot
    mine: Snapshot | None
    #: The merged feature as GeoJSON (properties carry ``version``: the current one); None
    #: when there is no merge.
    merged: dict[str, Any] | None
    #: Why there is no merge, when there is none and it is not ``conflicting`` fields.
    why_not: str | None = None
    deleting: bool = False
    #: The log does not hold the caller's version, so there is nothing to merge over.
    no_base: bool = False
    row: int | None = field(default=None, kw_only=True)

    @property
    def clean(self) -> bool:
        return self.merged is not None

    def refuse_merge(self, reason: str, fields: Iterable[str] = ()) -> None:
        """No merge after all (the merged feature is invalid): ``reason`` says why."""
        self.merged = None
        self.why_not = reason
        touched = {*self.fields_mine, *self.fields_theirs}
        # A rule over the whole feature names no field: every field either edit touched.
        named = {f for f in fields if f in touched} or touched
        self.conflicting = sorted(set(self.conflicting) | named, key=self._order)

    def _order(self, name: str) -> tuple[int, str]:
        return (name == GEOMETRY, name)

    def actors(self) -> list[str]:
        return list(dict.fromkeys(c.actor for c in self.changes))

    def note(self) -> str:
        """The change log's note on a merged edit."""
        by = ", ".join(self.actors()) or "an unknown editor"
        return f"merged with version {self.current} by {by}"

    def report(self, *, version: int) -> dict[str, Any]:
        """What an applied merge tells its caller (``EditReport.merged``); ``version`` is the
        feature's version after it."""
        return {
            "base": self.yours,
            "theirs": [
                {"version": c.version, "actor": c.actor, "at": c.at.astimezone(UTC).isoformat()}
                for c in self.changes
            ],
            "fields_mine": self.fields_mine,
            "fields_theirs": self.fields_theirs,
            "version": version,
        }

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "layer": self.layer,
            "feature": self.feature,
            "yours": self.yours,
            "current": self.current,
            "changes": [c.to_json() for c in self.changes],
            "conflicting": self.conflicting,
            "merged": self.merged,
        }
        if self.row is not None:
            out = {"row": self.row, **out}
        return out

    def summary(self) -> str:
        """Who changed what since the caller's version."""
        head = f"{self.layer} feature {self.feature!r} was changed since your version {self.yours}"
        if self.yours > self.current:
            head = (
                f"{self.layer} feature {self.feature!r} is at version {self.current}; "
                f"version {self.yours} never existed"
            )
        parts = [c.describe() for c in self.changes]
        if not parts:
            return f"{head} (version {self.current} now)."
        # Each change a sentence of its own: "by alice at ...: name 'A' → 'B'. By bob at ..."
        text = ". ".join(p[:1].upper() + p[1:] if i else p for i, p in enumerate(parts))
        return f"{head}: {text}."

    def advice(self, *, header: bool) -> str:
        """What the caller can do now."""
        again = f'If-Match "{self.current}"' if header else f"version {self.current}"
        if self.row is not None:
            again += " in the row"
        if self.deleting:
            return f"Reload it, and delete version {self.current} if you still mean to."
        if self.no_base:
            return f"{self.why_not}: reload version {self.current} and apply your change again."
        if self.why_not is not None:
            return (
                f"Together the two edits make an invalid feature ({self.why_not}): choose "
                f"what to keep and send the feature again with {again}."
            )
        if self.conflicting:
            both = "; ".join(self._both(name) for name in self.conflicting)
            return (
                f"Your edit changes {_names(self.conflicting)} too ({both}): choose which to "
                f"keep and send the feature again with {again}."
            )
        mine = _names(self.fields_mine) if self.fields_mine else "nothing new"
        return (
            f"Your edit changes {mine}, which the others left alone: 'merged' holds both "
            f"edits together; send it with {again} to apply it."
        )

    def _both(self, name: str) -> str:
        if name == GEOMETRY:
            return "both moved or reshaped the geometry"
        mine = self.mine.value(name) if self.mine is not None else None
        return f"{name}: yours {show(mine)}, now {show(self.theirs.value(name))}"

    def describe(self, *, header: bool) -> str:
        return f"{self.summary()} {self.advice(header=header)}"

    def field_errors(self) -> list[FieldError]:
        """The stale version, then one error per field both edits changed."""
        errors = [
            FieldError(
                "version", f"stale: the feature is at version {self.current}, not {self.yours}"
            )
        ]
        for name in self.conflicting:
            who = self._last_editor(name)
            errors.append(
                FieldError(
                    name if name == GEOMETRY else f"properties.{name}",
                    f"changed since your version {self.yours}{who}: {self._both(name)}",
                )
            )
        return errors

    def _last_editor(self, name: str) -> str:
        for change in reversed(self.changes):
            if (name == GEOMETRY and change.geometry) or name in change.fields:
                return f" by {change.actor}"
        return ""

    def error(self, *, header: bool) -> VersionConflict:
        """The refusal: 412 for a stale If-Match, 409 for a stale version in the body."""
        kind = PreconditionFailed if header else VersionConflict
        return kind(
            self.describe(header=header),
            errors=self.field_errors(),
            extra={"conflict": self.to_json()},
        )


def _names(names: Sequence[str]) -> str:
    return ", ".join("the geometry" if n == GEOMETRY else n for n in names)


def three_way(
    layer: Layer,
    feature_id: str,
    yours: int,
    past: History,
    *,
    current_version: int,
    theirs: Snapshot,
    mine: Snapshot | None,
) -> Conflict:
    """Merge ``mine`` (the edit made on version ``yours``) with ``theirs`` (the current
    feature) over the base in ``past``. ``mine`` None is a deletion, which is never merged.

    The merge is clean when no field was changed by both to different values: it is then
    ``theirs`` with ``mine``'s changes, as GeoJSON that the caller validates before use."""
    base = past.base
    fields_theirs: list[str] = []
    fields_mine: list[str] = []
    if base is not None:
        fields_theirs = changed_fields(layer, base, theirs)
        if mine is not None:
            fields_mine = changed_fields(layer, base, mine)
    else:
        fields_theirs = sorted(
            {n for c in past.changes for n in c.fields}
            | ({GEOMETRY} if any(c.geometry for c in past.changes) else set()),
            key=lambda n: (n == GEOMETRY, n),
        )
    conflict = Conflict(
        layer.name,
        feature_id,
        yours,
        current_version,
        past.changes,
        fields_theirs,
        fields_mine,
        [],
        theirs,
        mine,
        None,
        deleting=mine is None,
    )
    if mine is None:
        conflict.conflicting = fields_theirs
        return conflict
    if base is None:
        conflict.conflicting = changed_fields(layer, theirs, mine)
        conflict.no_base = True
        conflict.why_not = (
            f"Version {yours} is not in the change log, so the edits cannot be merged"
            if yours < current_version
            else f"Version {yours} is newer than the feature"
        )
        # Without a base, every difference may be a conflict; none is resolved silently.
        return conflict
    conflict.conflicting = [
        n
        for n in fields_mine
        if n in fields_theirs and not _same(n, theirs.value(n), mine.value(n))
    ]
    if conflict.conflicting:
        return conflict
    properties = dict(theirs.properties)
    geometry = theirs.geometry
    for name in fields_mine:
        if name == GEOMETRY:
            geometry = mine.geometry
        else:
            properties[name] = mine.properties.get(name)
    conflict.merged = {
        "type": "Feature",
        "id": feature_id,
        "geometry": None if geometry is None else mapping(geometry),
        "properties": {**properties, "version": current_version},
    }
    return conflict
