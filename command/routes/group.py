"""The group overview: every site the caller sees, with its active incidents and its alarms.

The group wall (``/static/group.html``, ``frontend/group.js``) polls it every 2 seconds. It is
read from the command post's memory (the incidents, the sensors' and the people's alarms, as
the walls are sent them) and one small query (the sites' names and log heads), never from the
site models: twenty sites cost little more than one.

Which sites: those the caller reads (:meth:`command.auth.Principal.sees`). A person granted a
role on one site reads every site of the deployment as a viewer (the group rule,
``docs/group.md``); a wall token sees its own site only; a device token is refused.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy import select

from command.deps import AnyReaderDep, DatabaseDep
from command.post import CommandPost
from command.replication import CUT_AFTER_S, link_states
from command.routes.incidents import PostDep
from command.sensors import TIERS
from gis.storage.db import Database
from gis.storage.tables import EventHeadRow, SiteRow

router = APIRouter(prefix="/api/group", tags=["group"])

#: The people's alarms the group wall counts: someone needs help now. A lost signal is a
#: matter for the site's own wall.
PERSON_ALARMS = ("sos", "man_down")


def sites_and_heads(db: Database) -> list[tuple[str, str, int]]:
    """Every site as (id, name, last event number: its log head, 0 before the first event),
    by id, in one query."""
    query = (
        select(SiteRow.id, SiteRow.name, EventHeadRow.seq)
        .outerjoin(EventHeadRow, EventHeadRow.site_id == SiteRow.id)
        .order_by(SiteRow.id)
    )
    with db.read() as session:
        return [(i, n, int(seq or 0)) for i, n, seq in session.execute(query)]


def overview(post: CommandPost, sites: list[tuple[str, str, int]]) -> dict[str, Any]:
    """The overview of ``sites`` (id, name, last event number) from the post's memory: each
    site's incidents (active or standing down, oldest first), its unacknowledged sensor alarms
    (how many, the highest tier) and its people waiting for help, and a ``status`` a tile is
    coloured by: ``incident`` when an incident is active, ``alarm`` when an alarm waits, else
    ``calm``."""
    wanted = {site_id for site_id, _, _ in sites}
    incidents: dict[str, list[dict[str, Any]]] = {site_id: [] for site_id in wanted}
    # The post changes these under its lock (events applied, incidents activated): read them
    # under it too, briefly, and shape the answer outside.
    with post._lock:
        for incident in post.incidents.values():
            if incident.site_id in wanted:
                incidents[incident.site_id].append(
                    {
                        "id": incident.id,
                        "plan_id": incident.request.plan_id,
                        "level": incident.run.state.level.value,
                        "activated_at": incident.activated_at.isoformat(),
                        "status": "active" if incident.run.active else "stood_down",
                        "exercise": incident.exercise is not None,
                    }
                )
        tiers = {
            site_id: [
                a.tier
                for a in post.alarms.sites.get(site_id, {}).values()
                if a.acknowledged is None
            ]
            for site_id in wanted
        }
        people = {
            site_id: [
                kind
                for (_, kind), alarm in post.wristbands.alarms.sites.get(site_id, {}).items()
                if alarm.acknowledged is None and kind in PERSON_ALARMS
            ]
            for site_id in wanted
        }
        recovery = None if post.recovery.finished else post.recovery.as_dict()
    out = []
    for site_id, name, seq in sites:
        listed = sorted(incidents[site_id], key=lambda i: (i["activated_at"], i["id"]))
        waiting = tiers[site_id]
        highest = max(waiting, key=TIERS.index) if waiting else None
        helpless = people[site_id]
        active = any(i["status"] == "active" for i in listed)
        status = "incident" if active else "alarm" if waiting or helpless else "calm"
        out.append(
            {
                "id": site_id,
                "name": name,
                "status": status,
                "incidents": listed,
                "alarms": {"unacknowledged": len(waiting), "highest_tier": highest},
                "person_alarms": {kind: helpless.count(kind) for kind in PERSON_ALARMS},
                "seq": seq,
            }
        )
    answer: dict[str, Any] = {"sites": out}
    if recovery is not None:  # incidents still being rebuilt after a restart are not listed yet
        answer["recovery"] = recovery
    return answer


@router.get(
    "/overview",
    summary="Every site you read: its active incidents, unacknowledged alarms and people's "
    "SOS and man-down alarms (the group wall)",
)
def get_overview(
    post: PostDep, db: DatabaseDep, reader: AnyReaderDep, request: Request
) -> dict[str, Any]:
    answer = overview(post, [site for site in sites_and_heads(db) if reader.sees(site[0])])
    # Sites whose log is replicated here from their own server: how their link stands.
    cut_after = getattr(request.app.state, "settings", None)
    with db.read() as session:
        links = link_states(
            session,
            post.clock.now(),
            cut_after.replication_cut_after_s if cut_after is not None else CUT_AFTER_S,
        )
    for site in answer["sites"]:
        if site["id"] in links:
            site["link"] = links[site["id"]]
    return answer
