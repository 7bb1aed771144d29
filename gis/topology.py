"""Topology rules: what the site's features must respect among themselves.

The rules, with their ids (a refusal names the rule and the other feature):

- ``inside-site``: zones, resources, sensors, people and network edges lie inside the site
  boundary (1 m of digitising slack). Checked per feature where geometry enters
  (:func:`gis.layers.parse_feature`); fixed.
- ``muster-clear-of-hazards``: a muster point overlaps no process unit, tank farm or storage.
- ``muster-area-clear``: a muster point overlaps no other zone except parking. Everyone inside
  a muster point's area counts as mustered (the headcount), so a building, gate or road laid
  over it would count people who are not there, and a gate or road brings traffic into it.
- ``same-kind-overlap``: zones of one kind do not overlap, except roads (which meet at
  junctions) and restricted areas (which nest).
- ``forbidden-overlap``: pairs of kinds the site forbids to overlap (none by default).
- ``foot-reachable``: every door and muster point stays reachable on the foot network
  (:mod:`gis.reachability`); a warning by default, naming the parts cut off.

Overlap means the interiors share more than ``overlap_tolerance_m2`` (1 m²): zones that touch
along an edge are fine. It is computed in shapely, in the site's metric CRS, on both backends,
among the zones the spatial index (PostGIS: ``ST_Intersects``) finds near the edited one.

A change is refused only for what it breaks: a breach that was there before the change (data
loaded before a rule was tightened) is not held against an edit that leaves it as it was.

Rules are data. A site can tighten them (``topology_rules`` table, the API, or
``topology-rules.yaml`` in a site bundle): more hazard kinds, fewer allowances, forbidden pairs,
a lower tolerance, reachability as a refusal. Loosening them is refused unless the rule set
carries an ``allowance``: a recorded reason, kept with the rules and in the change log.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, Protocol

import shapely
from shapely.geometry.base import BaseGeometry
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gis.errors import FieldError, InvalidInput
from gis.geometry import SiteExtent
from gis.reachability import (
    CutOff,
    Edge,
    FootNetwork,
    Muster,
    cut_off,
    read_musters,
    read_network,
    unreachable,
)
from gis.storage.tables import LayerRevision, ZoneRow
from gis.topology_rules import (
    DEFAULTS,
    FOOT_REACHABLE,
    FORBIDDEN,
    INSIDE_SITE,
    MAX_LISTED,
    MUSTER,
    MUSTER_AREA,
    MUSTER_CLEAR,
    SAME_KIND,
    RuleSet,
    SiteRuleSet,
    load_rules,
    parse_rules,
    save_rules,
)

if TYPE_CHECKING:
    from gis.sites import Site
    from gis.storage.db import Database

__all__ = [  # the rules' names and storage, used through this module
    "DEFAULTS",
    "FOOT_REACHABLE",
    "FORBIDDEN",
    "INSIDE_SITE",
    "MAX_LISTED",
    "MUSTER_AREA",
    "MUSTER_CLEAR",
    "SAME_KIND",
    "ImportCheck",
    "RuleSet",
    "SiteRuleSet",
    "Violation",
    "check_edit",
    "check_site",
    "inside_site_error",
    "load_rules",
    "parse_rules",
    "read_musters",
    "save_rules",
    "settle",
]


# --- violations -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Violation:
    """A breach of a rule by one feature (``id`` None: a feature being created without one)."""

    rule: str
    severity: Literal["refuse", "warn"]
    layer: str
    id: str | None
    text: str
    other: dict[str, Any] | None = None
    parts: tuple[str, ...] = ()
    part_edges: int = 0
    row: int | None = None
    overlap_m2: float | None = None

    @property
    def reason(self) -> str:
        return f"rule '{self.rule}': {self.text}"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "rule": self.rule,
            "severity": self.severity,
            "layer": self.layer,
            "id": self.id,
            "reason": self.reason,
        }
        if self.other is not None:
            out["other"] = self.other
        if self.overlap_m2 is not None:
            out["overlap_m2"] = self.overlap_m2
        if self.part_edges:
            out["parts"], out["part_edges"] = list(self.parts), self.part_edges
        if self.row is not None:
            out["row"] = self.row
        return out

    def field_error(self) -> FieldError:
        return FieldError("geometry", self.reason, self.row)


class Report(Protocol):
    """Where warnings go: :class:`gis.layers.EditReport`, :class:`gis.layer_io.ImportReport`."""

    warnings: list[str]
    violations: list[dict[str, Any]]


def settle(found: Sequence[Violation], report: Report | None, *, detail: str) -> None:
    """Refuse (raise) if any of ``found`` is a refusal, naming every one; else add the
    warnings to ``report``."""
    refusals = [v for v in found if v.severity == "refuse"]
    if refusals:
        listed = refusals[:MAX_LISTED]
        cut = f" (the first {MAX_LISTED} are listed)" if len(refusals) > MAX_LISTED else ""
        rules = ", ".join(dict.fromkeys(f"'{v.rule}'" for v in refusals))
        raise InvalidInput(
            f"{detail}: {len(refusals)} breach(es) of the topology rule(s) {rules}{cut}; "
            "nothing changed",
            errors=[v.field_error() for v in listed],
            extra={
                "rule": refusals[0].rule,
                "other": refusals[0].other,
                "violations": [v.to_json() for v in listed],
            },
        )
    if report is not None:
        for v in found[:MAX_LISTED]:
            report.warnings.append(v.reason)
            report.violations.append(v.to_json())
        if len(found) > MAX_LISTED:
            report.warnings.append(f"and {len(found) - MAX_LISTED} more topology warning(s)")


def inside_site_error(
    extent: SiteExtent, geometry: BaseGeometry, row: int | None = None
) -> FieldError | None:
    """The refusal of a feature outside the site (the ``inside-site`` rule), or None."""
    if extent.covers(geometry):
        return None
    return FieldError(
        "geometry", f"rule '{INSIDE_SITE}': geometry lies outside the site boundary", row
    )


# --- overlaps ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Zone:
    id: str
    kind: str
    name: str
    geom: BaseGeometry

    def same_as(self, other: Zone) -> bool:
        return self.kind == other.kind and bool(
            shapely.equals_exact(self.geom, other.geom, tolerance=0)
        )


def _zone_rows(session: Session, site_id: str, ids: Sequence[str] | None = None) -> dict[str, Zone]:
    stmt = select(ZoneRow.id, ZoneRow.kind, ZoneRow.name, ZoneRow.geom).where(
        ZoneRow.site_id == site_id
    )
    out: dict[str, Zone] = {}
    chunks = [None] if ids is None else [ids[i : i + 1000] for i in range(0, len(ids), 1000)]
    for chunk in chunks:
        query = stmt if chunk is None else stmt.where(ZoneRow.id.in_(chunk))
        out.update((r[0], Zone(*r)) for r in session.execute(query))
    return out


def _zones_near(db: Database, session: Session, site_id: str, geom: BaseGeometry) -> list[Zone]:
    """The zones whose geometry intersects ``geom``: PostGIS's GiST index, or SQLite's
    in-memory one (its revision token read in ``session``, so never stale)."""
    if db.is_postgis:
        probe = func.ST_GeomFromWKB(shapely.to_wkb(geom), 4326)
        stmt = select(ZoneRow.id, ZoneRow.kind, ZoneRow.name, ZoneRow.geom).where(
            ZoneRow.site_id == site_id, func.ST_Intersects(ZoneRow.geom, probe)
        )
        return [Zone(*r) for r in session.execute(stmt)]
    hits = db.spatial_indexes.get(session, site_id, "zones").intersecting(geom)
    return list(_zone_rows(session, site_id, hits).values()) if hits else []


def overlaps(rules: RuleSet, site: Site, subject: Zone, others: Iterable[Zone]) -> list[Violation]:
    """The rules ``subject`` breaks by overlapping ``others``."""
    out = []
    for other in others:
        rule = rules.pair_rule(subject.kind, other.kind)
        if other.id == subject.id or rule is None or not subject.geom.intersects(other.geom):
            continue
        area = site.crs.area_m2(shapely.intersection(subject.geom, other.geom))
        if area > rules.overlap_tolerance_m2:
            out.append(
                Violation(
                    rule,
                    "refuse",
                    "zones",
                    subject.id or None,
                    f"overlaps {other.kind} zone '{other.id}' ({other.name})",
                    other={
                        "layer": "zones",
                        "id": other.id,
                        "kind": other.kind,
                        "name": other.name,
                    },
                    overlap_m2=round(area, 1),
                )
            )
    return out


# --- checks -----------------------------------------------------------------------------------


class FeatureState(Protocol):
    """A feature's geometry and attributes (:class:`gis.layers.Feature`, ``ParsedFeature``)."""

    @property
    def geometry(self) -> BaseGeometry | None: ...

    @property
    def properties(self) -> dict[str, Any]: ...


def check_edit(
    db: Database,
    session: Session,
    site: Site,
    layer: str,
    *,
    feature_id: str | None,
    before: FeatureState | None,
    after: FeatureState | None,
    report: Report | None = None,
) -> None:
    """Check one change before it is written (in its transaction): refuse what it breaks
    (:class:`InvalidInput`), and add to ``report`` the warnings it causes."""
    if layer not in ("zones", "network"):
        return
    if _same(before, after):
        if layer == "network" and feature_id is not None and after is not None:
            _carry(db, session, site, feature_id, after)
        return
    rules = load_rules(session, site.id).rules
    found: list[Violation] = []
    if layer == "zones" and after is not None and after.geometry is not None:
        subject = _zone(feature_id, after)
        others = [
            z for z in _zones_near(db, session, site.id, after.geometry) if z.id != subject.id
        ]
        found = overlaps(rules, site, subject, others)
        if before is not None and before.geometry is not None and found:
            was = overlaps(rules, site, _zone(feature_id, before), others)
            seen = {(v.rule, (v.other or {}).get("id")) for v in was}
            found = [v for v in found if (v.rule, (v.other or {}).get("id")) not in seen]
    if rules.reachability != "off" and _moves_reachability(layer, before, after):
        found += _reachability(db, session, site, rules, layer, feature_id, before, after)
    what = f"the {layer} feature {feature_id!r}" if feature_id else f"the new {layer} feature"
    settle(found, report, detail=what)


def _zone(feature_id: str | None, state: FeatureState) -> Zone:
    assert state.geometry is not None
    props = state.properties
    return Zone(feature_id or "", str(props["kind"]), str(props["name"]), state.geometry)


def _same(before: FeatureState | None, after: FeatureState | None) -> bool:
    if before is None or after is None:
        return False
    a, b = before.geometry, after.geometry
    same_geometry = (a is None and b is None) or (
        a is not None and b is not None and bool(shapely.equals_exact(a, b, tolerance=0))
    )
    keys = ("kind", "foot", "door")
    return same_geometry and all(before.properties.get(k) == after.properties.get(k) for k in keys)


def _moves_reachability(
    layer: str, before: FeatureState | None, after: FeatureState | None
) -> bool:
    if layer == "network":
        return True
    return any(s is not None and s.properties.get("kind") == MUSTER for s in (before, after))


def _reachability(
    db: Database,
    session: Session,
    site: Site,
    rules: RuleSet,
    layer: str,
    feature_id: str | None,
    before: FeatureState | None,
    after: FeatureState | None,
) -> list[Violation]:
    cache = db.foot_networks
    # A network edit takes the network's revision row first (PostgreSQL: FOR UPDATE), so two
    # edits of one network run one after the other and each starts from the other's result.
    base = _lock_network(session, site.id) if layer == "network" else None
    network = cache.get(session, site.id)
    musters = read_musters(session, site.id)
    was = unreachable(network, musters, lambda: site.crs)
    now_network, now_musters = network, musters
    fid = feature_id or "(new)"
    if layer == "network":
        edge = Edge.of(fid, after.geometry, after.properties) if after is not None else None
        now_network = network.changed(fid, edge)
        if feature_id is not None and base is not None:
            cache.keep_on_commit(session, site.id, now_network)
    else:
        now_musters = [m for m in musters if m.id != feature_id]
        if after is not None and after.geometry is not None and after.properties["kind"] == MUSTER:
            now_musters.append(Muster.of(fid, after.properties.get("name"), after.geometry))
    now = unreachable(now_network, now_musters, lambda: site.crs)
    severity: Literal["refuse", "warn"] = "refuse" if rules.reachability == "refuse" else "warn"
    new = cut_off(now_network, [c for key, c in now.items() if key not in was])
    return [_cut_violation(c, severity) for c in new]


def _carry(
    db: Database, session: Session, site: Site, feature_id: str, after: FeatureState
) -> None:
    """An edit that leaves the network's shape as it was (a width, a name): the network kept
    for the site, if there is one, takes it over, so that the next edit need not read the
    network again."""
    if _lock_network(session, site.id) is None:
        return
    network = db.foot_networks.peek(session, site.id)
    if network is not None:
        edge = Edge.of(feature_id, after.geometry, after.properties)
        db.foot_networks.keep_on_commit(session, site.id, network.changed(feature_id, edge))


def _lock_network(session: Session, site_id: str) -> str | None:
    return session.scalar(
        select(LayerRevision.token)
        .where(LayerRevision.site_id == site_id, LayerRevision.layer == "network")
        .with_for_update()
    )


def _cut_violation(cut: CutOff, severity: Literal["refuse", "warn"]) -> Violation:
    return Violation(
        FOOT_REACHABLE,
        severity,
        cut.layer,
        cut.id,
        cut.text,
        parts=cut.parts,
        part_edges=cut.part_edges,
    )


@dataclass
class ImportCheck:
    """The rules around a bulk import: :meth:`begin` before its rows are applied, then
    :meth:`finish` once after all of them (not per row: an import can hold 100,000 edges)."""

    db: Database
    site: Site
    layer: str
    rules: RuleSet
    zones: dict[str, Zone] = field(default_factory=dict)
    network: FootNetwork | None = None
    musters: list[Muster] = field(default_factory=list)

    @classmethod
    def begin(cls, db: Database, session: Session, site: Site, layer: str) -> ImportCheck:
        check = cls(db, site, layer, load_rules(session, site.id).rules)
        if layer == "zones":
            check.zones = _zone_rows(session, site.id)
        if layer in ("zones", "network") and check.rules.reachability != "off":
            check.network = db.foot_networks.get(session, site.id)
            check.musters = read_musters(session, site.id)
        return check

    def finish(self, session: Session, rows: Mapping[str, int], report: Report) -> None:
        """Refuse the import (raise) listing every breach it makes, with its row; or add the
        warnings to ``report``."""
        if self.layer not in ("zones", "network"):
            return
        session.flush()
        found: list[Violation] = []
        if self.layer == "zones":
            found = _new_overlaps(
                self.rules, self.site, self.zones, _zone_rows(session, self.site.id)
            )
        if self.network is not None:
            network, musters = self.network, self.musters
            if self.layer == "network":
                # Read after this import wrote the network's revision row, which no other
                # writer of the network can now write before this one commits: what is read
                # is what the commit leaves.
                network = read_network(session, self.site.id)
                self.db.foot_networks.keep_on_commit(session, self.site.id, network)
            else:
                musters = read_musters(session, self.site.id)
            was = unreachable(self.network, self.musters, lambda: self.site.crs)
            now = unreachable(network, musters, lambda: self.site.crs)
            severity: Literal["refuse", "warn"] = (
                "refuse" if self.rules.reachability == "refuse" else "warn"
            )
            new = cut_off(network, [c for key, c in now.items() if key not in was])
            found += [_cut_violation(c, severity) for c in new]
        found = [
            replace(v, row=rows.get(v.id or "")) if v.layer == self.layer else v for v in found
        ]
        found.sort(key=lambda v: (v.row is None, v.row or 0, v.layer, v.id or ""))
        settle(found, report, detail="the import was refused")


def _new_overlaps(
    rules: RuleSet, site: Site, before: Mapping[str, Zone], after: Mapping[str, Zone]
) -> list[Violation]:
    """Overlaps of the zones changed between ``before`` and ``after`` that were not there
    before; each pair once."""
    listed = list(after.values())
    changed = [z for z in listed if z.id not in before or not z.same_as(before[z.id])]
    if not changed:
        return []
    tree = shapely.STRtree([z.geom for z in listed])
    which, hits = tree.query([z.geom for z in changed], predicate="intersects")
    near: dict[int, list[Zone]] = {}
    for k, i in zip(which.tolist(), hits.tolist(), strict=True):
        near.setdefault(k, []).append(listed[i])
    out: list[Violation] = []
    pairs: set[tuple[str, str]] = set()
    for k, subject in enumerate(changed):
        for v in overlaps(rules, site, subject, near.get(k, [])):
            other = str((v.other or {})["id"])
            pair = (min(subject.id, other), max(subject.id, other))
            if pair in pairs:
                continue
            pairs.add(pair)
            if subject.id in before and other in before:
                old = overlaps(rules, site, before[subject.id], [before[other]])
                if any(o.rule == v.rule for o in old):
                    continue
            out.append(v)
    return out


def check_site(
    db: Database, session: Session, site: Site, *, rules: RuleSet | None = None
) -> list[Violation]:
    """Every breach of the rules on the site as it stands (``rules``: those in force): overlaps
    (each pair once) and the doors and muster points cut off. ``inside-site`` is checked as
    features enter, and is not repeated here."""
    rules = rules or load_rules(session, site.id).rules
    found = _new_overlaps(rules, site, {}, _zone_rows(session, site.id))
    if rules.reachability != "off":
        network = db.foot_networks.get(session, site.id)
        severity: Literal["refuse", "warn"] = "refuse" if rules.reachability == "refuse" else "warn"
        cuts = unreachable(network, read_musters(session, site.id), lambda: site.crs)
        found += [_cut_violation(c, severity) for c in cut_off(network, list(cuts.values()))]
    return found
