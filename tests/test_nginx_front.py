"""A real nginx in front of two ``rallypoint serve`` processes on one PostGIS database (issue 17,
"A real front"), with the deployment's own configuration, deploy/nginx/rallypoint.conf.

nginx is Debian's (scripts/nginx.sh installs it; 'make test' runs it), a master process of the
test's own in a folder of its own on a free loopback port: never the machine's service. The
processes are real subprocesses (tests/processes.py). Which process served a request is read
twice, independently: from nginx's access log (``upstream=``) and from the processes' own logs.
Without nginx or PostGIS the tests skip; with CI=true that is a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest
from sqlalchemy import create_engine, text
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from command.auth import Role
from tests.conftest import CHLORINE_ACTIVATION, DEMO_ID, TEST_PASSWORD
from tests.processes import ServerProcess, drop_database, free_port, postgis_demo_database

NGINX = Path("/usr/sbin/nginx")
CONF = Path(__file__).resolve().parent.parent / "deploy" / "nginx" / "rallypoint.conf"
SITE = f"/api/sites/{DEMO_ID}"
USERS = {
    "front-commander": Role.COMMANDER,
    "front-viewer-a": Role.VIEWER,
    "front-viewer-b": Role.VIEWER,
    "front-viewer-c": Role.VIEWER,
}
WAIT_S = 20.0  # the longest one await may take (two processes and nginx on a loaded machine)
HEARTBEAT_S = 1  # the processes ping an idle websocket every second
COOKIE = "rallypoint_route"


def require_nginx() -> Path:
    if not os.access(NGINX, os.X_OK):
        message = f"no {NGINX}: 'make nginx' (scripts/nginx.sh) installs Debian's nginx"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return NGINX


class Nginx:
    """nginx with deploy/nginx/rallypoint.conf in front of ``upstreams``, as a subprocess in
    ``folder``: its config, pid file, logs and temporary files all there."""

    def __init__(self, folder: Path, upstreams: list[ServerProcess]) -> None:
        self.folder = folder
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/ws"
        self.upstreams = upstreams
        self.process: subprocess.Popen[bytes] | None = None

    def site_config(self) -> str:
        """The deployment's file, with the test's ports and folder put in: each place it names
        must be found exactly once, so the file under test is the one shipped."""
        config = CONF.read_text(encoding="utf-8")
        swaps = {
            "server 127.0.0.1:8001 ": f"server 127.0.0.1:{self.upstreams[0].port} ",
            "server 127.0.0.1:8002 ": f"server 127.0.0.1:{self.upstreams[1].port} ",
            "listen 80;": f"listen 127.0.0.1:{self.port};",
        }
        for old, new in swaps.items():
            assert config.count(old) == 1, f"{CONF} no longer has {old!r} once"
            config = config.replace(old, new)
        assert config.count("/var/log/nginx/") == 2, f"{CONF}: its two logs moved"
        return config.replace("/var/log/nginx/", f"{self.folder}/")

    def main_config(self) -> str:
        """What Debian's /etc/nginx/nginx.conf gives the file: an http block to sit in."""
        temp = self.folder / "temp"
        paths = "\n".join(
            f"    {kind}_temp_path {temp / kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        # As root, the workers would switch to 'nobody', which cannot enter pytest's folders.
        user = "user root;\n" if os.geteuid() == 0 else ""
        return (
            f"{user}worker_processes 1;\npid {self.folder / 'nginx.pid'};\n"
            f"error_log {self.folder / 'main-error.log'} info;\n"
            "events { worker_connections 512; }\n"
            f"http {{\n{paths}\n    include {self.folder / 'rallypoint.conf'};\n}}\n"
        )

    def start(self) -> Nginx:
        (self.folder / "temp").mkdir(parents=True, exist_ok=True)
        (self.folder / "rallypoint.conf").write_text(self.site_config(), encoding="utf-8")
        main = self.folder / "nginx.conf"
        main.write_text(self.main_config(), encoding="utf-8")
        command = [str(require_nginx()), "-p", f"{self.folder}/", "-c", str(main)]
        command += ["-e", str(self.folder / "main-error.log")]  # before the config is read
        checked = subprocess.run([*command, "-t"], capture_output=True, text=True, check=False)
        assert checked.returncode == 0, checked.stderr
        with (self.folder / "stderr.log").open("wb") as stderr:
            self.process = subprocess.Popen(
                [*command, "-g", "daemon off;"],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
            )
        deadline = time.monotonic() + WAIT_S
        while True:
            assert self.process.poll() is None, self.errors()
            try:
                httpx.get(f"{self.base}/nginx-up", timeout=2.0)
                return self
            except httpx.TransportError:
                assert time.monotonic() < deadline, f"nginx did not listen:\n{self.errors()}"
                time.sleep(0.1)

    def reload(self) -> None:
        """As an operator reloads it (SIGHUP): new workers, which know no failed upstream.
        Returns once the old workers are gone: until then they may still take a request, and
        route it by what they knew."""
        assert self.process is not None
        log = self.errors()
        started, exited = log.count("start worker process"), log.count("exited with code")
        self.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + WAIT_S
        while True:
            log = self.errors()
            if (
                log.count("start worker process") > started
                and log.count("exited with code") > exited
            ):
                return
            assert time.monotonic() < deadline, f"nginx did not reload:\n{log}"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGQUIT)  # graceful: closes the websockets too
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def errors(self) -> str:
        logs = ("stderr.log", "main-error.log", "rallypoint.error.log")
        return "\n".join(
            (self.folder / name).read_text(errors="replace")
            for name in logs
            if (self.folder / name).exists()
        )

    def access(self, method: str, path: str) -> list[dict[str, str]]:
        """The access log's lines for ``method path``: their status and the upstream(s)."""
        log = self.folder / "rallypoint.access.log"
        lines = log.read_text(encoding="utf-8").splitlines() if log.exists() else []
        out = []
        for line in lines:
            if f'"{method} {path}"' in line:
                fields = dict(re.findall(r'(upstream|upstream_status)="([^"]*)"', line))
                out.append(fields)
        return out


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    require_nginx()
    url = postgis_demo_database("nginx_front", USERS)
    yield url
    drop_database(url)


@pytest.fixture(scope="module")
def processes(
    database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[ServerProcess]]:
    folder = tmp_path_factory.mktemp("processes")
    servers = [
        ServerProcess(database, folder / f"p{i}.log", ws_heartbeat_s=HEARTBEAT_S) for i in range(2)
    ]
    try:
        for server in servers:
            server.start(wait=False)
        for server in servers:
            server.wait_ready()
        yield servers
    finally:
        for server in servers:
            server.stop()


@pytest.fixture(scope="module")
def nginx(
    processes: list[ServerProcess], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Nginx]:
    front = Nginx(tmp_path_factory.mktemp("nginx"), processes)
    front.start()
    yield front
    front.stop()


@pytest.fixture
def front(nginx: Nginx, processes: list[ServerProcess]) -> Nginx:
    """nginx with both processes running (a test before may have killed one: it is started
    again, and nginx reloaded so that it routes to it at once rather than after fail_timeout)."""
    dead = [server for server in processes if not server.running]
    for server in dead:
        server.process = None
        server.start()
    if dead:
        nginx.reload()
    return nginx


# -- helpers ----------------------------------------------------------------------------------


def route(key: str) -> dict[str, str]:
    return {"Cookie": f"{COOKIE}={key}"}


def sign_in(front: Nginx, username: str, key: str) -> dict[str, str]:
    answer = httpx.post(
        f"{front.base}/api/auth/login",
        json={"username": username, "password": TEST_PASSWORD},
        headers=route(key),
        timeout=WAIT_S,
    )
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}", **route(key)}


def wait_for_line(server: ServerProcess, needle: str, after: int = 0) -> None:
    """Until ``needle`` is in the process's log, after its first ``after`` characters."""
    deadline = time.monotonic() + WAIT_S
    while needle not in server.output()[after:]:
        assert time.monotonic() < deadline, f"{server.name} never logged {needle!r}"
        time.sleep(0.05)


def served_by(front: Nginx, processes: list[ServerProcess], key: str) -> ServerProcess:
    """The process a request with route ``key`` reaches: a path no one else asks for, found in
    one process's own log, and nginx's log must name the same process."""
    path = f"/probe/{uuid.uuid4().hex}"
    answer = httpx.get(f"{front.base}{path}", headers=route(key), timeout=WAIT_S)
    assert answer.status_code == 404, answer.text
    deadline = time.monotonic() + WAIT_S
    while True:  # each log is written as the request ends, maybe after the client has read it
        found = [p for p in processes if f"GET {path} 404" in p.output()]
        lines = front.access("GET", path)
        if found and lines:
            break
        assert time.monotonic() < deadline, f"{path}: logged by {found}, nginx: {lines}"
        time.sleep(0.05)
    assert len(found) == 1, [p.name for p in found]
    [line] = lines
    assert line["upstream"] == f"127.0.0.1:{found[0].port}", line
    return found[0]


def keys_by_process(front: Nginx, processes: list[ServerProcess]) -> dict[str, str]:
    """A route key that reaches each process (process name -> key)."""
    keys: dict[str, str] = {}
    for i in range(32):
        key = f"front-key-{i}"
        keys.setdefault(served_by(front, processes, key).name, key)
        if len(keys) == len(processes):
            return keys
    raise AssertionError(f"32 route keys reached only {sorted(keys)}: nginx does not spread")


class Closed(Exception):
    """The websocket closed (nginx or the process closed it)."""


class Subscriber:
    """A websocket client through nginx: a task reads every message as it comes and answers
    each ping at once (the processes ping every second and close a client that is late), and
    keeps the other messages for the test to take."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.pings = 0
        self.received: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        #: The close code received, once closed (None for a connection that just dropped).
        self.close_code: int | None = None
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for frame in self.ws:
                message: dict[str, Any] = json.loads(frame)
                if message["type"] == "ping":
                    self.pings += 1
                    await self.ws.send(json.dumps({"type": "pong"}))
                else:
                    self.received.put_nowait(message)
        except ConnectionClosed:
            pass
        finally:
            self.close_code = self.ws.close_code
            self.received.put_nowait(None)

    async def recv(self, timeout: float = WAIT_S) -> dict[str, Any]:
        """The next message that is not a ping; :class:`Closed` once the connection is."""
        message = await asyncio.wait_for(self.received.get(), timeout)
        if message is None:
            self.received.put_nowait(None)  # closed for every later call too
            raise Closed
        return message

    async def until(self, kind: str, timeout: float = WAIT_S) -> list[dict[str, Any]]:
        """Messages up to and including the first of type ``kind``."""
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while not out or out[-1]["type"] != kind:
            out.append(await self.recv(max(deadline - time.monotonic(), 0.01)))
        return out

    async def idle(self, pings: int, timeout: float = WAIT_S) -> None:
        """Until ``pings`` more pings were answered, with no other message and no close."""
        target = self.pings + pings
        async with asyncio.timeout(timeout):
            while self.pings < target:
                assert self.received.empty(), self.received.get_nowait()
                await asyncio.sleep(0.05)
        assert self.received.empty(), self.received.get_nowait()

    async def until_closed(self, timeout: float = WAIT_S) -> list[dict[str, Any]]:
        """The messages left, until the connection closes."""
        out: list[dict[str, Any]] = []
        with contextlib.suppress(Closed):
            while True:
                out.append(await self.recv(timeout))
        return out


@asynccontextmanager
async def subscribed(
    front: Nginx, headers: dict[str, str], last_seq: int | None = None, *, url: str = ""
) -> AsyncIterator[Subscriber]:
    """A connection through nginx that has subscribed to the demo site."""
    async with connect(url or front.ws_url, additional_headers=headers, open_timeout=WAIT_S) as ws:
        subscribe = {"type": "subscribe", "site": DEMO_ID, "incident": None, "last_seq": last_seq}
        await ws.send(json.dumps(subscribe))
        client = Subscriber(ws)
        try:
            yield client
        finally:
            client.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await client.reader


def activate(front: Nginx, headers: dict[str, str]) -> dict[str, Any]:
    answer = httpx.post(
        f"{front.base}{SITE}/incidents",
        json={**CHLORINE_ACTIVATION, "second_incident": True},
        headers=headers,
        timeout=WAIT_S,
    )
    assert answer.status_code == 201, answer.text
    picture: dict[str, Any] = answer.json()
    return picture


def event_seqs(messages: list[dict[str, Any]]) -> list[int]:
    return [m["seq"] for m in messages if m["type"] == "event"]


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            # A data: URL is inline (the page's empty favicon): nothing to fetch.
            if name in ("src", "href") and value and not value.startswith(("#", "data:")):
                self.urls.append(value)


# -- tests ------------------------------------------------------------------------------------


def test_health_and_the_map_wall_with_its_files_through_nginx(front: Nginx) -> None:
    health = httpx.get(f"{front.base}/healthz", timeout=WAIT_S)
    assert health.status_code == 200, health.text
    assert health.json()["status"] == "ok"
    page = httpx.get(f"{front.base}/", timeout=WAIT_S)
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    # A client without the route cookie is given one; one that has it is not given another.
    given = page.headers.get("set-cookie", "")
    assert re.match(rf"{COOKIE}=[0-9a-f]{{32}}; Path=/;", given), given
    assert "HttpOnly" in given
    again = httpx.get(f"{front.base}/", headers=route("k"), timeout=WAIT_S)
    assert "set-cookie" not in again.headers
    parser = _Assets()
    parser.feed(page.text)
    assert parser.urls, "the wall's page names no files"
    for url in parser.urls:
        assert not re.match(r"^(https?:)?//", url), f"the wall loads {url} from elsewhere"
        asset = httpx.get(urljoin(f"{front.base}/", url), timeout=WAIT_S)
        assert asset.status_code == 200, f"{url}: {asset.status_code}"


def test_sign_in_and_the_api_through_nginx(front: Nginx) -> None:
    headers = sign_in(front, "front-viewer-a", "any")
    events = httpx.get(f"{front.base}{SITE}/events", headers=headers, timeout=WAIT_S)
    assert events.status_code == 200, events.text
    assert "events" in events.json()
    # Links the processes write name the address the client used (Host and port kept).
    ogc = httpx.get(f"{front.base}/ogc", headers=headers, timeout=WAIT_S)
    assert ogc.status_code == 200, ogc.text
    hrefs = [link["href"] for link in ogc.json()["links"]]
    assert hrefs and all(h.startswith(f"{front.base}/") for h in hrefs), hrefs


def failed_sign_in(front: Nginx, source: str, claimed: str) -> None:
    """A wrong password through nginx, sent from the loopback address ``source``, with an
    ``X-Forwarded-For`` header claiming ``claimed``."""
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport, timeout=WAIT_S) as client:
        answer = client.post(
            f"{front.base}/api/auth/login",
            json={"username": "front-viewer-c", "password": "not the password"},
            headers={"X-Forwarded-For": claimed},
        )
    assert answer.status_code == 401, answer.text


def test_the_processes_see_the_client_address_and_not_what_it_claims(
    front: Nginx, database: str
) -> None:
    # nginx reaches the processes from 127.0.0.1, which uvicorn trusts to say who the client
    # is. A client from 127.0.0.2 shows that the real address is passed on; a client from
    # 127.0.0.1 (trusted too) that nginx replaces what it claims rather than appending to it.
    failed_sign_in(front, "127.0.0.2", "203.0.113.7")
    failed_sign_in(front, "127.0.0.1", "203.0.113.8")
    engine = create_engine(database)
    try:
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT key, failures FROM login_failures"))
            failures = {str(key): int(count) for key, count in rows}
    finally:
        engine.dispose()
    # The failed sign-ins are counted per address in the database (docs/security.md); a right
    # password takes its count back, so the other tests' sign-ins leave 0 for 127.0.0.1.
    assert failures.get("address:127.0.0.2") == 1, failures
    assert failures.get("address:127.0.0.1") == 1, failures
    assert not {"address:203.0.113.7", "address:203.0.113.8"} & set(failures), failures


def test_a_route_key_sticks_to_one_process_and_keys_spread_over_both(
    front: Nginx, processes: list[ServerProcess]
) -> None:
    keys = keys_by_process(front, processes)
    assert set(keys) == {p.name for p in processes}
    for name, key in keys.items():
        assert {served_by(front, processes, key).name for _ in range(5)} == {name}


def test_a_websocket_through_nginx_gets_its_snapshot_and_heartbeats_and_stays(
    front: Nginx, processes: list[ServerProcess]
) -> None:
    keys = keys_by_process(front, processes)
    on_first, on_second = processes
    first, second = keys[on_first.name], keys[on_second.name]
    headers = sign_in(front, "front-viewer-b", first)
    logged_before = len(front.access("GET", "/ws"))

    async def scenario() -> None:
        for _ in range(2):  # a reconnect with the same key comes back to the same process
            async with subscribed(front, headers) as client:
                snapshot = await client.recv()
                assert snapshot["type"] == "snapshot", snapshot
                assert snapshot["site_id"] == DEMO_ID
                # Pings through nginx, pongs back: the process would close it (4408) otherwise.
                await client.idle(3)
        # A browser's way in: a ticket asked over REST, used on the websocket, whichever
        # process each lands on.
        ticket = httpx.post(
            f"{front.base}/api/auth/ws-ticket",
            headers={**headers, **route(second)},
            timeout=WAIT_S,
        ).json()["ticket"]
        url = f"{front.ws_url}?ticket={ticket}"
        async with subscribed(front, route(second), url=url) as client:
            assert (await client.recv())["type"] == "snapshot"

    asyncio.run(scenario())
    assert on_first.output().count("front-viewer-b subscribed to") == 2
    assert on_second.output().count("front-viewer-b subscribed to") == 1
    # One upstream per websocket for its whole life, as nginx logged each when it closed.
    deadline = time.monotonic() + WAIT_S
    while len(lines := front.access("GET", "/ws")[logged_before:]) < 3:
        assert time.monotonic() < deadline, lines
        time.sleep(0.05)
    upstreams = [line["upstream"] for line in lines]
    assert upstreams.count(f"127.0.0.1:{on_first.port}") == 2, upstreams
    assert upstreams.count(f"127.0.0.1:{on_second.port}") == 1, upstreams
    assert all(line["upstream_status"] == "101" for line in lines), lines


def test_stopping_a_websockets_process_tells_the_client_which_resumes_on_the_other(
    front: Nginx, processes: list[ServerProcess]
) -> None:
    keys = keys_by_process(front, processes)
    stopped, other = processes[1], processes[0]
    viewer = sign_in(front, "front-viewer-b", keys[stopped.name])
    log_mark = len(other.output())

    async def scenario() -> tuple[int, int | None, list[dict[str, Any]]]:
        async with subscribed(front, viewer) as client:
            seq = (await client.recv())["seq"]
            await asyncio.to_thread(stopped.stop)  # SIGTERM, as systemd stops it
            await client.until_closed()
            code = client.close_code
        async with subscribed(front, viewer, last_seq=seq) as again:
            return seq, code, await again.until("caught_up")

    seq, code, resumed = asyncio.run(scenario())
    assert code == 1012, code  # "the server is restarting" (docs/protocol.md), through nginx
    assert resumed[-1]["type"] == "caught_up" and resumed[-1]["seq"] >= seq
    assert (
        f"front-viewer-b subscribed to {DEMO_ID} (incident None, last_seq {seq})"
        in (other.output()[log_mark:])
    )


def test_killing_a_websockets_process_it_resumes_on_the_other_with_nothing_lost(
    front: Nginx, processes: list[ServerProcess]
) -> None:
    keys = keys_by_process(front, processes)
    doomed, survivor = processes
    key = keys[doomed.name]
    viewer = sign_in(front, "front-viewer-a", key)
    commander = sign_in(front, "front-commander", key)
    watcher = sign_in(front, "front-viewer-c", keys[survivor.name])
    log_mark, doomed_mark = len(survivor.output()), len(doomed.output())

    async def scenario() -> tuple[int, int, list[dict[str, Any]], list[int]]:
        async with (
            subscribed(front, viewer) as a,  # on the process about to die
            subscribed(front, watcher) as b,  # on the other one all along
        ):
            start = (await a.recv())["seq"]
            assert (await b.recv())["seq"] == start
            # Each where its key sends it, by the processes' own logs.
            subscribed_a, subscribed_c = (
                "front-viewer-a subscribed to",
                "front-viewer-c subscribed to",
            )
            await asyncio.to_thread(wait_for_line, doomed, subscribed_a, doomed_mark)
            await asyncio.to_thread(wait_for_line, survivor, subscribed_c, log_mark)
            first = await asyncio.to_thread(activate, front, commander)
            seqs_a = event_seqs(await a.until("incident"))
            assert seqs_a == list(range(start + 1, first["seq"] + 1))

            await asyncio.to_thread(doomed.kill)
            await a.until_closed()  # nginx closes the client's side when its process goes
            last_seq = seqs_a[-1]
            # Meanwhile the commander acts again, with the same route key: nginx finds the
            # process gone (connection refused: nothing was sent) and passes the POST on.
            second = await asyncio.to_thread(activate, front, commander)
            assert second["seq"] > last_seq

            async with subscribed(front, viewer, last_seq=last_seq) as again:
                resumed = await again.until("caught_up")
                assert [m["type"] for m in resumed if m["type"] != "event"] == ["caught_up"]
                upto = resumed[-1]["seq"]
                assert upto >= second["seq"]
                assert event_seqs(resumed) == list(range(last_seq + 1, upto + 1))
                ids = {m["event"]["incident_id"] for m in resumed if m["type"] == "event"}
                assert second["incident"]["id"] in ids
                # Live again, on the survivor: a note there reaches the resumed client once.
                note = await asyncio.to_thread(
                    httpx.post,
                    f"{front.base}{SITE}/incidents/{second['incident']['id']}/notes",
                    json={"text": "after the failover"},
                    headers=commander,
                    timeout=WAIT_S,
                )
                assert note.status_code == 200, note.text
                [logged] = note.json()["events"]
                live: list[dict[str, Any]] = []
                while not live or live[-1]["seq"] < logged["seq"]:
                    message = await again.recv()
                    if message["type"] == "event":
                        live.append(message)
                assert [m["seq"] for m in live] == list(range(upto + 1, logged["seq"] + 1))
                assert "after the failover" in json.dumps(live[-1]["event"]), live[-1]

            # The watcher, on the survivor all along, saw the whole stream: the events the
            # dead process wrote too, which its own process learnt from the database.
            seqs_b: list[int] = []
            with contextlib.suppress(TimeoutError):
                while not seqs_b or seqs_b[-1] < logged["seq"]:
                    message = await b.recv()
                    if message["type"] == "event":
                        seqs_b.append(message["seq"])
            assert b.reader.done() is False, "the watcher's connection closed"
        return start, last_seq, resumed, seqs_b

    start, last_seq, resumed, seqs_b = asyncio.run(scenario())
    # The resumed connection was the survivor's: its own log says so, with the last_seq sent.
    resumed_line = f"front-viewer-a subscribed to {DEMO_ID} (incident None, last_seq {last_seq})"
    assert resumed_line in survivor.output()[log_mark:]
    assert not doomed.running
    # The second activation went to the dead process first, was refused, and went on.
    passed_on = front.access("POST", f"{SITE}/incidents")[-1]
    assert passed_on == {
        "upstream": f"127.0.0.1:{doomed.port}, 127.0.0.1:{survivor.port}",
        "upstream_status": "502, 201",
    }, passed_on
    # Events written by the other process reach this process's subscribers live only through
    # its log follower (command/log_follower.py: woken by NOTIFY rallypoint_events, it reads
    # the rows). Without it the watcher gets only what its own process wrote, and this fails.
    assert seqs_b == list(range(start + 1, seqs_b[-1] + 1 if seqs_b else start + 1)), seqs_b
    assert seqs_b and seqs_b[-1] >= resumed[-1]["seq"], seqs_b
