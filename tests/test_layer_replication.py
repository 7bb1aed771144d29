"""The group's edits of a replicated site's layers flowing down to the site (issue 18,
``command.layer_replication``): the group's app on this test's backend (PostGIS under
``scripts/with-postgis.sh``), the site a SQLite database of its own, the site's forwarder
calling the group's API in-process. Each change reaches the site once, through its own write
path, and a feature edited at both ends is merged when clean, else kept as a conflict.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text

from command import layer_replication, replication
from command.app import create_app
from command.auth import Role
from command.cli import main
from command.forwarder import Forwarder, ForwardError, status
from command.hub import Hub
from command.layer_feed import LayerFeed
from command.settings import Settings
from gis import layers, topology
from gis.storage.db import Database, make_engine
from gis.storage.tables import LAYER_ROWS, ChangeRow
from plans.clock import ManualClock
from tests.conftest import DEMO_ID, TEST_START, sign_in, site_database

SITE = DEMO_ID
GROUP_URL = "http://testserver"


@pytest.fixture
def group(db: Database) -> Iterator[tuple[TestClient, ManualClock, str]]:
    """The group's server (no ticker), where the demo site is a replica: its client, clock,
    and the site forwarder's token."""
    clock = ManualClock(TEST_START)
    with db.write() as session:
        replication.add_replica(session, SITE, "site-a", actor="test", now=clock.now())
        token = replication.issue_replicator_token(session, SITE, "site-a", clock.now())
    app = create_app(
        Settings(database_url=str(db.engine.url)), database=db, clock=clock, ticking=False
    )
    with TestClient(app) as client:
        yield client, clock, token


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Database]:
    """The site's own database (SQLite), holding the demo site as the group does."""
    database = Database(make_engine(site_database(tmp_path / "site.db")))
    try:
        yield database
    finally:
        database.dispose()


def forwarder_of(
    site: Database, group: tuple[TestClient, ManualClock, str], url: str = GROUP_URL
) -> Forwarder:
    client, clock, token = group
    return Forwarder(site, SITE, url, token, clock, client=client if url == GROUP_URL else None)


def zone_ids(db: Database, n: int) -> list[str]:
    model = LAYER_ROWS["zones"]
    with db.read() as session:
        ids = list(
            session.scalars(select(model.id).where(model.site_id == SITE).order_by(model.id))
        )
    assert len(ids) >= n
    return ids[:n]


def edit(db: Database, layer: str, fid: str, actor: str, **properties: Any) -> layers.Feature:
    """A planner's edit of a feature (a JSON merge patch, on the version read)."""
    current = layers.get_feature(db, SITE, layer, fid)
    return layers.replace_feature(
        db,
        SITE,
        layer,
        fid,
        {"properties": properties},
        actor=actor,
        if_match=current.version,
        partial=True,
    )


def changes_of(db: Database, fid: str) -> list[tuple[str, int, str, str | None]]:
    with db.read() as session:
        return [
            (r.action, r.version, r.actor, r.note)
            for r in session.scalars(
                select(ChangeRow)
                .where(ChangeRow.site_id == SITE, ChangeRow.feature_id == fid)
                .order_by(ChangeRow.seq)
            )
        ]


def test_a_zone_edited_at_the_group_reaches_the_site_once_with_its_version_and_actor(
    db: Database, group: tuple[TestClient, ManualClock, str], site: Database
) -> None:
    (zone,) = zone_ids(db, 1)
    assert layers.get_feature(site, SITE, "zones", zone).version == 1  # as at the group
    feed = LayerFeed(site, Hub(), group[1], lock=threading.RLock(), warning=lambda _: None)
    edited = edit(db, "zones", zone, "alice", name="North tank farm (group)", capacity=240)
    assert edited.version == 2

    forwarder = forwarder_of(site, group)
    forwarder.once()
    here = layers.get_feature(site, SITE, "zones", zone)
    assert (here.properties["name"], here.properties["capacity"]) == (
        "North tank farm (group)",
        240,
    )
    assert (here.version, here.updated_by) == (edited.version, "group:alice")
    [(action, version, actor, note)] = changes_of(site, zone)[-1:]
    assert (action, version, actor) == ("update", 2, "group:alice")
    assert note is not None and "its version 2" in note

    # The site's walls hear of it as of any edit of its layers.
    [event] = feed.follow()
    assert event.type == "layer.changed" and event.actor == "group:alice"
    assert [(c["id"], c["fields"]) for c in event.data["changes"]] == [(zone, ["capacity", "name"])]

    before = changes_of(site, zone)
    taken = forwarder.pull_layers()
    assert (taken.applied, taken.unchanged, taken.conflicts) == ([], 0, [])
    assert changes_of(site, zone) == before  # once
    state = status(site, SITE)
    with db.read() as session:
        last = session.scalar(select(func.max(ChangeRow.seq)).where(ChangeRow.site_id == SITE))
    assert state is not None and state.layer_cursor == last and state.layer_conflicts == []


def test_a_cut_and_a_resume_take_each_change_once_in_order(
    db: Database, group: tuple[TestClient, ManualClock, str], site: Database
) -> None:
    client, _, token = group
    a, b, c = zone_ids(db, 3)
    edit(db, "zones", a, "alice", name="A1")
    edit(db, "zones", a, "bob", name="A2")  # the same feature twice: in order, A2 last
    edit(db, "zones", b, "alice", capacity=17)
    layers.delete_feature(
        db,
        SITE,
        "zones",
        c,
        actor="carol",
        version=layers.get_feature(db, SITE, "zones", c).version,
    )
    answer = client.get(
        f"/api/replication/sites/{SITE}/layers/changes",
        params={"after": 0, "limit": 10},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 200, answer.text
    offered = answer.json()
    assert [(ch["feature"], ch["action"], ch["actor"]) for ch in offered["changes"]] == [
        (a, "update", "alice"),
        (a, "update", "bob"),
        (b, "update", "alice"),
        (c, "delete", "carol"),
    ]
    assert offered["changes"][1]["base"]["properties"]["name"] == "A1"

    # The link is cut: the group cannot be reached. Nothing is taken, the error is kept.
    cut = forwarder_of(site, group, url="http://127.0.0.1:9")
    with pytest.raises(ForwardError) as failed:
        cut.pull_layers()
    cut.close()
    assert not failed.value.refused
    assert layers.get_feature(site, SITE, "zones", a).version == 1

    # The site's forwarder dies after taking the first change of the answer.
    taken = layer_replication.LayersTaken()
    layer_replication.take_change(
        site, SITE, offered["changes"][0], group=GROUP_URL, now=TEST_START, into=taken
    )
    assert [t["seq"] for t in taken.applied] == [offered["changes"][0]["seq"]]

    # Restarted, it resumes after it; the old answer delivered again changes nothing.
    done = forwarder_of(site, group).pull_layers()
    assert [t["feature"] for t in done.applied] == [a, b, c]
    again = layer_replication.take_changes(site, SITE, offered, group=GROUP_URL, now=TEST_START)
    assert (again.applied, again.unchanged, again.conflicts) == ([], 0, [])
    assert [(act, v, who) for act, v, who, _ in changes_of(site, a)][1:] == [
        ("update", 2, "group:alice"),
        ("update", 3, "group:bob"),
    ]
    assert layers.get_feature(site, SITE, "zones", a).properties["name"] == "A2"
    assert layers.get_feature(site, SITE, "zones", b).properties["capacity"] == 17
    assert changes_of(site, c)[-1][:3] == ("delete", 1, "group:carol")
    model = LAYER_ROWS["zones"]
    with site.read() as session:
        assert session.get(model, (SITE, c)) is None


def test_a_feature_edited_at_both_ends_is_kept_as_a_conflict_with_who_and_what(
    db: Database,
    group: tuple[TestClient, ManualClock, str],
    site: Database,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (zone,) = zone_ids(db, 1)
    local = edit(site, "zones", zone, "site-planner", name="Tank farm (site)")
    edit(db, "zones", zone, "alice", name="Tank farm (group)")
    forwarder = forwarder_of(site, group)
    with caplog.at_level("ERROR"):
        taken = forwarder.pull_layers()
    assert taken.applied == []
    [conflict] = taken.conflicts
    here = layers.get_feature(site, SITE, "zones", zone)
    assert (here.properties["name"], here.version, here.updated_by) == (
        "Tank farm (site)",
        local.version,
        "site-planner",
    )  # never overwritten
    assert (conflict["group_actor"], conflict["local_actor"], conflict["fields"]) == (
        "alice",
        "site-planner",
        ["name"],
    )
    assert "name: here 'Tank farm (site)', group 'Tank farm (group)'" in conflict["reason"]
    assert any(
        "LAYER CONFLICT" in r.message and "Tank farm (group)" in r.message for r in caplog.records
    )
    state = status(site, SITE)
    assert state is not None and state.layer_conflicts == [conflict]  # kept
    assert forwarder.pull_layers().conflicts == []  # and not taken again
    state = status(site, SITE)
    assert state is not None and len(state.layer_conflicts) == 1

    monkeypatch.setenv("RALLYPOINT_DATABASE_URL", str(site.engine.url))
    shown = CliRunner().invoke(main, ["forward", "--site", SITE, "--status"])
    assert shown.exit_code == 0, shown.output
    assert "LAYER CONFLICT" in shown.output and zone in shown.output
    assert "alice" in shown.output and "Tank farm (site)" in shown.output


def test_edits_of_different_fields_at_both_ends_merge_cleanly(
    db: Database, group: tuple[TestClient, ManualClock, str], site: Database
) -> None:
    (zone,) = zone_ids(db, 1)
    local = edit(site, "zones", zone, "site-planner", capacity=55)
    edit(db, "zones", zone, "alice", name="Tank farm (group)")
    taken = forwarder_of(site, group).pull_layers()
    assert taken.conflicts == []
    assert [(t["feature"], t["merged"]) for t in taken.applied] == [(zone, True)]
    here = layers.get_feature(site, SITE, "zones", zone)
    assert (here.properties["name"], here.properties["capacity"]) == ("Tank farm (group)", 55)
    assert (here.version, here.updated_by) == (local.version + 1, "group:alice")
    note = changes_of(site, zone)[-1][3]
    assert note is not None and "merged with version 2 here by site-planner" in note


def test_a_deletion_at_the_group_of_a_feature_changed_here_is_a_conflict(
    db: Database, group: tuple[TestClient, ManualClock, str], site: Database
) -> None:
    (zone,) = zone_ids(db, 1)
    edit(site, "zones", zone, "site-planner", capacity=55)
    version = layers.get_feature(db, SITE, "zones", zone).version
    layers.delete_feature(db, SITE, "zones", zone, actor="alice", version=version)
    [conflict] = forwarder_of(site, group).pull_layers().conflicts
    assert conflict["action"] == "delete" and conflict["fields"] == ["capacity"]
    assert layers.get_feature(site, SITE, "zones", zone).properties["capacity"] == 55


def test_edits_made_in_the_groups_database_flow_down_as_its_users(
    db: Database, group: tuple[TestClient, ManualClock, str], site: Database
) -> None:
    """A planner's QGIS edit at the group (PostGIS: logged by the tables' triggers)."""
    if not db.is_postgis:
        pytest.skip("the triggers are PostGIS's")
    (zone,) = zone_ids(db, 1)
    assert db.connection is not None  # as QGIS or psql write: plain SQL, no server session
    user = db.connection.execute(text("SELECT session_user")).scalar()
    db.connection.execute(
        text("UPDATE zones SET name = 'Edited in QGIS' WHERE site_id = :s AND id = :z"),
        {"s": SITE, "z": zone},
    )
    [applied] = forwarder_of(site, group).pull_layers().applied
    assert applied["feature"] == zone
    here = layers.get_feature(site, SITE, "zones", zone)
    assert (here.properties["name"], here.updated_by) == ("Edited in QGIS", f"group:db:{user}")


def test_only_the_sites_forwarder_reads_the_groups_changes(
    db: Database, group: tuple[TestClient, ManualClock, str]
) -> None:
    client, _, token = group
    url = f"/api/replication/sites/{SITE}/layers/changes"
    assert client.get(url).status_code == 401
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get(url, params={"after": -1}, headers=headers).status_code == 422
    planner = sign_in(db, "planner-li", [Role.PLANNER])
    assert client.get(url, headers=planner).status_code == 403
    assert client.get(url, headers=headers).json()["changes"] == []  # none since the link


def test_a_change_still_being_written_at_the_group_holds_the_later_ones_back(
    db: Database, group: tuple[TestClient, ManualClock, str]
) -> None:
    """PostgreSQL takes a change's number before its transaction commits: a later number can
    be seen first. While another transaction writes to ``changes``, nothing is offered, so the
    site's cursor never passes a change it has not seen."""
    if not db.is_postgis:
        pytest.skip("SQLite has one writer: its numbers show in order")
    (zone,) = zone_ids(db, 1)
    with db.engine.connect() as other:
        slow = other.begin()
        other.execute(  # a planner's edit, its transaction still open: an earlier number
            text(
                "INSERT INTO changes (site_id, layer, feature_id, action, version, actor, at) "
                "VALUES (:s, 'zones', 'Z-new', 'create', 1, 'db:slow', now())"
            ),
            {"s": SITE},
        )
        edit(db, "zones", zone, "alice", name="Later")  # a later number, visible first
        waiting = layer_replication.offered_changes(db, SITE, 0, 10)
        assert (waiting["settled"], waiting["changes"]) == (False, [])
        slow.rollback()
    offered = layer_replication.offered_changes(db, SITE, 0, 10)
    assert offered["settled"] and [c["feature"] for c in offered["changes"]] == [zone]


def test_a_change_the_sites_rules_refuse_is_kept_and_the_others_taken(
    db: Database, group: tuple[TestClient, ManualClock, str], site: Database
) -> None:
    """The site refuses cutting its office's doors off the foot network (its rules, stricter
    than the group's): that deletion is kept as a conflict, the changes around it taken."""
    south, north = "E-00029", "E-00032"  # walks to the office (tests/test_topology.py)
    with site.write() as session:
        version = topology.load_rules(session, SITE).version
        topology.save_rules(
            session,
            SITE,
            {"rules": {"foot-reachable": {"severity": "refuse"}}},
            actor="site-planner",
            if_match=version,
        )
    (zone,) = zone_ids(db, 1)
    for walk in (south, north):  # at the group the cut is only a warning
        version = layers.get_feature(db, SITE, "network", walk).version
        layers.delete_feature(db, SITE, "network", walk, actor="alice", version=version)
    edit(db, "zones", zone, "bob", name="After the walks")
    taken = forwarder_of(site, group).pull_layers()
    assert [(t["feature"], t["action"]) for t in taken.applied] == [
        (south, "delete"),
        (zone, "update"),
    ]
    [conflict] = taken.conflicts
    assert (conflict["feature"], conflict["action"], conflict["group_actor"]) == (
        north,
        "delete",
        "alice",
    )
    assert "the site refuses it" in conflict["reason"]
    assert layers.get_feature(site, SITE, "network", north).version == 1  # still there
    assert layers.get_feature(site, SITE, "zones", zone).properties["name"] == "After the walks"
    state = status(site, SITE)
    assert state is not None and state.layer_conflicts == [conflict]
