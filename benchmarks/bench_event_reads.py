"""What one catch-up read of the event log costs, on a site with 50,000 events (issue 12).

Run: ``.venv/bin/python -m benchmarks.bench_event_reads [--events 50000] [--postgis-url URL]``.

The log is filled with a real activation's events (the chlorine plan on the demo site, and five
notes), repeated to ``--events``: 1 event in 28 is ``plan.run.activated``, which carries the
whole plan (31 kB). Measured, in process (median of three):

1. the reads as they were: ``GET .../events?after=0&limit=10000`` through the app with the
   page cap lifted to 10,000 (the old largest page), and a websocket resume's read of 10,001
   events from far back;
2. the reads as they are: ``GET .../events?after=0&limit=10000`` through the app (a page of
   1,000 and its ``next``), a page of 100, and a websocket resume from the start (a snapshot,
   decided without reading the events), 1,000 events back (replayed) and 100 back.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any
from unittest.mock import patch

from fastapi.testclient import TestClient

from command import events as event_log
from command.app import create_app
from command.auth import Role
from command.event_reads import PAGE, EventReadBudget
from command.post import event_message
from command.routes import incidents as incident_routes
from command.routes.ws import _catch_up
from command.settings import Settings
from gis.site_bundle import load_bundle
from gis.storage.db import Database, downgrade, make_engine, schema_is_current, upgrade
from plans.store import load_plan_files
from tests.conftest import (
    CHLORINE_ACTIVATION,
    DEMO_ID,
    DEMO_PLANS,
    DEMO_SITE,
    sign_in,
    site_database,
)

SITE = f"/api/sites/{DEMO_ID}"


def postgis_database(url: str) -> str:
    """A fresh schema on ``url``, holding the demo site and its plans."""
    engine = make_engine(url)
    try:
        if schema_is_current(engine)[0] is not None:
            downgrade(engine, "base")
        upgrade(engine)
        db = Database(engine)
        load_bundle(db, DEMO_SITE, actor="bench")
        with db.write() as session:
            load_plan_files(session, DEMO_ID, sorted(DEMO_PLANS.glob("*.yaml")), actor="bench")
    finally:
        engine.dispose()
    return url


def fill(db: Database, url: str, count: int) -> None:
    """One real activation's events (and five notes), repeated to ``count``."""
    app = create_app(Settings(database_url=url), database=db, ticking=False)
    with TestClient(app) as client:
        client.headers.update(sign_in(db, "bench-commander", [Role.COMMANDER]))
        picture = client.post(f"{SITE}/incidents", json=CHLORINE_ACTIVATION).json()
        for n in range(5):
            client.post(
                f"{SITE}/incidents/{picture['incident']['id']}/notes", json={"text": f"note {n}"}
            )
        sample = client.get(f"{SITE}/events?after=0&limit={PAGE}").json()["events"]
    drafts = [
        event_log.Draft(e["type"], e["actor"], e["data"], e["incident_id"], None) for e in sample
    ]
    done = len(sample)
    while done < count:
        batch = [drafts[(done + i) % len(drafts)] for i in range(min(2000, count - done))]
        with db.write() as session:
            event_log.append_many(session, DEMO_ID, batch)
        done += len(batch)


def median_s(run: Callable[[], Any], repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(db: Database, url: str, count: int) -> dict[str, str]:
    out: dict[str, str] = {}

    def old_resume(after: int) -> None:
        """What a resume did: read up to 10,001 missed events, as the messages to send."""
        with db.read() as session:
            [event_message(e) for e in event_log.since(session, DEMO_ID, after, limit=10_001)]

    out["old resume, 10,001 read from the start"] = f"{median_s(lambda: old_resume(0)):.2f} s"
    out["old resume, 10,000 back"] = f"{median_s(lambda: old_resume(count - 10_000)):.2f} s"

    settings = Settings(database_url=url, event_reads_burst=10**9)  # the cost, not the budget
    app = create_app(settings, database=db, ticking=False)
    with TestClient(app) as client:
        client.headers.update(sign_in(db, "bench-viewer", [Role.VIEWER]))
        old_page = partial(client.get, f"{SITE}/events?after=0&limit=10000")
        # The route as it was: pages of up to 10,000.
        with patch.object(incident_routes, "EVENTS_PAGE", 10_000):
            tracemalloc.start()
            size = len(old_page().content)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            took = median_s(old_page)
        out["old GET events?after=0&limit=10000"] = (
            f"{took:.2f} s, {size / 1e6:.1f} MB, {peak / 1e6:.0f} MB memory"
        )
        for query in ("after=0&limit=10000", "after=0&limit=100"):
            answer = client.get(f"{SITE}/events?{query}")
            took = median_s(partial(client.get, f"{SITE}/events?{query}"))
            out[f"GET events?{query}"] = (
                f"{took:.2f} s, {len(answer.json()['events'])} events, "
                f"{len(answer.content) / 1e6:.1f} MB"
            )
        post = app.state.post
        unlimited = EventReadBudget(post.clock, burst=10**9, per_s=1.0)
        for name, last_seq in (
            ("from the start", 0),
            (f"{PAGE} back", count - PAGE),
            ("100 back", count - 100),
        ):
            resume = partial(_catch_up, post, DEMO_ID, None, last_seq, reads=unlimited, who="b")
            first = resume()
            took = median_s(resume)
            out[f"resume {name}"] = f"{took * 1000:.0f} ms, first message {first[0]['type']}"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--postgis-url", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = (
            postgis_database(args.postgis_url)
            if args.postgis_url
            else site_database(Path(tmp) / "bench.db")
        )
        engine = make_engine(url)
        try:
            db = Database(engine)
            start = time.perf_counter()
            fill(db, url, args.events)
            took = time.perf_counter() - start
            print(f"{engine.dialect.name}: {args.events} events logged in {took:.0f} s")
            for name, figure in measure(db, url, args.events).items():
                print(f"  {name}: {figure}")
        finally:
            engine.dispose()


if __name__ == "__main__":
    main()
