"""permessage-deflate with large messages compressed once for all connections (command.ws_deflate).

Read back with websockets' own RFC 7692 decoder (the one every Python client uses), and end to
end against a real server: a client that offers compression and one that does not must read the
same messages, with small events after the large snapshot and picture.
"""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import Any

import pytest
from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.frames import Frame, Opcode

from command.ws_deflate import SHARE_MIN_BYTES, SharedCompressions, SharedDeflate
from tests.live_server import LiveServer
from tests.test_ws import (  # noqa: F401  (template: the module's database fixture)
    Tokens,
    activate,
    add_notes,
    copy_database,
    subscribed,
    template,
)


def _messages(rng: random.Random, big: list[bytes]) -> list[bytes]:
    """Large messages (repeated, as a snapshot to many clients) among small events."""
    out = []
    for seq in range(80):
        roll = rng.random()
        if roll < 0.25:
            out.append(rng.choice(big))
        elif roll < 0.3:
            out.append(bytes(rng.getrandbits(8) for _ in range(SHARE_MIN_BYTES + 10)))
        else:
            text = "x" * rng.randint(0, SHARE_MIN_BYTES)
            out.append(json.dumps({"type": "event", "seq": seq, "text": text}).encode())
    return out


@pytest.mark.parametrize("window_bits", [9, 12, 15])
@pytest.mark.parametrize("no_context_takeover", [False, True])
def test_shared_frames_decode_as_rfc7692(window_bits: int, no_context_takeover: bool) -> None:
    rng = random.Random(window_bits)
    big = [
        json.dumps(
            {"type": "snapshot", "n": n, "rows": [[i, i * 0.5] for i in range(900)]}
        ).encode()
        for n in range(3)
    ]
    shared = SharedCompressions()
    sent_big: dict[bytes, set[bytes]] = {}
    for _ in range(4):  # four connections
        encoder = SharedDeflate(
            False, no_context_takeover, window_bits, window_bits, {"memLevel": 5}
        )
        encoder.shared = shared
        decoder = PerMessageDeflate(False, no_context_takeover, window_bits, window_bits)
        for data in _messages(rng, big):
            frame = encoder.encode(Frame(Opcode.TEXT, data))
            assert frame.rsv1 and frame.fin
            assert decoder.decode(frame, max_size=None).data == data
            if data in big:
                sent_big.setdefault(data, set()).add(bytes(frame.data))
    # Each large message was compressed once and the same bytes went to every connection.
    assert sent_big and all(len(forms) == 1 for forms in sent_big.values())
    assert shared.reused > shared.compressed > 0


def test_only_the_newest_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("command.ws_deflate.KEPT", 2)
    shared = SharedCompressions()
    texts = [bytes([65 + n]) * SHARE_MIN_BYTES for n in range(3)]
    for text in texts:
        shared.compress(text, 12, {"memLevel": 5})
    shared.compress(texts[2], 12, {"memLevel": 5})
    assert (shared.compressed, shared.reused) == (3, 1)
    shared.compress(texts[0], 12, {"memLevel": 5})  # forgotten: compressed again
    assert (shared.compressed, shared.reused) == (4, 1)
    shared.compress(texts[2], 15, {"memLevel": 5})  # another window: another stream
    assert shared.compressed == 5


def test_compressed_and_plain_clients_read_the_same(
    template: tuple[Path, Tokens],  # noqa: F811
    tmp_path: Path,
) -> None:
    from command.ws_deflate import SHARED

    url = copy_database(template, tmp_path / "deflate.db")
    tokens = template[1]

    async def scenario(live: LiveServer) -> tuple[list[list[dict[str, Any]]], list[str]]:
        async with (
            subscribed(live, tokens.viewer) as zipped_a,
            subscribed(live, tokens.viewer) as zipped_b,
            subscribed(live, tokens.viewer, compression=None) as plain,
        ):
            clients = (zipped_a, zipped_b, plain)
            extensions = [type(e).__name__ for e in zipped_a.ws.protocol.extensions]
            assert plain.ws.protocol.extensions == []
            streams: list[list[dict[str, Any]]] = [[await c.recv()] for c in clients]
            picture = await activate(live, tokens.commander)
            incident = picture["incident"]["id"]
            for stream, client in zip(streams, clients, strict=True):
                stream += await client.until(
                    lambda m: m["type"] == "incident" and m["incident_id"] == incident
                )
            # Small events after the large picture: the connection's compressor started afresh.
            [seq] = await asyncio.to_thread(add_notes, live, tokens.commander, incident, ["ok"])
            for stream, client in zip(streams, clients, strict=True):
                stream += await client.until(lambda m: m.get("seq") == seq)
        return streams, extensions

    before = SHARED.reused
    with LiveServer(url) as live:
        streams, extensions = asyncio.run(scenario(live))
    assert extensions == ["PerMessageDeflate"]
    assert streams[0][0]["type"] == "snapshot"
    assert streams[0] == streams[1] == streams[2]
    assert streams[0][-1]["type"] == "event"
    assert SHARED.reused > before  # the second compressed client's snapshot and picture
