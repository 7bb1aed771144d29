"""Layer edits on a deployment of several processes (issue 17): every process follows the
``changes`` table on its own (its walls' site model and its incidents' pictures follow the
edit), but the log records each edit once: one ``layer.changed`` per edit, and one
``incident.network_changed`` per incident planned again on the new layers, whichever process
took the edit and however many processes noticed it.

Three real ``rallypoint serve`` processes on one PostGIS (tests/processes.py), real websocket
clients on each.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from gis.storage.db import make_engine
from tests.conftest import DEMO_ID
from tests.processes import drop_database, postgis_demo_database
from tests.test_incidents import chlorine
from tests.test_scale_out import (
    SITE,
    USERS,
    WAIT_S,
    Cluster,
    Subscriber,
    _has,
    _health,
    events,
    wait_for,
)

#: After every process has followed the change: time for each to plan its incidents again.
SETTLE_S = 2.0


@pytest.fixture
def cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    url = postgis_demo_database(f"layers_{request.node.name[5:25]}", USERS)
    running = Cluster(url, tmp_path)
    running.url = url  # type: ignore[attr-defined]
    try:
        yield running.start()
    finally:
        running.stop()
        drop_database(url)


def followed_by_all(cluster: Cluster) -> None:
    """Wait until every process has followed the change log to its end (``/healthz``): each
    has then decided whether to send each change, and is planning its incidents again."""
    with make_engine(cluster.url).connect() as conn:  # type: ignore[attr-defined]
        last = conn.execute(text("SELECT max(seq) FROM changes")).scalar_one()
    for server in cluster.servers:
        wait_for(
            lambda s=server: _health(s).get("layer_changes_seen", 0) >= last,  # type: ignore[misc]
            f"{server.name} following the change {last}",
        )
    time.sleep(SETTLE_S)


def _of(log: list[dict[str, Any]], kind: str, after: int) -> list[dict[str, Any]]:
    return [e for e in log if e["type"] == kind and e["seq"] > after]


def _changed_ids(event: dict[str, Any]) -> list[str]:
    return [c["id"] for c in event["data"]["changes"]]


def test_an_edit_during_an_incident_is_logged_once_on_three_processes(cluster: Cluster) -> None:
    a, b, c = cluster.servers
    commander = a.sign_in("cmd-a")
    planner = b.sign_in("planner-d")
    viewers = [s.sign_in("viewer-c") for s in cluster.servers]
    answer = httpx.post(f"{a.base}{SITE}/incidents", json=chlorine(), headers=commander, timeout=60)
    assert answer.status_code == 201, answer.text
    incident = answer.json()["incident"]["id"]
    wait_for(
        lambda: all(
            httpx.get(f"{s.base}{SITE}/incidents/{incident}", headers=v, timeout=30).status_code
            == 200
            for s, v in zip(cluster.servers, viewers, strict=True)
        ),
        "the incident on every process",
    )
    subscribers = [Subscriber(s, v) for s, v in zip(cluster.servers, viewers, strict=True)]
    for subscriber in subscribers:
        assert subscriber.ready.wait(WAIT_S), "no snapshot"
    before = events(c, viewers[2])[-1]["seq"]

    edited = httpx.patch(
        f"{b.base}{SITE}/layers/zones/features/Z-001",
        json={"properties": {"capacity": 35, "version": 1}},
        headers=planner,
        timeout=60,
    )
    assert edited.status_code == 200, edited.text

    def logged(kind: str) -> list[dict[str, Any]]:
        return _of(events(c, viewers[2]), kind, before)

    wait_for(lambda: bool(logged("incident.network_changed")), "the incident planned again")
    followed_by_all(cluster)
    log = events(a, viewers[0])
    seqs = [e["seq"] for e in log]
    assert seqs == list(range(1, len(seqs) + 1))
    [changed] = _of(log, "layer.changed", before)
    assert _changed_ids(changed) == ["Z-001"] and changed["actor"] == "planner-d"
    replanned = _of(log, "incident.network_changed", before)
    assert [e["incident_id"] for e in replanned] == [incident], replanned
    assert "zones" in replanned[0]["data"]["layers"]
    # Each process's walls got the stream, each event once, and each process's picture
    # follows the new layers.
    last = seqs[-1]
    for subscriber in subscribers:
        wait_for(partial(_has, subscriber, last), "the events")
        got = [e for e in subscriber.seqs() if e > before]
        assert got == list(range(before + 1, last + 1)), (subscriber.server.name, got)
        subscriber.close()
    for server, viewer in zip(cluster.servers, viewers, strict=True):
        zone = httpx.get(
            f"{server.base}{SITE}/layers/zones/features/Z-001", headers=viewer, timeout=30
        ).json()
        assert zone["properties"]["capacity"] == 35


def test_a_psql_edit_is_one_layer_changed_on_three_processes(cluster: Cluster) -> None:
    a, _, c = cluster.servers
    viewer = a.sign_in("viewer-c")
    wall = Subscriber(c, c.sign_in("viewer-c"))
    assert wall.ready.wait(WAIT_S)
    before = events(a, viewer)[-1]["seq"] if events(a, viewer) else 0
    url = make_url(cluster.url)  # type: ignore[attr-defined]
    libpq = url.set(drivername="postgresql").render_as_string(hide_password=False)
    subprocess.run(
        [
            "psql",
            libpq,
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            f"UPDATE sensors SET name = name || ' (checked)' WHERE site_id = '{DEMO_ID}' "
            "AND id IN ('S-001', 'S-002')",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    wait_for(
        lambda: any(m.get("event", {}).get("type") == "layer.changed" for m in wall.events),
        "the edit at the wall",
    )
    followed_by_all(cluster)
    [changed] = _of(events(a, viewer), "layer.changed", before)
    assert sorted(_changed_ids(changed)) == ["S-001", "S-002"]
    assert changed["data"]["source"] == "database"
    assert [e for e in wall.events if e["event"]["type"] == "layer.changed"] == [
        {"type": "event", "seq": changed["seq"], "incident_id": None, "event": changed}
    ]
    wall.close()
