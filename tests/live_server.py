"""The real app under uvicorn on a loopback port of its own, in a thread of the test process:
for the tests that need a real server (websockets, the browser)."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn

from command.app import create_app
from command.post import CommandPost
from command.serving import uvicorn_options
from command.settings import Settings

WAIT_S = 10.0  # the longest the server may take to start or stop


class LiveServer:
    """The real app under uvicorn, on a loopback port of its own, in a thread.

    ``settings`` are more ``Settings`` fields (``body_timeout_s=0.5``). ``send_buffer``
    shrinks the kernel's send buffer of its connections (a stalled client then blocks the
    server's sends to it after a few kilobytes rather than megabytes). uvicorn runs with the
    options ``rallypoint serve`` gives it (``command.serving``).
    """

    def __init__(
        self,
        url: str,
        *,
        heartbeat_s: float = 5.0,
        queue_size: int = 1000,
        send_buffer: int | None = None,
        **settings: Any,
    ) -> None:
        self.settings = Settings(
            database_url=url, ws_heartbeat_s=heartbeat_s, ws_queue_size=queue_size, **settings
        )
        self.app = create_app(self.settings)
        self.socket = socket.socket()
        if send_buffer is not None:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
        self.socket.bind(("127.0.0.1", 0))
        self.port: int = self.socket.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", **uvicorn_options(self.settings))
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True
        )
        self.base = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/ws"

    @property
    def post(self) -> CommandPost:
        post: CommandPost = self.app.state.post
        return post

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + WAIT_S
        while not self.server.started:
            assert self.thread.is_alive(), "the server did not start"
            assert time.monotonic() < deadline, "the server took too long to start"
            time.sleep(0.01)
        return self

    def recovered(self) -> LiveServer:
        """Wait until restart recovery has rebuilt every incident (it runs in the background
        while the server already answers)."""
        deadline = time.monotonic() + WAIT_S
        while not self.post.recovery.finished:
            assert time.monotonic() < deadline, "recovery took too long"
            time.sleep(0.01)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(WAIT_S)
        assert not self.thread.is_alive(), "the server did not stop"
        self.socket.close()
