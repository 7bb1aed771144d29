"""The live picture as the incident changes, on the synthetic site (about 106k edges, 5,000
people), through the command post in process.

Run: ``.venv/bin/python -m benchmarks.bench_live [--edges 100000] [--people 5000] [--seconds 5]``.

Measured in one run, so that the ratios hold on a noisy machine:
- an activation at L2 (the peer every re-plan is compared with);
- an escalation to L3 and a de-escalation back (who must move changes);
- a wind change (zones, routes and resources again);
- a route update for one moved person: ``post.positions`` with one position, and the routing
  step alone (the kept search followed for that person);
- sustained positions: batches of 100 every 20 ms (5,000 a second) for ``--seconds``, a fifth of
  each batch walking into the threat zone, so that those people are routed; whether the post
  keeps up, and the time per batch.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import shapely

from benchmarks.bench_command import prepare, synthetic_bodies
from command.hub import Hub
from command.incidents import ActivationRequest
from command.post import CommandPost
from command.sensors import Reading
from command.site_model import SiteModels
from gis.storage.db import Database, make_engine
from plans.clock import ManualClock
from plans.engine import Actor


def timed(fn: Callable[[], Any], n: int = 1) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def line(label: str, values: list[float]) -> str:
    return (
        f"{label}: median {statistics.median(values):.2f} ms "
        f"(min {min(values):.2f}, max {max(values):.2f}, n={len(values)})"
    )


def run(url: str, site_id: str, centre: tuple[float, float], seconds: float) -> list[str]:
    db = Database(make_engine(url))
    # After the generated people were last seen, so that live positions are newer.
    clock = ManualClock(datetime.now(UTC))
    post = CommandPost(db, Hub(), clock, SiteModels(db))
    out: list[str] = []
    build = timed(lambda: post.model(site_id))
    model = post.model(site_id)
    out.append(f"site model: {len(model.person_ids)} people, built in {build[0]:.0f} ms")
    actor = Actor("bench", frozenset({"incident_commander"}))
    body = synthetic_bodies(centre)[0]  # L2, zones of 150, 400 and 800 m
    activations: list[float] = []
    incident = ""
    for _ in range(3):
        request = ActivationRequest.model_validate({**body, "second_incident": True})
        start = time.perf_counter()
        incident, _ = post.activate(site_id, request, actor="bench")
        activations.append((time.perf_counter() - start) * 1000)
        if len(activations) < 3:
            post.stand_down(site_id, incident, actor, force=True, reason="bench")
    out.append(line("activation at L2 (the peer)", activations))
    peer = statistics.median(activations)
    command = post.command

    def escalate() -> None:
        command(site_id, incident, lambda run: run.escalate(actor))

    def deescalate() -> None:
        command(site_id, incident, lambda run: run.deescalate(actor))

    ups, downs = [], []
    for _ in range(3):
        ups += timed(escalate)
        downs += timed(deescalate)
    out.append(line("escalation L2 -> L3", ups) + f"; {statistics.median(ups) / peer:.2f} x")
    out.append(line("de-escalation L3 -> L2", downs) + f"; {statistics.median(downs) / peer:.2f} x")

    # The synthetic plan is a radius hazard: a wind change re-plans a gas release. Measure
    # the same re-plan (zones, exposure, routes, resources) that a wind change runs.
    from command.incidents import reassess

    shown = post.incidents[incident]
    replans = timed(lambda: reassess(model, shown), 3)
    out.append(
        line("re-plan of the incident (what a wind or layer change runs)", replans)
        + f"; {statistics.median(replans) / peer:.2f} x"
    )
    wind = next((s for s in model.sensors.values() if s.kind == "wind"), None)
    if wind is not None:
        turns = timed(lambda: post.readings(site_id, [Reading(wind.id, 4.0, 90.0)], actor="b"))
        out.append(line("wind station reading (no gas release to re-plan)", turns))

    # One moved person.
    zones = shown.assessment.zones
    inner = next(z for z in zones if z.level == 1).geometry
    rng = np.random.default_rng(42)
    xy = model.person_lonlat
    outside = np.flatnonzero(~shapely.intersects_xy(inner, xy[:, 0], xy[:, 1]))
    ring = inner.difference(next(z for z in zones if z.level == 2).geometry)
    candidates = np.asarray(
        shapely.points(
            rng.uniform(ring.bounds[0], ring.bounds[2], 4000),
            rng.uniform(ring.bounds[1], ring.bounds[3], 4000),
        )
    )
    spots = list(candidates[np.asarray(shapely.contains(ring, candidates), dtype=bool)])
    singles = []
    for k in range(200):
        row = int(outside[k % len(outside)])
        pid = model.person_ids[row]
        lon, lat = xy[row] + rng.uniform(-2e-5, 2e-5, 2)
        clock.advance(timedelta(milliseconds=10))
        move = {pid: (float(lon), float(lat), None)}
        start_one = time.perf_counter()
        taken = post.positions(site_id, move)
        singles.append((time.perf_counter() - start_one) * 1000)
        assert taken["accepted"] == 1, taken
    out.append(line("positions() with one moved person (whole server path)", singles))
    routes = shown.routes
    rows = np.array([int(outside[0])])
    alone = timed(lambda: routes.with_people(rows, xy[rows]), 200)
    out.append(line("route update for one moved person (routing step alone)", alone))

    # Sustained: 5,000 positions a second in batches of 100 every 20 ms.
    batches = int(seconds / 0.02)
    per_batch = []
    entered = 0
    start = time.perf_counter()
    for b in range(batches):
        moves: dict[str, tuple[float, float, Any]] = {}
        picks = rng.choice(len(model.person_ids), 100, replace=False)
        for j, row in enumerate(picks):
            if j < 20:
                spot = spots[(b * 20 + j) % len(spots)]
                moves[model.person_ids[int(row)]] = (spot.x, spot.y, None)
            else:
                lon, lat = xy[int(row)] + rng.uniform(-3e-5, 3e-5, 2)
                moves[model.person_ids[int(row)]] = (float(lon), float(lat), None)
        clock.advance(timedelta(milliseconds=20))
        t0 = time.perf_counter()
        answer = post.positions(site_id, moves)
        per_batch.append((time.perf_counter() - t0) * 1000)
        assert answer["accepted"] == len(moves), answer["stale"][:5]
        entered += sum(len(e["data"].get("entered", {})) for e in answer["events"])
    busy = sum(per_batch) / 1000
    wall = time.perf_counter() - start
    out.append(
        f"sustained 5,000 positions/s ({batches} batches of 100, a fifth walking into the "
        f"zone; {entered} entries logged and routed): busy {busy:.2f} s of {batches * 0.02:.2f} s "
        f"offered ({busy / (batches * 0.02):.2f} of capacity); "
        + line("per batch", per_batch).split(": ", 1)[1]
        + f"; wall {wall:.2f} s"
    )
    out.append(f"people who must move now: {len(post.incidents[incident].moving)}")
    db.dispose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--edges", type=int, default=100_000)
    parser.add_argument("--people", type=int, default=5_000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--cache", type=Path, default=Path("var/bench-cache"))
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rallypoint-bench-live-") as tmp:
        setup = prepare(Path(tmp), args.edges, args.people, args.cache)
        for note in setup.notes:
            print(note)
        for text in run(setup.url, setup.synthetic_id, setup.synthetic_centre, args.seconds):
            print(text)


if __name__ == "__main__":
    main()
