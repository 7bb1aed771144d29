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
from tests.problems import assert_problem

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


# -- the site's planners settle the conflicts (GET/POST /api/sites/{site}/layer-conflicts) ----


@pytest.fixture
def site_api(site: Database) -> Iterator[TestClient]:
    """The site's own server (its SQLite database, no ticker), where its planners work."""
    app = create_app(
        Settings(database_url=str(site.engine.url)),
        database=site,
        clock=ManualClock(TEST_START),
        ticking=False,
    )
    with TestClient(app) as client:
        yield client


def kept_conflict(
    db: Database, group: tuple[TestClient, ManualClock, str], site: Database
) -> tuple[str, layers.Feature, dict[str, Any]]:
    """A zone renamed at both ends, kept as a conflict at the site: the zone, the site's
    feature, the conflict."""
    (zone,) = zone_ids(db, 1)
    local = edit(site, "zones", zone, "site-planner", name="Tank farm (site)")
    edit(db, "zones", zone, "alice", name="Tank farm (group)", capacity=240)
    [conflict] = forwarder_of(site, group).pull_layers().conflicts
    return zone, local, conflict


def conflicts_url(tail: str = "") -> str:
    return f"/api/sites/{SITE}/layer-conflicts{tail}"


def test_a_planner_lists_the_conflicts_and_takes_the_groups_feature(
    db: Database,
    group: tuple[TestClient, ManualClock, str],
    site: Database,
    site_api: TestClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    zone, local, conflict = kept_conflict(db, group, site)
    planner = sign_in(site, "planner-zhao", [Role.PLANNER])
    listed = site_api.get(conflicts_url(), headers=planner)
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert (body["open"], body["resolved"]) == (1, 0)
    [shown] = body["conflicts"]
    assert (shown["id"], shown["state"], shown["feature"]) == (conflict["seq"], "open", zone)
    assert (shown["group_actor"], shown["local_actor"], shown["local_version"]) == (
        "alice",
        "site-planner",
        local.version,
    )
    commander = sign_in(site, "commander-qian", [Role.COMMANDER])
    assert site_api.get(conflicts_url(), headers=commander).json()["conflicts"] == [shown]

    url = conflicts_url(f"/{conflict['seq']}/resolve")
    done = site_api.post(url, json={"take": "group", "note": "surveyed"}, headers=planner)
    assert done.status_code == 200, done.text
    assert done.json()["state"] == "resolved"
    here = layers.get_feature(site, SITE, "zones", zone)  # read back from the site's table
    assert (here.properties["name"], here.properties["capacity"]) == ("Tank farm (group)", 240)
    assert (here.version, here.updated_by) == (local.version + 1, "planner-zhao")
    action, version, actor, note = changes_of(site, zone)[-1]
    assert (action, version, actor) == ("update", local.version + 1, "planner-zhao")
    assert note is not None and f"layer conflict {conflict['seq']} resolved" in note
    assert "surveyed" in note

    after = site_api.get(conflicts_url(), headers=planner).json()
    assert (after["open"], after["resolved"], after["conflicts"]) == (0, 1, [])
    [old] = site_api.get(conflicts_url(), params={"resolved": True}, headers=planner).json()[
        "conflicts"
    ]
    assert old["state"] == "resolved"
    assert {k: old["resolved"][k] for k in ("by", "take", "note", "version")} == {
        "by": "planner-zhao",
        "take": "group",
        "note": "surveyed",
        "version": here.version,
    }
    assert old["resolved"]["at"] == TEST_START.isoformat()
    state = status(site, SITE)  # kept, not deleted
    assert state is not None and len(state.layer_conflicts) == 1

    again = assert_problem(site_api.post(url, json={"take": "site"}, headers=planner), 409)
    assert "planner-zhao" in again["detail"] and TEST_START.isoformat() in again["detail"]
    assert layers.get_feature(site, SITE, "zones", zone).version == here.version

    monkeypatch.setenv("RALLYPOINT_DATABASE_URL", str(site.engine.url))
    shown_cli = CliRunner().invoke(main, ["forward", "--site", SITE, "--status"])
    assert shown_cli.exit_code == 0, shown_cli.output
    assert "LAYER CONFLICT" not in shown_cli.output
    assert "layer conflicts resolved: 1" in shown_cli.output


def test_a_planner_keeps_the_sites_feature_and_bad_requests_change_nothing(
    db: Database, group: tuple[TestClient, ManualClock, str], site: Database, site_api: TestClient
) -> None:
    zone, local, conflict = kept_conflict(db, group, site)
    planner = sign_in(site, "planner-zhao", [Role.PLANNER])
    url = conflicts_url(f"/{conflict['seq']}/resolve")

    assert_problem(site_api.post(url, json={"take": "both"}, headers=planner), 422, field="take")
    assert_problem(site_api.post(url, json={}, headers=planner), 422, field="take")
    assert_problem(
        site_api.post(url, json={"take": "site", "note": 7}, headers=planner), 422, field="note"
    )
    missing = conflicts_url(f"/{conflict['seq'] + 1000}/resolve")
    assert_problem(site_api.post(missing, json={"take": "site"}, headers=planner), 404)
    assert_problem(
        site_api.post(conflicts_url("/nope/resolve"), json={"take": "site"}, headers=planner), 404
    )
    # Roles: a viewer reads neither; a commander reads but does not settle.
    viewer = sign_in(site, "viewer-sun", [Role.VIEWER])
    assert_problem(site_api.get(conflicts_url(), headers=viewer), 403, field="role")
    assert_problem(site_api.post(url, json={"take": "site"}, headers=viewer), 403, field="role")
    commander = sign_in(site, "commander-qian", [Role.COMMANDER])
    assert_problem(site_api.post(url, json={"take": "site"}, headers=commander), 403, field="role")
    assert site_api.get(conflicts_url()).status_code == 401
    assert site_api.get(conflicts_url(), headers=planner).json()["open"] == 1  # nothing changed

    kept = site_api.post(url, json={"take": "site"}, headers=planner)
    assert kept.status_code == 200, kept.text
    assert kept.json()["resolved"]["take"] == "site"
    here = layers.get_feature(site, SITE, "zones", zone)
    assert (here.properties["name"], here.version) == ("Tank farm (site)", local.version)
    assert changes_of(site, zone)[-1][2] == "site-planner"  # no write
    assert site_api.get(conflicts_url(), headers=planner).json()["open"] == 0


def test_taking_the_groups_feature_over_a_site_feature_changed_since_is_refused(
    db: Database, group: tuple[TestClient, ManualClock, str], site: Database, site_api: TestClient
) -> None:
    zone, _, conflict = kept_conflict(db, group, site)
    later = edit(site, "zones", zone, "site-planner", capacity=12)  # after the conflict
    planner = sign_in(site, "planner-zhao", [Role.PLANNER])
    url = conflicts_url(f"/{conflict['seq']}/resolve")
    assert_problem(site_api.post(url, json={"take": "group"}, headers=planner), 412)
    stale = {**planner, "If-Match": f'"{later.version - 1}"'}
    assert_problem(site_api.post(url, json={"take": "group"}, headers=stale), 412)
    here = layers.get_feature(site, SITE, "zones", zone)
    assert (here.version, here.properties["capacity"]) == (later.version, 12)  # untouched
    assert site_api.get(conflicts_url(), headers=planner).json()["open"] == 1  # still open

    fresh = {**planner, "If-Match": f'"{later.version}"'}
    done = site_api.post(url, json={"take": "group"}, headers=fresh)
    assert done.status_code == 200, done.text
    here = layers.get_feature(site, SITE, "zones", zone)
    assert (here.properties["name"], here.properties["capacity"]) == ("Tank farm (group)", 240)
    assert done.json()["resolved"]["version"] == here.version == later.version + 1


def test_taking_the_groups_deletion_deletes_the_sites_feature(
    db: Database, group: tuple[TestClient, ManualClock, str], site: Database, site_api: TestClient
) -> None:
    (zone,) = zone_ids(db, 1)
    edit(site, "zones", zone, "site-planner", capacity=55)
    version = layers.get_feature(db, SITE, "zones", zone).version
    layers.delete_feature(db, SITE, "zones", zone, actor="alice", version=version)
    [conflict] = forwarder_of(site, group).pull_layers().conflicts
    planner = sign_in(site, "planner-zhao", [Role.PLANNER])
    url = conflicts_url(f"/{conflict['seq']}/resolve")
    done = site_api.post(url, json={"take": "group"}, headers=planner)
    assert done.status_code == 200, done.text
    assert done.json()["resolved"]["version"] is None
    with site.read() as session:
        assert session.get(LAYER_ROWS["zones"], (SITE, zone)) is None
    assert changes_of(site, zone)[-1][:3] == ("delete", 2, "planner-zhao")
