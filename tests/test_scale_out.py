"""Several ``rallypoint serve`` processes on one PostGIS database (issue 17), each a real
subprocess (tests/processes.py), their subscribers real websocket clients over real sockets:

- commands sent at once to three processes keep each site's sequence numbers gapless and
  unique, and every subscriber of every process receives the same ordered stream;
- a command decided on one process takes what another logged a moment before into account
  (the step another process completed is not completed twice);
- killing the process that leads the deadlines mid-incident: another takes over, and every
  deadline and call-tree fallback fires once, none lost and none twice;
- killing a process: its clients resume on another with their last sequence number and see
  every event exactly once.

The processes share one clock (``RALLYPOINT_CLOCK_FILE``, plans.clock.FileClock): the test moves
it for all of them, no waiting for real deadlines.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy.engine import make_url
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from command.auth import Role
from plans.clock import FileClock
from tests.conftest import DEMO_ID, DEMO_PLANS, _admin
from tests.mosquitto import Broker, require_mosquitto
from tests.processes import (
    ServerProcess,
    drop_database,
    postgis_demo_database,
    require_postgis,
)
from tests.test_incidents import chlorine

SITE = f"/api/sites/{DEMO_ID}"
USERS = {
    "cmd-a": Role.COMMANDER,
    "cmd-b": Role.COMMANDER,
    "viewer-c": Role.VIEWER,
    "planner-d": Role.PLANNER,
}
T0 = datetime(2026, 12, 3, 6, 0, tzinfo=UTC)
WAIT_S = 60.0  # the most anything may take on a loaded machine
CL2 = "S-057"  # a chlorine detector: warning 0.5, alarm 1, high alarm 3 ppm


def wait_for(condition: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


class Cluster:
    """Three processes on one database, with one clock file."""

    def __init__(self, url: str, folder: Path, count: int = 3, **settings: Any) -> None:
        self.clock = folder / "clock"
        FileClock.set(self.clock, T0)
        self.now = T0
        self.servers = [
            ServerProcess(
                url,
                folder / f"p{i}.log",
                name=f"p{i}",
                clock_file=self.clock,
                ws_heartbeat_s=2,
                **settings,
            )
            for i in range(count)
        ]

    def start(self) -> Cluster:
        for server in self.servers:
            server.start(wait=False)
        for server in self.servers:
            server.wait_ready()
        return self

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        FileClock.set(self.clock, self.now)

    def leader(self) -> ServerProcess | None:
        leading = [s for s in self.servers if s.running and _health(s).get("leading")]
        assert len(leading) <= 1, [s.name for s in leading]
        return leading[0] if leading else None


def _health(server: ServerProcess) -> dict[str, Any]:
    try:
        answer: dict[str, Any] = httpx.get(f"{server.base}/healthz", timeout=5).json()
        return answer
    except httpx.HTTPError:
        return {}


def events(server: ServerProcess, auth: dict[str, str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    after = 0
    while True:
        answer = httpx.get(
            f"{server.base}{SITE}/events", params={"after": after}, headers=auth, timeout=30
        )
        assert answer.status_code == 200, answer.text
        page = answer.json()["events"]
        if not page:
            return out
        out += page
        after = page[-1]["seq"]


class Subscriber:
    """A websocket client of one process, in a thread: answers pings, keeps every event."""

    def __init__(self, server: ServerProcess, auth: dict[str, str], last_seq: int | None = None):
        self.server = server
        self.events: list[dict[str, Any]] = []
        self.messages: list[dict[str, Any]] = []  # everything but pings
        self.first: dict[str, Any] | None = None
        self.closed = threading.Event()
        self.ready = threading.Event()
        # Entered as a context (websockets 17 warns otherwise); left by close().
        self.ws: ClientConnection = connect(
            server.ws_url, additional_headers=auth, open_timeout=30, max_size=2**26
        ).__enter__()
        self.ws.send(
            json.dumps(
                {"type": "subscribe", "site": DEMO_ID, "incident": None, "last_seq": last_seq}
            )
        )
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for raw in self.ws:
                message = json.loads(raw)
                if self.first is None:
                    self.first = message
                    self.ready.set()
                if message["type"] != "ping":
                    self.messages.append(message)
                if message["type"] == "ping":
                    self.ws.send(json.dumps({"type": "pong"}))
                elif message["type"] == "event":
                    self.events.append(message)
                elif message["type"] == "caught_up":
                    self.ready.set()
        except (ConnectionClosed, OSError):
            pass
        finally:
            self.ready.set()
            self.closed.set()

    @property
    def start_seq(self) -> int:
        assert self.first is not None
        return int(self.first.get("seq", 0))

    def seqs(self) -> list[int]:
        return [int(e["seq"]) for e in self.events]

    def close(self) -> None:
        self.ws.close()
        self.closed.wait(10)


@pytest.fixture
def cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    url = postgis_demo_database(f"scale_{request.node.name[5:25]}", USERS)
    running = Cluster(url, tmp_path)
    try:
        yield running.start()
    finally:
        running.stop()
        drop_database(url)


def test_concurrent_commands_on_three_processes_keep_one_gapless_ordered_stream(
    cluster: Cluster,
) -> None:
    a, b, c = cluster.servers
    auths = [
        s.sign_in(u) for s, u in zip(cluster.servers, ("cmd-a", "cmd-b", "cmd-a"), strict=True)
    ]
    viewer = [s.sign_in("viewer-c") for s in cluster.servers]
    subscribers = [Subscriber(s, auth) for s in cluster.servers for auth in (viewer[0],) * 2]
    for subscriber in subscribers:
        assert subscriber.ready.wait(WAIT_S), "no snapshot"
    answer = httpx.post(f"{a.base}{SITE}/incidents", json=chlorine(), headers=auths[0], timeout=60)
    assert answer.status_code == 201, answer.text
    incident = answer.json()["incident"]["id"]

    def readings(i: int) -> None:
        server, auth = cluster.servers[i % 3], auths[i % 3]
        value = 1.4 if i % 2 else 0.0  # in and out of the alarm tier: an event each time
        body = {"readings": [{"sensor_id": CL2, "value": value}]}
        reply = httpx.post(f"{server.base}{SITE}/readings", json=body, headers=auth, timeout=60)
        assert reply.status_code == 200, reply.text

    def step(i: int, step_id: str) -> tuple[int, str]:
        server, auth = cluster.servers[i % 3], auths[i % 3]
        url = f"{server.base}{SITE}/incidents/{incident}/steps/{step_id}/acknowledge"
        reply = httpx.post(url, json={}, headers=auth, timeout=60)
        return reply.status_code, reply.text

    picture = httpx.get(f"{b.base}{SITE}/incidents/{incident}", headers=auths[1], timeout=60)
    assert picture.status_code == 200, picture.text
    listed = picture.json()["plan"]["steps"]
    steps = [s["id"] for s in listed if s["status"] == "ready"][:6]
    assert len(steps) >= 3, listed
    with ThreadPoolExecutor(max_workers=9) as pool:
        reading_jobs = [pool.submit(readings, i) for i in range(30)]
        # The same step acknowledged on all three processes at once: once, the others refused.
        step_jobs = {(sid, i): pool.submit(step, i, sid) for sid in steps for i in range(3)}
        for job in reading_jobs:
            job.result()
        replies = {key: job.result() for key, job in step_jobs.items()}
    codes = {key: code for key, (code, _) in replies.items()}
    for sid in steps:
        started = [i for i in range(3) if codes[(sid, i)] == 200]
        assert len(started) == 1, (sid, replies)
        assert all(codes[(sid, i)] == 409 for i in range(3) if i not in started), codes

    log = events(c, viewer[2])
    seqs = [e["seq"] for e in log]
    assert seqs == list(range(1, len(seqs) + 1)), "the log has gaps or repeats"
    starts = [e for e in log if e["type"] == "plan.step.acknowledged"]
    assert sorted(e["data"]["step_id"] for e in starts) == sorted(steps)  # each once
    last = seqs[-1]
    for subscriber in subscribers:
        wait_for(partial(_has, subscriber, last), f"every event on {subscriber.server.name}")
    by_hash = {e["seq"]: e["hash"] for e in log}
    for subscriber in subscribers:
        got = subscriber.seqs()
        expected = list(range(subscriber.start_seq + 1, last + 1))
        assert got == expected, (subscriber.server.name, got[:20], expected[:20])
        assert all(e["event"]["hash"] == by_hash[e["seq"]] for e in subscriber.events)
    for subscriber in subscribers:
        subscriber.close()


def _has(subscriber: Subscriber, last: int) -> bool:
    return bool(subscriber.events) and subscriber.seqs()[-1] >= last


def _activation_steps(plan_id: str, level: str) -> dict[str, float]:
    """Read from the plan's YAML itself (not through the server): the steps of ``level`` and
    below timed from the activation, and their seconds."""
    document = yaml.safe_load((DEMO_PLANS / f"{plan_id}.yaml").read_text(encoding="utf-8"))
    order = ["L1", "L2", "L3", "L4"]
    out: dict[str, float] = {}
    for name, entry in document["levels"].items():
        if order.index(name) > order.index(level):
            continue
        for s in entry.get("steps", []):
            target = s.get("target") or {}
            if target.get("after") == "activation" and "within_s" in target:
                out[s["id"]] = float(target["within_s"])
    return out


def test_killing_the_leader_mid_incident_fires_each_deadline_once(cluster: Cluster) -> None:
    wait_for(lambda: cluster.leader() is not None, "a leader")
    leader = cluster.leader()
    assert leader is not None
    other = next(s for s in cluster.servers if s is not leader)
    auth = other.sign_in("cmd-a")
    answer = httpx.post(f"{other.base}{SITE}/incidents", json=chlorine(), headers=auth, timeout=60)
    assert answer.status_code == 201, answer.text
    incident = answer.json()["incident"]["id"]
    level = answer.json()["incident"]["level"]
    timed = _activation_steps("chlorine-leak", level)
    # The incident's steps as the server lists them agree with the plan file.
    listed = {s["id"] for s in answer.json()["plan"]["steps"] if s["due_at"] is not None}
    assert set(timed) <= listed, (timed, listed)
    assert timed, "the plan has steps timed from the activation"
    early = sorted(set(timed.values()))[0]

    def overdue(server: ServerProcess) -> list[str]:
        return [
            e["data"]["step_id"]
            for e in events(server, auth)
            if e["type"] == "plan.step.overdue" and e["incident_id"] == incident
        ]

    # Past the first deadline: the leader fires it (the incident was activated elsewhere).
    cluster.advance(early + 1)
    first = {s for s, due in timed.items() if due < early + 1}
    wait_for(lambda: set(overdue(other)) >= first, "the first deadlines")

    # The leader dies mid-incident; another takes over.
    killed_at = time.monotonic()
    leader.kill()
    wait_for(lambda: cluster.leader() is not None, "a new leader", timeout=30)
    took_over_s = time.monotonic() - killed_at
    print(f"took over {took_over_s:.2f} s after the leader was killed")
    assert took_over_s < 10  # within 2 s on a quiet machine (docs/benchmarks.md)
    survivor = next(s for s in cluster.servers if s.running)
    cluster.advance(max(timed.values()) + 60 - (early + 1))
    every = set(timed)
    wait_for(lambda: set(overdue(survivor)) >= every, "every later deadline")
    time.sleep(3)  # three more ticks of the new leader: nothing fires again
    fired = overdue(survivor)
    assert sorted(fired) == sorted(every), fired  # each once: none lost, none twice
    # Call-tree fallbacks: each unanswered call-out falls back once.
    log = events(survivor, auth)
    fallbacks = [
        e["data"]["after"]
        for e in log
        if e["type"] == "notification.requested" and "after" in e["data"]
    ]
    assert fallbacks and len(fallbacks) == len(set(fallbacks)), fallbacks
    seqs = [e["seq"] for e in log]
    assert seqs == list(range(1, len(seqs) + 1))


def test_clients_of_a_killed_process_resume_on_another_with_nothing_missed(
    cluster: Cluster,
) -> None:
    a, b, c = cluster.servers
    auth = a.sign_in("cmd-a")
    viewer = b.sign_in("viewer-c")
    watcher = Subscriber(b, viewer)
    assert watcher.ready.wait(WAIT_S)
    answer = httpx.post(f"{a.base}{SITE}/incidents", json=chlorine(), headers=auth, timeout=60)
    assert answer.status_code == 201, answer.text
    wait_for(lambda: bool(watcher.events), "the activation's events on b")
    b.kill()
    assert watcher.closed.wait(WAIT_S)
    seen = watcher.seqs()
    # Meanwhile the incident goes on, commanded on a.
    for value in (1.4, 0.0, 1.4):
        body = {"readings": [{"sensor_id": CL2, "value": value}]}
        reply = httpx.post(f"{a.base}{SITE}/readings", json=body, headers=auth, timeout=60)
        assert reply.status_code == 200, reply.text
    resumed = Subscriber(c, viewer, last_seq=seen[-1])
    assert resumed.ready.wait(WAIT_S)
    for value in (0.0, 1.4):  # and live events after the resume
        body = {"readings": [{"sensor_id": CL2, "value": value}]}
        reply = httpx.post(f"{a.base}{SITE}/readings", json=body, headers=auth, timeout=60)
        assert reply.status_code == 200, reply.text
    last = events(a, auth)[-1]["seq"]
    wait_for(lambda: bool(resumed.events) and resumed.seqs()[-1] >= last, "the live events on c")
    together = seen + resumed.seqs()
    assert together == list(range(seen[0], last + 1)), together  # every event, exactly once
    resumed.close()


def test_positions_and_readings_posted_to_one_process_reach_every_process_walls(
    cluster: Cluster,
) -> None:
    """Positions, and readings that move no tier, are not logged: the process that takes them
    relays them (coalesced, four times a second) and the others' walls see them, and so do
    their snapshots and sensor states."""
    a, b, c = cluster.servers
    auth = a.sign_in("cmd-a")
    viewer = b.sign_in("viewer-c")
    watcher = Subscriber(b, viewer)
    assert watcher.ready.wait(WAIT_S)
    muster, (lon, lat) = "Z-033", (121.34490975, 30.7184466)
    seen_at = (cluster.now - timedelta(seconds=5)).isoformat()
    body = {
        "positions": [
            {"person_id": pid, "lon": lon, "lat": lat, "observed_at": seen_at}
            for pid in ("P-0001", "P-0002", "P-0003")
        ]
    }
    reply = httpx.post(f"{a.base}{SITE}/positions", json=body, headers=auth, timeout=60)
    assert reply.status_code == 200, reply.text

    def arrived() -> bool:
        return any(
            m.get("type") == "positions"
            and all(m.get("at_muster", {}).get(p) == muster for p in ("P-0001", "P-0002", "P-0003"))
            for m in watcher.messages
        )

    wait_for(arrived, "the positions at b's wall")
    # A reading that moves no tier is not logged: relayed too, b's sensor state shows it.
    quiet = {"readings": [{"sensor_id": CL2, "value": 0.2}]}
    reply = httpx.post(f"{a.base}{SITE}/readings", json=quiet, headers=auth, timeout=60)
    assert reply.status_code == 200 and reply.json()["events"] == [], reply.text

    def shown_on_b() -> Any:
        state = httpx.get(f"{b.base}{SITE}/sensors/state", headers=viewer, timeout=30).json()
        [sensor] = [s for s in state["sensors"] if s["id"] == CL2] or [{}]
        return (sensor.get("last_reading") or {}).get("value")

    wait_for(lambda: shown_on_b() == 0.2, "the reading in b's sensor state")
    [positions, *_] = [
        m
        for m in watcher.messages
        if m.get("type") == "positions" and m.get("at_muster", {}).get("P-0001") == muster
    ]
    assert positions["positions"]["P-0001"] == pytest.approx([lon, lat])
    # A wall opened on c afterwards draws them where they are.
    late = Subscriber(c, c.sign_in("viewer-c"))
    assert late.ready.wait(WAIT_S)
    assert late.first is not None and late.first["type"] == "snapshot"
    assert late.first["positions"]["P-0002"][:2] == pytest.approx([lon, lat])
    assert late.first["at_muster"]["P-0003"] == muster
    watcher.close()
    late.close()


def test_mqtt_is_taken_by_the_leader_and_by_the_next_one_when_it_dies(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Two processes configured with the same broker and client id: only the leader
    subscribes (one persistent session); when it dies, the next leader takes up what waited
    in the session. Every reading published is taken once."""
    require_mosquitto()
    broker = Broker(tmp_path / "mosquitto").start()
    url = postgis_demo_database("scale_mqtt", USERS)
    cluster = Cluster(
        url,
        tmp_path,
        count=2,
        mqtt_url=broker.url,
        mqtt_client_id="rallypoint-park",
        mqtt_backoff_initial_s=0.1,
        mqtt_backoff_max_s=0.5,
    )
    topic = f"rallypoint/{DEMO_ID}/readings/gw-1"
    try:
        cluster.start()
        wait_for(lambda: cluster.leader() is not None, "a leader")
        leader = cluster.leader()
        assert leader is not None
        survivor = next(s for s in cluster.servers if s is not leader)
        auth = survivor.sign_in("viewer-c")

        def states() -> list[dict[str, Any]]:
            return [e for e in events(survivor, auth) if e["type"] == "sensor.state"]

        values = [1.4, 0.0, 1.4, 0.0]  # each a change of tier: an event each
        broker.publish(topic, json.dumps({"readings": [{"sensor_id": CL2, "value": values[0]}]}))
        wait_for(lambda: len(states()) == 1, "the first reading")
        leader.kill()
        for value in values[1:]:  # while nobody leads, and after: queued in the session
            broker.publish(topic, json.dumps({"readings": [{"sensor_id": CL2, "value": value}]}))
        wait_for(lambda: len(states()) == len(values), "the readings after the leader died")
        time.sleep(2)  # nothing comes twice
        taken = states()
        assert [e["data"]["to"] for e in taken] == ["alarm", None, "alarm", None]
        assert cluster.leader() is survivor
    finally:
        cluster.stop()
        broker.stop()
        drop_database(url)


def test_an_alarm_delay_set_on_one_process_runs_on_the_one_that_took_the_reading(
    cluster: Cluster,
) -> None:
    """A planner sets an on-delay on one process; a reading over the tier goes to another one
    that does not lead: the delay is its own (it took the reading) and it ends it, once, when
    the shared clock passes it."""
    wait_for(lambda: cluster.leader() is not None, "a leader")
    leader = cluster.leader()
    assert leader is not None
    a, b = [s for s in cluster.servers if s is not leader][:2]
    planner = a.sign_in("planner-d")
    body = {"on_delay_s": 10, "off_delay_s": 0}
    reply = httpx.put(
        f"{a.base}{SITE}/sensors/{CL2}/alarm-settings", json=body, headers=planner, timeout=60
    )
    assert reply.status_code == 200, reply.text
    auth = b.sign_in("cmd-b")
    reading = {"readings": [{"sensor_id": CL2, "value": 1.4}]}
    reply = httpx.post(f"{b.base}{SITE}/readings", json=reading, headers=auth, timeout=60)
    assert reply.status_code == 200, reply.text
    assert reply.json()["events"] == []  # not for 10 s: the delay set on a holds on b

    def alarms() -> list[dict[str, Any]]:
        return [
            e
            for e in events(a, auth)
            if e["type"] == "sensor.state" and e["data"]["sensor_id"] == CL2
        ]

    cluster.advance(11)
    wait_for(lambda: len(alarms()) == 1, "the delayed alarm")
    time.sleep(2)  # two more ticks everywhere: it rose once
    [rose] = alarms()
    assert (rose["data"]["to"], rose["actor"]) == ("alarm", "system")


def test_while_the_database_is_away_requests_get_503_and_then_go_on(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The database refuses connections for a moment (a restart, a promotion): the process
    answers 503 problem+json with Retry-After, not 500, and serves again once it is back."""
    url = postgis_demo_database("scale_away", USERS)
    name = make_url(url).database
    server = ServerProcess(url, tmp_path / "away.log").start()
    try:
        auth = server.sign_in("viewer-c")
        assert httpx.get(f"{server.base}{SITE}/events", headers=auth).status_code == 200
        with _admin(require_postgis()) as admin:
            admin.exec_driver_sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            admin.exec_driver_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
            )
        try:
            away = httpx.get(f"{server.base}{SITE}/events", headers=auth, timeout=30)
            assert away.status_code == 503, away.text
            assert away.headers["content-type"] == "application/problem+json"
            assert away.headers["retry-after"] == "2"
            assert away.json()["type"].endswith("database-unavailable")
        finally:
            with _admin(require_postgis()) as admin:
                admin.exec_driver_sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        wait_for(
            lambda: httpx.get(f"{server.base}{SITE}/events", headers=auth).status_code == 200,
            "the database back",
        )
    finally:
        server.stop()
        drop_database(url)
