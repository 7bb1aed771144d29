"""Wristband positions at 5,000 a second with accuracy and jitter filtering, through the
command post in process, on the synthetic site (5,000 people), against the same path with the
filter taken out.

Run: ``.venv/bin/python -m benchmarks.bench_wristbands [--edges 20000] [--people 5000]
[--seconds 5]``.

Every person walks at 1.2 m/s on a straight line, and their band reports a fix with a 5 m
accuracy and up to 4 m of noise: most fixes are jitter (held), the rest moves. Batches
of 100, alternating between the path with the filter and the same path with the filter
replaced by a pass-through, so that the ratio holds on a noisy machine; each path gets 5,000
positions a second. The position samples (the daily report's) are stored once a second.
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bench_command import prepare
from command.hub import Hub
from command.monitoring import wristbands as bands
from command.monitoring.wristbands import Moves
from command.post import CommandPost
from command.site_model import SiteModels
from gis.storage.db import Database, make_engine
from plans.clock import ManualClock


def run(url: str, site_id: str, seconds: float) -> list[str]:
    db = Database(make_engine(url))
    clock = ManualClock(datetime.now(UTC))
    post = CommandPost(db, Hub(), clock, SiteModels(db))
    model = post.model(site_id)
    people = model.person_ids
    n = len(people)
    crs = model.site.crs
    start_xy = crs.transform_xy(model.person_lonlat.astype(np.float64))
    rng = np.random.default_rng(7)
    heading = rng.uniform(0, 2 * math.pi, n)
    inverse = crs.metric  # metric -> lon/lat for each fix
    from pyproj import Transformer

    to_wgs = Transformer.from_crs(inverse, "EPSG:4326", always_xy=True)
    batches = int(seconds / 0.02)

    def batch(b: int, t: float) -> Moves:
        rows = rng.choice(n, 100, replace=False)
        walked = 1.2 * t
        x = start_xy[rows, 0] + np.cos(heading[rows]) * walked + rng.uniform(-4, 4, 100)
        y = start_xy[rows, 1] + np.sin(heading[rows]) * walked + rng.uniform(-4, 4, 100)
        lon, lat = to_wgs.transform(x, y)
        moves = Moves()
        for k, row in enumerate(rows.tolist()):
            moves[people[row]] = (float(lon[k]), float(lat[k]), None)
            moves.accuracy[people[row]] = 5.0
        return moves

    real_take = post.wristbands.take
    take_ms: list[float] = []

    def passthrough(site: Any, zones: Any, known: Any, timed: Any, accuracy: Any) -> bands.Taken:
        return bands.Taken(dict(timed), {}, [])

    def timed_take(site: Any, zones: Any, known: Any, timed: Any, accuracy: Any) -> bands.Taken:
        start = time.perf_counter()
        taken = real_take(site, zones, known, timed, accuracy)
        take_ms.append((time.perf_counter() - start) * 1000)
        return taken

    # Warm-up: the caches, and every person's first fix (their anchor).
    post.wristbands.take = timed_take  # type: ignore[method-assign]
    t0 = clock.now()
    for b in range(n // 100):
        clock.advance(timedelta(milliseconds=20))
        post.positions(site_id, batch(b, 0.0))
    post.save_samples()
    take_ms.clear()
    # Measured: the batches alternate between the two paths (the same machine, the same
    # moment), each path getting 5,000 positions a second.
    times: dict[bool, list[float]] = {False: [], True: []}
    held: dict[str, int] = {}
    saved: list[int] = []
    save_ms: list[float] = []
    for b in range(2 * batches):
        filtering = b % 2 == 1
        post.wristbands.take = timed_take if filtering else passthrough  # type: ignore[method-assign]
        clock.advance(timedelta(milliseconds=10))
        moves = batch(b, (clock.now() - t0).total_seconds())
        start = time.perf_counter()
        answer = post.positions(site_id, moves)
        times[filtering].append((time.perf_counter() - start) * 1000)
        for kind, count in answer["held"].items():
            held[kind] = held.get(kind, 0) + count
        if b % 100 == 99:  # once a second, as the app's ticker does
            start = time.perf_counter()
            saved.append(post.save_samples())
            save_ms.append((time.perf_counter() - start) * 1000)
    out = [f"synthetic site: {n} people; {batches} batches of 100 per path, alternating"]
    for label, values in (("without filtering", times[False]), ("with filtering", times[True])):
        busy = sum(values) / 1000
        out.append(
            f"{label}: per batch median {statistics.median(values):.2f} ms "
            f"(p95 {np.percentile(values, 95):.2f}, max {max(values):.2f}); busy {busy:.2f} s "
            f"for {batches * 0.02:.2f} s of positions at 5,000/s "
            f"({busy / (batches * 0.02):.2f} of capacity)"
        )
    ratio = statistics.median(times[True]) / statistics.median(times[False])
    total = batches * 100
    out.append(
        f"ratio with/without filtering (median per batch): {ratio:.2f} x; held "
        + ", ".join(f"{k} {v} ({v / total:.0%})" for k, v in sorted(held.items()))
    )
    out.append(
        f"the filter alone (accuracy, jitter, speed, zone, samples): per batch of 100 median "
        f"{statistics.median(take_ms):.2f} ms (p95 {np.percentile(take_ms, 95):.2f})"
    )
    out.append(
        f"position samples stored once a second: {sum(saved)} in {len(saved)} writes, "
        f"median {statistics.median(save_ms):.1f} ms each"
    )
    db.dispose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--edges", type=int, default=20_000)
    parser.add_argument("--people", type=int, default=5_000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--cache", type=Path, default=Path("var/bench-cache"))
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rallypoint-bench-wristbands-") as tmp:
        setup = prepare(Path(tmp), args.edges, args.people, args.cache)
        for note in setup.notes:
            print(note)
        for text in run(setup.url, setup.synthetic_id, args.seconds):
            print(text)


if __name__ == "__main__":
    main()
