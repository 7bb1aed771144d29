"""Issue 12, item 1: heavy work never holds the command post's lock, and a restart serves at once.

An activation, a planning on new layers and restart recovery each compute for as long as their
inputs make them. The reproduction: a planner's walkway of many vertices made one activation
take minutes while it held the post's lock, so ticks, call-tree fallbacks and every other command
stopped, and a restarted server never answered. Here the heavy step is held open on purpose (an
event it waits for) and the rest of the post is shown to go on meanwhile.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, select, text, update

import command.post as post_module
from command.app import create_app
from command.auth import Role
from command.incidents import ActivationRequest, people_levels
from command.post import CommandPost
from command.settings import Settings
from gis.storage.db import Database
from gis.storage.tables import EventRow
from plans.clock import ManualClock
from tests.conftest import CHLORINE_ACTIVATION, DEMO_ID, sign_in
from tests.problems import assert_problem

BASE = f"/api/sites/{DEMO_ID}/incidents"
WAIT_S = 60.0
#: How long the rest of the post may take while the heavy step is held: generous, since the
#: point is that it does not wait for the heavy step at all.
PROMPT_S = 20.0


def post_of(client: TestClient) -> CommandPost:
    post: CommandPost = client.app.state.post  # type: ignore[attr-defined]
    return post


@contextmanager
def held(target: Any, name: str) -> Iterator[threading.Event]:
    """Make ``target.name`` wait, once entered, until the yielded event is set; yields after
    the first call has entered it (call :func:`entered` to wait for that)."""
    real = getattr(target, name)
    started, release = threading.Event(), threading.Event()

    def waiting(*args: Any, **kwargs: Any) -> Any:
        started.set()
        assert release.wait(WAIT_S), "never released"
        return real(*args, **kwargs)

    setattr(target, name, waiting)
    release.started = started  # type: ignore[attr-defined]
    try:
        yield release
    finally:
        release.set()
        setattr(target, name, real)


def entered(release: threading.Event) -> None:
    assert release.started.wait(WAIT_S), "the heavy step never started"  # type: ignore[attr-defined]


def in_thread(work: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(work())
        except BaseException as exc:  # the test reads it
            out.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def second(**changes: Any) -> ActivationRequest:
    return ActivationRequest.model_validate(
        {**CHLORINE_ACTIVATION, "second_incident": True, **changes}
    )


def test_ticks_commands_and_pictures_go_on_while_an_activation_computes(
    command: TestClient, clock: ManualClock
) -> None:
    post = post_of(command)
    first = command.post(BASE, json=CHLORINE_ACTIVATION)
    assert first.status_code == 201, first.text
    first_id = first.json()["incident"]["id"]
    with held(post_module, "prepare") as release:
        activation, result = in_thread(lambda: post.activate(DEMO_ID, second(), actor="cmd-zhou"))
        entered(release)
        # The activation is inside its computation now. Everything else answers.
        clock.advance(3600)
        others, done = in_thread(
            lambda: (
                post.tick(),
                command.post(f"{BASE}/{first_id}/notes", json={"text": "still here"}),
                post.site_snapshot(DEMO_ID),
            )
        )
        others.join(PROMPT_S)
        assert not others.is_alive(), "a tick or a command waited for the activation"
        overdue, note, snapshot = done[0]
        assert overdue, "the hour's overdue steps fired while the activation computed"
        assert note.status_code == 200, note.text
        assert [i["incident"]["id"] for i in snapshot["incidents"]] == [first_id]
        assert activation.is_alive()
        release.set()
        activation.join(WAIT_S)
    incident_id, _picture = result[0]
    assert incident_id in post.incidents and len(post.incidents) == 2


def test_people_who_moved_while_the_activation_computed_are_followed(
    command: TestClient, db: Database
) -> None:
    post = post_of(command)
    model = post.model(DEMO_ID)
    release_point = CHLORINE_ACTIVATION["location"]["coordinates"]
    person = model.person_ids[0]
    with held(post_module, "prepare") as release:
        activation, result = in_thread(lambda: post.activate(DEMO_ID, second(), actor="cmd-zhou"))
        entered(release)
        # A person walks to the release point while the picture is being computed.
        moved = post.positions(DEMO_ID, {person: (*release_point, None)})
        assert moved["accepted"] == 1
        release.set()
        activation.join(WAIT_S)
    incident = post.incidents[result[0][0]]
    row = model.person_row[person]
    assert incident.levels[row] == 3, "the person at the release point is in level 3"
    again = people_levels(incident.assessment.zones, model.person_lonlat)
    assert np.array_equal(incident.levels, again)
    assert row in incident.moving


def test_an_activation_computed_on_layers_replaced_meanwhile_is_computed_again(
    command: TestClient, db: Database
) -> None:
    post = post_of(command)
    sign = sign_in(db, "planner-li", [Role.PLANNER])
    before = post.model(DEMO_ID).build
    calls: list[int] = []
    real = getattr(post_module, "prepare")  # noqa: B009 (the name the post calls)

    def counting(stored: Any, model: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(model.build)
        return real(stored, model, *args, **kwargs)

    setattr(post_module, "prepare", counting)  # noqa: B010
    try:
        with held(post_module, "prepare") as release:
            activation, result = in_thread(
                lambda: post.activate(DEMO_ID, second(), actor="cmd-zhou")
            )
            entered(release)
            # A planner adds a resource: the site model is rebuilt and its incidents planned
            # on it, while the activation still computes on the old one.
            feature = {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [121.35, 30.72]},
                "properties": {"kind": "scba", "name": "new cabinet"},
            }
            added = command.post(
                f"/api/sites/{DEMO_ID}/layers/resources", json=feature, headers=sign
            )
            assert added.status_code == 201, added.text
            release.set()
            activation.join(WAIT_S)
    finally:
        setattr(post_module, "prepare", real)  # noqa: B010
    incident = post.incidents[result[0][0]]
    after = post.model(DEMO_ID).build
    assert after != before
    assert calls == [before, after], "computed once on each model"
    assert incident.model_build == after


def test_planning_on_new_layers_does_not_hold_the_lock(command: TestClient, db: Database) -> None:
    post = post_of(command)
    sign = sign_in(db, "planner-li", [Role.PLANNER])
    first = command.post(BASE, json=CHLORINE_ACTIVATION)
    incident_id = first.json()["incident"]["id"]
    feature = {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [121.35, 30.72]},
        "properties": {"kind": "scba", "name": "new cabinet"},
    }
    with held(post_module, "reassess") as release:
        edit, answers = in_thread(
            lambda: command.post(
                f"/api/sites/{DEMO_ID}/layers/resources", json=feature, headers=sign
            )
        )
        entered(release)
        person = post.model(DEMO_ID).person_ids[0]
        others, done = in_thread(
            lambda: (
                post.tick(),
                command.post(f"{BASE}/{incident_id}/notes", json={"text": "during the edit"}),
                post.positions(DEMO_ID, {person: (121.35, 30.72, None)}),
                post.site_snapshot(DEMO_ID),
            )
        )
        others.join(PROMPT_S)
        assert not others.is_alive(), "a tick, a command or a position waited for the planning"
        assert done[0][1].status_code == 200
        assert done[0][2]["accepted"] == 1
        release.set()
        edit.join(WAIT_S)
    assert answers[0].status_code == 201
    assert post.incidents[incident_id].model_build == post.model(DEMO_ID).build


@pytest.fixture
def restarted(db: Database, clock: ManualClock) -> Iterator[Callable[..., TestClient]]:
    """Start a second app on the same database, recovering in the background."""
    started: list[Any] = []

    def start(**kwargs: Any) -> TestClient:
        app = create_app(
            Settings(database_url=str(db.engine.url)),
            database=db,
            clock=clock,
            ticking=False,
            background_recovery=True,
            **kwargs,
        )
        client = TestClient(app)
        client.__enter__()
        started.append(client)
        client.headers.update(sign_in(db, "cmd-zhou", [Role.COMMANDER]))
        return client

    yield start
    for client in started:
        client.__exit__(None, None, None)


def wait_recovered(post: CommandPost) -> None:
    done = threading.Event()

    def poll() -> None:
        while not post.recovery.finished:
            done.wait(0.01)
        done.set()

    in_thread(poll)
    assert done.wait(WAIT_S), "recovery never finished"


def test_a_restarted_server_answers_while_it_rebuilds_and_shows_the_progress(
    command: TestClient, restarted: Callable[..., TestClient]
) -> None:
    first = command.post(BASE, json=CHLORINE_ACTIVATION)
    incident_id = first.json()["incident"]["id"]
    with held(CommandPost, "from_log") as release:
        client = restarted()
        post = post_of(client)
        entered(release)
        # Serving already: health, the site, the snapshot, and the incident's clear 503.
        health = client.get("/healthz").json()
        assert health["recovery"] == {"total": 1, "done": 0, "finished": False}
        answer = client.get(f"{BASE}/{incident_id}")
        problem = assert_problem(answer, 503, field="incident")
        assert answer.headers["retry-after"] == "2"
        assert problem["recovery"] == {"total": 1, "done": 0, "finished": False}
        step = client.post(f"{BASE}/{incident_id}/steps/l1-detect-report/acknowledge")
        assert_problem(step, 503, field="incident")
        # Activating the same plan there again now would open a duplicate: refused with 503.
        again = client.post(BASE, json=CHLORINE_ACTIVATION)
        assert_problem(again, 503, field="plan_id")
        snapshot = post.site_snapshot(DEMO_ID)
        assert snapshot["recovery"]["finished"] is False and snapshot["incidents"] == []
        release.set()
        wait_recovered(post)
    assert client.get(f"{BASE}/{incident_id}").status_code == 200
    assert "recovery" not in post.site_snapshot(DEMO_ID)
    assert client.get("/healthz").json()["recovery"]["finished"] is True


def test_an_incident_with_a_corrupt_event_is_quarantined_and_the_rest_recovers(
    command: TestClient, db: Database, restarted: Callable[..., TestClient]
) -> None:
    bad = command.post(BASE, json=CHLORINE_ACTIVATION).json()["incident"]["id"]
    other = {**CHLORINE_ACTIVATION, "second_incident": True}
    good = command.post(BASE, json=other).json()["incident"]["id"]
    with db.write() as session:
        seq = session.scalars(
            select(EventRow.seq).where(EventRow.incident_id == bad).order_by(EventRow.seq)
        ).all()[1]
        session.execute(
            update(EventRow)
            .where(EventRow.site_id == DEMO_ID, EventRow.seq == seq)
            .values(data={"not": "what was logged"})
        )
    client = restarted()
    post = post_of(client)
    wait_recovered(post)
    assert good in post.incidents and bad not in post.incidents
    answer = client.get(f"{BASE}/{bad}")
    problem = assert_problem(answer, 409, field="incident")
    assert f"event {seq}" in problem["reason"]
    snapshot = post.site_snapshot(DEMO_ID)
    assert [q["id"] for q in snapshot["quarantined"]] == [bad]
    assert [i["incident"]["id"] for i in snapshot["incidents"]] == [good]


def test_an_unreadable_event_row_does_not_stop_the_server(
    command: TestClient, db: Database, restarted: Callable[..., TestClient]
) -> None:
    """A row whose data reads back as JSON null (as a damaged database or a hand edit leaves
    it): the server starts, that incident is quarantined with the event named, and the other
    incident and the call tree recover."""
    bad = command.post(BASE, json=CHLORINE_ACTIVATION).json()["incident"]["id"]
    other = {**CHLORINE_ACTIVATION, "second_incident": True}
    good = command.post(BASE, json=other).json()["incident"]["id"]
    with db.write() as session:
        seq = session.scalars(
            select(EventRow.seq).where(EventRow.incident_id == bad).order_by(EventRow.seq)
        ).all()[2]
        session.execute(
            text("UPDATE events SET data = 'null' WHERE site_id = :site AND seq = :seq"),
            {"site": DEMO_ID, "seq": seq},
        )
    client = restarted()
    post = post_of(client)
    assert post.quarantined[bad][1].startswith(f"event {seq} is unreadable")
    wait_recovered(post)
    assert good in post.incidents and bad not in post.incidents
    assert post.calltree.open, "the open call-outs were rebuilt"
    assert_problem(client.get(f"{BASE}/{bad}"), 409, field="incident")


def test_a_deleted_tail_quarantines_the_sites_incidents_instead_of_reviving_them(
    command: TestClient, db: Database, restarted: Callable[..., TestClient]
) -> None:
    """The review's attack: delete a closed incident's last events (its stand-down) and
    restart. The head says more events were logged than the log holds, so nothing of the site
    is rebuilt as if complete: the incident does not come back as active."""
    incident = command.post(BASE, json=CHLORINE_ACTIVATION).json()["incident"]["id"]
    closed = command.post(
        f"{BASE}/{incident}/stand-down", json={"force": True, "reason": "drill over"}
    )
    assert closed.status_code == 200, closed.text
    with db.write() as session:
        last = session.scalars(
            select(EventRow.seq).where(EventRow.site_id == DEMO_ID).order_by(EventRow.seq.desc())
        ).first()
        assert last is not None
        session.execute(
            delete(EventRow).where(EventRow.site_id == DEMO_ID, EventRow.seq >= last - 1)
        )
    client = restarted()
    post = post_of(client)
    wait_recovered(post)
    assert incident not in post.incidents
    assert "incomplete" in post.quarantined[incident][1]
    assert_problem(client.get(f"{BASE}/{incident}"), 409, field="incident")


def test_a_corrupt_row_is_named_by_the_log_reads_not_a_fault(
    command: TestClient, db: Database
) -> None:
    incident = command.post(BASE, json=CHLORINE_ACTIVATION).json()["incident"]["id"]
    with db.write() as session:
        seq = session.scalars(
            select(EventRow.seq).where(EventRow.incident_id == incident).order_by(EventRow.seq)
        ).all()[1]
        session.execute(
            text("UPDATE events SET data = 'null' WHERE site_id = :site AND seq = :seq"),
            {"site": DEMO_ID, "seq": seq},
        )
    problem = assert_problem(command.get(f"/api/sites/{DEMO_ID}/events?after=0"), 409)
    assert f"event {seq}" in problem["detail"]
    assert command.get(f"/api/sites/{DEMO_ID}/events?after={seq}").status_code == 200
    listed = command.get(f"{BASE}?state=all")
    assert listed.status_code == 200, listed.text
