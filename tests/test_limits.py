"""Resource limits (issue 12, item 8), each tested with the attack that reproduced it.

- A body is refused before a byte of it is read unless its bearer token is valid (a raw socket
  announces 50 MB and sends 1 KB); the login alone takes a body from anyone, and a small one.
- A zipped Shapefile of half a megabyte that unpacks to 500 MB is refused from what it
  declares, one that expands too much is refused by its ratio, one whose declared sizes lie is
  refused too, and nothing unpacked is left behind.
- JSON and YAML nested 100,000 deep (and YAML aliases) are a 422 naming the reason, not a 500
  with a traceback in the log.
- Abnormal websocket input closes with the code docs/protocol.md gives it.
- A body that stalls gets 408; headers that never end close the connection.
- Reading the event log from far back is paged and budgeted (429), and a websocket resume from
  far back gets a snapshot instead of thousands of events.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import socket
import struct
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from command import events as event_log
from command.app import create_app
from command.auth import Role
from command.event_reads import PAGE
from command.settings import Settings
from command.ws_frames import MAX_CLIENT_MESSAGE
from gis.errors import InvalidInput, PayloadTooLarge
from gis.layer_io import ArchiveLimits, FileFormat, export_layer, read_rows
from gis.nesting import MAX_DEPTH, json_depth
from gis.storage.db import Database, make_engine
from plans.clock import ManualClock
from tests.conftest import DEMO_ID, TEST_PASSWORD, sign_in
from tests.live_server import LiveServer
from tests.problems import assert_problem
from tests.test_ws import (
    WAIT_S,
    Tokens,
    auth,
    copy_database,
    subscribe_message,
    template,  # noqa: F401  (the module's database template, a fixture)
)

SITE = f"/api/sites/{DEMO_ID}"
#: What the module's server allows (short, so that waiting them out takes a second).
BODY_TIMEOUT_S = 0.5
HEADER_TIMEOUT_S = 0.5
READS_BURST = 1000
#: Events added to the module server's log, so that a resume from the start is far back.
EXTRA_EVENTS = 2 * PAGE + 500
FIFTY_MB = 50 * 1024 * 1024


@pytest.fixture(scope="module")
def server(
    template: tuple[Path, Tokens],  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LiveServer]:
    url = copy_database(template, tmp_path_factory.mktemp("limits") / "limits.db")
    engine = make_engine(url)
    try:
        add_events(Database(engine), EXTRA_EVENTS)
    finally:
        engine.dispose()
    with LiveServer(
        url,
        body_timeout_s=BODY_TIMEOUT_S,
        header_timeout_s=HEADER_TIMEOUT_S,
        event_reads_burst=READS_BURST,
        event_reads_per_s=1.0,  # 1,000 events take a quarter of an hour to come back
    ) as live:
        yield live


@pytest.fixture(scope="module")
def tokens(template: tuple[Path, Tokens]) -> Tokens:  # noqa: F811
    return template[1]


def add_events(db: Database, count: int) -> None:
    """``count`` small notes in the demo site's log, appended as the command post does."""
    drafts = [
        event_log.Draft("plan.note", "limits-test", {"text": f"note {n}"}, None, None)
        for n in range(count)
    ]
    with db.write() as session:
        event_log.append_many(session, DEMO_ID, drafts)


# -- raw HTTP over a socket --------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: dict[str, Any]
    seconds: float  # from the request's first byte to the answer's last
    closed: bool  # the server closed the connection after the answer


def raw_request(port: int, head: str, body: bytes = b"", *, pace_s: float = 0.0) -> Answer:
    """Send a request head and (part of) a body, in ``pace_s``-spaced pieces of 8 bytes when
    ``pace_s``, and read the answer as it comes, whatever is left unsent."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as sock:
        start = time.monotonic()
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n")
        pieces = [body[i : i + 8] for i in range(0, len(body), 8)] if pace_s else [body]
        for piece in pieces:
            time.sleep(pace_s)
            sock.sendall(piece)
        status, headers, body_read = read_answer(sock)
        seconds = time.monotonic() - start
        try:
            closed = sock.recv(1) == b""
        except ConnectionResetError:  # closed with the rest of the body unread
            closed = True
        except TimeoutError:
            closed = False
    return Answer(status, headers, json.loads(body_read), seconds, closed)


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP answer from ``sock``: its status, headers and body."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += receive(sock)
    raw_head, _, body = data.partition(b"\r\n\r\n")
    lines = raw_head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
    while len(body) < int(headers["content-length"]):
        body += receive(sock)
    return int(lines[0].split()[1]), headers, body


def receive(sock: socket.socket) -> bytes:
    data = sock.recv(65536)
    assert data, "the server closed the connection before answering"
    return data


def post_head(path: str, *, token: str | None = None, length: int | None = None) -> str:
    """A POST request head; chunked when ``length`` is None."""
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    lines.append(
        f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    )
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    return "\n".join(lines) + "\n"


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


IMPORT = f"{SITE}/layers/zones/import?format=geojson"


def test_a_body_without_a_valid_token_is_refused_before_it_is_read(server: LiveServer) -> None:
    """50 MB announced, 1 KB sent: the answer is 401 at once, and the connection closes."""
    for token in (None, "not-a-token"):
        for length in (FIFTY_MB, None):
            head = post_head(IMPORT, token=token, length=length)
            sent = b"x" * 1024 if length is not None else chunk(b"x" * 1024)
            answer = raw_request(server.port, head, sent)
            assert answer.status == 401, (token, length, answer)
            assert answer.body["type"] == "/problems/unauthorized"
            assert answer.headers["www-authenticate"] == "Bearer"
            assert answer.seconds < 1.0 and answer.closed, answer


def test_the_login_takes_a_small_body_from_anyone(server: LiveServer) -> None:
    answer = raw_request(server.port, post_head("/api/auth/login", length=FIFTY_MB), b"{")
    assert answer.status == 413 and answer.seconds < 1.0 and answer.closed, answer
    assert answer.body["type"] == "/problems/payload-too-large"
    login = json.dumps({"username": "viewer", "password": TEST_PASSWORD}).encode()
    answer = raw_request(server.port, post_head("/api/auth/login", length=len(login)), login)
    assert answer.status == 200 and answer.body["access_token"], answer


# -- slow requests -----------------------------------------------------------------------------


def test_a_stalled_body_gets_408(server: LiveServer, tokens: Tokens) -> None:
    """Signed in, so the body is awaited, but not for ever: each piece within the timeout."""
    path = f"{SITE}/readings"
    for length, sent in ((FIFTY_MB, b"x" * 1024), (None, chunk(b'{"readings": ['))):
        head = post_head(path, token=tokens.commander, length=length)
        answer = raw_request(server.port, head, sent)
        assert answer.status == 408, answer
        assert answer.body["type"] == "/problems/request-timeout"
        assert answer.body["errors"][0]["field"] == "body"
        assert BODY_TIMEOUT_S <= answer.seconds < BODY_TIMEOUT_S + 2 and answer.closed, answer


def test_a_slow_body_that_keeps_coming_is_taken(server: LiveServer, tokens: Tokens) -> None:
    body = json.dumps({"readings": [{"sensor_id": "S-057", "value": 0.1}]})
    head = post_head(f"{SITE}/readings", token=tokens.commander, length=len(body))
    answer = raw_request(server.port, head, body.encode(), pace_s=BODY_TIMEOUT_S / 3)
    assert answer.status == 200, answer
    assert answer.body["accepted"] == 1
    assert answer.seconds > 2 * BODY_TIMEOUT_S  # far longer than the timeout, all told


def wait_closed(sock: socket.socket, trickle: bytes | None) -> float:
    """Seconds until the server closes ``sock``, sending ``trickle`` every 0.1 s meanwhile."""
    start = time.monotonic()
    sock.setblocking(False)
    while time.monotonic() - start < WAIT_S:
        try:
            if sock.recv(1024) == b"":
                return time.monotonic() - start
        except BlockingIOError:
            pass
        except ConnectionResetError:
            return time.monotonic() - start
        if trickle is not None:
            try:
                sock.send(trickle)
            except (BrokenPipeError, ConnectionResetError):
                return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError("the server kept the connection open")


def test_headers_that_never_end_are_cut_off(server: LiveServer) -> None:
    """Slowloris: a header line every 0.1 s, or nothing at all, holds no connection."""
    for trickle in (b"X-Slow: yes\r\n", None):
        with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT_S) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            held = wait_closed(sock, trickle)
        assert HEADER_TIMEOUT_S - 0.1 <= held < HEADER_TIMEOUT_S + 1.5, (trickle, held)


def test_a_kept_alive_connection_still_serves_requests(server: LiveServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT_S) as sock:
        for _ in range(3):
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            status, _, body = read_answer(sock)
            assert status == 200 and json.loads(body)["status"] == "ok"
            time.sleep(HEADER_TIMEOUT_S / 2)


# -- archives ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def zip_bomb() -> bytes:
    """The reproduction's bomb: 500 MiB of zeros, DEFLATEd into half a megabyte."""
    return bomb("zones.dbf", 500)


def bomb(member: str, mib: int) -> bytes:
    zeros = bytes(1024 * 1024)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("zones.shp", b"")
        with archive.open(member, "w") as out:
            for _ in range(mib):
                out.write(zeros)
    return buffer.getvalue()


def lie_about_sizes(data: bytes, size: int) -> bytes:
    """The archive with every member's declared unpacked size set to ``size``."""
    out = bytearray(data)
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        start = out.find(signature)
        while start != -1:
            if struct.unpack_from("<I", out, start + offset)[0] > size:
                struct.pack_into("<I", out, start + offset, size)
            start = out.find(signature, start + 4)
    return bytes(out)


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The temporary directory the import unpacks into; checked empty afterwards."""
    folder = tmp_path / "scratch"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_a_zip_bomb_is_refused_from_what_it_declares(
    client: TestClient, zip_bomb: bytes, scratch: Path
) -> None:
    assert len(zip_bomb) < 600_000  # 497 KB in the reproduction
    before = client.get(f"{SITE}/layers/zones").json()["features"]
    answer = client.post(f"{SITE}/layers/zones/import?format=shp", content=zip_bomb)
    body = assert_problem(answer, 413, field="file")
    assert body["type"] == "/problems/payload-too-large"
    assert "zones.dbf" in body["errors"][0]["reason"] and "zones.dbf" in body["detail"]
    assert client.get(f"{SITE}/layers/zones").json()["features"] == before
    assert list(scratch.iterdir()) == []


def test_an_archive_that_expands_too_much_is_refused_by_its_ratio(scratch: Path) -> None:
    """20 MiB of zeros is under the 200 MB total, but expands a thousand times."""
    with pytest.raises(PayloadTooLarge, match="expands more than 500 times") as refused:
        read_rows(bomb("zones.dbf", 20), FileFormat.SHAPEFILE)
    assert "zones.dbf" in refused.value.errors[0].reason
    assert list(scratch.iterdir()) == []


def test_an_archive_whose_sizes_lie_unpacks_no_more_than_it_declares(scratch: Path) -> None:
    """Declared sizes under every limit, real ones far over: the unpacking stops at what was
    declared, the archive is refused as unreadable, and nothing is left."""
    lying = lie_about_sizes(bomb("zones.dbf", 50), 1000)
    with pytest.raises(InvalidInput, match="Bad CRC-32") as refused:
        read_rows(lying, FileFormat.SHAPEFILE)
    assert refused.value.errors[0].reason == "not a readable zip archive"
    assert list(scratch.iterdir()) == []


def test_a_real_shapefile_still_imports_within_tight_limits(db: Database) -> None:
    data = export_layer(db, DEMO_ID, "network", FileFormat.SHAPEFILE)
    limits = ArchiveLimits(max_bytes=2 * 1024 * 1024, max_ratio=100)
    assert len(read_rows(data, FileFormat.SHAPEFILE, limits=limits)) > 100


# -- nesting -----------------------------------------------------------------------------------

DEEP_JSON = "[" * 100_000 + "]" * 100_000
DEEP_OBJECT = '{"a":' * 50_000 + "1" + "}" * 50_000


def yaml_block(depth: int) -> str:
    """A YAML mapping nested ``depth`` deep by indentation alone (no brackets to count)."""
    return "".join(" " * level + "k:\n" for level in range(depth)) + " " * depth + "v\n"


def test_json_and_yaml_nested_too_deep_get_422_and_no_traceback(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    feature = f'{{"type": "Feature", "geometry": null, "properties": {DEEP_OBJECT}}}'
    collection = f'{{"type": "FeatureCollection", "features": [{DEEP_OBJECT}]}}'
    yaml = {"Content-Type": "application/yaml"}
    json_type = {"Content-Type": "application/json"}
    attacks = {
        "feature": (f"{SITE}/layers/resources", DEEP_JSON, json_type),
        "properties": (f"{SITE}/layers/resources", feature, json_type),
        "plan JSON": (f"{SITE}/plans", DEEP_JSON, json_type),
        "plan, no content type": (f"{SITE}/plans", DEEP_OBJECT, {}),
        "plan YAML": (f"{SITE}/plans", "[" * 100_000, yaml),
        "plan YAML by indentation": (f"{SITE}/plans", yaml_block(900), yaml),
        "import": (f"{SITE}/layers/zones/import?format=geojson", collection, json_type),
        "import as a file": (
            f"{SITE}/layers/zones/import?format=geojson",
            collection,
            {"Content-Type": "application/octet-stream"},
        ),
        "activation": (f"{SITE}/incidents", DEEP_JSON, json_type),
    }
    caplog.set_level(logging.INFO)
    for name, (path, body, headers) in attacks.items():
        answer = client.post(path, content=body, headers=headers)
        problem = assert_problem(answer, 422)
        assert "nested" in problem["detail"], (name, problem)
        assert f"{MAX_DEPTH}" in problem["detail"], (name, problem)
    tracebacks = [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
    assert tracebacks == []
    assert sum(len(r.getMessage()) for r in caplog.records) < 5000


def test_a_patch_nested_too_deep_gets_422(client: TestClient) -> None:
    feature = client.get(f"{SITE}/layers/resources").json()["features"][0]
    answer = client.patch(
        f"{SITE}/layers/resources/features/{feature['id']}",
        content='{"properties": ' + DEEP_OBJECT + "}",
        headers={"Content-Type": "application/merge-patch+json", "If-Match": '"1"'},
    )
    assert "nested" in assert_problem(answer, 422)["detail"]


def test_yaml_aliases_are_refused(client: TestClient) -> None:
    """Billion laughs: nine lines that would stand for a billion strings."""
    laughs = ['lol0: &l0 "lol"'] + [
        f"lol{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 10)}]" for n in range(1, 10)
    ]
    answer = client.post(
        f"{SITE}/plans", content="\n".join(laughs), headers={"Content-Type": "application/yaml"}
    )
    assert "aliases" in assert_problem(answer, 422, field="body")["detail"]


def test_a_plan_body_is_at_most_half_a_megabyte(client: TestClient) -> None:
    answer = client.post(
        f"{SITE}/plans",
        content="id: big\ntitle: " + "x" * 600_000,
        headers={"Content-Type": "application/yaml"},
    )
    assert assert_problem(answer, 413, field="body")["type"] == "/problems/payload-too-large"


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("", 0),
        ("1", 0),
        ("[]", 1),
        ('{"a": [1, {"b": "[[[["}]}', 3),
        ('"[[[', 0),  # an unterminated string hides what follows
        ('"\\"[[[" [', 1),  # an escaped quote does not end the string
        ('"\\\\" [[', 2),  # an escaped backslash does not escape the quote
        ("[[[]]][[[[]]]]", 4),
        ('{"k": "\\u005b"}', 1),
    ],
)
def test_json_depth_counts_brackets_outside_strings(text: str, depth: int) -> None:
    assert json_depth(text) == depth
    assert json_depth(text.encode("utf-16")) == depth  # quote bytes inside other characters


def test_json_depth_is_linear_on_hostile_text() -> None:
    """Escapes that a backtracking scan would take quadratic time over."""
    for hostile in (b'"' + b'\\"' * 2_000_000, b'"a"' * 1_000_000, b"[" * 4_000_000):
        start = time.perf_counter()
        json_depth(hostile)
        assert time.perf_counter() - start < 2.0


# -- websockets --------------------------------------------------------------------------------


async def close_code(ws: ClientConnection, *frames: str | bytes) -> int | None:
    """Send ``frames`` and read until the server closes: its close code."""
    try:
        for frame in frames:
            await ws.send(frame)
        async with asyncio.timeout(WAIT_S):
            while True:
                await ws.recv()
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd else None


def test_abnormal_websocket_input_closes_with_the_documented_code(
    server: LiveServer, tokens: Tokens, caplog: pytest.LogCaptureFixture
) -> None:
    too_big = json.dumps({"type": "pong", "pad": "x" * MAX_CLIENT_MESSAGE})
    deep = "[" * 5000 + "]" * 5000  # small enough to be read, too deep for Python's json
    first: dict[str, tuple[str | bytes, int]] = {  # the first message, which must subscribe
        "binary": (b'{"type": "subscribe"}', 1003),
        "too big": (too_big, 1009),
        "not JSON": ("subscribe please", 4400),
        "nested too deep": (deep, 4400),
        "not a subscribe": (json.dumps({"type": "hello"}), 4400),
        "unknown site": (subscribe_message(site="no-such-site"), 4404),
    }
    later: dict[str, tuple[str | bytes, int]] = {  # after subscribing, only pong
        "binary": (b'{"type": "pong"}', 1003),
        "too big": (too_big, 1009),
        "not JSON": ("pong", 1003),
        "nested too deep": (deep, 1003),
        "unknown type": (json.dumps({"type": "hello"}), 1008),
        "not an object": (json.dumps(["pong"]), 1008),
    }

    async def scenario() -> dict[str, int | None]:
        codes: dict[str, int | None] = {}
        for stage, cases in (("first", first), ("later", later)):
            for name, (frame, _) in cases.items():
                async with connect(
                    server.ws_url, additional_headers=auth(tokens.viewer), open_timeout=WAIT_S
                ) as ws:
                    if stage == "later":
                        await ws.send(subscribe_message())
                        snapshot = json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))
                        assert snapshot["type"] == "snapshot"
                        await ws.send(json.dumps({"type": "pong"}))  # taken: still open
                    codes[f"{stage}: {name}"] = await close_code(ws, frame)
        return codes

    caplog.set_level(logging.INFO)
    codes = asyncio.run(scenario())
    expected = {
        f"{s}: {n}": code
        for s, c in (("first", first), ("later", later))
        for n, (_, code) in c.items()
    }
    assert codes == expected
    assert [r for r in caplog.records if r.exc_info] == []
    table = (Path(__file__).parent.parent / "docs" / "protocol.md").read_text(encoding="utf-8")
    for code in set(expected.values()):
        assert f"| {code} |" in table, f"close code {code} is not in docs/protocol.md"


def test_a_websocket_outlives_the_header_deadline(server: LiveServer, tokens: Tokens) -> None:
    """The deadline is for a request's headers: an open websocket is not cut at it."""

    async def scenario() -> int | None:
        async with connect(
            server.ws_url, additional_headers=auth(tokens.viewer), open_timeout=WAIT_S
        ) as ws:
            await ws.send(subscribe_message())
            assert json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))["type"] == "snapshot"
            await asyncio.sleep(3 * HEADER_TIMEOUT_S)
            await ws.send(json.dumps({"type": "pong"}))
            return await close_code(ws, json.dumps({"type": "hello"}))  # still read: 1008

    assert asyncio.run(scenario()) == 1008


def test_abnormal_feed_input_is_answered_or_closed_as_documented(
    server: LiveServer, tokens: Tokens, caplog: pytest.LogCaptureFixture
) -> None:
    """A device's bad message is answered with a problem and the feed goes on; only a frame
    over uvicorn's 16 MiB closes it (1009)."""
    feed = f"{server.ws_url}/sites/{DEMO_ID}/feed"

    async def ask(ws: ClientConnection, frame: str | bytes) -> dict[str, Any]:
        await ws.send(frame)
        answer: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))
        return answer

    async def scenario() -> tuple[dict[str, Any], int | None, int | None]:
        answers: dict[str, Any] = {}
        async with connect(
            feed, additional_headers=auth(tokens.device), open_timeout=WAIT_S, max_size=None
        ) as ws:
            answers["not JSON"] = await ask(ws, "readings please")
            answers["binary, not UTF-8"] = await ask(ws, b"\xff\xfe\x00garbage")
            answers["nested too deep"] = await ask(ws, "[" * 100_000 + "]" * 100_000)
            answers["unknown type"] = await ask(ws, json.dumps({"type": "selfie", "id": 3}))
            answers["over 4 MiB"] = await ask(ws, "x" * (4 * 1024 * 1024 + 1))
            good = {
                "type": "readings",
                "id": "ok",
                "readings": [{"sensor_id": "S-057", "value": 0}],
            }
            answers["then a good batch"] = await ask(ws, json.dumps(good))
            huge = await close_code(ws, "x" * (16 * 1024 * 1024 + 1))
        async with connect(
            f"{server.ws_url}/sites/no-such-site/feed",
            additional_headers=auth(tokens.device),
            open_timeout=WAIT_S,
        ) as ws:
            unknown_site = await close_code(ws)
        return answers, huge, unknown_site

    caplog.set_level(logging.INFO)
    answers, huge, unknown_site = asyncio.run(scenario())
    fields = {
        name: (a["problem"]["status"], a["problem"]["errors"][0]["field"])
        for name, a in answers.items()
        if a["type"] == "error"
    }
    assert fields == {
        "not JSON": (422, "message"),
        "binary, not UTF-8": (422, "message"),
        "nested too deep": (422, "message"),
        "unknown type": (422, "type"),
        "over 4 MiB": (413, "message"),
    }
    assert "nested" in answers["nested too deep"]["problem"]["detail"]
    assert answers["then a good batch"]["type"] == "ack"
    assert huge == 1009
    assert unknown_site in (4403, 4404)  # a device of another site is not told more
    assert [r for r in caplog.records if r.exc_info] == []


# -- catch-up reads ----------------------------------------------------------------------------


def reading_client(db: Database, **settings: Any) -> tuple[TestClient, ManualClock]:
    clock = ManualClock()
    app = create_app(
        Settings(database_url=str(db.engine.url), **settings),
        database=db,
        clock=clock,
        ticking=False,
    )
    return TestClient(app), clock


def test_the_event_log_is_read_in_pages(db: Database) -> None:
    add_events(db, EXTRA_EVENTS)
    client, _ = reading_client(db)
    with client:
        client.headers.update(sign_in(db, "reader-wu", [Role.VIEWER]))
        # The reproduction asked for 10,000 at once: it gets a page, and where the next starts.
        page = client.get(f"{SITE}/events?after=0&limit=10000").json()
        seen = [e["seq"] for e in page["events"]]
        assert len(seen) == PAGE and page["next"]
        while "next" in page:
            page = client.get(page["next"]).json()
            seen += [e["seq"] for e in page["events"]]
        assert seen == list(range(1, page["last_seq"] + 1))
        assert len(client.get(f"{SITE}/events?after=0&limit=10").json()["events"]) == 10


def test_reading_the_log_beyond_the_budget_gets_429(db: Database) -> None:
    add_events(db, EXTRA_EVENTS)
    client, clock = reading_client(db, event_reads_burst=2000, event_reads_per_s=100)
    with client:
        client.headers.update(sign_in(db, "reader-wu", [Role.VIEWER]))
        path = f"{SITE}/events?after=0&limit=10000"
        assert client.get(path).status_code == 200
        assert client.get(path).status_code == 200  # the burst: 2,000 events
        refused = client.get(path)
        assert assert_problem(refused, 429)["type"] == "/problems/too-many-requests"
        assert refused.headers["Retry-After"] == "1"
        other = sign_in(db, "reader-ma", [Role.VIEWER])
        assert client.get(path, headers=other).status_code == 200  # a budget per token
        clock.advance(1.0)
        assert client.get(path).status_code == 200  # 100 events refilled: one more page


def test_a_websocket_resume_from_far_back_gets_a_snapshot(
    server: LiveServer, tokens: Tokens
) -> None:
    """A resume may replay a page at most, within the reader's budget; beyond, a snapshot."""

    async def first_answers(last_seq: int) -> list[str]:
        async with connect(
            server.ws_url, additional_headers=auth(tokens.viewer), open_timeout=WAIT_S
        ) as ws:
            await ws.send(subscribe_message(last_seq=last_seq))
            kinds: list[str] = []
            async with asyncio.timeout(WAIT_S):
                while not kinds or kinds[-1] not in ("snapshot", "caught_up"):
                    kinds.append(json.loads(await ws.recv())["type"])
            return kinds

    # Read by the commander: the viewer's budget is the one this test spends.
    last = httpx.get(
        f"{server.base}{SITE}/events?limit=1", headers=auth(tokens.commander), timeout=WAIT_S
    ).json()["last_seq"]
    near = last - 600

    async def scenario() -> dict[str, list[str]]:
        return {
            "from the start": await first_answers(0),
            "600 back": await first_answers(near),
            "600 back again": await first_answers(near),  # 1,200 read: over the 1,000 budget
            "600 back once more": await first_answers(near),
        }

    answers = asyncio.run(scenario())
    assert answers["from the start"] == ["snapshot"]  # not 2,500 events
    assert answers["600 back"] == ["event"] * 600 + ["caught_up"]
    assert answers["600 back again"] == ["event"] * 600 + ["caught_up"]
    assert answers["600 back once more"] == ["snapshot"]
