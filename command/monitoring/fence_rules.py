"""Fence rules and fences: who may be inside (roles, teams, certificates, induction, entry
hours), how many and how long, and the fences that carry them (a zone with rules, a crane's
swing radius, a hot-work area). Parsed and checked here; watched by
``command.monitoring.fences``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import shapely
from shapely.geometry import mapping
from shapely.geometry.base import BaseGeometry

from command.monitoring.contractors import Credentials, unknown_fields
from gis.errors import FieldError, InvalidInput
from gis.geometry import validate_geometry
from gis.storage.tables import TemporaryFenceRow

if TYPE_CHECKING:
    from command.site_model import SiteModel
#: Kinds of temporary fence, and the rules each has unless others are given: nobody inside a
#: crane's swing radius; a valid hot-work certificate inside a hot-work area.
TEMPORARY_KINDS: dict[str, dict[str, Any]] = {
    "crane_swing": {"closed": True},
    "hot_work": {"certificates": ["hot_work"]},
}
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
#: A role, team or certificate type as the people layer writes it ("field operator").
NAME = re.compile(r"[^\x00-\x1f]{1,100}")
CLOCK = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")
#: How long a temporary fence may stand (a permit is a day's or a week's at most).
MAX_FENCE_S = 14 * 24 * 3600
# -- rules ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """Entry hours on some days; ``end`` before ``start`` runs past midnight."""

    days: tuple[int, ...]
    start: time
    end: time

    def holds(self, local: datetime) -> bool:
        now = local.time()
        if self.start <= self.end:
            return local.weekday() in self.days and self.start <= now < self.end
        if now >= self.start:
            return local.weekday() in self.days
        return (local.weekday() - 1) % 7 in self.days and now < self.end

    def as_dict(self) -> dict[str, Any]:
        return {
            "days": [DAYS[d] for d in self.days],
            "start": self.start.strftime("%H:%M"),
            "end": self.end.strftime("%H:%M"),
        }

    def text(self) -> str:
        days = ",".join(DAYS[d] for d in self.days) if len(self.days) < 7 else "daily"
        return f"{self.start:%H:%M}-{self.end:%H:%M} {days}"


@dataclass(frozen=True)
class Rules:
    closed: bool = False
    roles: frozenset[str] = frozenset()
    teams: frozenset[str] = frozenset()
    certificates: tuple[str, ...] = ()
    induction: bool = False
    windows: tuple[Window, ...] = ()
    max_occupancy: int | None = None
    max_stay_s: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "closed": self.closed,
            "roles": sorted(self.roles),
            "teams": sorted(self.teams),
            "certificates": list(self.certificates),
            "induction": self.induction,
            "windows": [w.as_dict() for w in self.windows],
            "max_occupancy": self.max_occupancy,
            "max_stay_s": self.max_stay_s,
        }


RULE_KEYS = set(Rules().as_dict())


def parse_rules(value: Any, *, where: str = "rules") -> Rules:
    """Rules from their JSON (:meth:`Rules.as_dict`); :class:`InvalidInput` names each bad
    field, e.g. ``rules.windows[0].start``."""
    errors: list[FieldError] = []
    if not isinstance(value, Mapping):
        raise InvalidInput("rules must be an object", errors=[FieldError(where, "an object")])
    errors += unknown_fields(set(value) - RULE_KEYS, where)

    def names(key: str) -> frozenset[str]:
        got = value.get(key, [])
        if (
            not isinstance(got, list)
            or len(got) > 100
            or not all(isinstance(x, str) and NAME.fullmatch(x) for x in got)
        ):
            errors.append(FieldError(f"{where}.{key}", "a list of names (at most 100)"))
            return frozenset()
        return frozenset(got)

    closed = value.get("closed", False)
    induction = value.get("induction", False)
    for key, flag in (("closed", closed), ("induction", induction)):
        if not isinstance(flag, bool):
            errors.append(FieldError(f"{where}.{key}", "true or false"))
    roles, teams, certificates = names("roles"), names("teams"), names("certificates")
    windows: list[Window] = []
    raw_windows = value.get("windows", [])
    if not isinstance(raw_windows, list) or len(raw_windows) > 20:
        errors.append(FieldError(f"{where}.windows", "a list of at most 20 windows"))
        raw_windows = []
    for i, w in enumerate(raw_windows):
        at = f"{where}.windows[{i}]"
        if not isinstance(w, Mapping) or set(w) - {"days", "start", "end"}:
            errors.append(FieldError(at, "an object with days, start and end"))
            continue
        days = w.get("days", list(DAYS))
        if not isinstance(days, list) or not days or not all(d in DAYS for d in days):
            errors.append(FieldError(f"{at}.days", f"a list of {', '.join(DAYS)}"))
            continue
        start, end = _clock(w.get("start")), _clock(w.get("end"))
        if start is None:
            errors.append(FieldError(f"{at}.start", "a time HH:MM"))
        if end is None:
            errors.append(FieldError(f"{at}.end", "a time HH:MM"))
        if start is not None and end is not None:
            if start == end:
                errors.append(FieldError(f"{at}.end", "not the same as start"))
            else:
                windows.append(Window(tuple(sorted({DAYS.index(d) for d in days})), start, end))
    most = value.get("max_occupancy")
    if most is not None and (not _int(most) or not 1 <= most <= 100_000):
        errors.append(FieldError(f"{where}.max_occupancy", "a whole number from 1, or null"))
    stay = value.get("max_stay_s")
    if stay is not None and (not _num(stay) or not 1 <= stay <= 7 * 24 * 3600):
        errors.append(FieldError(f"{where}.max_stay_s", "seconds from 1 to a week, or null"))
    if errors:
        raise InvalidInput(f"{len(errors)} bad rule field(s); nothing was changed", errors=errors)
    return Rules(
        closed=bool(closed),
        roles=roles,
        teams=teams,
        certificates=tuple(sorted(certificates)),
        induction=bool(induction),
        windows=tuple(windows),
        max_occupancy=int(most) if most is not None else None,
        max_stay_s=float(stay) if stay is not None else None,
    )


def parse_owner(value: Any, *, where: str = "owner") -> dict[str, Any] | None:
    """Whom a breach notifies: ``{"username": ...}`` (a user) or ``{"duty": ...}`` (whoever
    holds that plan duty in the site's active incidents), with an optional ``phone`` for the
    outbound gateway; None: nobody but the walls."""
    if value is None:
        return None
    if not isinstance(value, Mapping) or set(value) - {"username", "duty", "phone"}:
        raise InvalidInput(
            "the owner is {username} or {duty}, with an optional phone",
            errors=[FieldError(where, "an object with username or duty (and phone)")],
        )
    keys = [k for k in ("username", "duty") if value.get(k) is not None]
    if len(keys) != 1 or not isinstance(value[keys[0]], str) or not SLUG.fullmatch(value[keys[0]]):
        raise InvalidInput(
            "the owner names one username or one duty",
            errors=[FieldError(where, "exactly one of username or duty, a name")],
        )
    phone = value.get("phone")
    if phone is not None and (not isinstance(phone, str) or not 0 < len(phone) <= 40):
        raise InvalidInput("bad phone", errors=[FieldError(f"{where}.phone", "up to 40 chars")])
    return {keys[0]: value[keys[0]], **({"phone": phone} if phone else {})}


def _clock(value: Any) -> time | None:
    if not isinstance(value, str) or not CLOCK.fullmatch(value):
        return None
    return time(int(value[:2]), int(value[3:]))


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _num(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


def refusals(
    rules: Rules,
    person: Mapping[str, Any] | None,
    held: Credentials | None,
    *,
    at: datetime,
    local: datetime,
    what: str,
) -> list[dict[str, str]]:
    """Why ``person`` (the people layer's properties; None: unknown) may not be inside a fence
    with ``rules`` at ``at`` (``local``: the same in the site's time zone): each failing rule
    with its reason, none when they may."""
    out: list[dict[str, str]] = []
    if person is None:
        return [{"rule": "person", "reason": "not a person of the site"}]
    if rules.closed:
        out.append({"rule": "closed", "reason": f"nobody may enter the {what}"})
    role = str(person.get("role") or "")
    if rules.roles and role not in rules.roles:
        allowed = ", ".join(sorted(rules.roles))
        out.append({"rule": "role", "reason": f"role {role or '?'} may not enter ({allowed} may)"})
    team = person.get("team")
    if rules.teams and team not in rules.teams:
        allowed = ", ".join(sorted(rules.teams))
        out.append(
            {"rule": "team", "reason": f"team {team or 'none'} may not enter ({allowed} may)"}
        )
    today = local.date()
    for kind in rules.certificates:
        cert = held.certificates.get(kind) if held else None
        name = kind.replace("_", "-")
        if cert is None:
            out.append({"rule": "certificate", "reason": f"no {name} certificate"})
        elif not cert.valid_on(today):
            out.append(
                {
                    "rule": "certificate",
                    "reason": f"{name} certificate {cert.number} expired "
                    f"{cert.expires_on.isoformat()}",
                }
            )
    if rules.induction:
        induction = held.induction if held else None
        if induction is None or induction.passed_at > at:
            out.append({"rule": "induction", "reason": "no site induction"})
        elif not induction.valid_at(at):
            until = induction.expires_at.date().isoformat() if induction.expires_at else "?"
            out.append({"rule": "induction", "reason": f"site induction expired {until}"})
    if rules.windows and not any(w.holds(local) for w in rules.windows):
        hours = "; ".join(w.text() for w in rules.windows)
        out.append({"rule": "time_window", "reason": f"outside the entry hours ({hours})"})
    return out


# -- fences -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fence:
    key: str  # "zone:<id>" or "temporary:<id>"
    id: str
    kind: str  # "zone", "crane_swing", "hot_work"
    name: str
    geometry: BaseGeometry
    rules: Rules
    owner: dict[str, Any] | None
    expires_at: datetime | None = None
    radius_m: float | None = None
    created_by: str | None = None

    @property
    def temporary(self) -> bool:
        return self.kind != "zone"

    @property
    def what(self) -> str:
        return {"crane_swing": "crane swing radius", "hot_work": "hot-work area"}.get(
            self.kind, f"zone {self.name}"
        )

    def as_feature(self) -> dict[str, Any]:
        return {
            "type": "Feature",
            "id": self.id,
            "geometry": mapping(self.geometry),
            "properties": {
                "key": self.key,
                "kind": self.kind,
                "name": self.name,
                "temporary": self.temporary,
                "rules": self.rules.as_dict(),
                "owner": self.owner,
                "expires_at": self.expires_at.isoformat() if self.expires_at else None,
                "radius_m": self.radius_m,
                "created_by": self.created_by,
            },
        }


# -- parsing a temporary fence ---------------------------------------------------------------


def parse_temporary(
    body: Mapping[str, Any], *, model: SiteModel, now: datetime, actor: str
) -> Fence:
    errors: list[FieldError] = []
    if not isinstance(body, Mapping):
        raise InvalidInput("send the fence as an object", errors=[FieldError("body", "an object")])
    known = {"kind", "name", "geometry", "centre", "radius_m", "expires_at", "expires_in_s"}
    known |= {"rules", "owner"}
    errors += unknown_fields(set(body) - known)
    kind = body.get("kind")
    if kind not in TEMPORARY_KINDS:
        errors.append(FieldError("kind", f"one of {', '.join(TEMPORARY_KINDS)}"))
    name = body.get("name", kind if isinstance(kind, str) else "")
    if not isinstance(name, str) or not 0 < len(name.strip()) <= 200:
        errors.append(FieldError("name", "a name (1-200 characters)"))
    expires = _expiry(body, now, errors)
    geometry: BaseGeometry | None = None
    radius: float | None = None
    site = model.site
    if body.get("geometry") is not None and body.get("centre") is not None:
        errors.append(FieldError("geometry", "a geometry or a centre and radius, not both"))
    elif body.get("geometry") is not None:
        try:
            geometry = validate_geometry(
                body["geometry"], expected_type="Polygon", extent=site.extent, max_vertices=500
            )
        except InvalidInput as exc:
            errors += exc.errors
    else:
        centre, radius_in = body.get("centre"), body.get("radius_m")
        if (
            not isinstance(centre, list)
            or len(centre) != 2
            or not all(_num(c) for c in centre)
            or not -180 <= centre[0] <= 180
            or not -90 <= centre[1] <= 90
        ):
            errors.append(FieldError("centre", "[lon, lat] of the crane (or send a geometry)"))
        elif not _num(radius_in) or not 1 <= float(radius_in or 0) <= 500:
            errors.append(FieldError("radius_m", "the swing radius, 1 to 500 m"))
        else:
            radius = float(radius_in or 0)
            metric = site.crs.to_metric(shapely.Point(centre))
            geometry = site.crs.to_wgs84(metric.buffer(radius, quad_segs=16))
            if not site.extent.covers(shapely.Point(centre)):
                errors.append(FieldError("centre", "lies outside the site boundary"))
    defaults = TEMPORARY_KINDS.get(str(kind), {})
    rules: Rules | None = None
    try:
        rules = parse_rules(body.get("rules", defaults))
    except InvalidInput as exc:
        errors += exc.errors
    owner = None
    try:
        owner = parse_owner(body.get("owner"))
    except InvalidInput as exc:
        errors += exc.errors
    if errors or geometry is None or rules is None or expires is None:
        raise InvalidInput(f"{len(errors)} bad field(s); no fence was drawn", errors=errors)
    fence_id = f"tf-{uuid.uuid4().hex[:10]}"
    return Fence(
        key=f"temporary:{fence_id}",
        id=fence_id,
        kind=str(kind),
        name=str(name).strip(),
        geometry=geometry,
        rules=rules,
        owner=owner,
        expires_at=expires,
        radius_m=radius,
        created_by=actor,
    )


def _expiry(body: Mapping[str, Any], now: datetime, errors: list[FieldError]) -> datetime | None:
    at, within = body.get("expires_at"), body.get("expires_in_s")
    if (at is None) == (within is None):
        errors.append(FieldError("expires_at", "an expiry: expires_at or expires_in_s"))
        return None
    if within is not None:
        if not _num(within) or not 60 <= within <= MAX_FENCE_S:
            errors.append(FieldError("expires_in_s", f"seconds from 60 to {MAX_FENCE_S}"))
            return None
        return now + timedelta(seconds=float(within))
    try:
        expires = datetime.fromisoformat(str(at))
    except ValueError:
        expires = None
    if expires is None or expires.tzinfo is None:
        errors.append(FieldError("expires_at", "an ISO 8601 time with a UTC offset"))
        return None
    if not now < expires <= now + timedelta(seconds=MAX_FENCE_S):
        errors.append(FieldError("expires_at", "in the future, at most 14 days ahead"))
        return None
    return expires.astimezone(UTC)


def temporary_fence(row: TemporaryFenceRow) -> Fence:
    return Fence(
        key=f"temporary:{row.id}",
        id=row.id,
        kind=row.kind,
        name=row.name,
        geometry=row.geom,
        rules=parse_rules(row.rules),
        owner=row.owner,
        expires_at=row.expires_at,
        radius_m=row.radius_m,
        created_by=row.created_by,
    )


def site_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError):
        return ZoneInfo("UTC")
