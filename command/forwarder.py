"""A site server's forwarder: its event log up to the group, the group's plans down (issue 18).

``rallypoint forward`` runs beside ``rallypoint serve`` at a site (same database, same
settings). Every ``forward_every_s`` it asks the group how far it holds the site's log
(``GET /api/replication/sites/{site}/log``), checks that the group's last event is the site's
own (same hash: otherwise the logs have forked, and it stops and says so), and pushes the
events after it in batches until the group has them all; then it takes the plan versions the
group approved for the site (``command.replication.take_plans``) and the group's edits of the
site's layers since the last it took (``command.layer_replication``). The group verifies every
batch before storing it (``command.replication.verify_batch``).

The site pushes, the group does not pull: a plant's server sits behind the plant's firewall
and calls out, the group needs no way in; the site knows when it has new events; and a site
that was cut off resumes on its own from what the group last acknowledged, which the group
keeps in its database (``replica_links``), so nothing is sent twice and nothing skipped
whichever end restarted.

What it did last is kept in the site's database (``forward_state``: acknowledged up to,
the last error, plan conflicts, the group's layer changes taken and their conflicts); an
error is logged at ERROR once, and again when it changes.
"""

from __future__ import annotations

import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import select

from command import events as event_log
from command import layer_replication, replication
from gis.storage.db import Database
from gis.storage.tables import ForwardStateRow
from plans.clock import Clock

log = logging.getLogger(__name__)

BATCH = 2_000
#: While catching up, the acknowledgement is kept at the site every this many batches (and at
#: the end): the group's own record is the one that counts.
ACK_EVERY = 10
TIMEOUT_S = 60.0


class ForwardError(Exception):
    """The forwarding cannot go on as it is: the group refused a batch, the logs forked, or
    the group cannot be reached. ``refused``: the group answered, and retrying the same will
    not help (it needs a person)."""

    def __init__(self, message: str, *, refused: bool) -> None:
        super().__init__(message)
        self.refused = refused


@dataclass
class Round:
    """What one :meth:`Forwarder.catch_up` did: events the group stored, batches sent, and
    where the group's copy ends."""

    stored: int = 0
    batches: int = 0
    acked_seq: int = 0


class Forwarder:
    def __init__(
        self,
        db: Database,
        site_id: str,
        group_url: str,
        token: str,
        clock: Clock,
        *,
        batch: int = BATCH,
        client: httpx.Client | None = None,
    ) -> None:
        self.db = db
        self.site_id = site_id
        self.group_url = group_url.rstrip("/")
        self.clock = clock
        self.batch = min(batch, replication.MAX_BATCH)
        self.client = client or httpx.Client(timeout=TIMEOUT_S)
        self.client.headers["Authorization"] = f"Bearer {token}"
        self._last_error: str | None = None

    @property
    def _log_url(self) -> str:
        return f"{self.group_url}/api/replication/sites/{self.site_id}/log"

    def close(self) -> None:
        self.client.close()

    # -- one pass --------------------------------------------------------------------------------

    def acked(self) -> tuple[int, str]:
        """How far the group holds the site's log (number and hash of its last event)."""
        answer = self._call("GET", self._log_url)
        body = answer.json()
        return int(body["acked_seq"]), str(body["acked_hash"])

    def catch_up(self) -> Round:
        """Push every event the group does not hold yet, batch after batch; one empty push at
        least (the group hears how far the site's log reaches, and that the link is up)."""
        seq, digest = self.acked()
        with self.db.read() as session:
            mine = replication.hash_at(session, self.site_id, seq)
        if mine != digest:
            has = f"the site has {mine[:16]}…" if mine else "the site has no such event"
            raise self._failed(
                f"the group holds event {seq} with hash {digest[:16]}…, {has}: the logs have "
                "forked; forwarding stopped (run 'rallypoint audit verify' on both)",
                refused=True,
            )
        done = Round(acked_seq=seq)
        # The next batch is read and encoded while the group stores this one (a thread).
        with ThreadPoolExecutor(1, thread_name_prefix="forward-read") as reader:
            after, (count, last, body) = seq, self._batch(seq)
            while True:
                upcoming = reader.submit(self._batch, last) if count == self.batch else None
                answer = self._call(
                    "POST",
                    self._log_url,
                    content=body,
                    headers={"Content-Type": "application/json"},
                )
                ack = answer.json()
                done.stored += int(ack["stored"])
                done.batches += 1
                done.acked_seq = int(ack["acked_seq"])
                if upcoming is None:
                    self._acked(done.acked_seq)
                    return done
                if done.batches % ACK_EVERY == 0:
                    self._acked(done.acked_seq)
                after, (count, last, body) = last, upcoming.result()
                if done.acked_seq != after:  # not what was sent: read again from the ack
                    count, last, body = self._batch(done.acked_seq)

    def _batch(self, after: int) -> tuple[int, int, bytes]:
        """The events after ``after`` as one request body: how many, the last one's number,
        and the body (with how far the site's log reaches)."""
        with self.db.read() as session:
            out = replication.outgoing(session, self.site_id, after, self.batch)
            head = event_log.heads(session, self.site_id).get(self.site_id)
        site_seq = head.seq if head is not None and head.seq is not None else None
        body = json.dumps({"events": out, "site_seq": site_seq}, ensure_ascii=False).encode()
        return len(out), out[-1]["seq"] if out else after, body

    def pull_plans(self) -> replication.PlansTaken:
        """Take the plan versions the group approved for the site that the site does not hold;
        conflicts are kept (``forward_state.plan_conflicts``) and logged."""
        answer = self._call("GET", f"{self.group_url}/api/replication/sites/{self.site_id}/plans")
        offered = answer.json()["plans"]
        now = self.clock.now()
        with self.db.write() as session:
            taken = replication.take_plans(
                session, self.site_id, offered, owner=self.group_url, now=now
            )
            state = replication.forward_state(session, self.site_id, self.group_url)
            state.plans_at = now
            known = {(c["plan_id"], c["version"], c["reason"]) for c in state.plan_conflicts}
            fresh = [
                c for c in taken.conflicts if (c["plan_id"], c["version"], c["reason"]) not in known
            ]
            if fresh:
                state.plan_conflicts = [*state.plan_conflicts, *fresh]
        for plan_id, version in taken.taken:
            log.info(
                "site %s: took plan %s version %d from the group", self.site_id, plan_id, version
            )
        for c in fresh:
            log.error(
                "PLAN CONFLICT at site %s: the group's plan %s version %d was not taken: %s",
                self.site_id,
                c["plan_id"],
                c["version"],
                c["reason"],
            )
        return taken

    def pull_layers(self, *, page: int = 200) -> layer_replication.LayersTaken:
        """Take the group's changes of the site's layers after the last one taken, page after
        page, each once and in order; conflicts are kept (``forward_state.layer_conflicts``)
        and logged."""
        taken = layer_replication.LayersTaken()
        url = f"{self.group_url}/api/replication/sites/{self.site_id}/layers/changes"
        while True:
            with self.db.read() as session:
                after = layer_replication.cursor(session, self.site_id)
            answer = self._call("GET", url, params={"after": after, "limit": page}).json()
            before = len(taken.conflicts)
            layer_replication.take_changes(
                self.db,
                self.site_id,
                answer,
                group=self.group_url,
                now=self.clock.now(),
                into=taken,
            )
            for c in taken.conflicts[before:]:
                log.error(
                    "LAYER CONFLICT at site %s: %s", self.site_id, layer_replication.describe(c)
                )
            if answer["complete"] or not answer["changes"]:
                break
        if taken.applied:
            log.info(
                "site %s: took %d layer change(s) from the group",
                self.site_id,
                len(taken.applied),
            )
        return taken

    def once(self, *, plans: bool = True, layers: bool = True) -> Round:
        """One pass: the log up, then the plans and the layers down. Raises
        :class:`ForwardError`."""
        done = self.catch_up()
        if plans:
            self.pull_plans()
        if layers:
            self.pull_layers()
        if self._last_error is not None:
            log.warning("site %s: forwarding to %s works again", self.site_id, self.group_url)
            self._last_error = None
        return done

    def run(self, every_s: float, stop: threading.Event, *, plans_every: int = 5) -> None:
        """Forward every ``every_s`` until ``stop`` is set; errors are kept and logged, and
        the next pass tries again."""
        passes = 0
        while not stop.is_set():
            try:
                self.once(plans=passes % plans_every == 0)
            except ForwardError:
                pass  # kept and logged by _failed
            except Exception:
                log.exception("site %s: forwarding failed; tried again", self.site_id)
            passes += 1
            stop.wait(every_s)

    # -- the wire ------------------------------------------------------------------------------

    def _call(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            answer = self.client.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise self._failed(
                f"the group at {self.group_url} is unreachable: {exc}", refused=False
            ) from exc
        if answer.status_code >= 400:
            try:
                problem = answer.json()
                detail = f"{problem.get('title')}: {problem.get('detail')}"
            except ValueError:
                detail = answer.text[:300]
            raise self._failed(
                f"the group answered {answer.status_code} to {method} {url}: {detail}",
                refused=answer.status_code in (403, 404, 409, 422),
            )
        return answer

    def _failed(self, message: str, *, refused: bool) -> ForwardError:
        if message != self._last_error:
            if refused:
                log.error("FORWARDING REFUSED, site %s: %s", self.site_id, message)
            else:
                log.warning("site %s: %s; retrying", self.site_id, message)
            self._last_error = message
        try:
            with self.db.write() as session:
                state = replication.forward_state(session, self.site_id, self.group_url)
                state.error, state.error_at = message[:2000], self.clock.now()
        except Exception:
            log.exception("could not record the forwarding error")
        return ForwardError(message, refused=refused)

    def _acked(self, seq: int) -> None:
        with self.db.write() as session:
            state = replication.forward_state(session, self.site_id, self.group_url)
            state.acked_seq, state.acked_at = seq, self.clock.now()
            state.error = None


def status(db: Database, site_id: str) -> ForwardStateRow | None:
    with db.read() as session:
        return session.scalar(select(ForwardStateRow).where(ForwardStateRow.site_id == site_id))
