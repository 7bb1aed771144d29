"""Queued actions from field terminals (issue 18): taken once per key, acted-at kept, photos on
notes, the review timing steps by when the responder acted."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import struct
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import Engine, delete, func, select, update

from command import events as event_log
from command.app import create_app
from command.auth import Role, find_user
from command.client_actions import ClientAction, ClientRequest, KeyInUse, claim_key, fingerprint
from command.events import verify
from command.log_follower import LogFollower
from command.post import CommandPost
from command.settings import Settings
from gis.storage.db import Database
from gis.storage.tables import AttachmentRow, ClientActionRow, EventRow, UserRow
from plans.clock import ManualClock
from plans.engine import Actor
from tests.conftest import DEMO_ID, TEST_START, sign_in
from tests.problems import assert_problem
from tests.processes import ServerProcess, drop_database, postgis_demo_database
from tests.test_incidents import BASE, activate, chlorine

EVENTS = f"/api/sites/{DEMO_ID}/events"
STEP = "l1-detect-report"


def uuid7(at: datetime = TEST_START) -> str:
    """A UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then random bits."""
    value = int(at.timestamp() * 1000) << 80 | int.from_bytes(os.urandom(10)) & ((1 << 80) - 1)
    value = value & ~(0xF << 76) | 0x7 << 76  # version 7
    value = value & ~(0x3 << 62) | 0x2 << 62  # the RFC's variant
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def queued(key: str, acted_at: datetime | None = None) -> dict[str, str]:
    headers = {"Idempotency-Key": key}
    if acted_at is not None:
        headers["Rallypoint-Acted-At"] = acted_at.isoformat().replace("+00:00", "Z")
    return headers


def logged(client: TestClient) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = client.get(EVENTS, params={"limit": 1000}).json()["events"]
    return events


def test_a_retry_gets_the_first_answer_and_logs_nothing_new(command: TestClient) -> None:
    incident = activate(command)["incident"]["id"]
    acted = TEST_START - timedelta(minutes=7, seconds=29)
    key = uuid7(acted)
    url = f"{BASE}/{incident}/steps/{STEP}/acknowledge"
    first = command.post(url, headers=queued(key, acted))
    assert first.status_code == 200, first.text
    assert "Idempotent-Replayed" not in first.headers
    before = logged(command)
    [event] = [e for e in first.json()["events"] if e["type"] == "plan.step.acknowledged"]
    # The event's time is the server's receipt; the data says when the responder acted.
    assert datetime.fromisoformat(event["at"]) == TEST_START
    assert datetime.fromisoformat(event["data"]["acted_at"]) == acted
    assert event["data"]["action_id"] == key
    again = command.post(url, headers=queued(key, acted))
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert logged(command) == before
    # The key quoted as the draft's structured-field string is the same key.
    quoted = command.post(url, headers=queued(f'"{key}"', acted))
    assert quoted.headers["Idempotent-Replayed"] == "true"
    # A note, too.
    note_key = uuid7()
    note = {"text": "valve V-12 closed"}
    noted = command.post(f"{BASE}/{incident}/notes", json=note, headers=queued(note_key))
    assert noted.status_code == 200, noted.text
    replayed = command.post(f"{BASE}/{incident}/notes", json=note, headers=queued(note_key))
    assert replayed.content == noted.content
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert [e["data"]["data"]["text"] for e in logged(command) if e["type"] == "plan.note"] == [
        "valve V-12 closed"
    ]


def test_a_key_reused_for_another_request_is_refused(command: TestClient) -> None:
    incident = activate(command)["incident"]["id"]
    key = uuid7()
    notes = f"{BASE}/{incident}/notes"
    assert command.post(notes, json={"text": "first"}, headers=queued(key)).status_code == 200
    before = logged(command)
    body = assert_problem(
        command.post(notes, json={"text": "second"}, headers=queued(key)),
        422,
        field="Idempotency-Key",
    )
    assert body["type"].endswith("/idempotency-key-reused")
    other_route = command.post(f"{BASE}/{incident}/steps/{STEP}/acknowledge", headers=queued(key))
    assert_problem(other_route, 422, field="Idempotency-Key")
    # Another acted-at is another request.
    acted = queued(key, TEST_START - timedelta(minutes=1))
    assert_problem(command.post(notes, json={"text": "first"}, headers=acted), 422)
    assert logged(command) == before
    # The same JSON spelled another way is the same request.
    spelled = command.post(
        notes,
        content=b'{ "text" : "first" }',
        headers={**queued(key), "Content-Type": "application/json"},
    )
    assert spelled.headers["Idempotent-Replayed"] == "true"


@pytest.mark.parametrize(
    ("headers", "field"),
    [
        ({"Idempotency-Key": "not-a-uuid"}, "Idempotency-Key"),
        ({"Idempotency-Key": "01938f6e8a4b7c2d9e0f123456789abc"}, "Idempotency-Key"),
        ({"Rallypoint-Acted-At": "yesterday"}, "Rallypoint-Acted-At"),
        ({"Rallypoint-Acted-At": "2026-06-01T07:50:00"}, "Rallypoint-Acted-At"),  # no offset
        ({"Rallypoint-Acted-At": "0001-01-01T00:00:00+01:00"}, "Rallypoint-Acted-At"),
    ],
)
def test_a_malformed_header_is_400_and_logs_nothing(
    command: TestClient, headers: dict[str, str], field: str
) -> None:
    incident = activate(command)["incident"]["id"]
    before = logged(command)
    url = f"{BASE}/{incident}/steps/{STEP}/acknowledge"
    assert_problem(command.post(url, headers=headers), 400, field=field)
    assert_problem(
        command.post(f"{BASE}/{incident}/notes", json={"text": "x"}, headers=headers),
        400,
        field=field,
    )
    assert logged(command) == before


def test_an_acted_at_ahead_of_the_server_is_taken_at_the_receipt(
    command: TestClient, clock: ManualClock
) -> None:
    """A phone whose clock runs fast: its emergency action is never lost (a 4xx is final to
    the phone); the receipt is recorded, the phone's word kept beside it."""
    incident = activate(command)["incident"]["id"]
    clock.advance(30)
    received = TEST_START + timedelta(seconds=30)
    ahead = received + timedelta(days=1, seconds=5)
    key = uuid7()
    url = f"{BASE}/{incident}/steps/{STEP}/acknowledge"
    answer = command.post(url, headers=queued(key, ahead))
    assert answer.status_code == 200, answer.text
    [event] = [e for e in answer.json()["events"] if e["type"] == "plan.step.acknowledged"]
    assert datetime.fromisoformat(event["data"]["acted_at"]) == received
    assert datetime.fromisoformat(event["data"]["acted_at_reported"]) == ahead
    assert event["data"]["clock_skew_s"] == 86405
    # The retry, a minute later, is the same request: the first answer again.
    clock.advance(60)
    again = command.post(url, headers=queued(key, ahead))
    assert again.headers["Idempotent-Replayed"] == "true" and again.content == answer.content
    # Without a key too (a note), and a time a little ahead.
    note = command.post(
        f"{BASE}/{incident}/notes",
        json={"text": "x"},
        headers={"Rallypoint-Acted-At": "2026-06-01T08:05:00Z"},
    )
    assert note.status_code == 200, note.text
    [logged_note] = [e for e in note.json()["events"] if e["type"] == "plan.note"]
    assert logged_note["data"]["acted_at_reported"] == "2026-06-01T08:05:00+00:00"
    assert logged_note["data"]["clock_skew_s"] == 300 - 90


def test_a_retry_writing_the_same_instant_otherwise_is_the_same_request(
    command: TestClient,
) -> None:
    incident = activate(command)["incident"]["id"]
    key = uuid7()
    url = f"{BASE}/{incident}/steps/{STEP}/acknowledge"
    first = command.post(
        url, headers={**queued(key), "Rallypoint-Acted-At": "2026-06-01T07:59:30Z"}
    )
    assert first.status_code == 200, first.text
    for spelled in (
        "2026-06-01T07:59:30+00:00",
        "2026-06-01T07:59:30.000Z",
        "2026-06-01t07:59:30.000000000z",
        "2026-06-01T09:59:30+02:00",
        "2026-06-01 07:59:30.0Z",
    ):
        again = command.post(url, headers={**queued(key), "Rallypoint-Acted-At": spelled})
        assert again.status_code == 200, (spelled, again.text)
        assert again.headers["Idempotent-Replayed"] == "true" and again.content == first.content
    # Another instant is another request.
    other = {**queued(key), "Rallypoint-Acted-At": "2026-06-01T07:59:30.001Z"}
    assert_problem(command.post(url, headers=other), 422, field="Idempotency-Key")


def test_keys_are_per_user(command: TestClient, db: Database) -> None:
    incident = activate(command)["incident"]["id"]
    key = uuid7()
    notes = f"{BASE}/{incident}/notes"
    mine = command.post(notes, json={"text": "x"}, headers=queued(key))
    other = sign_in(db, "cmd-li", [Role.COMMANDER])
    theirs = command.post(notes, json={"text": "x"}, headers={**other, **queued(key)})
    assert theirs.status_code == 200
    assert "Idempotent-Replayed" not in theirs.headers
    assert theirs.json()["events"][-1]["actor"] == "cmd-li"
    assert mine.json()["events"][-1]["actor"] == "cmd-zhou"
    assert len([e for e in logged(command) if e["type"] == "plan.note"]) == 2


def test_two_concurrent_requests_with_one_key_log_once(command: TestClient) -> None:
    incident = activate(command)["incident"]["id"]
    key = uuid7()
    url = f"{BASE}/{incident}/steps/{STEP}/acknowledge"
    answers: list[httpx.Response] = []
    start = threading.Barrier(2)

    def send() -> None:
        start.wait()
        answers.append(command.post(url, headers=queued(key)))

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    statuses = sorted(a.status_code for a in answers)
    # One processed it; the other was told it was in progress, or got the first answer.
    assert statuses in ([200, 200], [200, 409]), [a.text for a in answers]
    for answer in answers:
        if answer.status_code == 409:
            body = assert_problem(answer, 409, field="Idempotency-Key")
            assert body["type"].endswith("/idempotency-key-in-use")
            assert answer.headers["Retry-After"] == "1"
    acks = [e for e in logged(command) if e["type"] == "plan.step.acknowledged"]
    assert len(acks) == 1
    # A retry after both gets the first answer.
    retry = command.post(url, headers=queued(key))
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.json()["events"][0]["seq"] == acks[0]["seq"]


def test_an_action_made_impossible_meanwhile_names_who_and_when(
    command: TestClient, db: Database, clock: ManualClock
) -> None:
    incident = activate(command)["incident"]["id"]
    url = f"{BASE}/{incident}/steps/{STEP}"
    clock.advance(131)  # 08:02:11
    assert command.post(f"{url}/acknowledge").status_code == 200
    assert command.post(f"{url}/start").status_code == 200
    assert command.post(f"{url}/complete", json={"reference": "radio"}).status_code == 200
    clock.advance(449)  # 08:09:40: a phone that was offline sends what it did at 08:03
    before = logged(command)
    li = sign_in(db, "cmd-li", [Role.COMMANDER])
    key = uuid7()
    late = queued(key, TEST_START + timedelta(minutes=3))
    refused = command.post(f"{url}/complete", json={"reference": "x"}, headers={**li, **late})
    body = assert_problem(refused, 409, field="step")
    assert body["by"] == "cmd-zhou"
    assert datetime.fromisoformat(body["at"]) == TEST_START + timedelta(seconds=131)
    assert body["step_status"] == "done"
    assert f"step '{STEP}' was already completed by cmd-zhou at 08:02:11" in body["detail"]
    assert logged(command) == before
    # Refused, so nothing is kept: the retry is decided again (and refused again).
    again = command.post(f"{url}/complete", json={"reference": "x"}, headers={**li, **late})
    assert again.status_code == 409
    assert "Idempotent-Replayed" not in again.headers


@contextmanager
def _app(db: Database, clock: ManualClock) -> Iterator[TestClient]:
    app = create_app(
        Settings(database_url=str(db.engine.url)), database=db, clock=clock, ticking=False
    )
    with TestClient(app) as client:
        yield client


def test_a_restarted_server_still_answers_a_retry(
    command: TestClient, db: Database, clock: ManualClock
) -> None:
    incident = activate(command)["incident"]["id"]
    url = f"{BASE}/{incident}/steps/{STEP}/acknowledge"
    key = uuid7()
    first = command.post(url, headers=queued(key))
    assert first.status_code == 200, first.text
    note_key = uuid7()
    note = command.post(f"{BASE}/{incident}/notes", json={"text": "n"}, headers=queued(note_key))
    # The server died after logging the note and before storing its answer.
    with db.write() as session:
        session.execute(
            update(ClientActionRow)
            .where(ClientActionRow.key == note_key)
            .values(status=None, answer=None)
        )
    before = logged(command)
    with _app(db, clock) as fresh:
        fresh.headers.update(command.headers)
        again = fresh.post(url, headers=queued(key))
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.content == first.content
        rebuilt = fresh.post(
            f"{BASE}/{incident}/notes", json={"text": "n"}, headers=queued(note_key)
        )
        assert rebuilt.headers["Idempotent-Replayed"] == "true"
        assert rebuilt.json() == note.json()
        assert logged(fresh) == before
    with db.read() as session:
        row = session.scalars(select(ClientActionRow).where(ClientActionRow.key == note_key)).one()
        assert row.status == 200 and row.answer is not None


def test_keys_are_kept_a_week(command: TestClient, clock: ManualClock) -> None:
    incident = activate(command)["incident"]["id"]
    key = uuid7()
    notes = f"{BASE}/{incident}/notes"
    assert command.post(notes, json={"text": "x"}, headers=queued(key)).status_code == 200
    clock.advance(7 * 86400 - 60)
    assert (
        command.post(notes, json={"text": "x"}, headers=queued(key)).headers["Idempotent-Replayed"]
        == "true"
    )
    clock.advance(120)
    later = command.post(notes, json={"text": "x"}, headers=queued(key))
    assert later.status_code == 200 and "Idempotent-Replayed" not in later.headers


def test_an_abandoned_claim_is_taken_over_after_its_lease(
    command: TestClient, db: Database, clock: ManualClock
) -> None:
    incident = activate(command)["incident"]["id"]
    key = uuid7()
    notes = f"{BASE}/{incident}/notes"
    with db.write() as session:  # a server process claimed it, then died before logging
        user = find_user(session, "cmd-zhou")
        session.add(
            ClientActionRow(
                user_id=user.id,
                key=key,
                fingerprint=fingerprint("POST", notes, None, b'{"text":"x"}'),
                claim="dead",
                claimed_at=clock.now(),
                created_at=clock.now(),
            )
        )
    assert_problem(command.post(notes, json={"text": "x"}, headers=queued(key)), 409)
    clock.advance(61)
    taken = command.post(notes, json={"text": "x"}, headers=queued(key))
    assert taken.status_code == 200 and "Idempotent-Replayed" not in taken.headers
    assert len([e for e in logged(command) if e["type"] == "plan.note"]) == 1


def _picture(kind: str, size: tuple[int, int] = (32, 24), noise: bool = False) -> bytes:
    from PIL import Image

    if noise:
        image = Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3))
    else:
        image = Image.new("RGB", size, (200, 40, 40))
    out = io.BytesIO()
    image.save(out, format=kind)
    return out.getvalue()


def test_a_note_carries_a_photo_named_by_its_hash_in_the_log(
    command: TestClient, db: Database
) -> None:
    incident = activate(command)["incident"]["id"]
    notes = f"{BASE}/{incident}/notes"
    for kind, media_type in (("JPEG", "image/jpeg"), ("PNG", "image/png"), ("WEBP", "image/webp")):
        content = _picture(kind)
        text = base64.b64encode(content).decode()
        # The client's label is not taken: a PNG sent as "image/jpeg" is a PNG.
        sent = f"data:image/jpeg;base64,{text}" if kind == "PNG" else text
        key = uuid7()
        answer = command.post(
            notes, json={"text": f"leak, {kind}", "photo": sent}, headers=queued(key)
        )
        assert answer.status_code == 200, answer.text
        [note] = [e for e in answer.json()["events"] if e["type"] == "plan.note"]
        digest = hashlib.sha256(content).hexdigest()
        assert note["data"]["photo"] == {
            "sha256": digest,
            "media_type": media_type,
            "size": len(content),
        }
        served = command.get(f"/api/sites/{DEMO_ID}/attachments/{digest}")
        assert served.status_code == 200
        assert served.headers["content-type"] == media_type
        assert served.content == content
        # A retry stores nothing twice and logs nothing.
        again = command.post(
            notes, json={"text": f"leak, {kind}", "photo": sent}, headers=queued(key)
        )
        assert again.headers["Idempotent-Replayed"] == "true"
    with db.read() as session:
        count, breaks = verify(session, DEMO_ID)
        assert breaks == [] and count > 0
        assert session.scalar(select(func.count()).select_from(AttachmentRow)) == 3
    # The log's note names the picture: changing the stored hash breaks the chain.
    logged_note = next(e for e in logged(command) if e["type"] == "plan.note")
    with db.write() as session:
        row = session.get(EventRow, (DEMO_ID, logged_note["seq"]))
        assert row is not None
        row.data = {**row.data, "photo": {**row.data["photo"], "sha256": "0" * 64}}
    with db.read() as session:
        assert any(b.seq == logged_note["seq"] for b in verify(session, DEMO_ID)[1])
    # Any reader of the site may see it; others may not; an unknown hash is 404.
    viewer = sign_in(db, "viewer-photo", [Role.VIEWER])
    digest = logged_note["data"]["photo"]["sha256"]
    assert command.get(f"/api/sites/{DEMO_ID}/attachments/{digest}", headers=viewer).is_success
    assert_problem(command.get(f"/api/sites/{DEMO_ID}/attachments/{'a' * 64}"), 404)
    assert_problem(command.get(f"/api/sites/{DEMO_ID}/attachments/nothex"), 404, field="sha256")


@pytest.mark.parametrize(
    ("photo", "status"),
    [
        ("data:image/jpeg;base64," + base64.b64encode(b"<html><script>x</script>").decode(), 415),
        (base64.b64encode(b"\xff\xd8\xff\xe0" + b"\x00" * 64).decode(), 415),  # JPEG's start only
        (base64.b64encode(b"GIF89a" + b"\x00" * 64).decode(), 415),
        ("not base64 at all!", 422),
    ],
)
def test_a_forged_or_broken_photo_is_refused_and_nothing_is_kept(
    command: TestClient, db: Database, photo: str, status: int
) -> None:
    incident = activate(command)["incident"]["id"]
    before = logged(command)
    refused = command.post(
        f"{BASE}/{incident}/notes", json={"text": "x", "photo": photo}, headers=queued(uuid7())
    )
    assert_problem(refused, status, field="body.photo")
    assert logged(command) == before
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(AttachmentRow)) == 0


def test_a_png_with_a_broken_chunk_and_an_oversize_photo_are_refused(command: TestClient) -> None:
    incident = activate(command)["incident"]["id"]
    notes = f"{BASE}/{incident}/notes"
    png = bytearray(_picture("PNG"))
    png[20] ^= 0xFF  # inside IHDR: its CRC no longer holds
    broken = {"text": "x", "photo": base64.b64encode(bytes(png)).decode()}
    assert_problem(command.post(notes, json=broken), 415, field="body.photo")
    big = _picture("PNG", (1024, 1024), noise=True)
    assert len(big) > 2 * 1024 * 1024
    body = {"text": "x", "photo": base64.b64encode(big).decode()}
    assert_problem(command.post(notes, json=body, headers=queued(uuid7())), 413, field="body.photo")
    assert [e for e in logged(command) if e["type"] == "plan.note"] == []


def test_a_responder_answers_their_own_call_out_once(
    command: TestClient, db: Database, clock: ManualClock
) -> None:
    incident = activate(command)["incident"]["id"]
    site = f"/api/sites/{DEMO_ID}"
    requested = [e for e in logged(command) if e["type"] == "notification.requested"]
    first, second = requested[0], requested[1]
    responder = sign_in(db, "resp-wu", [Role.RESPONDER])
    for notice in (first, second):
        duty = {"role": notice["data"]["role"], "username": "resp-wu"}
        assert command.post(f"{BASE}/{incident}/duties", json=duty).status_code == 200
    mine = command.get(f"{site}/notifications/mine", headers=responder).json()["notices"]
    assert {n["seq"] for n in mine} >= {first["seq"], second["seq"]}
    assert all(n["incident_id"] == incident for n in mine)
    # Someone else's call-out is not theirs to answer.
    other = sign_in(db, "resp-qian", [Role.RESPONDER])
    assert command.get(f"{site}/notifications/mine", headers=other).json()["notices"] == []
    assert_problem(
        command.post(f"{site}/notifications/{first['seq']}/answer", headers=other),
        403,
        field="notification",
    )
    viewer = sign_in(db, "viewer-zhao", [Role.VIEWER])
    assert_problem(command.post(f"{site}/notifications/{first['seq']}/answer", headers=viewer), 403)
    acted = TEST_START - timedelta(seconds=30)
    key = uuid7(acted)
    url = f"{site}/notifications/{first['seq']}/answer"
    answer = command.post(url, headers={**responder, **queued(key, acted)})
    assert answer.status_code == 200, answer.text
    [event] = answer.json()["events"]
    assert event["type"] == "notification.acknowledged" and event["actor"] == "resp-wu"
    assert event["data"]["channel"] == "app" and event["data"]["by"] == "contact"
    assert datetime.fromisoformat(event["data"]["acted_at"]) == acted
    again = command.post(url, headers={**responder, **queued(key, acted)})
    assert again.headers["Idempotent-Replayed"] == "true" and again.content == answer.content
    notices = command.get(f"{BASE}/{incident}/notices").json()["notices"]
    assert next(n for n in notices if n["seq"] == first["seq"])["status"] == "acknowledged"
    # A commander answered the other one for them meanwhile: the queued answer names who.
    clock.advance(42)
    on_behalf = command.post(f"{site}/notifications/{second['seq']}/ack", json={"channel": "radio"})
    assert on_behalf.status_code == 200
    late = command.post(
        f"{site}/notifications/{second['seq']}/answer", headers={**responder, **queued(uuid7())}
    )
    body = assert_problem(late, 409, field="notification")
    assert body["by"] == "cmd-zhou"
    assert datetime.fromisoformat(body["at"]) == TEST_START + timedelta(seconds=42)
    assert "already acknowledged by cmd-zhou at 08:00:42" in body["detail"]


def test_the_review_times_steps_by_when_the_responder_acted(
    command: TestClient, clock: ManualClock
) -> None:
    incident = activate(command)["incident"]["id"]
    url = f"{BASE}/{incident}/steps/{STEP}"
    clock.advance(580)  # 08:09:40: the phone's link came back; what it queued arrives now
    sent = [
        ("acknowledge", None, TEST_START + timedelta(minutes=1)),
        ("start", None, TEST_START + timedelta(minutes=1, seconds=30)),
        ("complete", {"reference": "radio"}, TEST_START + timedelta(minutes=2, seconds=11)),
    ]
    for action, body, acted in sent:
        answer = command.post(f"{url}/{action}", json=body, headers=queued(uuid7(acted), acted))
        assert answer.status_code == 200, answer.text
    down = command.post(f"{BASE}/{incident}/stand-down", json={"force": True, "reason": "over"})
    assert down.status_code == 200, down.text
    review = command.get(f"/api/sites/{DEMO_ID}/reviews/{incident}")
    assert review.status_code == 200, review.text
    row = next(s for s in review.json()["steps"] if s["step_id"] == STEP)
    received = TEST_START + timedelta(seconds=580)
    assert datetime.fromisoformat(row["actual_at"]) == TEST_START + timedelta(seconds=131)
    assert datetime.fromisoformat(row["actual_received_at"]) == received
    assert row["actual_offline_s"] == 449
    assert row["actual_s"] == 131
    assert datetime.fromisoformat(row["acknowledged_at"]) == TEST_START + timedelta(minutes=1)
    assert row["acknowledged_offline_s"] == 520
    if row["target_at"] is not None:
        target = datetime.fromisoformat(row["target_at"])
        assert row["deviation_s"] == (TEST_START + timedelta(seconds=131) - target).total_seconds()
    done = next(e for e in review.json()["timeline"] if e["type"] == "plan.step.done")
    assert done["offline_s"] == 449 and datetime.fromisoformat(done["at"]) == received
    page = command.get(f"/api/sites/{DEMO_ID}/reviews/{incident}/review.html")
    assert page.status_code == 200
    # In the site's time zone: whole hours from UTC, so minutes and seconds read the same.
    assert re.search(r"acted \d\d:02:11, received \d\d:09:40, 7 min 29 s offline", page.text)


def test_one_claim_wins_among_connections_racing_for_a_key(engine: Engine) -> None:
    """Each thread on a connection of its own (on PostGIS, as separate server processes are):
    the key's row is unique in the database, so exactly one claims it."""
    user_id, key = f"race-{uuid7()[-12:]}", uuid7()
    request = ClientRequest(key, None, "f" * 64)
    clock = ManualClock(TEST_START)
    results: list[object] = []
    start = threading.Barrier(4)

    def claim() -> None:
        database = Database(engine)
        start.wait()
        try:
            results.append(claim_key(database, clock, user_id, request))
        except KeyInUse as exc:
            results.append(exc)

    threads = [threading.Thread(target=claim) for _ in range(4)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert len([r for r in results if isinstance(r, str)]) == 1, results
        assert len([r for r in results if isinstance(r, KeyInUse)]) == 3, results
    finally:
        with Database(engine).write() as session:
            session.execute(delete(ClientActionRow).where(ClientActionRow.user_id == user_id))


def test_a_claim_taken_over_meanwhile_rolls_the_events_back(
    command: TestClient, db: Database, clock: ManualClock
) -> None:
    """A holder that was only slow, not dead: once its claim was taken over, it cannot mark
    the claim, and its events roll back with that (memory too)."""
    incident = activate(command)["incident"]["id"]
    post: CommandPost = command.app.state.post  # type: ignore[attr-defined]
    key = uuid7()
    with db.read() as session:
        user_id = find_user(session, "cmd-zhou").id
    claim = claim_key(db, clock, user_id, ClientRequest(key, None, "f" * 64))
    assert isinstance(claim, str)
    with db.write() as session:
        session.execute(
            update(ClientActionRow).where(ClientActionRow.key == key).values(claim="another")
        )
    before, remembered = logged(command), len(post.incidents[incident].run.events)
    stale = ClientAction(user_id, "cmd-zhou", key, claim)
    actor = Actor("cmd-zhou", frozenset())
    with pytest.raises(KeyInUse):
        post.command(DEMO_ID, incident, lambda run: run.note(actor, "late"), client=stale)
    assert logged(command) == before
    assert len(post.incidents[incident].run.events) == remembered


def test_two_server_processes_take_each_key_once(tmp_path: Path) -> None:
    """Two real ``rallypoint serve`` processes on one PostGIS database, each sent the same
    queued notes at once (a phone retrying through another process of the cluster): each key
    is logged once, every retry anywhere gets the first answer, also from the survivor after
    the other process was killed."""
    url = postgis_demo_database("client_actions", {"cmd-two": Role.COMMANDER})
    servers = [ServerProcess(url, tmp_path / f"p{i}.log") for i in range(2)]
    try:
        for server in servers:
            server.start()
        first, second = servers
        auth = first.sign_in("cmd-two")
        site = f"/api/sites/{DEMO_ID}"
        activated = httpx.post(f"{first.base}{site}/incidents", json=chlorine(), headers=auth)
        assert activated.status_code == 201, activated.text
        incident = activated.json()["incident"]["id"]
        notes = f"{site}/incidents/{incident}/notes"
        seen = f"{second.base}{site}/incidents/{incident}"
        assert httpx.get(seen, headers=auth, timeout=30).status_code == 200  # caught up
        keys = [uuid7() for _ in range(8)]
        answers: dict[str, list[httpx.Response]] = {k: [] for k in keys}

        def send(server: ServerProcess, key: str, start: threading.Barrier) -> None:
            start.wait()
            body = {"text": f"note {key}"}
            answers[key].append(
                httpx.post(
                    f"{server.base}{notes}", json=body, headers={**auth, **queued(key)}, timeout=60
                )
            )

        for key in keys:
            start = threading.Barrier(2)
            threads = [threading.Thread(target=send, args=(s, key, start)) for s in servers]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=120)
            assert sorted(a.status_code for a in answers[key]) in ([200, 200], [200, 409])
        events = httpx.get(
            f"{first.base}{site}/events", params={"limit": 1000}, headers=auth
        ).json()["events"]
        texts = [e["data"]["data"]["text"] for e in events if e["type"] == "plan.note"]
        assert sorted(texts) == sorted(f"note {k}" for k in keys)
        firsts = {}
        for key in keys:
            done = next(a for a in answers[key] if a.status_code == 200)
            firsts[key] = done.json()
        first.kill()
        for key in keys:
            retry = httpx.post(
                f"{second.base}{notes}",
                json={"text": f"note {key}"},
                headers={**auth, **queued(key)},
                timeout=60,
            )
            assert retry.headers["Idempotent-Replayed"] == "true"
            assert retry.json() == firsts[key]
    finally:
        for server in servers:
            server.stop()
        drop_database(url)


def test_an_impossible_acted_at_is_bounded_in_the_review(
    command: TestClient, clock: ManualClock
) -> None:
    """A phone's clock years behind: the review times the action from when it became
    possible, flagged; a later step timed from its dependency's acted time is left as it is."""
    incident = activate(command)["incident"]["id"]
    url = f"{BASE}/{incident}/steps/{STEP}"
    clock.advance(580)  # 08:09:40: what the phones queued arrives now
    long_ago = TEST_START - timedelta(days=3650)
    for action, body in (("acknowledge", None), ("start", None), ("complete", {"reference": "r"})):
        answer = command.post(f"{url}/{action}", json=body, headers=queued(uuid7(), long_ago))
        assert answer.status_code == 200, answer.text
    # l1-dispatch depends on l1-detect-report (done at 08:00:00, as bounded): acknowledged
    # offline at 08:02:30, before the server made it ready (08:09:40), and that is possible.
    dispatch = f"{BASE}/{incident}/steps/l1-dispatch"
    acked = TEST_START + timedelta(minutes=2, seconds=30)
    assert command.post(f"{dispatch}/acknowledge", headers=queued(uuid7(), acked)).is_success
    note = command.post(
        f"{BASE}/{incident}/notes", json={"text": "n"}, headers=queued(uuid7(), long_ago)
    )
    assert note.status_code == 200
    down = command.post(f"{BASE}/{incident}/stand-down", json={"force": True, "reason": "over"})
    assert down.status_code == 200, down.text
    review = command.get(f"/api/sites/{DEMO_ID}/reviews/{incident}").json()
    row = next(s for s in review["steps"] if s["step_id"] == STEP)
    assert datetime.fromisoformat(row["actual_at"]) == TEST_START  # its readiness
    assert row["actual_s"] == 0 and row["actual_offline_s"] == 580
    assert row["acted_at_clamped"] is True
    assert datetime.fromisoformat(row["acknowledged_at"]) == TEST_START
    target = datetime.fromisoformat(row["target_at"])
    assert row["deviation_s"] == (TEST_START - target).total_seconds() == -120
    later = next(s for s in review["steps"] if s["step_id"] == "l1-dispatch")
    assert datetime.fromisoformat(later["acknowledged_at"]) == acked
    assert later["acknowledged_offline_s"] == 580 - 150 and later["acted_at_clamped"] is False
    stamped = [e for e in review["timeline"] if e["acted_at"] is not None]
    assert stamped and all(e["offline_s"] >= 0 for e in stamped)
    assert {e["type"] for e in stamped if e.get("acted_at_clamped")} == {
        "plan.step.acknowledged",
        "plan.step.started",
        "plan.step.done",
        "plan.note",
    }
    [noted] = [n for n in review["notes"] if n["kind"] == "incident"]
    assert datetime.fromisoformat(noted["acted_at"]) == TEST_START  # the activation
    assert noted["acted_at_clamped"] is True and noted["offline_s"] == 580
    # The log keeps what the phone said.
    logged_ack = next(e for e in logged(command) if e["type"] == "plan.step.acknowledged")
    assert datetime.fromisoformat(logged_ack["data"]["acted_at"]) == long_ago
    # The printed review says which times are bounds, not the phone's.
    page = command.get(f"/api/sites/{DEMO_ID}/reviews/{incident}/review.html")
    assert page.status_code == 200, page.text
    assert (
        page.text.count("the phone&#x27;s clock was wrong: bounded")
        + page.text.count("the phone's clock was wrong: bounded")
        >= 3
    )


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_sized(width: int, height: int) -> bytes:
    """A real PNG whose header says ``width`` x ``height`` (CRC right)."""
    png = _picture("PNG")
    ihdr = struct.pack(">II", width, height) + png[24:29]
    return png[:8] + _chunk(b"IHDR", ihdr) + png[33:]


def _jpeg_sized(width: int, height: int) -> bytes:
    jpeg = bytearray(_picture("JPEG"))
    sof = jpeg.index(b"\xff\xc0")
    jpeg[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(jpeg)


def _webp_with(body: bytes) -> bytes:
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("jpeg markers around a page", 415),
        ("riff webp around a page", 415),
        ("jpeg cut in its scan", 415),
        ("png 60000 x 60000", 422),
        ("png 7000 x 7000", 422),
        ("png 9000 x 8", 422),
        ("jpeg 65500 x 65500", 422),
        ("png then a zip", 422),
        ("jpeg then a page", 422),
        ("webp then a page", 422),
    ],
)
def test_a_photo_is_a_whole_picture_of_a_sane_size(
    command: TestClient, db: Database, name: str, status: int
) -> None:
    pictures = {
        "jpeg markers around a page": b"\xff\xd8\xff\xda\x00\x02\xff\xd9<html><script>alert(1)"
        b"</script></html>",
        "riff webp around a page": _webp_with(b"VP8 <html><script>alert(1)</script></html>"),
        "jpeg cut in its scan": _picture("JPEG", noise=True)[:-200],
        "png 60000 x 60000": _png_sized(60000, 60000),
        "png 7000 x 7000": _png_sized(7000, 7000),  # 49 MP
        "png 9000 x 8": _picture("PNG", (9000, 8)),
        "jpeg 65500 x 65500": _jpeg_sized(65500, 65500),
        "png then a zip": _picture("PNG") + b"PK\x03\x04 a zip",
        "jpeg then a page": _picture("JPEG") + b"<html></html>\xff\xd9",
        "webp then a page": _picture("WEBP") + b"<html></html>",
    }
    incident = activate(command)["incident"]["id"]
    before = logged(command)
    photo = base64.b64encode(pictures[name]).decode()
    refused = command.post(
        f"{BASE}/{incident}/notes", json={"text": "x", "photo": photo}, headers=queued(uuid7())
    )
    assert_problem(refused, status, field="body.photo")
    assert logged(command) == before
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(AttachmentRow)) == 0


def test_a_progressive_jpeg_and_a_large_allowed_picture_are_taken(command: TestClient) -> None:
    incident = activate(command)["incident"]["id"]
    out = io.BytesIO()
    Image.new("RGB", (400, 300), (10, 200, 30)).save(out, format="JPEG", progressive=True)
    for content in (out.getvalue(), _picture("PNG", (8192, 4))):
        body = {"text": "x", "photo": base64.b64encode(content).decode()}
        answer = command.post(f"{BASE}/{incident}/notes", json=body, headers=queued(uuid7()))
        assert answer.status_code == 200, answer.text


def _assign(command: TestClient, incident: str, notice: dict[str, Any], username: str) -> None:
    duty = {"role": notice["data"]["role"], "username": username}
    assert command.post(f"{BASE}/{incident}/duties", json=duty).status_code == 200


def test_a_call_out_answered_through_another_process_is_409_and_logged_once(
    command: TestClient, db: Database, clock: ManualClock
) -> None:
    """Two server processes on one database: the second's call tree has not caught up with the
    answer the first took; its answer is refused, naming who answered and when."""
    incident = activate(command)["incident"]["id"]
    site = f"/api/sites/{DEMO_ID}"
    notice = next(e for e in logged(command) if e["type"] == "notification.requested")
    responder = sign_in(db, "resp-wu", [Role.RESPONDER])
    _assign(command, incident, notice, "resp-wu")
    url = f"{site}/notifications/{notice['seq']}/answer"
    with _app(db, clock) as other:  # started now: it holds the call-out as open
        assert any(
            n["seq"] == notice["seq"]
            for n in other.get(f"{site}/notifications/mine", headers=responder).json()["notices"]
        )
        clock.advance(12)
        first = command.post(url, headers={**responder, **queued(uuid7())})
        assert first.status_code == 200, first.text
        clock.advance(3)
        late = other.post(url, headers={**responder, **queued(uuid7())})
        body = assert_problem(late, 409, field="notification")
        assert body["by"] == "resp-wu"
        assert datetime.fromisoformat(body["at"]) == TEST_START + timedelta(seconds=12)
        assert "already acknowledged by resp-wu at 08:00:12" in body["detail"]
        # A commander's answer for them, there, too.
        on_behalf = other.post(
            f"{site}/notifications/{notice['seq']}/ack",
            json={"channel": "radio"},
            headers={"Authorization": command.headers["Authorization"]},
        )
        assert_problem(on_behalf, 409, field="notification")
    answers = [
        e
        for e in logged(command)
        if e["type"] == "notification.acknowledged" and e["data"]["notification"] == notice["seq"]
    ]
    assert len(answers) == 1
    with db.read() as session:
        assert verify(session, DEMO_ID)[1] == []


def test_a_call_out_from_another_process_is_found_after_catching_up(
    command: TestClient, db: Database, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process not yet woken for the other's events reads the log before saying 404."""
    responder = sign_in(db, "resp-wu", [Role.RESPONDER])
    monkeypatch.setattr(event_log, "ORIGIN", event_log.ORIGIN)  # as it was, after the test
    with _app(db, clock) as other:  # started before the incident
        post: CommandPost = other.app.state.post  # type: ignore[attr-defined]
        follower = LogFollower(post)
        follower.origin = "another process"  # the first app's events are not its own
        follower.start()  # as serving does, without its wake-ups
        incident = activate(command)["incident"]["id"]
        notice = next(e for e in logged(command) if e["type"] == "notification.requested")
        _assign(command, incident, notice, "resp-wu")
        url = f"/api/sites/{DEMO_ID}/notifications/{notice['seq']}/answer"
        answer = other.post(url, headers={**responder, **queued(uuid7())})
        assert answer.status_code == 200, answer.text
        assert answer.json()["events"][0]["data"]["notification"] == notice["seq"]
        unknown = f"/api/sites/{DEMO_ID}/notifications/999999/answer"
        assert_problem(other.post(unknown, headers=responder), 404, field="notification")


def _display(db: Database, username: str, name: str, *, disabled: bool = False) -> None:
    with db.write() as session:
        session.execute(
            update(UserRow)
            .where(UserRow.username == username)
            .values(display_name=name, disabled=disabled)
        )


def test_a_display_name_names_a_contact_only_when_it_is_one_persons(
    command: TestClient, db: Database
) -> None:
    activate(command)
    site = f"/api/sites/{DEMO_ID}"
    notice = next(e for e in logged(command) if e["type"] == "notification.requested")
    contact = str(notice["data"]["contact"]["name"])
    namesake = sign_in(db, "resp-namesake", [Role.RESPONDER])
    _display(db, "resp-namesake", contact)

    def mine() -> set[int]:
        answer = command.get(f"{site}/notifications/mine", headers=namesake)
        return {n["seq"] for n in answer.json()["notices"]}

    assert notice["seq"] in mine()
    # Another active user bears the name (case aside): it names neither of them.
    sign_in(db, "resp-twin", [Role.RESPONDER])
    _display(db, "resp-twin", f"  {contact.upper()} ")
    assert notice["seq"] not in mine()
    url = f"{site}/notifications/{notice['seq']}/answer"
    assert_problem(command.post(url, headers=namesake), 403, field="notification")
    # A disabled namesake is nobody's rival.
    _display(db, "resp-twin", contact, disabled=True)
    assert notice["seq"] in mine()
    assert command.post(url, headers=namesake).status_code == 200


def test_the_leader_forgets_keys_kept_a_week_and_keeps_photos(
    command: TestClient, db: Database, clock: ManualClock
) -> None:
    incident = activate(command)["incident"]["id"]
    notes = f"{BASE}/{incident}/notes"
    photo = base64.b64encode(_picture("PNG")).decode()
    old = command.post(notes, json={"text": "old", "photo": photo}, headers=queued(uuid7()))
    assert old.status_code == 200
    clock.advance(3 * 86400)
    assert command.post(notes, json={"text": "new"}, headers=queued(uuid7())).status_code == 200

    def keys() -> set[str]:
        with db.read() as session:
            return {str(r.fingerprint) for r in session.scalars(select(ClientActionRow))}

    post: CommandPost = command.app.state.post  # type: ignore[attr-defined]
    assert post.leading
    post.tick()
    assert len(keys()) == 2
    clock.advance(4 * 86400 + 60)  # the first a week and a minute old, the second 4 days
    post.tick()
    assert len(keys()) == 1
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(AttachmentRow)) == 1
