"""A finished incident, drill or real, replayed on the wall for the debrief: its events in log
order, and its picture rebuilt at the moments the picture itself changed.

The wall plays the events through the code that shows them live (``frontend/replay.js``), at
1x, 10x or 60x. Most events change a picture the wall already holds (a step moves, a call-out
is answered); the zones, the people to move and their routes change only at activation, at a
change of response level and at a change of wind. For each of those the picture is rebuilt here
as it was then: :meth:`CommandPost.from_log` on the events up to that moment (the plan run
replayed, the zones recomputed from the logged request under the last logged wind), then
:func:`command.incidents.snapshot`, as ``closed_picture`` does for the final one. The call tree
comes as its changes, folded from the same events by :func:`command.notifications.fold_notices`.

Everything comes from the log alone and goes to the one caller: no subscriber of the site's
websocket sees anything of a replay. Positions are not in the log (they are too many), so the
routes and who must move are computed on the positions the server holds now.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from command import events as event_log
from command.incidents import snapshot
from command.notifications import fold_notices
from command.post import CommandPost
from command.review import in_log_order
from command.reviews import incident_events
from gis.errors import FieldError, IllegalTransition, NotFound

#: The events after which the picture is rebuilt, and why (the wall names the moment).
KEY_EVENTS = {
    "incident.activated": "activation",
    "plan.run.escalated": "level",
    "plan.run.deescalated": "level",
    "incident.wind_changed": "wind",
}
#: An order is logged as one block of events (an escalation: the level, its steps, its
#: call-outs): consecutive numbers within this long of the first. The picture follows the block.
BLOCK = timedelta(seconds=1)


def incident_replay(post: CommandPost, site_id: str, incident_id: str) -> dict[str, Any]:
    """The incident's events (``seq`` order), its pictures at the key moments and its call
    tree's changes. An active incident is refused (409), and so is a drill's until its drill
    has ended; an incident the log does not hold is :class:`NotFound`."""
    post.model(site_id)  # 404 for an unknown site
    post.check_available(site_id, incident_id)  # 503 while rebuilt, 409 quarantined
    running = post.incidents.get(incident_id)
    if running is not None and running.site_id == site_id:
        raise IllegalTransition(
            f"incident '{incident_id}' is active: it is replayed once it has stood down",
            errors=[FieldError("incident", "active")],
        )
    with post.db.read() as session:
        events = incident_events(session, site_id, incident_id)
    own = [e for e in events if e.incident_id == incident_id]
    start = next((i for i, e in enumerate(own) if e.type == "incident.activated"), None)
    if start is None:
        raise NotFound(
            f"no incident '{incident_id}' at site '{site_id}'",
            errors=[FieldError("incident", "unknown")],
        )
    if not any(e.type == "plan.run.stood_down" for e in own):
        raise IllegalTransition(
            f"incident '{incident_id}' has not stood down: it is replayed once it has",
            errors=[FieldError("incident", "not stood down")],
        )
    exercise = own[start].data.get("exercise")
    drill_id = str(exercise["drill_id"]) if isinstance(exercise, dict) else None
    if drill_id is not None and not any(e.type == "drill.ended" for e in own):
        raise IllegalTransition(
            f"incident '{incident_id}' is drill {drill_id}'s, which has not ended: it is "
            "replayed once the drill has",
            errors=[FieldError("incident", "its drill has not ended")],
        )
    return {
        "incident_id": incident_id,
        "site_id": site_id,
        "exercise": drill_id,
        "started_at": min(e.at for e in events).isoformat(),
        "ended_at": max(e.at for e in events).isoformat(),
        "events": [e.as_dict() for e in in_log_order(events)],
        "pictures": key_pictures(post, site_id, incident_id, own[start:]),
        "notices": notice_changes(own),
    }


def block_end(rows: Sequence[event_log.LoggedEvent], at: int) -> int:
    """The index of the last event of the block that ``rows[at]`` opens."""
    end = at
    while (
        end + 1 < len(rows)
        and rows[end + 1].seq == rows[end].seq + 1
        and rows[end + 1].at - rows[at].at <= BLOCK
    ):
        end += 1
    return end


def key_pictures(
    post: CommandPost, site_id: str, incident_id: str, rows: Sequence[event_log.LoggedEvent]
) -> list[dict[str, Any]]:
    """The picture after each key event's block, rebuilt from the events up to it (``rows``:
    the incident's own events from its activation on). Each is marked active, as the wall
    showed it then."""
    model = post.model(site_id)
    out: list[dict[str, Any]] = []
    done = -1
    for i, row in enumerate(rows):
        reason = KEY_EVENTS.get(row.type)
        if reason is None or i <= done:
            continue
        done = block_end(rows, i)
        incident = post.from_log(incident_id, rows[: done + 1])
        picture = snapshot(model, incident, seq=rows[done].seq)
        picture["incident"]["status"] = "active"
        out.append(
            {
                "seq": rows[done].seq,
                "at": rows[done].at.isoformat(),
                "reason": reason,
                "snapshot": picture,
            }
        )
    return out


def notice_changes(rows: Sequence[event_log.LoggedEvent]) -> list[dict[str, Any]]:
    """The call tree as it changed: after each block of ``notification.*`` events, the notices
    that differ from before it (each whole, as ``GET .../notices`` gives it)."""
    relevant = [
        e
        for e in rows
        if e.type.startswith("notification.")
        or e.type in ("incident.activated", "plan.run.activated")
    ]
    out: list[dict[str, Any]] = []
    before: dict[int, dict[str, Any]] = {}
    for i, event in enumerate(relevant):
        if not event.type.startswith("notification."):
            continue
        following = relevant[i + 1] if i + 1 < len(relevant) else None
        if following is not None and following.seq == event.seq + 1:
            continue  # folded at the end of its block
        folded = fold_notices(relevant[: i + 1])
        changed = [n for n in folded if before.get(n["seq"]) != n]
        before = {n["seq"]: n for n in folded}
        if changed:
            out.append({"seq": event.seq, "notices": changed})
    return out


def drill_events(post: CommandPost, site_id: str, incident_id: str | None) -> list[dict[str, Any]]:
    """A drill's own ``drill.*`` events so far (its injects, actions met and missed, notes,
    holds): what the controller's console shows after a reload."""
    if incident_id is None:
        return []
    with post.db.read() as session:
        events = incident_events(session, site_id, incident_id)
    return [e.as_dict() for e in events if e.type.startswith("drill.")]
