"""Layer changes are live on the walls: ``layer.changed`` (command/layer_feed.py).

In process (the app on the test's rolled-back connection, SQLite and PostGIS): each write of the
layers API is one ``layer.changed`` with its diff, checked against the feature the API answers;
a large import is a reload; an edit during an incident carries the warning; concurrent calls
send each change once; history is not replayed.

Against real servers (tests/live_server.py) with real websocket clients: a wall that reconnects
catches up on a layer change by sequence number (SQLite and PostGIS); on PostGIS, an UPDATE made
with ``psql`` as QGIS would make it reaches a subscribed wall within a second and the incident's
nearest resource follows it; a 10,000-row statement wakes the server once and is one reload;
overlapping transactions that commit out of order are each sent once; the listener comes back
after its connection is killed; on SQLite, another process's write reaches the wall within the
once-a-second sweep.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, insert, make_url, select

from command import events as event_log
from command import post as post_module
from command.auth import Role, create_user
from gis import layers
from gis.site_bundle import load_bundle
from gis.storage.db import Database, make_engine, upgrade
from gis.storage.tables import ChangeRow, LayerRevision
from plans.store import load_plan_files
from tests.conftest import (
    CHLORINE_ACTIVATION,
    DEMO_ID,
    DEMO_PLANS,
    DEMO_SITE,
    FAST_HASHER,
    POSTGIS_URL_ENV,
    TEST_PASSWORD,
    sign_in,
    site_database,
)
from tests.live_server import LiveServer
from tests.test_ws import Subscriber, subscribed

BASE = f"/api/sites/{DEMO_ID}"
WAIT_S = 10.0
#: A database edit reaches a subscribed wall within this (issue 15).
WITHIN_S = 1.0
PLANNER, VIEWER, COMMANDER = "feed-planner", "feed-viewer", "feed-commander"
USERS = {PLANNER: Role.PLANNER, VIEWER: Role.VIEWER, COMMANDER: Role.COMMANDER}


def layer_events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == "layer.changed"]


def events_after(client: TestClient, seq: int) -> list[dict[str, Any]]:
    page = client.get(f"{BASE}/events", params={"after": seq})
    assert page.status_code == 200, page.text
    found: list[dict[str, Any]] = page.json()["events"]
    return found


def last_seq(client: TestClient) -> int:
    seq: int = client.get(f"{BASE}/events", params={"after": 0, "limit": 1}).json()["last_seq"]
    return seq


# -- in process: the layers API --------------------------------------------------------------


@pytest.fixture
def planner(command: TestClient, db: Database) -> dict[str, str]:
    return sign_in(db, "planner-li", [Role.PLANNER])


def test_each_api_write_is_one_layer_changed_with_its_diff(
    command: TestClient, planner: dict[str, str]
) -> None:
    seq = last_seq(command)
    patched = command.patch(
        f"{BASE}/layers/zones/features/Z-001",
        json={"properties": {"capacity": 35, "version": 1}},
        headers=planner,
    )
    assert patched.status_code == 200, patched.text
    [event] = layer_events(events_after(command, seq))
    assert event["actor"] == "planner-li" and event["incident_id"] is None
    data = event["data"]
    assert (data["layer"], data["source"], data["reload"], data["count"]) == (
        "zones",
        "api",
        False,
        1,
    )
    assert "incidents" not in data
    [change] = data["changes"]
    feature = patched.json()
    assert change == {
        "id": "Z-001",
        "action": "update",
        "version": 2,
        "actor": "planner-li",
        "at": feature["properties"]["updated_at"],
        "feature": feature,
        "fields": ["capacity"],
    }

    seq = event["seq"]
    moved = command.patch(
        f"{BASE}/layers/resources/features/R-0002",
        json={"geometry": {"type": "Point", "coordinates": [121.35, 30.72]}},
        headers={**planner, "If-Match": '"1"'},
    )
    assert moved.status_code == 200, moved.text
    [event] = layer_events(events_after(command, seq))
    [change] = event["data"]["changes"]
    assert (change["fields"], change["feature"]) == (["geometry"], moved.json())

    seq = event["seq"]
    hydrant = {
        "type": "Feature",
        "id": "R-feed-1",
        "geometry": {"type": "Point", "coordinates": [121.3502, 30.7199]},
        "properties": {"kind": "hydrant", "name": "消火栓 77"},
    }
    created = command.post(f"{BASE}/layers/resources", json=hydrant, headers=planner)
    assert created.status_code == 201, created.text
    deleted = command.delete(
        f"{BASE}/layers/resources/features/R-feed-1", headers={**planner, "If-Match": '"1"'}
    )
    assert deleted.status_code == 204, deleted.text
    creation, deletion = layer_events(events_after(command, seq))
    [change] = creation["data"]["changes"]
    assert (change["action"], change["feature"]) == ("create", created.json())
    assert change["fields"] == ["kind", "name", "quantity", "status", "geometry"]
    [change] = deletion["data"]["changes"]
    assert (change["id"], change["action"], change["feature"], change["fields"]) == (
        "R-feed-1",
        "delete",
        None,
        [],
    )


def test_a_large_import_is_sent_as_a_reload(command: TestClient, planner: dict[str, str]) -> None:
    features = [
        {
            "type": "Feature",
            "id": f"R-bulk-{i:03d}",
            "geometry": {
                "type": "Point",
                "coordinates": [121.3460 + (i % 30) * 2e-4, 30.7180 + (i // 30) * 2e-4],
            },
            "properties": {"kind": "extinguisher"},
        }
        for i in range(600)
    ]
    seq = last_seq(command)
    answer = command.post(
        f"{BASE}/layers/resources/import",
        content=json.dumps({"type": "FeatureCollection", "features": features}),
        headers={**planner, "Content-Type": "application/geo+json"},
    )
    assert answer.status_code == 200, answer.text
    [event] = layer_events(events_after(command, seq))
    assert event["data"] == {
        "layer": "resources",
        "source": "api",
        "count": 600,
        "changes": [],
        "reload": True,
    }


def test_a_change_during_an_incident_carries_the_warning(
    command: TestClient, planner: dict[str, str]
) -> None:
    activated = command.post(f"{BASE}/incidents", json=CHLORINE_ACTIVATION)
    assert activated.status_code == 201, activated.text
    incident = activated.json()["incident"]["id"]
    seq = last_seq(command)
    patched = command.patch(
        f"{BASE}/layers/sensors/features/S-001",
        json={"properties": {"name": "H2S detector 1 (moved)", "version": 1}},
        headers=planner,
    )
    assert patched.status_code == 200, patched.text
    assert incident in patched.headers["Rallypoint-Warning"]
    [event] = layer_events(events_after(command, seq))
    assert event["data"]["incidents"] == [incident]
    assert "incidents are active" in event["data"]["warning"]
    assert event["data"]["changes"][0]["fields"] == ["name"]


def test_the_replan_is_logged_once_per_layer_revisions_and_never_for_replaced_ones(
    command: TestClient, planner: dict[str, str], db: Database
) -> None:
    """What another process sharing the database decides (``_told_already``): a replan on
    layers a newer edit replaced is not logged, nor one whose revisions an earlier event of
    the incident named (not only the last one)."""
    activated = command.post(f"{BASE}/incidents", json=CHLORINE_ACTIVATION)
    assert activated.status_code == 201, activated.text
    incident = activated.json()["incident"]["id"]
    versions = {"Z-001": 1}

    def edit(capacity: int) -> dict[str, Any]:
        patched = command.patch(
            f"{BASE}/layers/zones/features/Z-001",
            json={"properties": {"capacity": capacity, "version": versions["Z-001"]}},
            headers=planner,
        )
        assert patched.status_code == 200, patched.text
        versions["Z-001"] = patched.json()["properties"]["version"]
        [replan] = [
            e
            for e in events_after(command, 0)
            if e["type"] == "incident.network_changed"
            and e["data"]["revisions"]["zones"] not in seen
        ]
        seen.add(replan["data"]["revisions"]["zones"])
        return replan

    seen: set[str] = set()
    first = edit(31)
    second = edit(32)

    def told(revisions: dict[str, Any]) -> dict[str, int]:
        draft = event_log.Draft(
            "incident.network_changed", "system", {"revisions": revisions}, incident
        )
        with db.write() as session:
            return post_module._told_already(session, DEMO_ID, [draft])

    # The first revisions were replaced by the second edit: not logged, whoever planned on them.
    assert told(first["data"]["revisions"]) == {incident: 0}
    # The current ones were logged already (the second event): not again.
    assert told(second["data"]["revisions"]) == {incident: second["seq"]}
    # Layers as they are now, but a plan no event named yet: logged.
    with db.read() as session:
        now = dict(
            session.execute(
                select(LayerRevision.layer, LayerRevision.token).where(
                    LayerRevision.site_id == DEMO_ID
                )
            ).all()
        )
    assert now["zones"] == second["data"]["revisions"]["zones"]
    fresh = dict(second["data"]["revisions"])
    fresh.pop("network", None)  # a plan that names fewer layers is another plan
    assert told(fresh) == {}


def test_concurrent_calls_send_each_change_once(command: TestClient, db: Database) -> None:
    post = command.app.state.post  # type: ignore[attr-defined]
    seq = last_seq(command)
    zones = [f"Z-{n:03d}" for n in range(1, 13)]

    def edit(zone: str) -> None:
        layers.replace_feature(
            db,
            DEMO_ID,
            "zones",
            zone,
            {"properties": {"capacity": 99}},
            actor="planner-li",
            if_match=1,
            partial=True,
        )
        post.layer_changed(DEMO_ID)

    threads = [threading.Thread(target=edit, args=(zone,)) for zone in zones]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_S)
    post.layer_changed(DEMO_ID)  # nothing left: nothing more
    sent = [c["id"] for e in layer_events(events_after(command, seq)) for c in e["data"]["changes"]]
    assert sorted(sent) == zones


def test_seventy_thousand_changes_at_once_are_one_reload(command: TestClient, db: Database) -> None:
    """A bulk statement in the database (a basemap import in QGIS) makes a change per
    feature: more than a statement's parameters may name (65,535 on PostgreSQL, 32,766 on
    SQLite), and the feed still sends them, once."""
    post = command.app.state.post  # type: ignore[attr-defined]
    seq = last_seq(command)
    now = post.clock.now()
    rows = [
        {
            "site_id": DEMO_ID,
            "layer": "receptors",
            "feature_id": f"RC-bulk-{n}",
            "action": "create",
            "version": 1,
            "actor": "db:gis-import",
            "at": now,
            "data": None,
        }
        for n in range(70_000)
    ]
    with db.write() as session:
        session.execute(insert(ChangeRow), rows)
    post.layer_feed.follow()
    post.layer_feed.follow()  # nothing left: nothing more
    [event] = layer_events(events_after(command, seq))
    data = event["data"]
    assert (data["layer"], data["source"], data["count"], data["reload"]) == (
        "receptors",
        "database",
        70_000,
        True,
    )
    with db.read() as session:
        marked = session.scalar(select(func.count()).where(ChangeRow.published_in == event["seq"]))
    assert marked == 70_000


def test_history_is_not_replayed_at_start(command: TestClient) -> None:
    post = command.app.state.post  # type: ignore[attr-defined]
    seq = last_seq(command)
    assert post.layer_feed.pending_sites() == []  # the demo site's 2,600 changes are history
    post.layer_changed(DEMO_ID)
    assert layer_events(events_after(command, seq)) == []


# -- real servers, real walls -------------------------------------------------------------------


def login(server: LiveServer, username: str) -> str:
    answer = httpx.post(
        f"{server.base}/api/auth/login",
        json={"username": username, "password": TEST_PASSWORD},
        timeout=WAIT_S,
    )
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["access_token"]
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def next_layer_change(wall: Subscriber, timeout: float) -> dict[str, Any]:
    """The next ``layer.changed`` event the wall receives (others pass), within ``timeout``."""
    async with asyncio.timeout(timeout):
        while True:
            message = await wall.recv(timeout)
            if message["type"] == "event" and message["event"]["type"] == "layer.changed":
                return message


@pytest.fixture(scope="module")
def sqlite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, str]]:
    url = site_database(tmp_path_factory.mktemp("feed") / "feed.db", USERS)
    with LiveServer(url) as live:
        yield live, url


def load_site(url: str) -> None:
    """Migrate the database at ``url``; load the demo site, its plans and the users."""
    engine = make_engine(url)
    try:
        upgrade(engine)
        db = Database(engine)
        load_bundle(db, DEMO_SITE, actor="test-setup")
        with db.write() as session:
            load_plan_files(session, DEMO_ID, sorted(DEMO_PLANS.glob("*.yaml")), actor="test")
            for username, role in USERS.items():
                create_user(session, username, TEST_PASSWORD, [role], hasher=FAST_HASHER)
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def postgis_url() -> Iterator[str]:
    """A PostGIS database of this module's own (its edits commit) with the demo site."""
    url = os.environ.get(POSTGIS_URL_ENV)
    if not url:
        pytest.skip(f"no PostGIS ({POSTGIS_URL_ENV} unset)")
    shared = make_url(url)
    name = f"{shared.database}_feed"
    admin = make_engine(shared.set(database="postgres").render_as_string(hide_password=False))
    try:
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        own = shared.set(database=name).render_as_string(hide_password=False)
        load_site(own)
        yield own
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


@pytest.fixture(scope="module")
def postgis_server(
    postgis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveServer, str]]:
    # The audit files of a PostGIS server are in ./var by default: here, the test's own.
    audit = tmp_path_factory.mktemp("audit")
    with LiveServer(
        postgis_url, audit_key=audit / "key.pem", audit_checkpoints=audit / "checkpoints.jsonl"
    ) as live:
        wait_listening(live)
        yield live, postgis_url


def wait_listening(server: LiveServer, connections: int = 1) -> None:
    listener = server.app.state.layer_listener
    deadline = time.monotonic() + WAIT_S
    while not (listener.listening.is_set() and listener.connections >= connections):
        assert time.monotonic() < deadline, "the server is not listening for database edits"
        time.sleep(0.01)


@pytest.fixture(params=["sqlite", "postgis"])
def live(request: pytest.FixtureRequest) -> tuple[LiveServer, str]:
    served: tuple[LiveServer, str] = request.getfixturevalue(f"{request.param}_server")
    return served


def test_a_reconnecting_wall_catches_up_on_a_layer_change(live: tuple[LiveServer, str]) -> None:
    server, _ = live
    viewer, planner = login(server, VIEWER), login(server, PLANNER)

    async def scenario() -> None:
        async with subscribed(server, viewer) as wall:
            snapshot = await wall.recv()
            assert snapshot["type"] == "snapshot"
            seen = snapshot["seq"]
        # Away: a planner edits meanwhile.
        async with httpx.AsyncClient(base_url=server.base, timeout=WAIT_S) as http:
            current = (
                await http.get(f"{BASE}/layers/zones/features/Z-002", headers=bearer(planner))
            ).json()
            answer = await http.patch(
                f"{BASE}/layers/zones/features/Z-002",
                json={"properties": {"capacity": current["properties"]["capacity"] + 1}},
                headers={**bearer(planner), "If-Match": f'"{current["properties"]["version"]}"'},
            )
            assert answer.status_code == 200, answer.text
        async with subscribed(server, viewer, last_seq=seen) as wall:
            got = await wall.until(lambda m: m["type"] == "caught_up")
        missed = [m["event"] for m in got if m["type"] == "event"]
        [event] = layer_events(missed)
        assert missed[0]["seq"] == seen + 1  # in order, from the one after
        [change] = event["data"]["changes"]
        assert (change["id"], change["fields"], change["feature"]) == (
            "Z-002",
            ["capacity"],
            answer.json(),
        )
        assert got[-1]["seq"] >= event["seq"]

    asyncio.run(scenario())


def psql(url: str, statement: str, *, timeout: float = WAIT_S) -> None:
    """Run ``statement`` with the psql command, as a person at a terminal (or QGIS) edits."""
    binary = shutil.which("psql")
    if binary is None:
        pytest.skip("no psql on this machine")
    libpq = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    done = subprocess.run(
        [binary, libpq, "-v", "ON_ERROR_STOP=1", "-qc", statement],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr


def test_a_psql_update_reaches_a_wall_within_a_second_and_the_model_follows(
    postgis_server: tuple[LiveServer, str], record_property: Any
) -> None:
    server, url = postgis_server
    viewer, commander = login(server, VIEWER), login(server, COMMANDER)
    picture = httpx.post(
        f"{server.base}{BASE}/incidents",
        json={**CHLORINE_ACTIVATION, "second_incident": True},
        headers=bearer(commander),
        timeout=WAIT_S,
    )
    assert picture.status_code == 201, picture.text
    incident = picture.json()["incident"]["id"]
    every = httpx.get(f"{server.base}{BASE}/layers/resources", headers=bearer(viewer)).json()
    # A kind with resources the picture does not list among the nearest.
    kind, nearest, farther = next(
        (kind, found[0]["id"], others[0])
        for kind, found in picture.json()["resources"].items()
        if found
        and (
            others := [
                f["id"]
                for f in every["features"]
                if f["properties"]["kind"] == kind and f["id"] not in {r["id"] for r in found}
            ]
        )
    )
    # The two swap places, in one UPDATE: the one that was farther is now the nearest.
    swap = (
        "UPDATE resources SET geom = CASE id "
        f"WHEN '{nearest}' THEN (SELECT geom FROM resources WHERE site_id = '{DEMO_ID}' "
        f"AND id = '{farther}') "
        f"ELSE (SELECT geom FROM resources WHERE site_id = '{DEMO_ID}' AND id = '{nearest}') END "
        f"WHERE site_id = '{DEMO_ID}' AND id IN ('{nearest}', '{farther}')"
    )
    user = f"db:{make_url(url).username}"

    async def scenario() -> tuple[dict[str, Any], float, float]:
        async with subscribed(server, viewer) as wall:
            assert (await wall.recv())["type"] == "snapshot"
            started = time.monotonic()
            await asyncio.to_thread(psql, url, swap)
            committed = time.monotonic()
            message = await next_layer_change(wall, WITHIN_S)
            arrived = time.monotonic()
            # Then the incident, planned again on the moved resources.
            await wall.until(
                lambda m: (
                    m["type"] == "event"
                    and m["event"]["type"] == "incident.network_changed"
                    and m["event"]["incident_id"] == incident
                )
            )
            return message, arrived - started, arrived - committed

    message, since_start, since_commit = asyncio.run(scenario())
    record_property("psql_to_wall_s", round(since_start, 3))
    print(
        f"psql UPDATE -> layer.changed on the wall: {since_start * 1000:.0f} ms from launching "
        f"psql, {since_commit * 1000:.0f} ms after psql exited"
    )
    data = message["event"]["data"]
    assert (data["layer"], data["source"], data["reload"]) == ("resources", "database", False)
    assert incident in data["incidents"]  # with the editor's warning: incidents are active
    changes = {c["id"]: c for c in data["changes"]}
    assert set(changes) == {nearest, farther}
    for change in changes.values():
        assert (change["action"], change["actor"], change["fields"]) == (
            "update",
            user,
            ["geometry"],
        )
        served = httpx.get(
            f"{server.base}{BASE}/layers/resources/features/{change['id']}", headers=bearer(viewer)
        ).json()
        assert change["feature"] == served
    # The site model follows: the incident's nearest resource of that kind is the moved one.
    again = httpx.get(
        f"{server.base}{BASE}/incidents/{incident}", headers=bearer(viewer), timeout=WAIT_S
    ).json()
    assert again["resources"][kind][0]["id"] == farther


def test_a_ten_thousand_row_statement_wakes_the_server_once_and_is_a_reload(
    postgis_server: tuple[LiveServer, str],
) -> None:
    server, url = postgis_server
    viewer = login(server, VIEWER)
    libpq = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    statements = [
        (
            "create",
            "INSERT INTO basemap_features (site_id, id, kind, geom) "
            f"SELECT '{DEMO_ID}', 'BM-bulk-' || g, 'building', "
            "ST_SetSRID(ST_MakePoint(121.30 + g * 1e-6, 30.70), 4326) "
            "FROM generate_series(1, 10000) AS g",
        ),
        ("update", "UPDATE basemap_features SET name = 'bulk' WHERE id LIKE 'BM-bulk-%'"),
        ("delete", "DELETE FROM basemap_features WHERE id LIKE 'BM-bulk-%'"),
    ]

    async def scenario() -> None:
        listening = await psycopg.AsyncConnection.connect(libpq, autocommit=True)
        async with listening, subscribed(server, viewer) as wall:
            await listening.execute("LISTEN rallypoint_layers")
            assert (await wall.recv())["type"] == "snapshot"
            for _action, statement in statements:
                await asyncio.to_thread(psql, url, statement, timeout=120)
                notes = [n.payload async for n in listening.notifies(timeout=0.5)]
                assert [json.loads(p) for p in notes] == [{"site": DEMO_ID, "layer": "basemap"}]
                message = await next_layer_change(wall, WAIT_S)
                data = message["event"]["data"]
                assert (data["layer"], data["count"], data["reload"], data["changes"]) == (
                    "basemap",
                    10_000,
                    True,
                    [],
                )

    asyncio.run(scenario())


def test_transactions_committing_out_of_order_are_each_sent_once(
    postgis_server: tuple[LiveServer, str],
) -> None:
    """A QGIS session holds its transaction open while another edit commits: the later
    change number shows first; the earlier one is still sent when its transaction commits."""
    server, url = postgis_server
    viewer = login(server, VIEWER)
    libpq = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)

    async def scenario() -> list[dict[str, Any]]:
        async with subscribed(server, viewer) as wall:
            assert (await wall.recv())["type"] == "snapshot"
            slow = await psycopg.AsyncConnection.connect(libpq)
            quick = await psycopg.AsyncConnection.connect(libpq, autocommit=True)
            async with slow, quick:
                # Other layers: writers of one layer queue on its revision token.
                await slow.execute(
                    "UPDATE zones SET capacity = 11 WHERE site_id = %s AND id = 'Z-003'", (DEMO_ID,)
                )
                await quick.execute(
                    "UPDATE sensors SET name = name || ' (checked)' "
                    "WHERE site_id = %s AND id = 'S-002'",
                    (DEMO_ID,),
                )
                first = await next_layer_change(wall, WITHIN_S)
                await slow.commit()
                second = await next_layer_change(wall, WITHIN_S)
            with pytest.raises(TimeoutError):  # and nothing a second time
                await next_layer_change(wall, 1.5)
            return [first, second]

    first, second = asyncio.run(scenario())
    ids = [[c["id"] for c in m["event"]["data"]["changes"]] for m in (first, second)]
    assert ids == [["S-002"], ["Z-003"]]


def test_the_listener_comes_back_after_its_connection_is_killed(
    postgis_server: tuple[LiveServer, str],
) -> None:
    server, url = postgis_server
    viewer = login(server, VIEWER)
    listener = server.app.state.layer_listener
    before = listener.connections
    name = make_url(url).database
    psql(
        url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        f"WHERE application_name = 'rallypoint layer listener' AND datname = '{name}'",
    )
    wait_listening(server, before + 1)

    async def scenario() -> dict[str, Any]:
        async with subscribed(server, viewer) as wall:
            assert (await wall.recv())["type"] == "snapshot"
            await asyncio.to_thread(
                psql,
                url,
                f"UPDATE sensors SET name = name || ' (checked)' WHERE site_id = '{DEMO_ID}' "
                "AND id = 'S-001'",
            )
            return await next_layer_change(wall, WITHIN_S)

    message = asyncio.run(scenario())
    [change] = message["event"]["data"]["changes"]
    assert change["id"] == "S-001"


def test_another_processs_write_reaches_the_wall_within_the_sweep(
    sqlite_server: tuple[LiveServer, str],
) -> None:
    """``rallypoint layer import`` run while the server serves: a write the server's routes
    never saw, found by the once-a-second sweep."""
    server, url = sqlite_server
    viewer = login(server, VIEWER)

    async def scenario() -> dict[str, Any]:
        async with subscribed(server, viewer) as wall:
            assert (await wall.recv())["type"] == "snapshot"

            def elsewhere() -> None:
                engine = make_engine(url)
                try:
                    db = Database(engine)
                    version = layers.get_feature(db, DEMO_ID, "receptors", "RC-02").version
                    layers.replace_feature(
                        db,
                        DEMO_ID,
                        "receptors",
                        "RC-02",
                        {"properties": {"population": 999}},
                        actor="cli-import",
                        if_match=version,
                        partial=True,
                    )
                finally:
                    engine.dispose()

            await asyncio.to_thread(elsewhere)
            return await next_layer_change(wall, 2.5)

    message = asyncio.run(scenario())
    data = message["event"]["data"]
    assert (data["layer"], data["source"]) == ("receptors", "api")
    [change] = data["changes"]
    assert (change["id"], change["actor"], change["fields"]) == (
        "RC-02",
        "cli-import",
        ["population"],
    )
