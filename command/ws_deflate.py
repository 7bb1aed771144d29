"""permessage-deflate with large messages compressed once for every connection.

uvicorn compresses each websocket message on each connection with that connection's own
compressor (RFC 7692, with context takeover: a message may refer back to earlier ones). The
same snapshot sent to 1,000 clients in a reconnect storm, or the same picture to 3,000 walls,
is then compressed 1,000 or 3,000 times: in a storm about a sixth of the server's CPU
(docs/benchmarks.md, "Per-subscription cost").

Here a message of :data:`SHARE_MIN_BYTES` or more is compressed without reference to earlier
messages, once per distinct text and compressor setting, and the compressed bytes are kept
(:data:`KEPT`, the newest) and sent to every connection that sends the same text. This is still
plain RFC 7692 deflate, and every client decodes it as before:
- a deflate stream may always start afresh: a compressor with an empty history only refers to
  what it has itself written since, which the client's decompressor also has, last in its window;
- after a shared message the connection's own compressor is replaced by a fresh one, for the
  same reason: what follows refers back no further than the shared message's end.
Small messages (events, pings) go through the connection's compressor as before, so they keep
the benefit of context takeover. What is lost: a large message no longer refers back to the
messages before it on its connection (the snapshot is a connection's first message anyway).
Compression settings are uvicorn's (window 2^12, memLevel 5, zlib's default level).
"""

from __future__ import annotations

import logging
import threading
import zlib
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.extensions.base import Extension
from websockets.extensions.permessage_deflate import (
    PerMessageDeflate,
    ServerPerMessageDeflateFactory,
)
from websockets.frames import CONT, CTRL_OPCODES, Frame
from websockets.server import ServerProtocol
from websockets.typing import ExtensionParameter

#: Messages this long or longer (bytes of UTF-8) are compressed once and shared.
SHARE_MIN_BYTES = 4096
#: How many compressed messages are kept (the newest), and at most how many bytes of text.
KEPT = 16
KEPT_BYTES = 16 * 2**20
#: uvicorn's own settings for permessage-deflate (``websockets_sansio_impl``).
WINDOW_BITS = 12
COMPRESS_SETTINGS: dict[str, Any] = {"memLevel": 5}
_SYNC_TAIL = b"\x00\x00\xff\xff"

_Key = tuple[int, tuple[tuple[str, Any], ...], bytes]


class SharedCompressions:
    """The compressed form of recent large messages, by text and compressor setting."""

    def __init__(self) -> None:
        self._kept: OrderedDict[_Key, bytes] = OrderedDict()
        self._lock = threading.Lock()
        self._bytes = 0
        #: Messages compressed here, and messages sent from what was kept (for tests, figures).
        self.compressed = 0
        self.reused = 0

    def compress(self, data: bytes, window_bits: int, settings: dict[str, Any]) -> bytes:
        key = (window_bits, tuple(sorted(settings.items())), data)
        with self._lock:
            done = self._kept.get(key)
            if done is not None:
                self._kept.move_to_end(key)
                self.reused += 1
                return done
        encoder = zlib.compressobj(wbits=-window_bits, **settings)
        done = encoder.compress(data) + encoder.flush(zlib.Z_SYNC_FLUSH)
        assert done.endswith(_SYNC_TAIL)
        done = done[:-4]  # RFC 7692 7.2.1: the sync flush's empty block is not sent
        with self._lock:
            self.compressed += 1
            if key not in self._kept:
                self._kept[key] = done
                self._bytes += len(data)
                while len(self._kept) > KEPT or self._bytes > KEPT_BYTES:
                    (_, _, text), _ = self._kept.popitem(last=False)
                    self._bytes -= len(text)
        return done


SHARED = SharedCompressions()


class SharedDeflate(PerMessageDeflate):
    """permessage-deflate that sends large messages compressed once (:data:`SHARED`)."""

    shared = SHARED

    def encode(self, frame: Frame) -> Frame:
        if (
            frame.opcode in CTRL_OPCODES
            or frame.opcode is CONT
            or not frame.fin
            or len(frame.data) < SHARE_MIN_BYTES
        ):
            return super().encode(frame)
        data = self.shared.compress(
            bytes(frame.data), self.local_max_window_bits, self.compress_settings
        )
        if not self.local_no_context_takeover:
            # What follows must not refer back past the shared message: a fresh history.
            self.encoder = zlib.compressobj(
                wbits=-self.local_max_window_bits, **self.compress_settings
            )
        return Frame(frame.opcode, data, True, True, frame.rsv2, frame.rsv3)


class SharedDeflateFactory(ServerPerMessageDeflateFactory):
    """Negotiates as uvicorn's factory does; the extension is :class:`SharedDeflate`."""

    def process_request_params(
        self, params: Sequence[ExtensionParameter], accepted_extensions: Sequence[Extension]
    ) -> tuple[list[ExtensionParameter], PerMessageDeflate]:
        response, plain = super().process_request_params(params, accepted_extensions)
        assert isinstance(plain, PerMessageDeflate)
        extension = SharedDeflate(
            plain.remote_no_context_takeover,
            plain.local_no_context_takeover,
            plain.remote_max_window_bits,
            plain.local_max_window_bits,
            plain.compress_settings,
        )
        return response, extension


class SharedDeflateProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websocket protocol (websockets, sans-I/O) with :class:`SharedDeflateFactory`
    for permessage-deflate (``ws=`` of ``uvicorn.run``, ``command.serving.uvicorn_options``)."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: Any = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        if config.ws_per_message_deflate:
            factory = SharedDeflateFactory(
                server_max_window_bits=WINDOW_BITS,
                client_max_window_bits=WINDOW_BITS,
                compress_settings=dict(COMPRESS_SETTINGS),
            )
            self.conn = ServerProtocol(
                extensions=[factory],
                max_size=config.ws_max_size,
                logger=logging.getLogger("uvicorn.error"),
            )
