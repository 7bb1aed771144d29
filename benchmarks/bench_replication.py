"""Catching up after a WAN outage: a site's 100,000 events forwarded to the group (issue 18).

Run: ``scripts/with-postgis.sh .venv/bin/python -m benchmarks.bench_replication [--events 100000]
[--batch 2000]``; without PostGIS (``RALLYPOINT_TEST_POSTGIS_URL`` unset) the group is a SQLite
file instead, and says so.

The site is a SQLite file with the demo site and ``--events`` events of one incident (step
transitions, people moved, notes: the sizes of real ones), chained as the site logs them. The
group is a real ``rallypoint serve`` process (``tests/processes.py``) on a fresh database where
the demo site is a replica; it follows the events it stores as it follows any other writer's
(its walls get them), in the same process. Measured, in the same run:

- **catch-up**: the forwarder (``command.forwarder.Forwarder.catch_up``, this process) from
  nothing acknowledged to all acknowledged: read at the site, sent over HTTP in batches,
  verified at the group (hash chain, link to the last event held) and stored;
- **the bare store**: the same rows stored into a fresh group database directly, as the group
  stores a batch (``replication.store``: COPY on PostgreSQL), in the same batches, with no
  HTTP and no verification: the floor; and the same with SQLAlchemy Core's ``executemany``;
- **verification alone**: ``command.replication.verify_batch`` over the same events in memory.

Afterwards the group's copy is checked: ``command.events.verify`` over it (also timed), and its
rows against the site's. The machine is shared: the load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import typing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Table, insert, select

from command import events as event_log
from command import replication
from command.events import GENESIS, HEADS, LoggedEvent, canonical, chain_hash
from command.forwarder import Forwarder
from gis.storage.db import Database, make_engine
from gis.storage.tables import EventRow
from plans.clock import SystemClock
from tests.conftest import DEMO_ID, POSTGIS_URL_ENV, site_database
from tests.processes import ServerProcess, drop_database, postgis_demo_database

EVENTS = typing.cast(Table, EventRow.__table__)
T0 = datetime(2026, 12, 4, 6, 0, tzinfo=UTC)


def made_events(count: int) -> list[LoggedEvent]:
    """``count`` events of one incident, chained: the shapes and sizes the site logs."""
    out = []
    prev = GENESIS
    for seq in range(1, count + 1):
        data: dict[str, Any]
        at = T0 + timedelta(milliseconds=300 * seq)
        kind = seq % 4
        if kind == 0:
            type_, data = (
                "plan.step.done",
                {"step_id": f"S{seq % 40:02d}", "by": "cmd-zhou", "value": "closed", "run": "r1"},
            )
        elif kind == 1:
            type_, data = (
                "plan.step.started",
                {"step_id": f"S{seq % 40:02d}", "by": "cmd-zhou", "reading": 1.4, "unit": "ppm"},
            )
        elif kind == 2:
            type_, data = (
                "incident.people_moved",
                {"must_move": [f"P-{(seq + i) % 500:03d}" for i in range(6)], "zone": "Z-027"},
            )
        else:
            type_, data = (
                "note.added",
                {"text": "北门风向转东，人员改走 B 线 / wind east", "step": None},
            )
        payload = canonical(DEMO_ID, seq, at, type_, "cmd-zhou", "inc-bench", data)
        digest = chain_hash(prev, payload)
        out.append(
            LoggedEvent(DEMO_ID, seq, at, type_, "cmd-zhou", "inc-bench", data, prev, digest)
        )
        prev = digest
    return out


def insert_rows(
    db: Database, events: list[LoggedEvent], batch: int, origin: str | None, *, copy: bool = False
) -> float:
    """Insert ``events`` as rows (and the head), ``batch`` at a time; seconds taken. ``copy``:
    as the group stores a batch (``replication.store``: COPY on PostgreSQL), else SQLAlchemy
    Core's ``executemany``."""
    started = time.perf_counter()
    for start in range(0, len(events), batch):
        chunk = events[start : start + batch]
        with db.write() as session:
            if copy:
                replication.store(session, chunk, origin or "")
            else:
                session.execute(insert(EVENTS), [row(e, origin) for e in chunk])
            last = chunk[-1]
            moved = {"seq": last.seq, "hash": last.hash, "updated_at": T0}
            if start == 0:
                session.execute(insert(HEADS).values(site_id=DEMO_ID, **moved))
            else:
                session.execute(HEADS.update().where(HEADS.c.site_id == DEMO_ID).values(**moved))
    return time.perf_counter() - started


def row(e: LoggedEvent, origin: str | None) -> dict[str, Any]:
    return {
        "site_id": e.site_id,
        "seq": e.seq,
        "at": e.at,
        "type": e.type,
        "actor": e.actor,
        "incident_id": e.incident_id,
        "data": dict(e.data),
        "prev_hash": e.prev_hash,
        "hash": e.hash,
        "origin": origin,
    }


def group_database(name: str, folder: Path) -> tuple[str, bool]:
    if os.environ.get(POSTGIS_URL_ENV):
        return postgis_demo_database(name), True
    return site_database(folder / f"{name}.db"), False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=2_000)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-replication-"))
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    events = made_events(args.events)
    site_url = site_database(folder / "site.db")
    site = Database(make_engine(site_url))
    made = insert_rows(site, events, 5_000, None)
    print(f"site: {args.events:,} events written in {made:.1f} s (setup, not measured)")

    group_url, postgis = group_database("bench_replication", folder)
    bare_url, _ = group_database("bench_replication_bare", folder)
    backend = "PostGIS" if postgis else "SQLite (no PostGIS: RALLYPOINT_TEST_POSTGIS_URL unset)"
    print(f"group: {backend}, a rallypoint serve process; batches of {args.batch:,}")
    group_db = Database(make_engine(group_url))
    with group_db.write() as session:
        replication.add_replica(session, DEMO_ID, "bench-site", actor="bench", now=T0)
        token = replication.issue_replicator_token(session, DEMO_ID, "bench-site", T0)
    audit = {"audit_key": folder / "key.pem", "audit_checkpoints": folder / "cp.jsonl"}
    server = ServerProcess(group_url, folder / "group.log", name="group", **audit)
    bare = Database(make_engine(bare_url))
    try:
        server.start()
        forwarder = Forwarder(site, DEMO_ID, server.base, token, SystemClock(), batch=args.batch)
        started = time.perf_counter()
        done = forwarder.catch_up()
        catch_up = time.perf_counter() - started
        forwarder.close()
        assert done.stored == args.events and done.acked_seq == args.events, done

        copy_s = insert_rows(bare, events, args.batch, "bench", copy=True)
        bare2_url, _ = group_database("bench_replication_bare2", folder)
        bare2 = Database(make_engine(bare2_url))
        try:
            bare_s = insert_rows(bare2, events, args.batch, "bench")
        finally:
            bare2.dispose()
            if postgis:
                drop_database(bare2_url)

        none_held: dict[int, str] = {}
        started = time.perf_counter()
        fresh = replication.verify_batch(events, 0, GENESIS, none_held.get)
        verify_s = time.perf_counter() - started
        assert len(fresh) == args.events

        started = time.perf_counter()
        with group_db.read() as session:
            count, breaks = event_log.verify(session, DEMO_ID)
        audit_s = time.perf_counter() - started
        assert (count, breaks) == (args.events, []), breaks[:3]
        with site.read() as s1, group_db.read() as s2:
            query = select(EventRow.seq, EventRow.at, EventRow.data, EventRow.hash).where(
                EventRow.site_id == DEMO_ID
            )
            same = list(s1.execute(query.order_by(EventRow.seq))) == list(
                s2.execute(query.order_by(EventRow.seq))
            )
        assert same, "the group's copy differs from the site's"
    finally:
        server.stop()
        site.dispose()
        group_db.dispose()
        bare.dispose()
        if postgis:
            drop_database(group_url)
            drop_database(bare_url)

    rate = args.events / catch_up
    print(
        f"catch-up of {args.events:,} events: {catch_up:.1f} s ({rate:,.0f} events/s), "
        f"{done.batches} batches; chain verified on arrival; target < 30 s"
    )
    print(
        f"  bare store of the same rows as the group stores them (replication.store, "
        f"{'COPY' if postgis else 'executemany'}; no HTTP, no verification): {copy_s:.1f} s"
    )
    print(f"  bare insert of the same rows (SQLAlchemy Core executemany): {bare_s:.1f} s")
    print(f"  verification alone (verify_batch in memory): {verify_s:.2f} s")
    print(f"  the group's copy audited afterwards (events.verify): {audit_s:.1f} s; rows equal")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
