"""Positions against geofences: 5,000 positions a second against 500 fences, through the
command post in process, on the demo site (430 people) in a temporary SQLite file.

Run: ``.venv/bin/python -m benchmarks.bench_fences [--fences 500] [--batches 300]``.

The same batches of 100 positions (a random walk of the demo's people, about one in five
crossing a fence edge each batch) go through ``CommandPost.positions`` twice in one run: first
with no fence at all (the positions path as it was), then with entry rules on every demo zone
and temporary fences (hot-work areas and crane swing radii) up to ``--fences``. Reported: the
time per batch each way, the positions a second that makes, the ratio, and the breaches logged.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import shapely

from command.hub import Hub
from command.monitoring.fence_rules import parse_rules
from command.post import CommandPost
from command.site_model import SiteModels
from gis.errors import InvalidInput
from gis.site_bundle import load_bundle
from gis.storage.db import Database, make_engine, upgrade
from plans.clock import ManualClock

ROOT = Path(__file__).resolve().parent.parent
DEMO_SITE = ROOT / "fixtures" / "demo-site"
DEMO_ID = "demo-works"
BATCH = 100


def walks(
    model_xy: np.ndarray, batches: int, rng: np.random.Generator
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per batch: the rows of the people who move and where to (a few metres each)."""
    xy = model_xy.copy()
    out = []
    for _ in range(batches):
        rows = rng.choice(len(xy), size=min(BATCH, len(xy)), replace=False)
        xy[rows] += rng.normal(0, 6e-5, (len(rows), 2))  # about 6 m a step
        out.append((rows, xy[rows].copy()))
    return out


def run_batches(
    post: CommandPost, clock: ManualClock, ids: list[str], plan: list[tuple[np.ndarray, np.ndarray]]
) -> list[float]:
    out = []
    for rows, where in plan:
        clock.advance(timedelta(milliseconds=20))
        moves = {
            ids[int(r)]: (float(x), float(y), None) for r, (x, y) in zip(rows, where, strict=True)
        }
        start = time.perf_counter()
        post.positions(DEMO_ID, moves)
        out.append((time.perf_counter() - start) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fences", type=int, default=500)
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument(
        "--storm",
        action="store_true",
        help="the temporary fences keep their kinds' rules (nobody in a crane's radius, a "
        "hot-work certificate in a hot-work area): most entries are breaches, each logged",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'bench.db'}"
        engine = make_engine(url)
        upgrade(engine)
        db = Database(engine)
        load_bundle(db, DEMO_SITE, actor="bench")
        clock = ManualClock(datetime.now(UTC))
        post = CommandPost(db, Hub(), clock, SiteModels(db))
        model = post.model(DEMO_ID)
        ids = list(model.person_ids)
        rng = np.random.default_rng(42)
        plan = walks(model.person_lonlat, args.batches, rng)
        back = [(rows, model.person_lonlat[rows].copy()) for rows, _ in plan]
        bare = run_batches(post, clock, ids, plan)
        run_batches(post, clock, ids, back[:1])  # warm again

        start = time.perf_counter()
        zones = [str(f["id"]) for f in model.layers["zones"]]
        # Quiet: every fence watched (who is inside, for how long), nobody breaching.
        watched = {"max_occupancy": 10_000, "max_stay_s": 86_400}
        rules_on = watched
        for zone_id in zones:
            post.fences.put_rules(DEMO_ID, zone_id, parse_rules(rules_on), None, actor="bench")
        x0, y0, x1, y1 = model.site.boundary.bounds
        made = len(zones)
        while made < args.fences:
            cx, cy = rng.uniform(x0, x1), rng.uniform(y0, y1)
            if not model.site.boundary.contains(shapely.Point(cx, cy)):
                continue
            if made % 2:
                body = {
                    "kind": "crane_swing",
                    "name": f"crane {made}",
                    "centre": [cx, cy],
                    "radius_m": float(rng.uniform(10, 40)),
                    "expires_in_s": 86400,
                    **({} if args.storm else {"rules": watched}),
                }
            else:
                box = shapely.box(cx - 2e-4, cy - 2e-4, cx + 2e-4, cy + 2e-4)
                body = {
                    "kind": "hot_work",
                    "name": f"hot work {made}",
                    "geometry": shapely.geometry.mapping(box),
                    "expires_in_s": 86400,
                    **({} if args.storm else {"rules": watched}),
                }
            try:
                post.fences.add_temporary(DEMO_ID, body, actor="bench")
            except InvalidInput:  # a hot-work box over the site's edge: another one
                continue
            made += 1
        setup_s = time.perf_counter() - start
        fenced_count = len(post.fences.fences(DEMO_ID))
        before = len(post.fences.site(DEMO_ID).open)
        # The hook's own time, batch by batch (what the fences add to the positions path).
        hook: list[float] = []
        check = post.fences.positions

        def timed_check(*args: Any, **kwargs: Any) -> list[Any]:
            start = time.perf_counter()
            try:
                return check(*args, **kwargs)
            finally:
                hook.append((time.perf_counter() - start) * 1000)

        post.fences.positions = timed_check  # type: ignore[method-assign]
        fenced = run_batches(post, clock, ids, plan)
        # The peer again, in the state the run is in now (a longer log, more objects for the
        # collector): the same batches with the fence check switched off.
        post.fences.positions = lambda *args, **kwargs: []  # type: ignore[method-assign]
        again = run_batches(post, clock, ids, plan)
        post.fences.positions = check  # type: ignore[method-assign]
        breaches = len(post.fences.site(DEMO_ID).open) - before

        # The fence check alone, on the same batches.
        state = post.fences.site(DEMO_ID)
        alone = []
        for _rows, where in plan[:100]:
            points = shapely.points(where)
            start = time.perf_counter()
            state.tree.query(points, predicate="intersects")
            alone.append((time.perf_counter() - start) * 1000)

    med_bare, med_fenced = statistics.median(bare), statistics.median(fenced)
    p99 = float(np.percentile(fenced, 99))
    print(
        f"people {len(ids)}, fences {fenced_count} ({len(zones)} zones with rules), "
        f"set up in {setup_s:.1f} s"
    )
    print(f"batches of {BATCH} positions, {args.batches} batches each way")
    print(
        f"positions, no fence:   median {med_bare:.2f} ms a batch "
        f"({BATCH / med_bare * 1000:,.0f} positions/s)"
    )
    print(
        f"positions, {fenced_count} fences: median {med_fenced:.2f} ms a batch, p99 {p99:.2f} ms "
        f"({BATCH / med_fenced * 1000:,.0f} positions/s); ratio {med_fenced / med_bare:.2f} x"
    )
    med_hook = statistics.median(hook)
    med_again = statistics.median(again)
    print(
        f"positions, fences switched off again: median {med_again:.2f} ms a batch; the fenced "
        f"pass is {med_fenced / med_again:.2f} x this peer"
    )
    print(
        f"the fence check within it: median {med_hook:.2f} ms a batch, p99 "
        f"{float(np.percentile(hook, 99)):.2f} ms ({BATCH / med_hook * 1000:,.0f} positions/s "
        f"for the check alone); bare path plus the check: "
        f"{(med_bare + med_hook) / med_bare:.2f} x the bare path"
    )
    print(f"breaches logged while walking: {breaches}")
    print(f"STRtree query of one batch alone: median {statistics.median(alone):.3f} ms")


if __name__ == "__main__":
    main()
