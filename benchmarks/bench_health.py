"""Detector health benchmark: the cost of the health hook on the readings path.

Run: ``.venv/bin/python -m benchmarks.bench_health [--readings 10000] [--batch 500] [--rounds 7]``.

The demo site (77 sensors) on a SQLite file, with the demo plans, in process (no HTTP): batches
of readings, noisy values below the first tier (so that neither tiers nor health flags change
and nothing is logged: the steady state of a healthy site), go through
``CommandPost.readings`` with the health hook as it is, and again with the hook replaced by a
no-op: each batch both ways, in alternating order, in the same run. The clock advances so that
10,000 readings take one simulated second (the issue's 10,000 readings a second), and the post
ticks each simulated second (stale and due-date checks). Printed: per 10,000 readings, the
median of the rounds of the readings path with and without health, their difference (noisy on a
loaded machine), the hook's own time measured inside the path, and its share of the path; then
the checks alone on 1,000 synthetic detectors, and one tick.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from fastapi.testclient import TestClient

from benchmarks.bench_command import DEMO_ID
from command.app import create_app
from command.events import LoggedEvent
from command.monitoring.health import SiteHealth
from command.post import CommandPost
from command.sensors import Reading, Sensor
from command.settings import Settings
from gis.site_bundle import IfExists, load_bundle
from gis.storage.db import Database, make_engine, upgrade
from plans.clock import ManualClock
from plans.store import load_plan_files

ROOT = Path(__file__).resolve().parent.parent


def prepare(folder: Path) -> str:
    url = f"sqlite:///{folder / 'health.db'}"
    engine = make_engine(url)
    upgrade(engine)
    db = Database(engine)
    load_bundle(db, ROOT / "fixtures" / "demo-site", actor="bench", if_exists=IfExists.FAIL)
    with db.write() as session:
        load_plan_files(
            session, DEMO_ID, sorted((ROOT / "fixtures" / "plans").glob("*.yaml")), actor="bench"
        )
    db.dispose()
    return url


def batches(post: CommandPost, total: int, size: int, seed: int) -> list[list[Reading]]:
    """Readings of every gas detector, temperature and wind station, below their first tier."""
    sensors = list(post.model(DEMO_ID).sensors.values())
    rng = np.random.default_rng(seed)
    out = []
    for start in range(0, total, size):
        picks = rng.integers(0, len(sensors), min(size, total - start))
        batch = []
        for i in picks:
            sensor = sensors[int(i)]
            low = min(t for t in sensor.thresholds if t is not None)
            value = float(np.clip(rng.normal(0.15, 0.05) * low, 0, 0.5 * low))
            direction = float(rng.uniform(0, 360)) if sensor.kind == "wind" else None
            batch.append(Reading(sensor.id, round(value, 2), direction))
        out.append(batch)
    return out


def run(
    post: CommandPost, clock: ManualClock, work: list[list[Reading]], per_s: int
) -> tuple[float, float, float]:
    """Seconds to take ``work`` through the readings path with the health hook and without
    it (each batch both ways, in alternating order, so that load on the machine falls on
    both alike), and the hook's own seconds inside the first; the post ticks each simulated
    second."""
    hook = post.health.observe
    inside = [0.0]

    def timed(*args: Any, **kwargs: Any) -> list[LoggedEvent]:
        started = time.perf_counter()
        try:
            return hook(*args, **kwargs)
        finally:
            inside[0] += time.perf_counter() - started

    def no_health(*_: object, **__: object) -> list[LoggedEvent]:
        return []

    step = len(work[0]) / per_s
    on = off = 0.0
    since_tick = 0.0
    for i, batch in enumerate(work):
        clock.advance(step)
        for health in (True, False) if i % 2 == 0 else (False, True):
            post.health.observe = timed if health else no_health  # type: ignore[method-assign]
            started = time.perf_counter()
            post.readings(DEMO_ID, batch, actor="bench-gateway")
            took = time.perf_counter() - started
            if health:
                on += took
            else:
                off += took
        since_tick += step
        if since_tick >= 1.0:
            post.health.tick()
            since_tick = 0.0
    post.health.observe = hook  # type: ignore[method-assign]
    return on, off, inside[0]


def core(detectors: int, total: int, size: int, rounds: int) -> tuple[float, float]:
    """The checks alone on ``detectors`` synthetic %LEL detectors: seconds per ``total``
    readings (in batches of ``size``, 10,000 a simulated second, over two simulated hours, so
    that hourly baselines close and drift fits run too) and per tick (the stale check)."""
    sensors = {
        f"D-{i:05d}": Sensor(f"D-{i:05d}", "gas", "LEL", (10.0, 25.0, 50.0), None, "%LEL")
        for i in range(detectors)
    }
    health = SiteHealth(sensors)
    rng = np.random.default_rng(5)
    per_round: list[float] = []
    at = 0.0
    for _ in range(rounds):
        work = [
            (
                rng.integers(0, detectors, size),
                np.round(np.clip(rng.normal(0.3, 0.4, size), 0, None), 1),
            )
            for _ in range(total // size)
        ]
        started = time.perf_counter()
        for rows, values in work:
            at += 7200.0 / (rounds * total / size)
            health.observe(rows, values, at)
        per_round.append(time.perf_counter() - started)
    started = time.perf_counter()
    for _ in range(100):
        health.tick(at)
    return statistics.median(per_round), (time.perf_counter() - started) / 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--readings", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--detectors", type=int, default=1000)
    args = parser.parse_args()
    per_10k = 10_000 / args.readings
    with tempfile.TemporaryDirectory() as folder:
        url = prepare(Path(folder))
        clock = ManualClock()
        app = create_app(Settings(database_url=url), clock=clock, ticking=False)
        with TestClient(app):
            post: CommandPost = app.state.post
            run(post, clock, batches(post, args.readings, args.batch, 0), args.readings)  # warm
            rounds = [
                run(post, clock, batches(post, args.readings, args.batch, i + 1), args.readings)
                for i in range(args.rounds)
            ]
            flags = sum(len(post.health.flags(DEMO_ID, s)) for s in post.model(DEMO_ID).sensors)
    on, off, hook_s = (statistics.median(r[k] * per_10k for r in rounds) for k in range(3))
    print(f"readings: {args.readings} per round in batches of {args.batch}, {args.rounds} rounds")
    print(f"readings path with health:    {on * 1000:8.1f} ms per 10,000 readings")
    print(f"readings path without health: {off * 1000:8.1f} ms per 10,000 readings")
    print(
        f"difference:                   {(on - off) * 1000:8.1f} ms ({(on / off - 1) * 100:+.1f} %)"
    )
    print(f"the hook, timed inside:       {hook_s * 1000:8.1f} ms per 10,000 readings")
    print(f"hook / readings path with:    {hook_s / on:8.3f}")
    print(f"health flags raised at the end (expected 0): {flags}")
    checks, tick = core(args.detectors, 10_000, args.batch, args.rounds)
    print(
        f"the checks alone, {args.detectors} detectors: {checks * 1000:.1f} ms per 10,000 "
        f"readings, {tick * 1000:.2f} ms per tick"
    )


if __name__ == "__main__":
    main()
