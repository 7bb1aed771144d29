"""A site's topology rules: read them (defaults and the site's own), tighten them, and list
where the site breaks them now (``gis.topology``)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Body, Response

from command.deps import DatabaseDep, IfMatchDep, PlannerDep, ReaderDep
from gis import topology
from gis.errors import FieldError, VersionRequired
from gis.sites import load_site

router = APIRouter(prefix="/api/sites/{site_id}/topology-rules", tags=["topology"])

RULES_EXAMPLE = {
    "rules": {
        topology.MUSTER_CLEAR: {"kinds": ["process_unit", "tank_farm", "storage", "loading_bay"]},
        topology.SAME_KIND: {"allowed": ["road"]},
        topology.FORBIDDEN: {"pairs": [["office", "tank_farm"]]},
        topology.FOOT_REACHABLE: {"severity": "refuse"},
    },
    "overlap_tolerance_m2": 0.5,
}


def _answer(body: dict[str, Any], version: int) -> Response:
    return Response(
        json.dumps(body, ensure_ascii=False),
        media_type="application/json",
        headers={"ETag": f'"{version}"'},
    )


@router.get(
    "",
    summary="The topology rules in force: the defaults and what the site changed (ETag: version)",
    response_class=Response,
    responses={200: {"content": {"application/json": {}}}},
)
def get_rules(reader: ReaderDep, db: DatabaseDep, site_id: str) -> Response:
    with db.read() as session:
        load_site(session, site_id)
        rules = topology.load_rules(session, site_id)
    return _answer(rules.to_json(), rules.version)


@router.put(
    "",
    summary="Set the site's own topology rules (needs If-Match)",
    description="The body names only the rules the site changes; the others keep their "
    "defaults (version 1 is the defaults). Tightening is free; a rule set looser than the "
    "defaults is refused unless it carries an `allowance`, the reason, which is recorded. The "
    "answer lists, in `violations`, where the site as it stands breaks the new rules.",
    response_class=Response,
    responses={200: {"content": {"application/json": {}}}},
)
def put_rules(
    planner: PlannerDep,
    db: DatabaseDep,
    if_match: IfMatchDep,
    site_id: str,
    body: Annotated[dict[str, Any], Body(openapi_examples={"tighter": {"value": RULES_EXAMPLE}})],
) -> Response:
    if if_match is None:
        raise VersionRequired(
            'say which version of the rules you are changing (If-Match header, e.g. "1")',
            errors=[FieldError("If-Match", "required")],
        )
    with db.write() as session:
        site = load_site(session, site_id)
        rules = topology.save_rules(
            session, site_id, body, actor=planner.username, if_match=if_match
        )
        found = topology.check_site(db, session, site, rules=rules.rules)
    answer = rules.to_json()
    answer["violations"] = [v.to_json() for v in found[: topology.MAX_LISTED]]
    return _answer(answer, rules.version)


@router.get(
    "/violations",
    summary="Where the site as it stands breaks its topology rules",
    description="Every overlap the rules forbid (each pair once) and every door and muster "
    "point cut off from the foot network, with the parts named.",
)
def get_violations(reader: ReaderDep, db: DatabaseDep, site_id: str) -> dict[str, Any]:
    with db.read() as session:
        site = load_site(session, site_id)
        found = topology.check_site(db, session, site)
    return {
        "site": site_id,
        "count": len(found),
        "violations": [v.to_json() for v in found[: topology.MAX_LISTED]],
    }
