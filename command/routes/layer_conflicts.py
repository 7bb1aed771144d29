"""A site's layer conflicts with the group (issue 18, ``command.layer_replication``).

The group's edit of a feature the site had also changed is kept as a conflict at the site
(``forward_state.layer_conflicts``) when the two do not merge cleanly. The site's planners
and commanders list them here; a planner settles one by taking the group's feature (applied
through the site's layer write path, on the site's current version) or keeping the site's.
A settled conflict stays, with who settled it, when and how (traceability).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query

from command import layer_replication
from command.auth import Principal, Role
from command.deps import DatabaseDep, IfMatchDep, PlannerDep, requires
from command.routes.incidents import PostDep
from gis.layers import EditReport

router = APIRouter(prefix="/api/sites/{site_id}/layer-conflicts", tags=["layers"])

#: Reading the conflicts: the site's planners and commanders.
ConflictReaderDep = Annotated[Principal, Depends(requires(Role.PLANNER, Role.COMMANDER))]

RESOLVE_EXAMPLE = {"take": "group", "note": "the group's new capacity is the surveyed one"}


@router.get("", summary="The site's layer conflicts with the group (open ones by default)")
def list_conflicts(
    _: ConflictReaderDep,
    db: DatabaseDep,
    site_id: str,
    resolved: Annotated[
        bool, Query(description="Also the resolved ones, with who resolved them, when and how")
    ] = False,
) -> dict[str, Any]:
    kept = layer_replication.site_conflicts(db, site_id)
    shown = [layer_replication.listed(c) for c in kept if resolved or layer_replication.is_open(c)]
    return {
        "site": site_id,
        "open": sum(1 for c in kept if layer_replication.is_open(c)),
        "resolved": sum(1 for c in kept if not layer_replication.is_open(c)),
        "conflicts": shown,
    }


@router.post(
    "/{conflict_id}/resolve",
    summary="Settle a layer conflict: take the group's feature or keep the site's",
    description="`take: group` applies the group's feature through the site's layer write "
    "path (validation, topology rules, change log) as the planner, on the version given as "
    "`If-Match`, else the site's version the conflict was kept against: a feature changed "
    "here since answers 412 as the layers API does. `take: site` keeps the site's feature. "
    "The conflict is closed either way, kept with who, when and the choice. 404: no such "
    "conflict; 409: resolved already (by whom, when).",
)
def resolve_conflict(
    planner: PlannerDep,
    db: DatabaseDep,
    post: PostDep,
    if_match: IfMatchDep,
    site_id: str,
    conflict_id: str,
    body: Annotated[dict[str, Any], Body(examples=[RESOLVE_EXAMPLE])],
) -> dict[str, Any]:
    report = EditReport()
    answer = layer_replication.resolve(
        db,
        site_id,
        conflict_id,
        take=body.get("take"),
        note=body.get("note"),
        actor=planner.username,
        now=post.clock.now(),
        if_match=if_match,
        report=report,
    )
    if report.violations:
        answer["warnings"] = [v["reason"] for v in report.violations]
        answer["violations"] = report.violations
    if answer["resolved"]["take"] == "group":
        warning = post.layer_changed(site_id)  # replanned on it now
        if warning is not None:
            answer.setdefault("warnings", []).append(warning["warning"])
    return answer
