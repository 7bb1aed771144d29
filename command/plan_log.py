"""The plan workflow in the site's event log.

Every transition of a plan version (``plans.workflow``) is appended as
``plan_version.saved``, ``.submitted``, ``.approved``, ``.returned`` or ``.withdrawn``, in the
same transaction as the change it records: hash-chained with the rest of the log and signed
into its checkpoints, so an approval is as tamper-evident as an activation. The event names the
version, its revision and ETag, its state before and after, the SHA-256 of the plan it held,
the change note, reason or comment, and where it came from (``via``: api, cli, plan load); an
approval also names the version it supersedes. The event's number is kept in the version's
history, so each can be found from the other. The events belong to no incident.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from command import events as event_log
from command.replication import owner_of
from plans.workflow import Transition

EVENT_PREFIX = "plan_version."


class PlanLog:
    """A ``plans.store.Recorder`` for one transaction: logs each transition, keeps what it
    logged for publishing once the transaction is committed."""

    def __init__(self, session: Session, site_id: str) -> None:
        self.session = session
        self.site_id = site_id
        self.logged: list[event_log.LoggedEvent] = []

    def __call__(self, transition: Transition) -> int | None:
        if owner_of(self.session, self.site_id) is not None:
            # The site's log is its own server's (replicated here): the group's approval is
            # logged at the site when the site takes the version (command.replication).
            return None
        event = event_log.append(
            self.session,
            self.site_id,
            EVENT_PREFIX + transition.action,
            actor=transition.actor,
            data=transition.event_data(),
            at=transition.at,
            now=transition.at,
        )
        self.logged.append(event)
        return event.seq
