"""A site's event log replicated to the group (issue 18, ``command.replication``): the verifier
on its own, the group's end through the API with a replicator token (both backends), the
group's refusal to write a replicated site's log, and plans coming down to a site.

The two servers as real processes are ``tests/test_site_group.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import Text, cast, delete, func, select, update

from command import events as event_log
from command import replication
from command.app import create_app
from command.auth import Role, resolve_token
from command.cli import main
from command.events import GENESIS, LoggedEvent, canonical, chain_hash
from command.forwarder import Forwarder, ForwardError, status
from command.replication import Refused, verify_batch
from command.settings import Settings
from gis.errors import OwnedElsewhere, Unauthorized
from gis.storage.db import Database, make_engine
from gis.storage.tables import (
    EventHeadRow,
    EventRow,
    GroupPlanRow,
    PlanTemplateRow,
    ReplicaLinkRow,
)
from plans.clock import ManualClock
from plans.store import approved_version, load_plan_files, save_plan
from tests.conftest import (
    CHLORINE_ACTIVATION,
    DEMO_ID,
    DEMO_PLANS,
    TEST_START,
    sign_in,
    site_database,
)
from tests.problems import assert_problem

SITE = DEMO_ID
NONE_HELD: dict[int, str] = {}


def chain(n: int, *, start: int = 1, prev: str = GENESIS, site: str = SITE) -> list[LoggedEvent]:
    """``n`` events of ``site`` from ``start``, chained after ``prev``, as a site logs them."""
    out = []
    for seq in range(start, start + n):
        at = TEST_START + timedelta(seconds=seq)
        data = {"step": f"s{seq}", "value": seq * 1.5, "note": "泄漏 north"}
        payload = canonical(site, seq, at, "plan.step.completed", "cmd-zhou", "inc-1", data)
        digest = chain_hash(prev, payload)
        out.append(
            LoggedEvent(
                site, seq, at, "plan.step.completed", "cmd-zhou", "inc-1", data, prev, digest
            )
        )
        prev = digest
    return out


def changed(event: LoggedEvent, **fields: Any) -> LoggedEvent:
    values = {name: getattr(event, name) for name in LoggedEvent.__dataclass_fields__}
    return LoggedEvent(**{**values, **fields})


def held_of(events: list[LoggedEvent]) -> dict[int, str]:
    return {e.seq: e.hash for e in events}


# -- the verifier -------------------------------------------------------------------------------


def test_a_batch_after_what_is_held_is_taken_whole() -> None:
    log = chain(10)
    fresh = verify_batch(log[4:], 4, log[3].hash, held_of(log[:4]).get)
    assert [e.seq for e in fresh] == list(range(5, 11))


def test_a_batch_sent_again_is_taken_without_a_second_copy() -> None:
    log = chain(10)
    assert verify_batch(log[2:6], 10, log[9].hash, held_of(log).get) == []
    fresh = verify_batch(log[6:], 8, log[7].hash, held_of(log[:8]).get)  # overlapping
    assert [e.seq for e in fresh] == [9, 10]


def test_a_gap_after_what_is_held_is_refused_naming_the_missing_events() -> None:
    log = chain(10)
    with pytest.raises(Refused) as refused:
        verify_batch(log[6:], 4, log[3].hash, held_of(log[:4]).get)
    assert (refused.value.reason, refused.value.seq, refused.value.status_code) == ("gap", 5, 409)
    assert "events 5\u20136 are missing" in refused.value.detail


def test_a_gap_inside_the_batch_is_refused() -> None:
    log = chain(10)
    with pytest.raises(Refused) as refused:
        verify_batch([*log[:3], *log[4:]], 0, GENESIS, NONE_HELD.get)
    assert (refused.value.reason, refused.value.seq) == ("gap", 4)


def test_a_reordered_batch_is_refused() -> None:
    log = chain(6)
    batch = [log[0], log[2], log[1], *log[3:]]
    with pytest.raises(Refused) as refused:
        verify_batch(batch, 0, GENESIS, NONE_HELD.get)
    assert (refused.value.reason, refused.value.seq, refused.value.status_code) == (
        "order",
        2,
        422,
    )


def test_a_changed_payload_is_refused_as_forged() -> None:
    log = chain(6)
    log[3] = changed(log[3], data={**log[3].data, "value": 99.0})
    with pytest.raises(Refused) as refused:
        verify_batch(log, 0, GENESIS, NONE_HELD.get)
    assert (refused.value.reason, refused.value.seq, refused.value.status_code) == (
        "forged",
        4,
        422,
    )


def test_a_wrong_hash_is_refused_as_forged() -> None:
    log = chain(6)
    log[2] = changed(log[2], hash="f" * 64)
    with pytest.raises(Refused) as refused:
        verify_batch(log, 0, GENESIS, NONE_HELD.get)
    assert (refused.value.reason, refused.value.seq) == ("forged", 3)


def test_a_rehashed_event_that_breaks_the_link_is_refused() -> None:
    """An event changed and re-hashed: its own hash holds, the next one's link does not."""
    log = chain(6)
    bad = changed(log[2], actor="intruder")
    payload = canonical(SITE, 3, bad.at, bad.type, bad.actor, bad.incident_id, bad.data)
    log[2] = changed(bad, hash=chain_hash(bad.prev_hash, payload))
    with pytest.raises(Refused) as refused:
        verify_batch(log, 0, GENESIS, NONE_HELD.get)
    assert (refused.value.reason, refused.value.seq) == ("forged", 4)


def test_another_event_at_a_number_held_is_a_fork() -> None:
    log = chain(8)
    other = chain(8, site=SITE)
    other[5] = changed(other[5], actor="someone else")
    payload = canonical(SITE, 6, other[5].at, other[5].type, "someone else", "inc-1", other[5].data)
    other[5] = changed(other[5], hash=chain_hash(other[5].prev_hash, payload))
    with pytest.raises(Refused) as refused:
        verify_batch(other[5:6], 8, log[7].hash, held_of(log).get)
    assert (refused.value.reason, refused.value.seq, refused.value.status_code) == (
        "fork",
        6,
        409,
    )


def test_a_log_that_went_another_way_after_what_is_held_is_a_fork() -> None:
    log = chain(5)
    elsewhere = chain(3, start=6, prev="a" * 64)
    with pytest.raises(Refused) as refused:
        verify_batch(elsewhere, 5, log[4].hash, held_of(log).get)
    assert (refused.value.reason, refused.value.seq) == ("fork", 6)


def test_the_wire_keeps_every_hashed_field() -> None:
    for event in chain(3):
        back = replication.from_wire(SITE, 0, replication.to_wire(event))
        assert back == event and replication.content_matches(back)


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ("not an object", "events[0]."),
        ({"seq": 1}, "events[0].at"),
        ({**replication.to_wire(chain(1)[0]), "seq": "1"}, "events[0].seq"),
        ({**replication.to_wire(chain(1)[0]), "at": "2026-06-01T08:00:00"}, "events[0].at"),
        ({**replication.to_wire(chain(1)[0]), "data": [1]}, "events[0].data"),
    ],
)
def test_a_malformed_event_is_refused_naming_its_field(raw: object, field: str) -> None:
    with pytest.raises(Refused) as refused:
        replication.from_wire(SITE, 0, raw)
    assert refused.value.status_code == 422
    assert refused.value.errors[0].field == field


# -- the group's end, through the API ------------------------------------------------------------


@pytest.fixture
def group(db: Database) -> Iterator[tuple[TestClient, ManualClock, str]]:
    """A group server (no ticker) where the demo site is a replica of 'site-a': its client,
    clock and the forwarder's token."""
    clock = ManualClock(TEST_START)
    with db.read() as session:
        assert event_log.last_seq(session, SITE) == 0
    with db.write() as session:
        replication.add_replica(session, SITE, "site-a", actor="test", now=clock.now())
        token = replication.issue_replicator_token(session, SITE, "site-a", clock.now())
    app = create_app(
        Settings(database_url=str(db.engine.url)), database=db, clock=clock, ticking=False
    )
    with TestClient(app) as client:
        yield client, clock, token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def push(
    client: TestClient, token: str, events: list[LoggedEvent], site_seq: int | None = None
) -> httpx.Response:
    answer: httpx.Response = client.post(
        f"/api/replication/sites/{SITE}/log",
        json={"events": [replication.to_wire(e) for e in events], "site_seq": site_seq},
        headers=bearer(token),
    )
    return answer


def stored_rows(db: Database) -> list[tuple[Any, ...]]:
    with db.read() as session:
        return [
            tuple(r)
            for r in session.execute(
                select(
                    EventRow.seq,
                    EventRow.at,
                    EventRow.type,
                    EventRow.actor,
                    EventRow.incident_id,
                    cast(EventRow.data, Text),
                    EventRow.prev_hash,
                    EventRow.hash,
                )
                .where(EventRow.site_id == SITE)
                .order_by(EventRow.seq)
            )
        ]


def test_the_group_stores_batches_as_sent_and_resumes_from_its_ack(
    db: Database, group: tuple[TestClient, ManualClock, str]
) -> None:
    client, clock, token = group
    log = chain(12)
    status = client.get(f"/api/replication/sites/{SITE}/log", headers=bearer(token))
    assert status.status_code == 200, status.text
    assert (status.json()["acked_seq"], status.json()["acked_hash"]) == (0, GENESIS)
    assert status.json()["state"] == "cut"  # never called yet
    answer = push(client, token, log[:5], site_seq=12)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"site": SITE, "acked_seq": 5, "acked_hash": log[4].hash, "stored": 5}
    clock.advance(timedelta(seconds=7))
    state = client.get(f"/api/replication/sites/{SITE}/log", headers=bearer(token)).json()
    assert (state["state"], state["behind_events"], state["since_ack_s"]) == ("behind", 7, 7.0)
    again = push(client, token, log[3:], site_seq=12)  # overlapping: 4 and 5 held already
    assert again.json()["stored"] == 7 and again.json()["acked_seq"] == 12
    rows = stored_rows(db)
    assert [r[0] for r in rows] == list(range(1, 13))
    assert [(r[0], r[1], r[2], r[3], r[4], r[6], r[7]) for r in rows] == [
        (e.seq, e.at, e.type, e.actor, e.incident_id, e.prev_hash, e.hash) for e in log
    ]
    with db.read() as session:
        count, breaks = event_log.verify(session, SITE)
        link = session.get(ReplicaLinkRow, SITE)
        assert link is not None and (link.acked_seq, link.acked_hash) == (12, log[11].hash)
        origin = session.scalar(select(EventRow.origin).where(EventRow.site_id == SITE).limit(1))
    assert (count, breaks) == (12, [])
    assert origin == "replica:site-a"
    state = client.get(f"/api/replication/sites/{SITE}/log", headers=bearer(token)).json()
    assert (state["state"], state["behind_events"]) == ("connected", 0)


@pytest.mark.parametrize(
    ("spoil", "status", "reason", "seq"),
    [
        ("payload", 422, "forged", 7),
        ("hash", 422, "forged", 7),
        ("reordered", 422, "order", 7),
        ("gap", 409, "gap", 6),
        ("fork", 409, "fork", 3),
    ],
)
def test_a_bad_batch_is_refused_loudly_and_changes_nothing(
    db: Database,
    group: tuple[TestClient, ManualClock, str],
    spoil: str,
    status: int,
    reason: str,
    seq: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client, _, token = group
    log = chain(10)
    assert push(client, token, log[:5]).status_code == 200
    before = stored_rows(db)
    batch = log[5:]
    if spoil == "payload":
        batch[1] = changed(batch[1], data={**batch[1].data, "value": 0})
    elif spoil == "hash":
        batch[1] = changed(batch[1], hash="0" * 63 + "1")
    elif spoil == "reordered":
        batch = [batch[0], batch[2], batch[1], *batch[3:]]
    elif spoil == "gap":
        batch = batch[2:]
    elif spoil == "fork":
        other = chain(10)
        bad = changed(other[2], actor="someone else")
        payload = canonical(SITE, 3, bad.at, bad.type, bad.actor, bad.incident_id, bad.data)
        batch = [changed(bad, hash=chain_hash(bad.prev_hash, payload))]
    with caplog.at_level("ERROR"):
        answer = push(client, token, batch)
    body = assert_problem(answer, status, field="events")
    assert (body["reason"], body["seq"]) == (reason, seq)
    assert f"event {seq}" in body["detail"] or f"events {seq}" in body["detail"]
    assert stored_rows(db) == before
    assert any("REPLICATION REFUSED" in r.message for r in caplog.records)
    state = client.get(f"/api/replication/sites/{SITE}/log", headers=bearer(token)).json()
    assert state["state"] == "refused" and state["acked_seq"] == 5
    assert state["refused"].startswith(f"{status} replication-{reason}")
    # the site, once it sends what it really has, is taken again
    assert push(client, token, log[5:]).json()["acked_seq"] == 10
    assert (
        client.get(f"/api/replication/sites/{SITE}/log", headers=bearer(token)).json()["state"]
        == "connected"
    )


def test_the_group_never_writes_a_replicated_sites_log(
    db: Database, group: tuple[TestClient, ManualClock, str]
) -> None:
    client, _, token = group
    assert push(client, token, chain(3)).status_code == 200
    with db.write() as session, pytest.raises(OwnedElsewhere) as owned:
        event_log.append(session, SITE, "note.added", actor="group-person", data={})
    assert "site-a" in owned.value.detail
    with db.write() as session:
        load_plan_files(session, SITE, sorted(DEMO_PLANS.glob("*.yaml")), actor="test")
    client.headers.update(sign_in(db, "group-cmd", [Role.COMMANDER]))
    answer = client.post(f"/api/sites/{SITE}/incidents", json=CHLORINE_ACTIVATION)
    body = assert_problem(answer, 409, field="site")
    assert "site-a" in body["detail"] and body["owner"] == "site-a"
    assert client.get(f"/api/sites/{SITE}/incidents").json()["incidents"] == []
    with db.read() as session:
        assert event_log.last_seq(session, SITE) == 3


def test_a_replicator_token_forwards_its_own_site_only(
    db: Database, group: tuple[TestClient, ManualClock, str]
) -> None:
    client, _, token = group
    assert_problem(
        client.post(
            "/api/replication/sites/other-site/log", json={"events": []}, headers=bearer(token)
        ),
        403,
    )
    assert_problem(client.get(f"/api/sites/{SITE}/incidents", headers=bearer(token)), 403)
    assert_problem(client.get("/api/group/overview", headers=bearer(token)), 403)
    person = sign_in(db, "group-viewer", [Role.VIEWER])
    assert_problem(push(client, person["Authorization"].split()[1], chain(1)), 403)


def test_the_overview_shows_each_replicated_sites_link(
    db: Database, group: tuple[TestClient, ManualClock, str]
) -> None:
    client, clock, token = group
    viewer = sign_in(db, "group-viewer", [Role.VIEWER])
    site = next(
        s
        for s in client.get("/api/group/overview", headers=viewer).json()["sites"]
        if s["id"] == SITE
    )
    assert site["link"]["state"] == "cut" and site["link"]["since_ack_s"] is None
    push(client, token, chain(4), site_seq=9)
    clock.advance(timedelta(seconds=3))
    site = next(
        s
        for s in client.get("/api/group/overview", headers=viewer).json()["sites"]
        if s["id"] == SITE
    )
    assert site["link"] == {
        "state": "behind",
        "owner": "site-a",
        "acked_seq": 4,
        "site_seq": 9,
        "behind_events": 5,
        "since_ack_s": 3.0,
        "since_contact_s": 3.0,
        "refused": None,
    }
    clock.advance(timedelta(seconds=60))
    site = next(
        s
        for s in client.get("/api/group/overview", headers=viewer).json()["sites"]
        if s["id"] == SITE
    )
    assert site["link"]["state"] == "cut" and site["link"]["since_ack_s"] == 63.0


# -- plans coming down to a site -----------------------------------------------------------------


def _offer(db: Database, plan_id: str, version: int, title: str) -> dict[str, Any]:
    with db.read() as session:
        row = session.scalar(
            select(PlanTemplateRow).where(
                PlanTemplateRow.site_id == SITE, PlanTemplateRow.plan_id == plan_id
            )
        )
        assert row is not None
        body = {**row.body, "title": title}
    return {
        "plan_id": plan_id,
        "version": version,
        "title": title,
        "body": body,
        "source": None,
        "change_note": "group revision",
        "approved_by": "group-approver",
        "approved_at": TEST_START.isoformat(),
    }


def test_a_site_takes_the_groups_approved_plan_and_refuses_local_edits_of_it(
    db: Database,
) -> None:
    with db.write() as session:
        load_plan_files(session, SITE, sorted(DEMO_PLANS.glob("*.yaml")), actor="test")
        before = event_log.last_seq(session, SITE)
        current = approved_version(session, SITE, "chlorine-leak")
    assert current is not None
    offer = _offer(db, "chlorine-leak", current + 1, "Chlorine leak (group revision)")
    with db.write() as session:
        taken = replication.take_plans(
            session, SITE, [offer], owner="https://group.example", now=TEST_START
        )
    assert taken.taken == [("chlorine-leak", current + 1)] and taken.conflicts == []
    with db.read() as session:
        assert approved_version(session, SITE, "chlorine-leak") == current + 1
        logged = event_log.since(session, SITE, before)
        owned = session.get(GroupPlanRow, (SITE, "chlorine-leak"))
    assert [e.type for e in logged] == ["plan_version.approved"]
    assert logged[0].data["via"] == "group" and logged[0].actor == "group:group-approver"
    assert owned is not None and owned.version == current + 1
    with db.write() as session:  # taken again: nothing new
        again = replication.take_plans(
            session, SITE, [offer], owner="https://group.example", now=TEST_START
        )
        assert again.taken == [] and again.conflicts == []
        assert event_log.last_seq(session, SITE) == before + 1
    with db.write() as session, pytest.raises(OwnedElsewhere) as owned_error:
        save_plan(
            session,
            SITE,
            "chlorine-leak",
            offer["body"],
            actor="site-planner",
            expected=None,
            header=False,
        )
    assert "group.example" in owned_error.value.detail


def test_a_local_version_in_the_way_is_a_conflict_never_overwritten(db: Database) -> None:
    with db.write() as session:
        load_plan_files(session, SITE, sorted(DEMO_PLANS.glob("*.yaml")), actor="test")
        current = approved_version(session, SITE, "chlorine-leak")
    assert current is not None
    local = _offer(db, "chlorine-leak", current + 1, "Chlorine leak (site's own draft)")
    with db.write() as session:
        save_plan(
            session,
            SITE,
            "chlorine-leak",
            local["body"],
            actor="site-planner",
            expected=(current, 1),
            header=False,
        )
    offer = _offer(db, "chlorine-leak", current + 1, "Chlorine leak (group revision)")
    with db.write() as session:
        taken = replication.take_plans(session, SITE, [offer], owner="group", now=TEST_START)
    assert taken.taken == []
    [conflict] = taken.conflicts
    assert conflict["version"] == current + 1 and "other content" in conflict["reason"]
    with db.read() as session:
        row = session.scalar(
            select(PlanTemplateRow).where(
                PlanTemplateRow.site_id == SITE,
                PlanTemplateRow.plan_id == "chlorine-leak",
                PlanTemplateRow.version == current + 1,
            )
        )
        assert row is not None and row.title == "Chlorine leak (site's own draft)"
        assert approved_version(session, SITE, "chlorine-leak") == current
        assert session.scalar(select(func.count()).select_from(GroupPlanRow)) == 0


# -- the forwarder against the group's API -------------------------------------------------------


def test_the_forwarder_resumes_takes_plans_and_stops_loudly_on_a_fork(
    db: Database,
    group: tuple[TestClient, ManualClock, str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A site database of its own (SQLite) forwarding to the group's app (this test's
    backend) through its API: batches resume from the acknowledgement, the group's plans come
    down, and a site log that went another way than the group's copy stops the forwarding
    with an error kept at the site."""
    client, clock, token = group
    with db.write() as session:
        load_plan_files(session, SITE, sorted(DEMO_PLANS.glob("*.yaml")), actor="test")
    site = Database(make_engine(site_database(tmp_path / "site.db")))
    try:
        with site.write() as session:  # the demo plans are there, as at the group
            for i in range(7):
                event_log.append(session, SITE, "note.added", actor="cmd", data={"n": i})
        forwarder = Forwarder(site, SITE, "http://testserver", token, clock, batch=3, client=client)
        done = forwarder.once()
        assert (done.stored, done.batches, done.acked_seq) == (7, 3, 7)
        with site.write() as session:
            event_log.append(session, SITE, "note.added", actor="cmd", data={"n": 7})
        assert forwarder.once(plans=False).stored == 1  # resumed after 7
        assert stored_rows(db)[-1][0] == 8
        state = status(site, SITE)
        assert state is not None and state.acked_seq == 8 and state.error is None
        with site.read() as session:  # the group's plans came down: the same, now the group's
            owned = session.scalars(select(GroupPlanRow.plan_id)).all()
        assert "chlorine-leak" in owned

        # The site's log goes another way than the group holds (restored from an old copy).
        with site.write() as session:
            session.execute(delete(EventRow).where(EventRow.site_id == SITE, EventRow.seq == 8))
            session.execute(
                update(EventHeadRow)
                .where(EventHeadRow.site_id == SITE)
                .values(seq=7, hash=replication.hash_at(session, SITE, 7))
            )
            event_log.append(session, SITE, "note.added", actor="cmd", data={"n": "other"})
        with caplog.at_level("ERROR"), pytest.raises(ForwardError) as failed:
            forwarder.once()
        assert failed.value.refused and "forked" in str(failed.value)
        assert any("FORWARDING REFUSED" in r.message for r in caplog.records)
        state = status(site, SITE)
        assert state is not None and state.error is not None and "forked" in state.error
        assert stored_rows(db)[-1][0] == 8  # nothing sent
    finally:
        site.dispose()


# -- the command line ---------------------------------------------------------------------------


def test_replica_commands_issue_list_and_revoke_the_forwarders_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = site_database(tmp_path / "group.db")
    monkeypatch.setenv("RALLYPOINT_DATABASE_URL", url)
    cli = CliRunner()
    added = cli.invoke(main, ["replica", "add", SITE, "--owner", "plant-a"])
    assert added.exit_code == 0, added.output
    token = added.output.strip().splitlines()[-1]
    again = cli.invoke(main, ["replica", "add", SITE, "--owner", "plant-a"])
    assert again.exit_code == 1 and "a replica already" in again.output
    listed = cli.invoke(main, ["replica", "list"])
    assert listed.exit_code == 0 and f"{SITE}\tcut\towner plant-a\tacked 0" in listed.output
    db = Database(make_engine(url))
    try:
        with db.read() as session:
            principal = resolve_token(session, token)
        assert principal.roles_at(SITE) == {Role.REPLICATOR}
        assert principal.roles_at("another-site") == frozenset() and not principal.roles
        second = cli.invoke(main, ["replica", "token", SITE, "--name", "plant-a-2"])
        assert second.exit_code == 0, second.output
        revoked = cli.invoke(main, ["replica", "revoke", SITE])
        assert revoked.output.startswith("2 replicator token(s)")
        with db.read() as session, pytest.raises(Unauthorized):
            resolve_token(session, token)
    finally:
        db.dispose()
    unset = cli.invoke(main, ["forward", "--once"])
    assert unset.exit_code == 1 and "RALLYPOINT_GROUP_URL" in unset.output
