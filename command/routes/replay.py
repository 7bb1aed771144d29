"""Replaying a finished incident on the wall, and a drill's own events for its controller's
console.

The replay is for every reader of the site (the debrief): the events and the pictures rebuilt
from the log (``command.replay``), answered to the caller alone. A drill's events, before it
ends, are for drill controllers only, checked before anything is looked up, as on every route
of ``command.routes.drills``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response

from command.auth import Principal, Role
from command.deps import ReaderDep, requires
from command.drills import DrillDesk
from command.hub import encode_bytes
from command.post import CommandPost
from command.replay import drill_events, incident_replay

router = APIRouter(prefix="/api/sites/{site_id}", tags=["replay"])

ControllerDep = Annotated[Principal, Depends(requires(Role.DRILL_CONTROLLER, walls="never"))]
Id = Annotated[str, Path(max_length=64)]


def get_post(request: Request) -> CommandPost:
    post: CommandPost = request.app.state.post
    return post


def get_desk(request: Request) -> DrillDesk:
    desk: DrillDesk = request.app.state.drills
    return desk


PostDep = Annotated[CommandPost, Depends(get_post)]
DeskDep = Annotated[DrillDesk, Depends(get_desk)]


@router.get(
    "/incidents/{incident_id}/replay",
    summary="A finished incident's events and its pictures at the key moments, to replay",
)
def replay(post: PostDep, _: ReaderDep, site_id: str, incident_id: Id) -> Response:
    """The incident's events in ``seq`` order (a drill's: those of its drill too), the picture
    rebuilt after its activation, each change of level and each change of wind
    (``pictures``: ``seq``, ``reason``, ``snapshot``), and the call tree's changes
    (``notices``). 409 while the incident is active, and for a drill's incident until its
    drill has ended."""
    # Several pictures of every route: encoded once, fast (command.hub.encode_bytes).
    return Response(
        encode_bytes(incident_replay(post, site_id, incident_id)), media_type="application/json"
    )


@router.get(
    "/drills/{drill_id}/events",
    summary="A drill's own events so far: injects, actions met and missed, notes, holds",
)
def drill_log(desk: DeskDep, _: ControllerDep, site_id: str, drill_id: Id) -> dict[str, Any]:
    """For the controller's console after a reload: what the websocket said since the start."""
    drill = desk.drill(site_id, drill_id)  # 404 for an unknown drill, after the role check
    # While it runs, its controller material is in its record, not yet in the log.
    found = [
        *drill_events(desk.post, site_id, drill["incident_id"]),
        *desk.record(site_id, drill_id),
    ]
    return {"events": sorted(found, key=lambda e: str(e["at"]))}
