"""Topology rules as data: the defaults, a site's own rule set (tighter, or looser with a
recorded allowance), its document form (API, YAML, storage) and its storage with versions.

What the rules mean and how they are checked: :mod:`gis.topology`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gis.errors import FieldError, InvalidInput, PreconditionFailed, VersionRequired
from gis.geometry import BOUNDARY_TOLERANCE_M
from gis.model import LAYERS, ZoneKind
from gis.reachability import SNAP_M
from gis.storage.tables import ChangeRow, TopologyRulesRow

INSIDE_SITE = "inside-site"
MUSTER_CLEAR = "muster-clear-of-hazards"
MUSTER_AREA = "muster-area-clear"
SAME_KIND = "same-kind-overlap"
FORBIDDEN = "forbidden-overlap"
FOOT_REACHABLE = "foot-reachable"

Severity = Literal["refuse", "warn", "off"]
_STRICTNESS: dict[str, int] = {"off": 0, "warn": 1, "refuse": 2}
MUSTER = ZoneKind.MUSTER_POINT.value
#: Violations listed in one refusal or report at most (the count says how many in all).
MAX_LISTED = 500


@dataclass(frozen=True)
class RuleSet:
    """The rules in force on a site."""

    hazards: frozenset[str] = frozenset({"process_unit", "tank_farm", "storage"})
    muster_area_allowed: frozenset[str] = frozenset({"parking"})
    same_kind_allowed: frozenset[str] = frozenset({"road", "restricted_area"})
    forbidden: frozenset[frozenset[str]] = frozenset()
    reachability: Severity = "warn"
    overlap_tolerance_m2: float = 1.0

    def pair_rule(self, a: str, b: str) -> str | None:
        """The rule two zones of kinds ``a`` and ``b`` break by overlapping, or None."""
        other = b if a == MUSTER else a if b == MUSTER else None
        if other is not None and other in self.hazards:
            return MUSTER_CLEAR
        if frozenset((a, b)) in self.forbidden:
            return FORBIDDEN
        if a == b:
            return None if a in self.same_kind_allowed else SAME_KIND
        if other is not None and other not in self.muster_area_allowed:
            return MUSTER_AREA
        return None

    def loosened(self) -> list[FieldError]:
        """Where these rules are looser than the defaults."""
        d = DEFAULTS
        out = []
        if missing := d.hazards - self.hazards:
            out.append(
                FieldError(
                    f"rules.{MUSTER_CLEAR}.kinds",
                    f"leaves out {', '.join(sorted(missing))}, which the defaults keep clear of "
                    "muster points",
                )
            )
        for rule, mine, default in (
            (MUSTER_AREA, self.muster_area_allowed, d.muster_area_allowed),
            (SAME_KIND, self.same_kind_allowed, d.same_kind_allowed),
        ):
            if extra := mine - default:
                out.append(
                    FieldError(
                        f"rules.{rule}.allowed",
                        f"allows {', '.join(sorted(extra))}; the defaults allow only "
                        f"{', '.join(sorted(default)) or 'none'}",
                    )
                )
        if _STRICTNESS[self.reachability] < _STRICTNESS[d.reachability]:
            out.append(
                FieldError(
                    f"rules.{FOOT_REACHABLE}.severity",
                    f"{self.reachability}: the defaults {d.reachability}",
                )
            )
        if self.overlap_tolerance_m2 > d.overlap_tolerance_m2:
            out.append(
                FieldError(
                    "overlap_tolerance_m2",
                    f"{self.overlap_tolerance_m2:g} m² lets more overlap pass than the "
                    f"default {d.overlap_tolerance_m2:g} m²",
                )
            )
        return out


DEFAULTS = RuleSet()


# --- the rule set as a document (API, YAML, storage) ------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", use_enum_values=True, populate_by_name=False)


class _Kinds(_Strict):
    kinds: list[ZoneKind] = Field(description="Zone kinds no muster point may overlap.")


class _Allowed(_Strict):
    allowed: list[ZoneKind] = Field(description="Zone kinds allowed to overlap.")


class _Pairs(_Strict):
    pairs: list[tuple[ZoneKind, ZoneKind]] = Field(
        description="Pairs of zone kinds that must not overlap."
    )


class _Severity(_Strict):
    severity: Severity


class SiteRules(_Strict):
    muster_clear: _Kinds | None = Field(default=None, alias=MUSTER_CLEAR)
    muster_area: _Allowed | None = Field(default=None, alias=MUSTER_AREA)
    same_kind: _Allowed | None = Field(default=None, alias=SAME_KIND)
    forbidden: _Pairs | None = Field(default=None, alias=FORBIDDEN)
    reach: _Severity | None = Field(default=None, alias=FOOT_REACHABLE)


class RulesDocument(_Strict):
    """What a site stores: only the rules it sets; the others are the defaults."""

    rules: SiteRules = Field(default_factory=SiteRules)
    overlap_tolerance_m2: float | None = Field(default=None, gt=0, le=10_000)
    allowance: str | None = Field(
        default=None,
        max_length=2000,
        description="Why the site may be looser than the defaults (required to loosen them).",
    )

    def ruleset(self) -> RuleSet:
        r, d = self.rules, DEFAULTS
        return RuleSet(
            hazards=frozenset(r.muster_clear.kinds) if r.muster_clear else d.hazards,
            muster_area_allowed=frozenset(r.muster_area.allowed)
            if r.muster_area
            else d.muster_area_allowed,
            same_kind_allowed=frozenset(r.same_kind.allowed)
            if r.same_kind
            else d.same_kind_allowed,
            forbidden=frozenset(frozenset(p) for p in r.forbidden.pairs)
            if r.forbidden
            else d.forbidden,
            reachability=r.reach.severity if r.reach else d.reachability,
            overlap_tolerance_m2=self.overlap_tolerance_m2 or d.overlap_tolerance_m2,
        )

    def stored(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, exclude={"allowance"})


def parse_rules(data: Any) -> RulesDocument:
    """Validate a site's rule set; every fault is named with its path."""
    if not isinstance(data, Mapping):
        raise InvalidInput(
            "a rule set is an object", errors=[FieldError("body", "a JSON object (or YAML map)")]
        )
    errors: list[FieldError] = []
    rules = data.get("rules")
    if isinstance(rules, Mapping) and INSIDE_SITE in rules:
        errors.append(
            FieldError(
                f"rules.{INSIDE_SITE}",
                "fixed: a feature outside the site is outside every model of it",
            )
        )
        data = {**data, "rules": {k: v for k, v in rules.items() if k != INSIDE_SITE}}
    try:
        doc = RulesDocument.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "body"
            errors.append(FieldError(loc, err["msg"]))
        raise InvalidInput("the topology rules are invalid", errors=errors) from None
    r = doc.rules
    for path, kinds in (
        (f"rules.{MUSTER_CLEAR}.kinds", r.muster_clear.kinds if r.muster_clear else []),
        (f"rules.{MUSTER_AREA}.allowed", r.muster_area.allowed if r.muster_area else []),
    ):
        if MUSTER in kinds:
            errors.append(FieldError(path, f"muster points against each other: see {SAME_KIND}"))
    if doc.allowance is not None and (
        "\x00" in doc.allowance or not doc.allowance.strip() or not _utf8(doc.allowance)
    ):
        errors.append(FieldError("allowance", "a reason in words (UTF-8, no NUL characters)"))
    if errors:
        raise InvalidInput("the topology rules are invalid", errors=errors)
    return doc


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (JSON's \ud800)
        return False
    return True


@dataclass(frozen=True)
class SiteRuleSet:
    """A site's rules: the document it stored (empty: the defaults), and its version (1 is the
    defaults, before the site set any)."""

    site_id: str
    document: RulesDocument
    version: int = 1
    updated_at: datetime | None = None
    updated_by: str | None = None

    @property
    def rules(self) -> RuleSet:
        return self.document.ruleset()

    def to_json(self) -> dict[str, Any]:
        rules, own = self.rules, self.document.rules
        source = {
            MUSTER_CLEAR: own.muster_clear,
            MUSTER_AREA: own.muster_area,
            SAME_KIND: own.same_kind,
            FORBIDDEN: own.forbidden,
            FOOT_REACHABLE: own.reach,
        }
        listed: list[dict[str, Any]] = [
            {
                "id": INSIDE_SITE,
                "severity": "refuse",
                "text": "zones, resources, sensors, people and network edges lie inside the "
                f"site boundary ({BOUNDARY_TOLERANCE_M:g} m of slack); fixed",
                "layers": [name for name, layer in LAYERS.items() if layer.inside_site],
            },
            {
                "id": MUSTER_CLEAR,
                "severity": "refuse",
                "text": "a muster point overlaps no zone of these kinds",
                "kinds": sorted(rules.hazards),
            },
            {
                "id": MUSTER_AREA,
                "severity": "refuse",
                "text": "a muster point overlaps no other zone, except these kinds",
                "allowed": sorted(rules.muster_area_allowed),
            },
            {
                "id": SAME_KIND,
                "severity": "refuse",
                "text": "zones of one kind do not overlap, except these kinds",
                "allowed": sorted(rules.same_kind_allowed),
            },
            {
                "id": FORBIDDEN,
                "severity": "refuse",
                "text": "zones of these pairs of kinds do not overlap",
                "pairs": sorted(sorted(p) if len(p) == 2 else [*p, *p] for p in rules.forbidden),
            },
            {
                "id": FOOT_REACHABLE,
                "severity": rules.reachability,
                "text": "every door and muster point stays reachable on the foot network "
                f"(a muster point attaches within {SNAP_M:g} m)",
            },
        ]
        for rule in listed:
            rule["source"] = "site" if source.get(str(rule["id"])) is not None else "default"
        return {
            "site": self.site_id,
            "version": self.version,
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
            "updated_by": self.updated_by,
            "overlap_tolerance_m2": rules.overlap_tolerance_m2,
            "rules": listed,
            "site_rules": self.document.stored(),
            "allowance": self.document.allowance,
            "loosened": [e.as_dict() for e in rules.loosened()],
        }


def load_rules(session: Session, site_id: str) -> SiteRuleSet:
    row = session.get(TopologyRulesRow, site_id)
    if row is None:
        return SiteRuleSet(site_id, RulesDocument())
    document = RulesDocument.model_validate({**row.rules, "allowance": row.allowance})
    return SiteRuleSet(site_id, document, row.version, row.updated_at, row.updated_by)


def save_rules(
    session: Session,
    site_id: str,
    data: Any,
    *,
    actor: str,
    if_match: int | None,
    note: str | None = None,
) -> SiteRuleSet:
    """Store a site's rule set (``if_match``: the version the caller read; None only when the
    site has none yet, as a bundle loads). Loosening the defaults needs an ``allowance``."""
    doc = parse_rules(data)
    if (loose := doc.ruleset().loosened()) and doc.allowance is None:
        raise InvalidInput(
            "the rules would be looser than the defaults: to loosen them on purpose, say why "
            "in 'allowance' (it is recorded)",
            errors=[*loose, FieldError("allowance", "required to loosen the defaults")],
        )
    row = session.get(TopologyRulesRow, site_id, with_for_update=True)
    current = row.version if row is not None else 1
    what = f"the topology rules of site {site_id!r}"
    if if_match is None and row is not None:
        raise VersionRequired(
            f"say which version of {what} you are changing (If-Match header, e.g. "
            f'"{current}"); they are at version {current}',
            errors=[FieldError("If-Match", "required")],
        )
    if if_match is not None and if_match != current:
        raise PreconditionFailed(
            f"{what} are at version {current}, not {if_match}: someone changed them since you "
            "read them; reload and apply your change again",
            errors=[FieldError("version", f"stale: current version is {current}")],
        )
    now = datetime.now(UTC)
    if row is None:
        row = TopologyRulesRow(
            site_id=site_id,
            rules=doc.stored(),
            allowance=doc.allowance,
            version=2,  # version 1 is the defaults
            created_at=now,
            created_by=actor,
            updated_at=now,
            updated_by=actor,
        )
        session.add(row)
    else:
        row.rules, row.allowance = doc.stored(), doc.allowance
        row.version += 1
        row.updated_at, row.updated_by = now, actor
    session.add(
        ChangeRow(
            site_id=site_id,
            layer="topology_rules",
            feature_id=site_id,
            action="update",
            version=row.version,
            actor=actor,
            at=now,
            data={"rules": doc.stored(), "allowance": doc.allowance},
            note=note or doc.allowance,
        )
    )
    try:
        session.flush()
    except IntegrityError:  # set meanwhile by someone else
        raise PreconditionFailed(
            f"{what} were set meanwhile by someone else; reload them",
            errors=[FieldError("version", "stale")],
        ) from None
    return SiteRuleSet(site_id, doc, row.version, now, actor)
