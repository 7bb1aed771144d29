"""How uvicorn serves the app: the timeouts that uvicorn does not set by itself.

uvicorn has a keep-alive timeout (an idle connection between two requests is closed after a
few seconds) but none for a request's headers: a client that connects and sends nothing, or
one header line a minute, holds its connection for ever, and a few hundred such clients use up
the server's file descriptors (slowloris). :class:`HeaderDeadline` closes a connection whose
headers are not complete ``RALLYPOINT_HEADER_TIMEOUT_S`` after it opened or after its last
answer. The body is timed by ``command.middleware.BodyTimeout`` (408). Behind nginx, its
``client_header_timeout`` and ``client_body_timeout`` do the same in front (docs/security.md).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from command.settings import Settings
from command.ws_deflate import SharedDeflateProtocol

log = logging.getLogger(__name__)

#: Seconds an idle kept-alive connection stays open between two requests (uvicorn's default).
KEEP_ALIVE_S = 5


class HeaderDeadline(HttpToolsProtocol):
    """uvicorn's HTTP protocol (httptools), with a deadline for each request's headers.

    The deadline runs from the connection's start, and again from each answer on a kept-alive
    connection, until the headers are complete; data that trickles in does not move it.
    """

    header_timeout_s: float = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._deadline: asyncio.TimerHandle | None = None
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.pipeline:  # a pipelined request's headers are in already
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        if not self.transport.is_closing():
            self._deadline = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _headers_late(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            log.info(
                "closed a connection from %s: no complete request headers in %g s",
                self.client[0] if self.client else "?",
                self.header_timeout_s,
            )
            self.transport.close()


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run`` or ``uvicorn.Config``: the protocol with the
    header deadline of ``settings``, and the keep-alive timeout."""
    protocol = type(
        "HeaderDeadlineProtocol", (HeaderDeadline,), {"header_timeout_s": settings.header_timeout_s}
    )
    # Websockets: uvicorn's own protocol, with large messages compressed once for all
    # connections (command.ws_deflate: a storm's snapshots, a picture's fan-out).
    return {"http": protocol, "ws": SharedDeflateProtocol, "timeout_keep_alive": KEEP_ALIVE_S}
