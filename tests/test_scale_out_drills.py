"""Drills across several ``rallypoint serve`` processes on one PostGIS database (issue 17), each a
real subprocess (tests/processes.py) on one shared clock (``RALLYPOINT_CLOCK_FILE``):

- an announced drill started on a process that does not lead advances: the leader fires each of
  its injects once, in drill time, as the clock moves, and a player's missed action fires its
  contingency once;
- held on one process and resumed on another, it is one drill: every process answers the same
  state, drill time and injects stop while it is held, and so do its incident's deadlines on the
  leader (``post.paused`` follows the drill's row and log, not the memory of the process held on);
- a blind drill scheduled on one process is started by the leader at its sealed time, once,
  and nothing of it reached any process's log before;
- the secrecy rules hold on every process: a player gets 403 from every drill route and no
  controller material in the log while the drill runs;
- killing the leader mid-drill: another leads, and every inject and missed action is in the log
  exactly once when the drill ends (none twice, none lost);
- and without processes (SQLite too): two apps on one database, orders through one, ticks on
  the other, one drill.

The processes are started once for the module; the test that kills the leader comes last.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from command.auth import Role
from gis.storage.db import Database
from plans.clock import ManualClock
from tests.conftest import DEMO_ID, sign_in, zone_centroid
from tests.processes import ServerProcess, drop_database, postgis_demo_database
from tests.test_scale_out import Cluster, _activation_steps

SITE = f"/api/sites/{DEMO_ID}"
DRILLS = f"{SITE}/drills"
USERS = {"ctl-a": Role.DRILL_CONTROLLER, "cmd-a": Role.COMMANDER}
CL2, WIND = "S-057", "S-005"
#: Controller and evaluator material: in the log only once the drill has ended.
PRIVATE = ("drill.inject", "drill.action_met", "drill.action_missed", "drill.note")
#: Leader ticks waited for before saying that nothing (more) fired: it ticks every second.
QUIET_S = 2.5
WAIT_S = 60.0  # the most anything may take on a loaded machine

#: Timed injects each leaving its own mark in the log (a note on the incident, a casualty),
#: a reading at the start (the drill's own detector tier), a contingency when the first report
#: is missed.
SCENARIO: dict[str, Any] = {
    "id": "scale-drill",
    "title": "Chlorine at the store, on several processes",
    "plan_id": "chlorine-leak",
    "level": "L1",
    "location": {"type": "Point", "coordinates": zone_centroid("Z-027")},
    "hazard": {
        "model": "toxic_release",
        "substance": "chlorine",
        "rate_g_s": 500,
        "wind_speed_m_s": 2,
        "wind_from_deg": 45,
    },
    "injects": [
        {
            "id": "detector",
            "title": "Cl2 at the store reads 1.4 ppm",
            "kind": "reading",
            "at_s": 0,
            "readings": [{"sensor_id": CL2, "value": 1.4}],
        },
        {"id": "m60", "title": "first", "kind": "message", "at_s": 60, "text": "inject m60"},
        {"id": "m180", "title": "second", "kind": "message", "at_s": 180, "text": "inject m180"},
        {
            "id": "c300",
            "title": "a casualty",
            "kind": "casualty",
            "at_s": 300,
            "text": "inject c300",
            "count": 1,
            "location": zone_centroid("Z-027"),
        },
        {"id": "gate", "title": "contingency", "kind": "message", "text": "inject gate"},
    ],
    "expected": [
        {
            "id": "first-report",
            "title": "The detection report is acknowledged",
            "target_s": 60,
            "deadline_s": 120,
            "when": {"type": "plan.step.acknowledged", "data": {"step_id": "l1-detect-report"}},
            "on_miss": ["gate"],
        }
    ],
}
TIMED = {"detector": 0, "m60": 60, "m180": 180, "c300": 300}
#: The text each inject leaves in the log (the reading leaves the drill tier's sensor.state).
MARKS = {"m60": "inject m60", "m180": "inject m180", "c300": "inject c300", "gate": "inject gate"}


def wait_for(condition: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    """Polls twice a second (the event log's readers are rate-limited per token)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def events(server: ServerProcess, auth: dict[str, str]) -> list[dict[str, Any]]:
    """The site's whole log as ``auth`` reads it from ``server`` (waiting when told to)."""
    out: list[dict[str, Any]] = []
    while True:
        answer = httpx.get(
            f"{server.base}{SITE}/events",
            params={"after": out[-1]["seq"] if out else 0, "limit": 1000},
            headers=auth,
            timeout=30,
        )
        if answer.status_code == 429:
            time.sleep(float(answer.json().get("retry_after_s", 1)))
            continue
        assert answer.status_code == 200, answer.text
        page = answer.json()["events"]
        if not page:
            return out
        out += page


class Desk:
    """The module's cluster, its signed-in controller and player, the drill's log readings."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.servers = cluster.servers
        first = self.servers[0]
        self.controller = first.sign_in("ctl-a")
        self.player = first.sign_in("cmd-a")

    def followers(self) -> list[ServerProcess]:
        wait_for(lambda: self.cluster.leader() is not None, "a leader", timeout=30)
        leader = self.cluster.leader()
        return [s for s in self.servers if s.running and s is not leader]

    def order(
        self, server: ServerProcess, path: str, body: dict[str, Any] | None = None
    ) -> httpx.Response:
        return httpx.post(
            f"{server.base}{DRILLS}{path}", json=body, headers=self.controller, timeout=60
        )

    def drill(self, server: ServerProcess, drill_id: str) -> dict[str, Any]:
        answer = httpx.get(f"{server.base}{DRILLS}/{drill_id}", headers=self.controller, timeout=30)
        assert answer.status_code == 200, answer.text
        found: dict[str, Any] = answer.json()
        return found

    def record(self, server: ServerProcess, drill_id: str) -> list[dict[str, Any]]:
        """The drill's controller material so far, as the console reads it."""
        answer = httpx.get(
            f"{server.base}{DRILLS}/{drill_id}/events", headers=self.controller, timeout=30
        )
        assert answer.status_code == 200, answer.text
        found: list[dict[str, Any]] = answer.json()["events"]
        return found

    def fired(self, server: ServerProcess, drill_id: str) -> list[str]:
        return [
            str(e["data"]["inject_id"])
            for e in self.record(server, drill_id)
            if e["type"] == "drill.inject" and e["seq"] is None
        ]

    def marks(self, server: ServerProcess, drill_id: str) -> list[str]:
        """The injects' marks in the site's log (read as a player reads it), in log order."""
        out = []
        for event in events(server, self.player):
            if event["actor"] != f"drill:{drill_id}":
                continue
            text = json.dumps(event["data"], ensure_ascii=False)
            out += [name for name, mark in MARKS.items() if mark in text]
        return out

    def start(self, server: ServerProcess) -> dict[str, Any]:
        answer = self.order(server, "", {"scenario_id": SCENARIO["id"], "mode": "announced"})
        assert answer.status_code == 201, answer.text
        drill: dict[str, Any] = answer.json()
        assert drill["state"] == "running", drill  # not suspended by a drill's own alarm
        return drill


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desk]:
    url = postgis_demo_database("scale_drills", USERS)
    cluster = Cluster(url, tmp_path_factory.mktemp("scale_drills"))
    try:
        cluster.start()
        made = Desk(cluster)
        answer = httpx.post(
            f"{cluster.servers[0].base}{DRILLS}/scenarios",
            json=SCENARIO,
            headers=made.controller,
            timeout=60,
        )
        assert answer.status_code == 201, answer.text
        yield made
    finally:
        cluster.stop()
        drop_database(url)


def test_an_announced_drill_started_on_a_follower_fires_each_inject_once_in_drill_time(
    desk: Desk,
) -> None:
    starter, reader = desk.followers()
    began = desk.cluster.now
    drill = desk.start(starter)
    drill_id = drill["id"]
    # At the start (on the process that started it): the reading at 0 s.
    assert desk.fired(reader, drill_id) == ["detector"]
    # The clock moves; the leader fires each inject when drill time reaches it, and only then.
    for step in (30, 40, 40, 40, 40, 40, 40, 40):  # to 310 s
        desk.cluster.advance(step)
        drill_s = (desk.cluster.now - began).total_seconds()
        due = {k for k, at in TIMED.items() if at <= drill_s}
        wait_for(
            lambda due=due: due <= set(desk.fired(reader, drill_id)),  # type: ignore[misc]
            f"injects at {drill_s}",
        )
        if drill_s == 70:  # nothing early: a pause of the leader's ticks changes nothing
            time.sleep(QUIET_S)
            assert sorted(desk.fired(reader, drill_id)) == ["detector", "m60"]
    time.sleep(QUIET_S)
    kept = [e for e in desk.record(reader, drill_id) if e["type"] == "drill.inject"]
    fired = Counter(e["data"]["inject_id"] for e in kept)
    assert fired == Counter(["detector", "m60", "m180", "c300", "gate"]), fired  # each once
    for entry in kept:  # in drill time: at its planned second, within the clock's step
        planned = entry["data"]["planned_s"]
        if planned is not None:
            assert planned <= entry["data"]["at_s"] < planned + 40, entry["data"]
    missed = [e for e in desk.record(reader, drill_id) if e["type"] == "drill.action_missed"]
    assert [e["data"]["expected_id"] for e in missed] == ["first-report"]
    # The log holds each inject's effect once, whichever process reads it.
    for server in desk.servers:
        assert Counter(desk.marks(server, drill_id)) == Counter(list(MARKS)), server.name
    # The drill's 1.4 ppm moved its own tier: on no process the real detector's, nor an alarm.
    for server in desk.servers:
        answer = httpx.get(f"{server.base}{SITE}/sensors/state", headers=desk.player, timeout=30)
        assert answer.status_code == 200, answer.text
        real = [s for s in answer.json()["sensors"] if s["id"] == CL2]
        assert all(s["tier"] is None and s["alarm"] is None for s in real), (server.name, real)
    # Every process tells the controller the same drill.
    states = [desk.drill(s, drill_id) for s in desk.servers]
    assert {(d["state"], d["drill_s"]) for d in states} == {("running", 310.0)}, states
    for state in states:
        assert sorted(i["id"] for i in state["injects"] if i["fired"]) == sorted(fired)
    assert desk.order(reader, f"/{drill_id}/end").status_code == 200


def test_held_on_one_process_and_resumed_on_another_it_is_one_drill(desk: Desk) -> None:
    first, second = desk.followers()
    drill = desk.start(first)
    drill_id, incident = drill["id"], drill["incident_id"]
    timed = _activation_steps("chlorine-leak", "L1")
    early = min(timed.values())

    def overdue(server: ServerProcess) -> list[str]:
        return [
            e["data"]["step_id"]
            for e in events(server, desk.player)
            if e["type"] == "plan.step.overdue" and e["incident_id"] == incident
        ]

    desk.cluster.advance(30)
    answer = desk.order(first, f"/{drill_id}/hold", {"reason": "a phone call"})
    assert answer.status_code == 200, answer.text
    # Every process: held, at 30 s of drill time; a second hold anywhere is refused.
    for server in desk.servers:
        state = desk.drill(server, drill_id)
        assert (state["state"], state["drill_s"]) == ("held", 30.0), server.name
    assert desk.order(second, f"/{drill_id}/hold").status_code == 409
    # Held: past the 60 s inject and the incident's first deadline, nothing fires, anywhere.
    desk.cluster.advance(early + 300)
    time.sleep(QUIET_S)
    assert desk.fired(second, drill_id) == ["detector"]
    assert overdue(second) == []
    assert desk.drill(second, drill_id)["drill_s"] == 30.0
    # Resumed on another process: drill time goes on from 30 s.
    answer = desk.order(second, f"/{drill_id}/resume", {"reason": "back"})
    assert answer.status_code == 200, answer.text
    for server in desk.servers:
        assert desk.drill(server, drill_id)["state"] == "running", server.name
    desk.cluster.advance(40)  # drill time 70 s
    wait_for(lambda: "m60" in desk.fired(first, drill_id), "the 60 s inject after the hold")
    entry = next(e for e in desk.record(first, drill_id) if e["data"].get("inject_id") == "m60")
    assert 60 <= entry["data"]["at_s"] <= 70  # drill time, the hold left out
    # The deadlines that fell due while the drill was held fire now, once.
    first_due = sorted(s for s, due in timed.items() if due <= early)
    wait_for(lambda: set(first_due) <= set(overdue(first)), "the deadlines after the hold")
    time.sleep(QUIET_S)
    found = overdue(first)
    assert len(found) == len(set(found)), found
    assert desk.fired(second, drill_id) == ["detector", "m60"]
    held = [e for e in events(second, desk.player) if e["type"] in ("drill.held", "drill.resumed")]
    assert [(e["type"], e["data"]["drill_id"]) for e in held[-2:]] == [
        ("drill.held", drill_id),
        ("drill.resumed", drill_id),
    ]
    assert desk.order(first, f"/{drill_id}/abort").status_code == 200


def test_a_blind_drill_scheduled_on_one_process_starts_once_and_stays_secret(
    desk: Desk,
) -> None:
    scheduler, other = desk.followers()
    local = (desk.cluster.now + timedelta(hours=1)).astimezone()
    window = {
        "start": local.isoformat(),
        "end": (local + timedelta(hours=1)).isoformat(),
        "exclude": [],
    }
    answer = desk.order(
        scheduler, "", {"scenario_id": SCENARIO["id"], "mode": "blind", "window": window}
    )
    assert answer.status_code == 201, answer.text
    drill_id = answer.json()["id"]
    # The controller sees the window, never the start, on every process.
    for server in desk.servers:
        listed = httpx.get(f"{server.base}{DRILLS}", headers=desk.controller, timeout=30)
        assert listed.status_code == 200 and "sealed" not in listed.text
        assert desk.drill(server, drill_id)["state"] == "scheduled"
    # A player gets the same 403 from every drill route, on every process, whatever the id.
    for server in desk.servers:
        for path in ("", f"/{drill_id}", "/drill-nonexistent", f"/{drill_id}/events"):
            got = httpx.get(f"{server.base}{DRILLS}{path}", headers=desk.player, timeout=30)
            assert got.status_code == 403, (server.name, path, got.text)
        got = httpx.post(f"{server.base}{DRILLS}/{drill_id}/hold", headers=desk.player, timeout=30)
        assert got.status_code == 403
    head = [e["seq"] for e in events(other, desk.player)][-1]
    desk.cluster.advance(1800)  # within the window, or before it: not past it
    time.sleep(QUIET_S)
    seen = events(other, desk.player)
    assert all(drill_id not in json.dumps(e) for e in seen if e["seq"] > head)
    # Past the window's end: the leader starts it, once.
    desk.cluster.advance(3 * 3600)
    wait_for(lambda: desk.drill(other, drill_id)["state"] == "running", "the blind start")
    time.sleep(QUIET_S)
    log = events(other, desk.player)
    started = [e for e in log if e["type"] == "drill.started" and e["data"]["drill_id"] == drill_id]
    assert len(started) == 1
    # While it runs no process's log, as a player reads it, holds controller material or the
    # scenario's names (the ended drills' are there: the log takes them at the end).
    for server in desk.servers:
        seen = [e for e in events(server, desk.player) if e["seq"] > head]
        assert not [e for e in seen if e["type"] in PRIVATE], server.name
        assert SCENARIO["title"] not in json.dumps(seen, ensure_ascii=False)
    assert desk.fired(scheduler, drill_id)  # the controller sees its injects
    assert desk.order(other, f"/{drill_id}/abort").status_code == 200
    ended = [e for e in events(scheduler, desk.player) if e["data"].get("drill_id") == drill_id]
    assert {e["type"] for e in ended} >= {"drill.started", "drill.inject", "drill.ended"}


def test_killing_the_leader_mid_drill_fires_the_rest_once(desk: Desk) -> None:
    starter = desk.followers()[0]
    drill = desk.start(starter)
    drill_id = drill["id"]
    desk.cluster.advance(70)  # the 0 s and 60 s injects
    wait_for(lambda: sorted(desk.fired(starter, drill_id)) == ["detector", "m60"], "m60")
    leader = desk.cluster.leader()
    assert leader is not None
    killed_at = time.monotonic()
    leader.kill()
    wait_for(lambda: desk.cluster.leader() is not None, "a new leader", timeout=30)
    print(f"a new leader {time.monotonic() - killed_at:.2f} s after the kill")
    survivor = next(s for s in desk.servers if s.running)
    moved_at = time.monotonic()
    for _ in range(3):  # to 310 s: the missed action, its contingency, the last injects
        desk.cluster.advance(80)
    wait_for(lambda: len(desk.fired(survivor, drill_id)) >= len(TIMED) + 1, "the rest")
    print(f"the rest fired {time.monotonic() - moved_at:.2f} s after the clock moved")
    time.sleep(QUIET_S)
    assert desk.order(survivor, f"/{drill_id}/end").status_code == 200
    log = [e for e in events(survivor, desk.player) if e["data"].get("drill_id") == drill_id]
    fired = Counter(e["data"]["inject_id"] for e in log if e["type"] == "drill.inject")
    assert fired == Counter([*TIMED, "gate"]), fired  # each once: none twice, none lost
    missed = [e["data"]["expected_id"] for e in log if e["type"] == "drill.action_missed"]
    assert missed == ["first-report"]
    assert Counter(desk.marks(survivor, drill_id)) == Counter(list(MARKS))
    seqs = [e["seq"] for e in events(survivor, desk.player)]
    assert seqs == list(range(1, len(seqs) + 1))


def test_two_servers_on_one_database_hold_one_drill_and_the_ticking_one_follows_its_row(
    command: TestClient, db: Database, clock: ManualClock
) -> None:
    """Without processes (SQLite too): orders through a second app on the same database, the
    first app's ticks read the drill from its row, its incident waiting while the row says
    held, and nothing fired twice."""
    from command.app import create_app
    from command.settings import Settings
    from tests.test_drills import DRILLS as DEMO_DRILLS
    from tests.test_drills import post_of, record, write_scenario

    controller = sign_in(db, "ctl-two", [Role.DRILL_CONTROLLER])
    write_scenario(command, controller)
    leader = post_of(command)
    drill = command.post(
        DEMO_DRILLS, json={"scenario_id": "night-chlorine", "mode": "announced"}, headers=controller
    ).json()
    path = f"{DEMO_DRILLS}/{drill['id']}"

    def fired() -> list[str]:
        return [
            str(e["data"]["inject_id"])
            for e in record(command, controller, drill["id"])
            if e["type"] == "drill.inject"
        ]

    again = create_app(
        Settings(database_url=str(db.engine.url)), database=db, clock=clock, ticking=False
    )
    with TestClient(again) as other:
        other.headers.update(controller)
        post_of(other).leading = False
        clock.advance(30)
        assert other.post(f"{path}/hold").status_code == 200
        leader.tick()
        assert drill["incident_id"] in leader.paused  # the row says held
        clock.advance(600)  # past the 60 s inject and the first report's deadline: held
        leader.tick()
        state = command.get(path, headers=controller).json()
        assert (state["state"], state["drill_s"]) == ("held", 30.0)
        assert fired() == ["detector-rises"]
        assert command.post(f"{path}/hold", headers=controller).status_code == 409
        assert other.post(f"{path}/resume").status_code == 200
        leader.tick()
        assert drill["incident_id"] not in leader.paused
        clock.advance(35)  # drill time 65 s
        leader.tick()
        assert fired() == ["detector-rises", "contractor-missing"]
        assert other.post(f"{path}/fire").status_code == 200  # the wind shift, early
        clock.advance(700)  # the first report missed: its contingency
        leader.tick()
        leader.tick()
        assert Counter(fired()) == Counter(
            ["detector-rises", "contractor-missing", "wind-shift", "smell-at-gate"]
        )
        assert other.post(f"{path}/end").status_code == 200
    leader.tick()
    assert command.get(path, headers=controller).json()["state"] == "ended"
