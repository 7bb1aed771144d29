"""The audit anchor: the attacks of issue 12 item 6, on SQLite and PostGIS.

Before the anchor, ``rallypoint audit verify`` said "intact" after the last 1, 50 or all events
of a site were deleted, and after an event was forged and every hash after it recomputed. Each
test here makes the same change to the tables and checks that it is named.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from sqlalchemy import delete, select, update

from command import events
from command.app import create_app
from command.audit import (
    AnchorFiles,
    AuditKeyError,
    AuditReport,
    Checkpointer,
    anchor_files,
    key_id,
    load_key,
    read_checkpoints,
    read_keyring,
    rotate_key,
    sign,
    verify_anchor,
)
from command.cli import main
from command.settings import Settings
from gis.sites import create_site
from gis.storage.db import Database, downgrade, make_engine, schema_is_current, upgrade
from gis.storage.tables import EventHeadRow, EventRow
from plans.clock import ManualClock
from tests.conftest import DEMO_ID, POSTGIS_URL_ENV, TEST_START

EN = "\u2013"  # the en dash between the first and last of missing events
BOUNDARY = {
    "type": "Polygon",
    "coordinates": [
        [[121.0, 30.0], [121.01, 30.0], [121.01, 30.01], [121.0, 30.01], [121.0, 30.0]]
    ],
}


# -- helpers --------------------------------------------------------------------------------------


def log_events(
    db: Database, n: int, *, site: str = DEMO_ID, incident: str | None = None
) -> list[events.LoggedEvent]:
    with db.write() as session:
        drafts = [events.Draft("command.given", "t", {"n": i}, incident) for i in range(n)]
        return events.append_many(session, site, drafts)


def chain_only(db: Database) -> list[str]:
    """What the log and its head say, without the checkpoints."""
    with db.read() as session:
        _, breaks = events.verify(session, DEMO_ID)
    return [str(b) for b in breaks]


def anchored(db: Database, files: AnchorFiles, **options: Any) -> AuditReport:
    with db.read() as session:
        return verify_anchor(session, files.checkpoints, site_id=DEMO_ID, **options)


def broken(report: AuditReport) -> list[str]:
    return [str(b) for b in report.breaks]


def delete_tail(db: Database, after: int) -> None:
    with db.write() as session:
        session.execute(delete(EventRow).where(EventRow.site_id == DEMO_ID, EventRow.seq > after))


def roll_head_back(db: Database, to: int) -> None:
    """What an attacker who knows about the head does after deleting the tail."""
    with db.write() as session:
        digest = session.scalar(
            select(EventRow.hash).where(EventRow.site_id == DEMO_ID, EventRow.seq == to)
        )
        session.execute(
            update(EventHeadRow).where(EventHeadRow.site_id == DEMO_ID).values(seq=to, hash=digest)
        )


def forge(db: Database, seq: int, data: dict[str, Any], *, move_head: bool = True) -> str:
    """Change event ``seq``'s data and recompute its hash and every hash after it, so that the
    chain holds; move the head to the new last hash too (``move_head``). The new last hash."""
    with db.write() as session:
        rows = session.execute(
            select(EventRow)
            .where(EventRow.site_id == DEMO_ID, EventRow.seq >= seq)
            .order_by(EventRow.seq)
        ).scalars()
        prev = ""
        for row in list(rows):
            prev = prev or row.prev_hash
            body = data if row.seq == seq else row.data
            payload = events.canonical(
                row.site_id, row.seq, row.at, row.type, row.actor, row.incident_id, body
            )
            digest = events.chain_hash(prev, payload)
            session.execute(
                update(EventRow)
                .where(EventRow.site_id == DEMO_ID, EventRow.seq == row.seq)
                .values(data=body, prev_hash=prev, hash=digest)
            )
            prev = digest
        if move_head:
            session.execute(
                update(EventHeadRow).where(EventHeadRow.site_id == DEMO_ID).values(hash=prev)
            )
    return prev


def head_of(db: Database, site: str = DEMO_ID) -> tuple[int, str] | None:
    with db.read() as session:
        row = session.get(EventHeadRow, site)
        return (row.seq, row.hash) if row else None


def event_hash(db: Database, seq: int) -> str:
    with db.read() as session:
        digest = session.scalar(
            select(EventRow.hash).where(EventRow.site_id == DEMO_ID, EventRow.seq == seq)
        )
    assert digest is not None
    return digest


@pytest.fixture
def files(tmp_path: Path) -> AnchorFiles:
    return AnchorFiles(key=tmp_path / "keys" / "audit-key.pem", checkpoints=tmp_path / "cp.jsonl")


@pytest.fixture
def anchor(db: Database, files: AnchorFiles, clock: ManualClock) -> Checkpointer:
    return Checkpointer(db, files, clock, every_s=60)


# -- the head: tail deletions ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("deleted", "named"),
    [
        (1, "event 1000 is missing: the head says 1000, the log ends at 999"),
        (50, f"events 951{EN}1000 are missing: the head says 1000, the log ends at 950"),
        (1000, f"events 1{EN}1000 are missing: the head says 1000, the log has none"),
    ],
)
def test_events_deleted_from_the_end_are_named(db: Database, deleted: int, named: str) -> None:
    log_events(db, 1000)
    assert chain_only(db) == []
    delete_tail(db, 1000 - deleted)
    assert chain_only(db) == [f"{DEMO_ID} {named}"]


def test_an_append_after_a_tail_deletion_keeps_the_gap(db: Database) -> None:
    log_events(db, 100)
    delete_tail(db, 50)
    [event] = log_events(db, 1)
    assert event.seq == 101  # not a new event 51 written over the evidence
    assert chain_only(db) == [f"{DEMO_ID} event 101: events 51{EN}100 are missing before it"]


def test_the_head_moves_with_the_transaction(db: Database) -> None:
    log_events(db, 5)
    before = head_of(db)
    assert before is not None and before[0] == 5

    def failing_change() -> None:
        with db.write() as session:
            events.append(session, DEMO_ID, "command.given", actor="t")
            raise RuntimeError("the change this event records failed")

    with pytest.raises(RuntimeError):
        failing_change()
    assert head_of(db) == before
    [event] = log_events(db, 1)
    assert head_of(db) == (6, event.hash)
    assert chain_only(db) == []


def test_a_deleted_head_is_named(db: Database) -> None:
    log_events(db, 3)
    with db.write() as session:
        session.execute(delete(EventHeadRow).where(EventHeadRow.site_id == DEMO_ID))
    assert chain_only(db) == [
        f"{DEMO_ID} head is missing: the log ends at 3, with no head (deleted?)"
    ]


# -- the checkpoints: a head rolled back, a re-hashed chain ---------------------------------------


def test_a_tail_deleted_with_its_head_is_named_by_the_checkpoint(
    db: Database, anchor: Checkpointer, files: AnchorFiles
) -> None:
    log_events(db, 1000)
    [signed] = anchor.checkpoint()
    assert (signed.seq, signed.hash) == (1000, event_hash(db, 1000))
    delete_tail(db, 950)
    roll_head_back(db, 950)
    assert chain_only(db) == []  # the table and the head agree: only the signature can tell
    assert broken(anchored(db, files)) == [
        f"{DEMO_ID} head is behind its checkpoint: checkpoint line 1 signed event 1000 with hash "
        f"{signed.hash}, the head says 950: events 951{EN}1000 are missing, the head rolled "
        "back with them"
    ]


def test_every_event_and_the_head_deleted_is_named_by_the_checkpoint(
    db: Database, anchor: Checkpointer, files: AnchorFiles
) -> None:
    log_events(db, 20)
    anchor.checkpoint()
    delete_tail(db, 0)
    with db.write() as session:
        session.execute(delete(EventHeadRow))
    assert chain_only(db) == []
    assert broken(anchored(db, files)) == [
        f"{DEMO_ID} events 1{EN}20 are missing: checkpoint line 1 signed event 20, the log has "
        "no event, and the site has no head"
    ]


def test_a_forged_event_with_recomputed_hashes_is_named(
    db: Database, anchor: Checkpointer, files: AnchorFiles, clock: ManualClock
) -> None:
    log_events(db, 60)
    [first] = anchor.checkpoint()
    log_events(db, 40)
    [second] = anchor.checkpoint()
    assert anchored(db, files).intact
    forged = forge(db, 40, {"n": "the order was never given"})
    assert chain_only(db) == []  # the chain and the head hold: only the signatures can tell
    assert broken(anchored(db, files)) == [
        f"{DEMO_ID} event 60 is not as signed: checkpoint line 1 signed hash {first.hash}, the "
        f"log has {event_hash(db, 60)}; 1 later checkpoints do not match either",
        f"{DEMO_ID} head is not as signed: checkpoint line 2 signed event 100 with hash "
        f"{second.hash}, the head has {forged}",
    ]
    # The server signs the forged head later, but the earlier lines still name the forgery.
    clock.advance(60)
    assert [c.seq for c in anchor.tick()] == [100]
    assert len(broken(anchored(db, files))) == 1


def test_a_forged_event_without_the_head_is_named_by_the_head(db: Database) -> None:
    log_events(db, 10)
    before = event_hash(db, 10)
    forged = forge(db, 4, {"n": 99}, move_head=False)
    assert chain_only(db) == [
        f"{DEMO_ID} head does not match the log: the head has hash {before}, event 10 has {forged}"
    ]


# -- checkpoints written, signed and checked ------------------------------------------------------


def test_checkpoints_follow_the_clock(
    db: Database, anchor: Checkpointer, files: AnchorFiles, clock: ManualClock
) -> None:
    assert anchor.tick() == []  # no head yet: nothing to sign
    log_events(db, 3)
    assert [c.seq for c in anchor.tick()] == []  # the empty tick started the interval
    clock.advance(59)
    log_events(db, 2)
    assert anchor.tick() == []
    clock.advance(1)
    assert [(c.site, c.seq) for c in anchor.tick()] == [(DEMO_ID, 5)]
    clock.advance(60)
    assert anchor.tick() == []  # the head has not moved
    log_events(db, 1)
    clock.advance(60)
    assert [c.seq for c in anchor.tick()] == [6]
    lines = [json.loads(line) for line in files.checkpoints.read_text().splitlines()]
    assert [(x["site"], x["seq"]) for x in lines] == [(DEMO_ID, 5), (DEMO_ID, 6)]
    assert lines[1]["at"] == (TEST_START + timedelta(seconds=180)).isoformat()
    assert set(lines[0]) == {"v", "site", "seq", "hash", "at", "key_id", "signature"}
    assert anchored(db, files).intact


def test_a_restarted_checkpointer_does_not_sign_the_same_head_again(
    db: Database,
    anchor: Checkpointer,
    files: AnchorFiles,
    clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    log_events(db, 2)
    assert len(anchor.checkpoint()) == 1
    again = Checkpointer(db, files, clock, every_s=60)
    assert again.checkpoint() == []
    assert len(again.checkpoint(force=True)) == 1
    log_events(db, 1)
    assert len(again.checkpoint()) == 1
    assert "went from event" not in caplog.text  # the head only moved on
    roll_head_back(db, 2)
    assert len(again.checkpoint()) == 1
    assert f"the head of site {DEMO_ID} went from event 3 to 2" in caplog.text


def test_the_key_is_created_once_with_mode_600(files: AnchorFiles, clock: ManualClock) -> None:
    first = load_key(files, now=clock.now())
    assert files.key.stat().st_mode & 0o777 == 0o600
    again = load_key(files, now=clock.now())
    assert key_id(again.public_key()) == key_id(first.public_key())
    keys, problems = read_keyring(files.keyring)
    assert list(keys) == [key_id(first.public_key())] and problems == []


def test_a_key_that_is_not_one_is_refused_by_name(files: AnchorFiles, clock: ManualClock) -> None:
    files.key.parent.mkdir(parents=True)
    files.key.write_text("not a key")
    files.key.chmod(0o600)
    with pytest.raises(
        AuditKeyError, match=r"audit-key\.pem is not an unencrypted PEM private key"
    ):
        load_key(files, now=clock.now())


def test_an_edited_checkpoint_line_is_named(
    db: Database, anchor: Checkpointer, files: AnchorFiles, clock: ManualClock
) -> None:
    log_events(db, 10)
    anchor.checkpoint()
    log_events(db, 10)
    anchor.checkpoint()
    lines = files.checkpoints.read_text().splitlines()
    edited = json.loads(lines[1])
    edited["seq"] = 19  # hiding the last event
    stranger = Ed25519PrivateKey.generate()
    foreign = sign(stranger, events.Head(DEMO_ID, 20, "0" * 64), clock.now())
    lines[1] = json.dumps(edited)
    lines += ["{truncated", foreign.as_line()]
    files.checkpoints.write_text("\n".join(lines) + "\n")
    assert broken(anchored(db, files)) == [
        f"{DEMO_ID} checkpoint line 2: its signature does not verify: the line was changed "
        "after it was signed",
        "checkpoint line 3 is unreadable: the line is not JSON",
        f"{DEMO_ID} checkpoint line 4: signed by key {key_id(stranger.public_key())}, which is "
        "not among the public keys",
    ]


def test_a_rotated_key_leaves_old_checkpoints_verifiable(
    db: Database, anchor: Checkpointer, files: AnchorFiles, clock: ManualClock
) -> None:
    log_events(db, 5)
    [old] = anchor.checkpoint()
    new = rotate_key(files, now=clock.now())
    assert new != old.key_id and files.key.stat().st_mode & 0o777 == 0o600
    log_events(db, 5)
    [later] = anchor.checkpoint()
    assert later.key_id == new
    keys, _ = read_keyring(files.keyring)
    assert set(keys) == {old.key_id, new}
    report = anchored(db, files)
    assert report.intact and report.checkpoints == 2
    # An auditor who trusts only the new key is told which line it cannot vouch for.
    only_new = anchored(db, files, keys={new: keys[new]})
    assert broken(only_new) == [
        f"{DEMO_ID} checkpoint line 1: signed by key {old.key_id}, which is not among the "
        "public keys"
    ]


# -- corrupt rows: named, never raised --------------------------------------------------------


def corrupt(db: Database, seq: int, column: str, sql_value: str) -> None:
    with db.write() as session:
        session.execute(
            sa.text(
                f"UPDATE events SET {column} = {sql_value} WHERE site_id = :site AND seq = :seq"
            ),
            {"site": DEMO_ID, "seq": seq},
        )


def nan_refused() -> str:
    """Python's words for refusing NaN in strict JSON (they vary between versions)."""
    try:
        json.dumps(float("nan"), allow_nan=False)
    except ValueError as exc:
        return str(exc)
    raise AssertionError("NaN was accepted")


def test_corrupt_rows_are_named_and_the_walk_goes_on(db: Database, files: AnchorFiles) -> None:
    log_events(db, 25)
    corrupt(db, 17, "data", "'null'")
    corrupt(db, 19, "data", "'[1, 2]'")
    corrupt(db, 21, "actor", "'someone-else'")
    expected = [
        f"{DEMO_ID} event 17 is unreadable: its data is null, not an object",
        f"{DEMO_ID} event 19 is unreadable: its data is an array, not an object",
        f"{DEMO_ID} event 21: its content does not match its hash",
    ]
    if db.dialect == "sqlite":  # SQLite keeps what it is given, whatever the column's type
        corrupt(db, 3, "data", "'{not json'")
        corrupt(db, 5, "at", "'yesterday'")
        corrupt(db, 7, "actor", "x'6869'")
        corrupt(db, 9, "data", """'{"x": NaN}'""")
        corrupt(db, 25, "seq", "'twenty-five'")
        expected[:0] = [
            f"{DEMO_ID} event 3 is unreadable: its data is not JSON (Expecting property name "
            "enclosed in double quotes: line 1 column 2 (char 1))",
            f"{DEMO_ID} event 5 is unreadable: its time is 'yesterday'",
            f"{DEMO_ID} event 7 is unreadable: its actor is b'hi'",
            f"{DEMO_ID} event 9 is unreadable: its data cannot be hashed ({nan_refused()})",
        ]
        expected += [
            f"{DEMO_ID} an event after event 24 is unreadable: its number is 'twenty-five'",
            f"{DEMO_ID} event 25 is missing: the head says 25, the log ends at 24",
        ]
    assert chain_only(db) == expected
    assert broken(anchored(db, files)) == expected


def test_unreadable_incidents_names_each_incident_once(db: Database) -> None:
    log_events(db, 4, incident="INC-1")  # 1-4
    log_events(db, 4, incident="INC-2")  # 5-8
    log_events(db, 2)  # 9-10, no incident
    log_events(db, 3, incident="INC-3")  # 11-13
    corrupt(db, 2, "data", "'null'")
    corrupt(db, 3, "data", "'[]'")
    corrupt(db, 6, "actor", "'forger'")
    corrupt(db, 9, "data", "'null'")  # no incident to quarantine
    with db.read() as session:
        found = events.unreadable_incidents(session, DEMO_ID)
        assert events.unreadable_incidents(session, "another-site") == {}
        assert events.unreadable_incidents(session) == found
    assert found == {
        "INC-1": "event 2 is unreadable: its data is null, not an object",
        "INC-2": "event 6: its content does not match its hash",
    }


# -- the server: signs on its ticks and when it stops --------------------------------------------


def test_the_server_signs_the_heads_on_ticks_and_at_shutdown(
    db: Database, tmp_path: Path, clock: ManualClock
) -> None:
    settings = Settings(
        database_url=str(db.engine.url),
        audit_key=tmp_path / "key.pem",
        audit_checkpoints=tmp_path / "cp.jsonl",
    )
    app = create_app(settings, database=db, clock=clock, ticking=False)
    with TestClient(app):
        log_events(db, 3)
        assert [c.seq for c in app.state.audit.tick()] == [3]
        log_events(db, 2)
        clock.advance(30)
        assert app.state.audit.tick() == []  # within RALLYPOINT_AUDIT_CHECKPOINT_S
    signed = read_checkpoints(settings.audit_checkpoints, None).checkpoints  # type: ignore[arg-type]
    assert [(c.seq, c.at) for c in signed] == [
        (3, TEST_START.isoformat()),
        (5, (TEST_START + timedelta(seconds=30)).isoformat()),
    ]
    # A test's database is signed only into a file named for it: the real one stays clean.
    plain = create_app(Settings(database_url=str(db.engine.url)), database=db, ticking=False)
    with TestClient(plain):
        assert plain.state.audit is None


def test_default_files_sit_beside_the_database_one_file_per_database() -> None:
    files = anchor_files(Settings(database_url="sqlite:////srv/rp/site.db"))
    assert files == AnchorFiles(
        Path("/srv/rp/audit-key.pem"), Path("/srv/rp/site-checkpoints.jsonl")
    )
    assert files.keyring == Path("/srv/rp/site-checkpoints.keys.jsonl")
    pg = anchor_files(Settings(database_url="postgresql+psycopg://rp@db/plant_a"))
    assert pg == AnchorFiles(Path("var/audit-key.pem"), Path("var/plant_a-checkpoints.jsonl"))
    assert anchor_files(Settings(database_url="sqlite://")) is None  # nothing to anchor
    named = Settings(database_url="sqlite://", audit_key="k.pem", audit_checkpoints="c.jsonl")
    assert anchor_files(named) == AnchorFiles(Path("k.pem"), Path("c.jsonl"))


# -- fresh databases: the migration, concurrent appends, the command line ----------------------


@pytest.fixture(params=["sqlite", "postgis"])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of this test's own (its writes commit)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'audit.db'}"
        return
    url = os.environ.get(POSTGIS_URL_ENV)
    if not url:
        pytest.skip(f"no PostGIS ({POSTGIS_URL_ENV} unset)")
    admin = make_engine(url.rsplit("/", 1)[0] + "/postgres")
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("DROP DATABASE IF EXISTS rallypoint_audit")
        conn.exec_driver_sql("CREATE DATABASE rallypoint_audit")
    yield url.rsplit("/", 1)[0] + "/rallypoint_audit"
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("DROP DATABASE IF EXISTS rallypoint_audit WITH (FORCE)")
    admin.dispose()


def test_the_migration_takes_each_sites_head_from_its_last_event(fresh_url: str) -> None:
    engine = make_engine(fresh_url)
    try:
        upgrade(engine, "0003")
        rows = []
        for site, count in (("plant-a", 3), ("plant-b", 5)):
            prev = events.GENESIS
            for seq in range(1, count + 1):
                at = TEST_START + timedelta(seconds=seq)
                payload = events.canonical(site, seq, at, "command.given", "t", None, {})
                digest = events.chain_hash(prev, payload)
                rows.append(
                    {
                        "site_id": site,
                        "seq": seq,
                        "at": at,
                        "type": "command.given",
                        "actor": "t",
                        "incident_id": None,
                        "data": {},
                        "prev_hash": prev,
                        "hash": digest,
                    }
                )
                prev = digest
        with engine.begin() as conn:
            conn.execute(sa.insert(EventRow), rows)
        upgrade(engine, "0004")
        db = Database(engine)
        with db.read() as session:
            heads = {
                h.site_id: (h.seq, h.hash, h.updated_at)
                for h in session.scalars(select(EventHeadRow))
            }
            assert events.verify(session) == (8, [])
        assert heads == {
            "plant-a": (3, rows[2]["hash"], TEST_START + timedelta(seconds=3)),
            "plant-b": (5, rows[7]["hash"], TEST_START + timedelta(seconds=5)),
        }
        downgrade(engine, "0003")
        assert schema_is_current(engine)[0] == "0003"
    finally:
        engine.dispose()


def small_site(url: str, site: str = "plant") -> None:
    engine = make_engine(url)
    try:
        upgrade(engine)
        with Database(engine).write() as session:
            create_site(
                session,
                {"id": site, "name": "Plant", "timezone": "UTC", "boundary": BOUNDARY},
                actor="t",
            )
    finally:
        engine.dispose()


def test_concurrent_appends_keep_one_chain_and_one_head(fresh_url: str) -> None:
    small_site(fresh_url)
    writers, appends = 4, 25
    errors: list[BaseException] = []
    start = threading.Barrier(writers)

    def write(n: int) -> None:
        # An engine each, as separate server processes would have: only the database orders them.
        db = Database(make_engine(fresh_url))
        try:
            start.wait()
            for i in range(appends):
                with db.write() as session:
                    events.append(session, "plant", "command.given", actor=f"w{n}", data={"i": i})
        except BaseException as exc:
            errors.append(exc)
        finally:
            db.dispose()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    engine = make_engine(fresh_url)
    try:
        with Database(engine).read() as session:
            assert events.verify(session, "plant") == (writers * appends, [])
            head = session.get(EventHeadRow, "plant")
            assert head is not None and head.seq == writers * appends
    finally:
        engine.dispose()


def test_the_audit_commands(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'site.db'}"
    small_site(url, DEMO_ID)
    env = {
        "RALLYPOINT_DATABASE_URL": url,
        "RALLYPOINT_AUDIT_KEY": str(tmp_path / "var" / "key.pem"),
        "RALLYPOINT_AUDIT_CHECKPOINTS": str(tmp_path / "var" / "cp.jsonl"),
    }
    engine = make_engine(url)
    db = Database(engine)
    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(main, ["audit", *args], env=env)

    try:
        log_events(db, 10)
        ok = run("verify")
        assert ok.exit_code == 0, ok.output
        assert "event log intact: 10 events; the heads agree with it" in ok.output
        signed = run("checkpoint")
        assert signed.exit_code == 0 and f"{DEMO_ID} event 10 signed by key" in signed.output
        assert "no head moved" in run("checkpoint").output
        pem = run("public-key")
        assert pem.stdout.startswith("-----BEGIN PUBLIC KEY-----")
        (tmp_path / "auditor.pem").write_text(pem.stdout)
        out = tmp_path / "auditor" / "export.jsonl"
        exported = run("export-checkpoints", str(out))
        assert exported.exit_code == 0 and "1 checkpoints written" in exported.output
        assert (tmp_path / "auditor" / "export.keys.jsonl").exists()
        offline = [
            "verify",
            "--checkpoints",
            str(out),
            "--public-key",
            str(tmp_path / "auditor.pem"),
        ]
        checked = run(*offline)
        assert checked.exit_code == 0 and "1 signed checkpoints agree" in checked.output
        rotated = run("rotate-key")
        assert rotated.exit_code == 0 and "1 heads signed with it" in rotated.output
        assert run("verify").exit_code == 0
        # The attack: an event forged and the chain and head recomputed after it.
        forge(db, 4, {"n": "forged"})
        assert run("verify").exit_code == 1
        found = run(*offline)
        assert found.exit_code == 1
        assert f"BROKEN {DEMO_ID} event 10 is not as signed: checkpoint line 1" in found.output
        missing = run("verify", "--checkpoints", str(tmp_path / "nothing.jsonl"))
        assert missing.exit_code == 1 and "no checkpoint file at" in missing.output
    finally:
        db.dispose()
