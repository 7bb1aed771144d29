"""Plan engine benchmark: many concurrent runs, the clock ticking once a second.

Run: ``.venv/bin/python -m benchmarks.bench_plans [--runs 200] [--steps 50] [--hours 1]``. Prints
the figures recorded in docs/benchmarks.md.

Each run is one activation of a 50-step plan, half at L4, the rest at L1 to L3, all in the
same second: the worst case, since the same steps of every run then fall due together. Steps
fall due from 1 minute to 1 hour, in chains of dependencies. Responders act as the hour goes on:
every second a few steps somewhere are acknowledged, started or completed, and the rest go
overdue. A tick is
what the server does each second: fire every due time that has passed across all runs (the
scheduler), plus that second's commands. The peer in the same run is the plain way: every tick,
look at every step of every run for a passed due time.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from typing import Any

from plans.clock import ManualClock
from plans.engine import FINISHED, Actor, PlanRun, Scheduler, Status
from plans.model import Level, template_from_data

ROLES = ("incident_commander", "shift_leader", "fire_team", "muster_warden", "medic")
EVERYONE = Actor("bench", frozenset(ROLES))


def template_data(steps: int) -> dict[str, Any]:
    per_level = steps // 4
    levels: dict[str, Any] = {}
    n = 0
    for li, level in enumerate(("L1", "L2", "L3", "L4")):
        out = []
        for _ in range(per_level + (steps % 4 if li == 3 else 0)):
            within = 60 + (n * 3547) % 3540  # spread over the hour
            deps = [f"s{n - 1}"] if n % 5 and n > 0 else []
            out.append(
                {
                    "id": f"s{n}",
                    "title": f"step {n}",
                    "role": ROLES[n % len(ROLES)],
                    "target": {"within_s": within},
                    "depends_on": deps,
                }
            )
            n += 1
        levels[level] = {"steps": out}
    # Dependencies never fall due after the steps that wait for them.
    due: dict[str, int] = {}
    for lv in levels.values():
        for s in lv["steps"]:
            floor = max([due[d] for d in s["depends_on"]], default=0)
            s["target"]["within_s"] = max(s["target"]["within_s"], floor)
            due[s["id"]] = s["target"]["within_s"]
    return {
        "id": "bench",
        "title": "Benchmark plan",
        "scenario": {"key": "bench", "hazard": "other"},
        "lead_departments": ["Safety"],
        "command_role": "incident_commander",
        "roles": [{"id": r, "name": r} for r in ROLES],
        "levels": levels,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--actions-per-second", type=float, default=2.0)

    args = parser.parse_args()

    template = template_from_data(template_data(args.steps))
    clock = ManualClock()
    scheduler = Scheduler(clock)
    levels = list(Level)
    start = time.perf_counter()
    for i in range(args.runs):
        run = PlanRun.activate(
            clock,
            run_id=f"run-{i}",
            template=template,
            template_version=1,
            level=Level.L4 if i % 2 else levels[i % 4],
            actor=EVERYONE,
        )
        scheduler.add(run)
    activate_ms = (time.perf_counter() - start) * 1000
    runs = list(scheduler.runs.values())
    total_steps = sum(len(r.state.steps) for r in runs)
    rng = random.Random(42)

    tick_ms: list[float] = []
    command_ms: list[float] = []
    overdue = commands = 0
    fired_per_tick: list[int] = []
    for _ in range(int(args.hours * 3600)):
        clock.advance(1)
        t0 = time.perf_counter()
        fired = len(scheduler.tick())
        t1 = time.perf_counter()
        overdue += fired
        fired_per_tick.append(fired)
        for _ in range(rng.randint(0, int(2 * args.actions_per_second))):
            run = rng.choice(runs)
            movable = [s for s in run.state.steps.values() if s.status not in FINISHED]
            if not movable:
                continue
            step = rng.choice(movable)
            action = {
                Status.READY: run.acknowledge,
                Status.ACKNOWLEDGED: run.start,
                Status.IN_PROGRESS: run.complete,
            }.get(step.status)
            if action is not None:
                action(step.id, EVERYONE)
                scheduler.watch(run)
                commands += 1
        t2 = time.perf_counter()
        tick_ms.append((t1 - t0) * 1000)
        command_ms.append((t2 - t1) * 1000)

    # The plain peer: scan every step of every run each second (on the final state).
    plain_ms = []
    for _ in range(200):
        t0 = time.perf_counter()
        now = clock.now()
        _ = [
            s
            for r in runs
            for s in r.state.steps.values()
            if s.due_at is not None and s.due_at <= now and s.status not in FINISHED
        ]
        plain_ms.append((time.perf_counter() - t0) * 1000)

    def pct(values: list[float], q: float) -> float:
        return sorted(values)[min(len(values) - 1, int(q * len(values)))]

    print(
        f"{args.runs} runs x {args.steps} steps ({total_steps} steps active), "
        f"{len(tick_ms)} one-second ticks; activation of all runs {activate_ms:.1f} ms"
    )
    print(
        f"scheduler tick: median {statistics.median(tick_ms) * 1000:.1f} us, "
        f"p99 {pct(tick_ms, 0.99) * 1000:.1f} us, max {max(tick_ms):.2f} ms; "
        f"{overdue} overdue events fired"
    )
    per_tick = [a + b for a, b in zip(tick_ms, command_ms, strict=True)]
    print(
        f"tick + that second's commands: median {statistics.median(per_tick):.3f} ms, "
        f"p99 {pct(per_tick, 0.99):.3f} ms, max {max(per_tick):.2f} ms; {commands} commands"
    )
    plain = statistics.median(plain_ms)
    ratio = plain / max(statistics.median(tick_ms), 1e-6)
    print(
        f"plain scan of every step each tick: {plain:.3f} ms "
        f"(ratio to the scheduler's median tick {ratio:.0f}x)"
    )
    busiest = max(range(len(fired_per_tick)), key=fired_per_tick.__getitem__)
    each = tick_ms[busiest] * 1000 / max(fired_per_tick[busiest], 1)
    print(
        f"busiest tick: {fired_per_tick[busiest]} due times at once, "
        f"{tick_ms[busiest]:.2f} ms ({each:.1f} us each)"
    )


if __name__ == "__main__":
    main()
