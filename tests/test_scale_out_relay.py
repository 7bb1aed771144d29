"""What one ``rallypoint serve`` process relays to the others on one PostGIS database (issue 17),
with real processes (tests/processes.py) and a clock they share:

- readings posted to a process that does not lead feed the leader's detector health: the
  detector stays healthy across a clock advance past its silence limit, while one that stopped
  reporting goes stale, once, on every process's wall;
- the 10-minute reading history holds each reading once, whichever process took it, and every
  process's trace shows it;
- an activation's picture: the activating process relays it with the events, and another
  process's walls get that picture instead of one rebuilt from the log; a process that missed
  the relay rebuilds it from the log, and both are the activating process's picture.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, select

from gis.storage.db import Database, make_engine
from gis.storage.tables import PositionFeedRow, ReadingHistoryRow
from tests.processes import ServerProcess, drop_database, postgis_demo_database
from tests.test_incidents import chlorine
from tests.test_scale_out import (
    CL2,
    SITE,
    T0,
    USERS,
    Cluster,
    Subscriber,
    events,
    wait_for,
)

GAS = "S-010"  # a gas detector: stale after 60 s without a reading


class SharedCluster(Cluster):
    """Three processes on one database (``url``), with one clock file."""

    def __init__(self, url: str, folder: Path) -> None:
        super().__init__(url, folder)
        self.url = url


@pytest.fixture
def cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[SharedCluster]:
    url = postgis_demo_database(f"relay_{request.node.name[5:25]}", USERS)
    running = SharedCluster(url, tmp_path)
    try:
        running.start()
        yield running
    finally:
        running.stop()
        drop_database(url)


def _roles(cluster: Cluster) -> tuple[ServerProcess, ServerProcess, ServerProcess]:
    wait_for(lambda: cluster.leader() is not None, "a leader")
    leader = cluster.leader()
    assert leader is not None
    first, second = [s for s in cluster.servers if s is not leader]
    return leader, first, second


def _read(server: ServerProcess, auth: dict[str, str], values: dict[str, float]) -> None:
    body = {"readings": [{"sensor_id": k, "value": v} for k, v in values.items()]}
    reply = httpx.post(f"{server.base}{SITE}/readings", json=body, headers=auth, timeout=60)
    assert reply.status_code == 200, reply.text


def _state(server: ServerProcess, auth: dict[str, str], sensor_id: str) -> dict[str, Any]:
    answer = httpx.get(f"{server.base}{SITE}/sensors/state", headers=auth, timeout=30)
    assert answer.status_code == 200, answer.text
    sensors: list[dict[str, Any]] = answer.json()["sensors"]
    [sensor] = [s for s in sensors if s["id"] == sensor_id] or [{}]
    return sensor


def _flagged(server: ServerProcess, auth: dict[str, str], sensor_id: str) -> bool:
    return bool(_state(server, auth, sensor_id).get("health_flags") == ["stale"])


def _has_periods(
    traced: Callable[[ServerProcess], list[list[float]]], server: ServerProcess
) -> bool:
    return bool(traced(server))


def _last_at(server: ServerProcess, auth: dict[str, str], sensor_id: str) -> str | None:
    return (_state(server, auth, sensor_id).get("last_reading") or {}).get("at")


def _health(server: ServerProcess, auth: dict[str, str], sensor_id: str) -> list[dict[str, Any]]:
    return [
        e["data"]
        for e in events(server, auth)
        if e["type"] == "sensor.health" and e["data"]["sensor_id"] == sensor_id
    ]


def test_readings_posted_to_another_process_keep_a_detector_healthy_on_the_leader(
    cluster: SharedCluster,
) -> None:
    leader, other, third = _roles(cluster)
    auth = other.sign_in("cmd-a")
    watcher = leader.sign_in("viewer-c")
    _read(other, auth, {GAS: 1.2, CL2: 0.0})
    wait_for(lambda: _last_at(leader, watcher, GAS) is not None, "the readings at the leader")
    cluster.advance(40)
    _read(other, auth, {CL2: 0.0})  # CL2 goes on reporting, through the other process only
    fresh = cluster.now.isoformat()
    wait_for(lambda: _last_at(leader, watcher, CL2) == fresh, "the second reading at the leader")
    cluster.advance(30)  # GAS silent 70 s (limit 60 s), CL2 30 s

    wait_for(lambda: bool(_health(leader, watcher, GAS)), "the silent detector flagged stale")
    # The tick that flagged GAS checked CL2 at the same time, on the clock that stays put.
    assert _health(leader, watcher, CL2) == []
    [stale] = _health(leader, watcher, GAS)
    assert stale["raised"] == ["stale"]
    for server in cluster.servers:  # every wall shows the same flags
        auth_here = server.sign_in("viewer-c")
        wait_for(partial(_flagged, server, auth_here, GAS), f"the stale flag on {server.name}")
        assert _state(server, auth_here, CL2).get("health_flags") == []

    # GAS reports again, through the third process: cleared, by the leader, once.
    _read(third, third.sign_in("cmd-b"), {GAS: 1.3})
    wait_for(lambda: len(_health(leader, watcher, GAS)) == 2, "the stale flag cleared")
    time.sleep(3)  # three more ticks everywhere: nothing is logged twice
    assert [(h["raised"], h["cleared"]) for h in _health(leader, watcher, GAS)] == [
        (["stale"], []),
        ([], ["stale"]),
    ]
    assert _health(leader, watcher, CL2) == []


def test_the_reading_history_counts_each_reading_once_whichever_process_took_it(
    cluster: SharedCluster,
) -> None:
    leader, other, third = _roles(cluster)
    auths = {s.name: s.sign_in("cmd-a") for s in cluster.servers}
    # One period (T0 is on a 10-minute boundary): a reading through each process.
    for server, value in ((other, 0.1), (third, 0.3), (leader, 0.2)):
        _read(server, auths[server.name], {CL2: value})
    # The next period's first reading closes it (on the leader: relayed).
    cluster.advance(600)
    _read(other, auths[other.name], {CL2: 0.0})
    period_s = int(T0.timestamp())

    def traced(server: ServerProcess) -> list[list[float]]:
        answer = httpx.get(
            f"{server.base}{SITE}/alarm-analysis/trace",
            params={"sensor": CL2},
            headers=auths[server.name],
            timeout=60,
        )
        assert answer.status_code == 200, answer.text
        return [p for p in answer.json()["periods"] if p[0] == period_s]

    for server in cluster.servers:
        wait_for(partial(_has_periods, traced, server), f"the period in {server.name}'s trace")
    time.sleep(3)  # a period stored twice would merge into the row meanwhile
    for server in cluster.servers:
        [[_, low, mean, high]] = traced(server)
        assert (low, high) == (0.1, 0.3)
        assert mean == pytest.approx(0.2)
    # Counted once each, read from the table itself.
    engine = make_engine(cluster.url)
    try:
        with Database(engine).read() as session:
            counts = session.scalars(
                select(ReadingHistoryRow.n).where(
                    ReadingHistoryRow.sensor_id == CL2, ReadingHistoryRow.period_s == period_s
                )
            ).all()
    finally:
        engine.dispose()
    assert counts == [3]


def _picture(subscriber: Subscriber, incident_id: str) -> dict[str, Any] | None:
    for message in list(subscriber.messages):
        if message.get("type") == "incident" and message.get("incident_id") == incident_id:
            snapshot: dict[str, Any] = message["snapshot"]
            return snapshot
    return None


def _computed(picture: dict[str, Any]) -> dict[str, Any]:
    """The picture but for how long the computing process took for it."""
    return {k: v for k, v in picture.items() if k != "timings_ms"}


def _has_picture(subscriber: Subscriber, incident_id: str) -> bool:
    return _picture(subscriber, incident_id) is not None


def test_another_process_sends_the_activating_process_s_picture_or_rebuilds_it(
    cluster: SharedCluster,
) -> None:
    leader, other, missing = _roles(cluster)
    activating = leader
    viewers = [Subscriber(s, s.sign_in("viewer-c")) for s in (activating, other, missing)]
    for viewer in viewers:
        assert viewer.ready.wait(60), "no snapshot"
    here, there, late = viewers
    assert missing.process is not None
    os.kill(missing.process.pid, signal.SIGSTOP)  # it misses the relay
    try:
        auth = activating.sign_in("cmd-a")
        answer = httpx.post(
            f"{activating.base}{SITE}/incidents", json=chlorine(), headers=auth, timeout=60
        )
        assert answer.status_code == 201, answer.text
        incident = answer.json()["incident"]["id"]
        wait_for(partial(_has_picture, here, incident), "the picture on the activating process")
        wait_for(partial(_has_picture, there, incident), "the picture on another process")
        engine = make_engine(cluster.url)
        try:
            with Database(engine).write() as session:  # what was relayed is gone
                session.execute(delete(PositionFeedRow))
        finally:
            engine.dispose()
    finally:
        os.kill(missing.process.pid, signal.SIGCONT)
    wait_for(partial(_has_picture, late, incident), "the rebuilt picture on the third process")

    shown = _picture(here, incident)
    assert shown is not None and shown["incident"]["id"] == incident
    assert _picture(there, incident) == shown  # relayed
    rebuilt_picture = _picture(late, incident)
    assert rebuilt_picture is not None  # rebuilt from the log: the same picture, but for
    assert _computed(rebuilt_picture) == _computed(shown)  # how long this process took
    relayed = "the picture relayed by its writer sent"
    rebuilt = "the picture rebuilt from the log"
    assert f"incident {incident}: {relayed}" in other.output()
    assert f"incident {incident}: {rebuilt}" in missing.output()
    # And each process's memory of the incident is the activating process's picture too.
    pictures = []
    for server in (activating, other, missing):
        got = httpx.get(
            f"{server.base}{SITE}/incidents/{incident}",
            headers=server.sign_in("viewer-c"),
            timeout=60,
        )
        assert got.status_code == 200, got.text
        pictures.append(got.json())
    assert _computed(pictures[1]) == _computed(pictures[0])
    assert _computed(pictures[2]) == _computed(pictures[0])
    for viewer in viewers:
        viewer.close()
