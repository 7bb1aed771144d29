"""What a websocket client may send, read one frame at a time (docs/protocol.md, close codes).

A client of ``/ws`` sends a subscribe message, then only ``pong``: a few hundred bytes of JSON
text. Anything else is a broken or hostile client, and is closed with the code that names the
fault: 1003 (a binary frame, or text that is not JSON), 1009 (too big), 1008 (a message the
protocol does not have). Starlette's ``receive_json`` would instead raise a ``KeyError`` on a
binary frame, and Python's ``json`` a ``RecursionError`` on deep nesting, each a traceback.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import WebSocket, WebSocketDisconnect

from gis.errors import InvalidInput
from gis.nesting import check_json_depth

#: The largest message a client of ``/ws`` may send (characters); a subscribe is ~100.
MAX_CLIENT_MESSAGE = 16 * 1024

UNSUPPORTED_DATA = 1003
POLICY_VIOLATION = 1008
MESSAGE_TOO_BIG = 1009


class Unsupported(Exception):
    """A frame the server does not take; the socket closes with ``code`` and ``reason``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class NotJson(ValueError):
    """A text frame that is not JSON, or JSON nested deeper than ``gis.nesting.MAX_DEPTH``."""

    code = UNSUPPORTED_DATA


async def client_message(websocket: WebSocket, *, max_chars: int = MAX_CLIENT_MESSAGE) -> Any:
    """The next message of the client, parsed.

    Raises :class:`Unsupported` for a binary frame (1003) or one over ``max_chars`` (1009),
    :class:`NotJson` for text that is not acceptable JSON, and ``WebSocketDisconnect`` when the
    client has gone.
    """
    frame = await websocket.receive()
    if frame["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(frame.get("code", 1000), frame.get("reason"))
    if frame.get("bytes") is not None:
        raise Unsupported(UNSUPPORTED_DATA, "binary frames are not accepted: send JSON text")
    text: str = frame.get("text") or ""
    if len(text) > max_chars:
        raise Unsupported(MESSAGE_TOO_BIG, f"a message is at most {max_chars} characters")
    try:
        check_json_depth(text, field="message")
        return json.loads(text)
    except (InvalidInput, ValueError) as exc:
        raise NotJson(f"a message is one JSON object: {exc}"[:120]) from None
