"""Layer changes no route announced reach the walls: database edits at once, the rest within
a second.

Every layer write through the server calls ``CommandPost.layer_changed(site)`` itself (the site
model is rebuilt, the incidents planned again, ``layer.changed`` sent). Two kinds of change do
not pass through it, and :class:`LayerFollower` calls it for them, in a worker thread, off the
event loop; wake-ups for a site that is being followed meanwhile fold into one more call:

- **edits made in the PostGIS tables** (QGIS, psql): the tables' triggers (migration 0013) log
  them and send ``pg_notify`` on :data:`CHANNEL` with ``{"site", "layer"}``, a wake-up only (a
  notification carries at most 8,000 bytes; the changes are read from the ``changes`` table).
  :class:`LayerListener` holds a psycopg connection that LISTENs on it. A dropped connection is
  opened again, backing off from half a second to 30 s; once listening again, the sites with
  changes not yet sent are followed (edits made while nobody listened);
- **another process's writes** (``rallypoint layer import`` while the server runs, on either
  backend): :meth:`LayerFollower.sweep_forever` looks once a second for changes not yet sent.
"""

from __future__ import annotations

import asyncio
import json
import logging

from starlette.concurrency import run_in_threadpool

from command.pg_session import CHECK_EVERY_S, RETRY_MAX_S, Listener
from command.post import CommandPost

log = logging.getLogger(__name__)

#: The triggers' channel (gis/migrations/versions/0013_layer_triggers.py).
CHANNEL = "rallypoint_layers"
SWEEP_EVERY_S = 1.0
APPLICATION_NAME = "rallypoint layer listener"


class LayerFollower:
    """Calls ``post.layer_changed(site)`` for each site woken, one call per site at a time.

    The changes go to the walls first, on their own: a site's model may still be rebuilding
    and its incidents planning again after an edit a moment ago (seconds on a large site),
    and the next edit's ``layer.changed`` does not wait for that."""

    def __init__(self, post: CommandPost) -> None:
        self.post = post
        self._running: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()
        self._sending: asyncio.Task[None] | None = None
        self._send_again = False
        self._closed = False

    def wake(self, site_id: str) -> None:
        """Follow the site's changes now, or once more after the following under way."""
        if self._closed:
            return
        self.post.models.forget(site_id)  # its layer tokens are read again, not kept
        self._send()
        if site_id in self._running:
            self._again.add(site_id)
            return
        self._running[site_id] = asyncio.create_task(self._follow(site_id))

    def _send(self) -> None:
        if self._sending is not None:
            self._send_again = True
            return
        self._sending = asyncio.create_task(self._send_changes())

    async def _send_changes(self) -> None:
        try:
            while True:
                self._send_again = False
                try:
                    await run_in_threadpool(self.post.layer_feed.follow)
                except Exception:  # layer_changed, following, tries again
                    log.exception("layer changes could not be sent to the walls")
                if not self._send_again or self._closed:
                    return
        finally:
            self._sending = None

    async def sweep(self) -> None:
        """Wake every site with changes not yet sent to the walls."""
        for site_id in await run_in_threadpool(self.post.layer_feed.pending_sites):
            self.wake(site_id)

    async def sweep_forever(self, every_s: float = SWEEP_EVERY_S) -> None:
        try:
            while True:
                await asyncio.sleep(every_s)
                try:
                    await self.sweep()
                except Exception:
                    log.exception("looking for layer changes failed; the next second retries")
        finally:
            await self.close()

    async def close(self) -> None:
        """Let the work under way finish, and start no more. Cancelling would not stop it: a
        call handed to a worker thread runs on after its awaiting task is cancelled, and it
        would go on using the database after the server (a test's, its connection) is gone."""
        self._closed = True
        tasks = [*self._running.values(), *([self._sending] if self._sending else [])]
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _follow(self, site_id: str) -> None:
        try:
            while True:
                self._again.discard(site_id)
                try:
                    await run_in_threadpool(self.post.layer_changed, site_id)
                except Exception:  # the next wake-up or sweep tries again
                    log.exception("site %s: a layer change could not be followed", site_id)
                if site_id not in self._again or self._closed:
                    return
        finally:
            self._running.pop(site_id, None)


class LayerListener(Listener):
    """LISTEN for the triggers' wake-ups and hand each site to the follower (see the module)."""

    def __init__(
        self,
        follower: LayerFollower,
        url: str,
        *,
        retry_max_s: float = RETRY_MAX_S,
        check_every_s: float = CHECK_EVERY_S,
    ) -> None:
        super().__init__(
            url,
            APPLICATION_NAME,
            (CHANNEL,),
            retry_max_s=retry_max_s,
            check_every_s=check_every_s,
        )
        self.follower = follower

    async def run(self) -> None:
        try:
            await super().run()
        finally:
            await self.follower.close()

    async def listening_again(self) -> None:
        await self.follower.sweep()  # edits made while nobody listened

    def heard(self, channel: str, payload: str) -> None:
        site_id = _site_of(payload)
        if site_id is not None:
            self.follower.wake(site_id)


def _site_of(payload: str) -> str | None:
    try:
        site = json.loads(payload).get("site")
    except (ValueError, AttributeError):
        site = None
    if not isinstance(site, str):
        log.warning("a wake-up on %s without a site: %r", CHANNEL, payload[:200])
        return None
    return site
