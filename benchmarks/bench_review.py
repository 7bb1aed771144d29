"""After-action review benchmark: a 2-hour drill of 5,000 events, reviewed with its maps.

Run: ``.venv/bin/python -m benchmarks.bench_review [--events 5000] [--hours 2] [--winds 3]
[--repeat 3]``. Prints the figures recorded in docs/benchmarks.md.

The drill is built on the demo site through the command post in process, on a manual clock:
a chlorine release activated at L2, escalated to L3 after 20 minutes, its steps worked through
as the two hours go on (some late), call-outs acknowledged, the wind turning ``--winds`` times
(real wind station readings, each re-evaluating the plume), people walking to the muster points
(real position batches: who enters and leaves the zones is logged), the muster warden's
headcounts, notes by players. The drill's own events (``drill.started``, injects, expected
actions met and missed, evaluator notes, a hold) are appended as the drill desk logs them. The
log is topped up with evaluator and player notes to ``--events`` events.

Timed, ``--repeat`` times each (the median counts):
1. **generate**: :func:`command.reviews.generate_review`: the events read from the log, the
   review built, the threat zones of every situation map recomputed, the review stored;
2. **export**: the printable document, every map drawn twice (PNG for print, folium HTML for
   the screen).
The target is 2 s for both together ("generated in under 2 s, maps included").
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from command import events as event_log
from command.auth import Role
from command.hub import Hub
from command.incidents import ActivationRequest
from command.post import CommandPost, actor_for
from command.reviews import export_html, generate_review, get_review
from command.sensors import Reading
from command.site_model import SiteModels
from gis.storage.db import Database, make_engine
from plans.clock import ManualClock
from plans.engine import FINISHED, PlanRun, Status
from tests.conftest import CHLORINE_ACTIVATION, DEMO_ID, TEST_START, site_database

TARGET_S = 2.0
DRILL = "drill-bench"
WIND_STATION = "S-077"


def timed(fn: Callable[[], Any], repeat: int) -> tuple[list[float], list[float], Any]:
    """Wall-clock and CPU seconds of each run, and the last result. The CPU time is the
    figure to compare on a machine other work is loading."""
    walls, cpus, result = [], [], None
    for _ in range(repeat):
        start, cpu = time.perf_counter(), time.process_time()
        result = fn()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
    return walls, cpus, result


def build_drill(db: Database, post: CommandPost, clock: ManualClock, args: Any) -> str:
    """The drill's events, through the post where a real input exists; its incident's id."""
    request = ActivationRequest.model_validate(CHLORINE_ACTIVATION)
    incident, _ = post.activate(DEMO_ID, request, actor="cmd-bench")
    start = clock.now()
    template = post.incidents[incident].run.state.template
    commander = actor_for("cmd-bench", frozenset({Role.COMMANDER}), template)

    def drill(event_type: str, **data: Any) -> None:
        with db.write() as session:
            event_log.append(
                session,
                DEMO_ID,
                event_type,
                actor=f"drill:{DRILL}",
                data={"drill_id": DRILL, **data},
                incident_id=incident,
                at=clock.now(),
            )

    expected = [
        {
            "id": f"x{i}",
            "title": f"Expected action {i}",
            "target_s": 300 * (i + 1),
            "deadline_s": 300 * (i + 1) + 600,
            "on_miss": [f"c{i}"],
        }
        for i in range(10)
    ]
    drill(
        "drill.started",
        scenario_id="bench",
        scenario_version=1,
        title="Benchmark drill",
        mode="announced",
        window=None,
        plan_id="chlorine-leak",
        level="L2",
        expected=expected,
        injects=[
            {"id": f"c{i}", "kind": "message", "at_s": None, "title": "contingency"}
            for i in range(10)
        ],
    )
    seconds = args.hours * 3600
    winds = {
        int(seconds * (k + 1) / (args.winds + 2)): 45 + 40 * (k + 1) for k in range(args.winds)
    }
    model = post.model(DEMO_ID)
    rng = np.random.default_rng(42)
    muster = np.array(next(iter(model.muster_areas.values())).centroid.coords[0])
    people = np.asarray(model.person_lonlat).copy()
    elapsed = 0
    tick = 10
    escalated = False
    while elapsed < seconds:
        clock.advance(tick)
        elapsed += tick
        post.tick()
        run = post.incidents[incident].run
        if not escalated and elapsed >= 1200:
            post.command(DEMO_ID, incident, lambda r: r.escalate(commander, reason="bench"))
            escalated = True
            continue
        if elapsed in winds:  # a wind station's reading: the plume turns
            post.readings(
                DEMO_ID, [Reading(WIND_STATION, 3.0, float(winds[elapsed]))], actor="bench"
            )
        if elapsed <= 1800 and elapsed % 20 == 0:  # everyone walks to a muster point
            share = min(elapsed / 1800, 1.0)
            batch = rng.choice(len(people), size=40, replace=False)
            moved = people[batch] + (muster - people[batch]) * share
            post.positions(
                DEMO_ID,
                {
                    model.person_ids[int(i)]: (float(x), float(y), None)
                    for i, (x, y) in zip(batch, moved, strict=True)
                },
            )
        if elapsed % 60 == 0:  # a step moves on, often late
            _next_step(post, incident, run, commander)
        if elapsed % 600 == 0:
            i = elapsed // 600 - 1
            if i < len(expected):
                if i % 3:
                    drill(
                        "drill.action_met",
                        expected_id=f"x{i}",
                        title=f"Expected action {i}",
                        target_s=300 * (i + 1),
                        actual_s=elapsed,
                        by="cmd-bench",
                        deviation_s=elapsed - 300 * (i + 1),
                        seq=0,
                    )
                else:
                    drill(
                        "drill.action_missed",
                        expected_id=f"x{i}",
                        title=f"Expected action {i}",
                        deadline_s=300 * (i + 1) + 600,
                        contingencies=[f"c{i}"],
                        drill_s=elapsed,
                    )
                    drill(
                        "drill.inject",
                        inject_id=f"c{i}",
                        kind="message",
                        title="contingency",
                        at_s=elapsed,
                        planned_s=None,
                        contingency_for=f"x{i}",
                        early=False,
                        seqs=[],
                    )
        if elapsed == 3600:
            drill("drill.held", reason="bench hold", drill_s=elapsed)
            clock.advance(120)
            drill("drill.resumed", reason=None, drill_s=elapsed)
    with db.read() as session:
        count = len(event_log.since(session, DEMO_ID, 0, incident_id=incident))
    # Topped up with notes: evaluators' and players', spread over the drill.
    top_up = max(args.events - count - 3, 0)
    at = start
    step_s = seconds / max(top_up, 1)
    drafts = []
    for n in range(top_up):
        at = start + timedelta(seconds=n * step_s)
        drafts.append(
            event_log.Draft(
                "drill.note",
                "dc-bench",
                {"drill_id": DRILL, "text": f"observation {n}: 观察记录", "drill_s": n},
                incident,
                at,
            )
        )
    with db.write() as session:
        event_log.append_many(session, DEMO_ID, drafts)
    drill("drill.ended", aborted=False, reason="bench over", drill_s=seconds)
    post.stand_down(DEMO_ID, incident, commander, force=True, reason="bench over")
    return incident


def _next_step(post: CommandPost, incident: str, run: PlanRun, actor: Any) -> None:
    """Move the first open step one stage on (a headcount reports everyone)."""
    state = next(
        (
            s
            for s in run.state.steps.values()
            if not s.withdrawn and s.status not in FINISHED and s.status != Status.WAITING
        ),
        None,
    )
    if state is None:
        return
    step_id = state.id
    done = next(s for _, s in run.state.template.steps() if s.id == step_id).done_when
    value = 430 if done.kind == "value" else None
    reference = "bench" if done.kind == "action" else None
    if state.status == Status.READY:
        post.command(DEMO_ID, incident, lambda r: r.acknowledge(step_id, actor))
    elif state.status == Status.ACKNOWLEDGED:
        post.command(DEMO_ID, incident, lambda r: r.start(step_id, actor))
    else:
        post.command(
            DEMO_ID,
            incident,
            lambda r: r.complete(step_id, actor, value=value, reference=reference),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--hours", type=float, default=2.0)
    parser.add_argument("--winds", type=int, default=3, help="wind changes during the drill")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        url = site_database(Path(tmp) / "bench.db")
        db = Database(make_engine(url))
        clock = ManualClock(TEST_START)
        post = CommandPost(db, Hub(), clock, SiteModels(db))
        built = time.perf_counter()
        incident = build_drill(db, post, clock, args)
        model = post.model(DEMO_ID)
        roles = frozenset({Role.DRILL_CONTROLLER})
        generate = lambda: generate_review(db, model, DEMO_ID, incident, now=clock.now())  # noqa: E731
        gen_wall, gen_cpu, _ = timed(generate, args.repeat)
        review = get_review(db, DEMO_ID, incident, roles, now=clock.now())
        export_wall, export_cpu, page = timed(lambda: export_html(db, model, review), args.repeat)
        print(
            f"drill: {review['source']['events']} events over "
            f"{review['duration_s'] / 3600:.1f} h (built in {time.perf_counter() - built:.0f} s)"
            f"; {len(review['steps'])} steps, {len(review['actions'])} expected actions, "
            f"{len(review['callout']['roles'])} roles called, "
            f"{len(review['deviations'])} deviations, {len(review['maps'])} maps "
            f"({', '.join(m['id'] for m in review['maps'])})"
        )
        median = statistics.median
        for label, walls, cpus in (
            ("generate (log read, review built, map zones, stored)", gen_wall, gen_cpu),
            ("export (printable HTML, every map as PNG and folium HTML)", export_wall, export_cpu),
        ):
            print(
                f"{label}: median {median(walls):.3f} s wall (min {min(walls):.3f}, max "
                f"{max(walls):.3f}, n={args.repeat}), {median(cpus):.3f} s CPU"
            )
        print(f"printable document: {len(page) / 1e6:.1f} MB")
        wall = median(gen_wall) + median(export_wall)
        cpu = median(gen_cpu) + median(export_cpu)
        print(
            f"generated with maps drawn: {wall:.3f} s wall ({cpu:.3f} s CPU)   target "
            f"{TARGET_S:.1f} s   ratio {wall / TARGET_S:.2f} of the target "
            f"({cpu / TARGET_S:.2f} by CPU time)"
        )


if __name__ == "__main__":
    main()
