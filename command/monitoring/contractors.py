"""Contractors: the certificates people carry (type, number, expiry) and their site induction.

People themselves are features of the ``people`` layer (name, role, team, employer, and
``employment``: staff or contractor). What they may enter is decided by the zone's rules
(``command.monitoring.fences``) against what is kept here: a certificate holds up to and
including its expiry day in the site's calendar; an induction until its ``expires_at``.

Credentials are replaced whole (``PUT .../people/{id}/credentials``): the rows of a person are
those last sent, checked row by row, and taken whole or not at all.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from gis.errors import AlreadyExists, FieldError, InvalidInput, NotFound
from gis.layers import get_layer, insert_features, parse_feature
from gis.sites import load_site
from gis.storage.tables import CertificateRow, InductionRow, PersonRow

#: A certificate type: a short slug (``hot_work``, ``confined_space``, ``work_at_height``...).
TYPE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
MAX_CERTIFICATES = 50


@dataclass(frozen=True)
class Certificate:
    type: str
    number: str
    expires_on: date

    def valid_on(self, day: date) -> bool:
        return day <= self.expires_on

    def as_dict(self) -> dict[str, Any]:
        return {"type": self.type, "number": self.number, "expires_on": self.expires_on.isoformat()}


@dataclass(frozen=True)
class Induction:
    passed_at: datetime
    expires_at: datetime | None = None

    def valid_at(self, at: datetime) -> bool:
        return self.passed_at <= at and (self.expires_at is None or at < self.expires_at)

    def as_dict(self) -> dict[str, Any]:
        return {
            "passed_at": self.passed_at.isoformat(),
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
        }


@dataclass
class Credentials:
    """What one person holds."""

    certificates: dict[str, Certificate] = field(default_factory=dict)
    induction: Induction | None = None

    def as_dict(self, *, today: date | None = None, now: datetime | None = None) -> dict[str, Any]:
        certificates = []
        for c in sorted(self.certificates.values(), key=lambda c: c.type):
            row = c.as_dict()
            if today is not None:
                row["valid"] = c.valid_on(today)
            certificates.append(row)
        induction = self.induction.as_dict() if self.induction else None
        if induction is not None and now is not None and self.induction is not None:
            induction["valid"] = self.induction.valid_at(now)
        return {"certificates": certificates, "induction": induction}


def parse_credentials(body: Any) -> Credentials:
    """``{"certificates": [{"type", "number", "expires_on"}], "induction": {"passed_at",
    "expires_at"?} | null}``; every field checked, :class:`InvalidInput` names each bad one."""
    if not isinstance(body, Mapping):
        raise InvalidInput(
            "send credentials as an object", errors=[FieldError("body", "an object")]
        )
    errors: list[FieldError] = []
    unknown = sorted(set(body) - {"certificates", "induction"})
    errors += unknown_fields(unknown)
    rows = body.get("certificates", [])
    out = Credentials()
    if not isinstance(rows, list) or len(rows) > MAX_CERTIFICATES:
        errors.append(FieldError("certificates", f"a list of at most {MAX_CERTIFICATES}"))
        rows = []
    for i, row in enumerate(rows):
        where = f"certificates[{i}]"
        if not isinstance(row, Mapping):
            errors.append(FieldError(where, "an object"))
            continue
        bad = unknown_fields(set(row) - _CERT_KEYS, where)
        kind, number, expires = row.get("type"), row.get("number"), row.get("expires_on")
        if not isinstance(kind, str) or not TYPE.fullmatch(kind):
            bad.append(FieldError(f"{where}.type", "a slug such as hot_work"))
        elif kind in out.certificates:
            bad.append(FieldError(f"{where}.type", "one certificate of each type"))
        if not isinstance(number, str) or not 0 < len(number.strip()) <= 64:
            bad.append(FieldError(f"{where}.number", "the certificate's number (1-64 characters)"))
        day = _date(expires)
        if day is None:
            bad.append(FieldError(f"{where}.expires_on", "a date such as 2026-11-30"))
        errors += bad
        if not bad and isinstance(kind, str) and isinstance(number, str) and day is not None:
            out.certificates[kind] = Certificate(kind, number.strip(), day)
    induction = body.get("induction")
    if induction is not None:
        if not isinstance(induction, Mapping):
            errors.append(FieldError("induction", "an object, or null"))
        else:
            unknown = sorted(set(induction) - {"passed_at", "expires_at"})
            errors += unknown_fields(unknown, "induction")
            passed = _time(induction.get("passed_at"))
            until = _time(induction.get("expires_at")) if induction.get("expires_at") else None
            if passed is None:
                errors.append(FieldError("induction.passed_at", "an ISO 8601 time with offset"))
            if induction.get("expires_at") and until is None:
                errors.append(FieldError("induction.expires_at", "an ISO 8601 time with offset"))
            if passed is not None and until is not None and until <= passed:
                errors.append(FieldError("induction.expires_at", "after passed_at"))
            if passed is not None and not errors:
                out.induction = Induction(passed, until)
    if errors:
        raise InvalidInput(f"{len(errors)} bad field(s); nothing was changed", errors=errors)
    return out


_CERT_KEYS = {"type", "number", "expires_on"}


def unknown_fields(keys: Iterable[str], where: str | None = None) -> list[FieldError]:
    """A problem's errors for fields that are not known (each named; an empty name as such)."""
    out = []
    for key in sorted(keys):
        name = f"{where}.{key}" if where and key else key or where or "body"
        out.append(FieldError(name, "unknown field" if key else "a field with an empty name"))
    return out


def _date(value: object) -> date | None:
    if not isinstance(value, str):
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def _time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        return None
    return at if at.tzinfo is not None else None


def store_credentials(
    session: Session,
    site_id: str,
    person_id: str,
    credentials: Credentials,
    *,
    actor: str,
    now: datetime,
) -> None:
    """Replace a person's certificates and induction (the person must be in the people layer)."""
    if session.get(PersonRow, (site_id, person_id)) is None:
        raise NotFound(
            f"no person '{person_id}' at site '{site_id}': add them to the people layer first",
            errors=[FieldError("person", "unknown")],
        )
    session.execute(
        delete(CertificateRow).where(
            CertificateRow.site_id == site_id, CertificateRow.person_id == person_id
        )
    )
    session.execute(
        delete(InductionRow).where(
            InductionRow.site_id == site_id, InductionRow.person_id == person_id
        )
    )
    session.flush()
    for c in credentials.certificates.values():
        session.add(
            CertificateRow(
                site_id=site_id,
                person_id=person_id,
                type=c.type,
                number=c.number,
                expires_on=c.expires_on,
                recorded_at=now,
                recorded_by=actor,
            )
        )
    if credentials.induction is not None:
        session.add(
            InductionRow(
                site_id=site_id,
                person_id=person_id,
                passed_at=credentials.induction.passed_at,
                expires_at=credentials.induction.expires_at,
                recorded_at=now,
                recorded_by=actor,
            )
        )
    session.flush()


def register_contractor(
    session: Session,
    site_id: str,
    person: Mapping[str, Any],
    credentials: Credentials,
    *,
    actor: str,
    now: datetime,
) -> dict[str, Any]:
    """Add a contractor to the people layer (``employment`` contractor) with their credentials,
    in ``session``'s transaction: both or neither."""
    layer = get_layer("people")
    site = load_site(session, site_id)
    data = dict(person)
    props = dict(data.get("properties") or {})
    props["employment"] = "contractor"
    data["properties"] = props
    data.setdefault("type", "Feature")
    data.setdefault("geometry", None)
    parsed = parse_feature(layer, data, extent=site.extent)
    if parsed.id is None:
        raise InvalidInput(
            "a contractor needs an id", errors=[FieldError("person.id", "the person's id")]
        )
    if session.get(PersonRow, (site_id, parsed.id)) is not None:
        raise AlreadyExists(
            f"person {parsed.id!r} exists already: PUT their credentials instead",
            errors=[FieldError("person.id", "already taken")],
        )
    insert_features(session, site_id, layer, [parsed], actor=actor)
    session.flush()
    store_credentials(session, site_id, parsed.id, credentials, actor=actor, now=now)
    return {"id": parsed.id, "employer": props.get("employer")}


def read_credentials(
    session: Session, site_id: str, person_ids: Iterable[str] | None = None
) -> dict[str, Credentials]:
    """Everyone's credentials at the site (or those of ``person_ids``)."""
    wanted = None if person_ids is None else list(person_ids)
    certs = select(CertificateRow).where(CertificateRow.site_id == site_id)
    inducted = select(InductionRow).where(InductionRow.site_id == site_id)
    if wanted is not None:
        certs = certs.where(CertificateRow.person_id.in_(wanted))
        inducted = inducted.where(InductionRow.person_id.in_(wanted))
    out: dict[str, Credentials] = {}
    for row in session.scalars(certs):
        out.setdefault(row.person_id, Credentials()).certificates[row.type] = Certificate(
            row.type, row.number, row.expires_on
        )
    for ind in session.scalars(inducted):
        out.setdefault(ind.person_id, Credentials()).induction = Induction(
            ind.passed_at, ind.expires_at
        )
    return out
