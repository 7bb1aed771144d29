"""The group's end of a site's log replication (issue 18, ``command.replication``).

A site server's forwarder (``rallypoint forward``) calls these with a replicator token of its
site (``rallypoint replica add SITE`` at the group): it asks how far the group holds the log,
pushes the events after that in batches, and takes the plan versions the group approved for
the site and the group's changes of the site's layers (``command.layer_replication``). A
refused batch is 409 (a gap, a fork) or 422 (reordered, forged, malformed) problem+json
naming the event and the reason; nothing of it is stored, and the refusal is kept on the link
(the group wall shows it) and logged at ERROR.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query

from command import layer_replication, replication
from command.auth import HUMAN_ROLES, Principal, Role
from command.deps import DatabaseDep, requires
from command.routes.incidents import PostDep
from gis.errors import FieldError, InvalidInput, OwnedElsewhere

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/replication", tags=["replication"])

ReplicatorDep = Annotated[Principal, Depends(requires(Role.REPLICATOR, walls="never"))]
LinkReaderDep = Annotated[Principal, Depends(requires(Role.REPLICATOR, *HUMAN_ROLES))]


@router.get(
    "/sites/{site_id}/log",
    summary="How far the group holds a replicated site's log, and how its link stands",
)
def get_log(site_id: str, db: DatabaseDep, post: PostDep, _: LinkReaderDep) -> dict[str, Any]:
    with db.read() as session:
        row = replication.link(session, site_id)
        return {
            "site": site_id,
            "acked_hash": row.acked_hash,
            **replication.link_state(row, post.clock.now()),
        }


@router.post(
    "/sites/{site_id}/log",
    summary="Store a batch of the site's events, verified (the site's forwarder)",
)
def post_log(
    site_id: str,
    db: DatabaseDep,
    post: PostDep,
    principal: ReplicatorDep,
    payload: Annotated[dict[str, Any], Body()],
) -> dict[str, Any]:
    events = payload.get("events")
    site_seq = payload.get("site_seq")
    if not isinstance(events, list):
        raise InvalidInput("events must be a list", errors=[FieldError("events", "a list")])
    if site_seq is not None and (not isinstance(site_seq, int) or isinstance(site_seq, bool)):
        raise InvalidInput("site_seq must be a number", errors=[FieldError("site_seq", "int")])
    now = post.clock.now()
    try:
        with db.write() as session:
            ack = replication.accept(session, site_id, events, site_seq=site_seq, now=now)
    except (replication.Refused, OwnedElsewhere) as refusal:
        log.error(
            "REPLICATION REFUSED: a batch of site %s from %s: %s (%s); nothing stored",
            site_id,
            principal.username,
            refusal.detail,
            refusal.slug,
        )
        with db.write() as session:
            replication.record_refusal(session, site_id, refusal, now)
        raise
    if ack.stored:
        log.info("site %s: %d events replicated, up to %d", site_id, ack.stored, ack.seq)
    return ack.as_dict()


@router.get(
    "/sites/{site_id}/plans",
    summary="The plan versions the group approved for the site, for it to take",
)
def get_plans(site_id: str, db: DatabaseDep, _: ReplicatorDep) -> dict[str, Any]:
    with db.read() as session:
        replication.link(session, site_id)
        return {"site": site_id, "plans": replication.offered_plans(session, site_id)}


@router.get(
    "/sites/{site_id}/layers/changes",
    summary="The group's changes of the site's layers after the site's cursor, for it to take",
)
def get_layer_changes(
    site_id: str,
    db: DatabaseDep,
    _: ReplicatorDep,
    after: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=layer_replication.MAX_PAGE)] = 200,
) -> dict[str, Any]:
    return layer_replication.offered_changes(db, site_id, after, limit)
