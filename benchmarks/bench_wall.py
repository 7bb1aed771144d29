"""The map wall in Chromium while thousands of people move: main-thread time per websocket
message, and the first full picture after an activation.

Run: ``.venv/bin/python -m benchmarks.bench_wall [--people 5000] [--peer 500] [--seconds 20]
[--rate 4] [--profile] [--frontend DIR]``.

The server is the real app (``tests.live_server.LiveServer``) over a temporary SQLite file that
holds two generated sites with the demo works' layout: one with ``--people`` people, one with
``--peer`` people (the peer of the same run, so the ratio shows how the wall scales). Each has
the general evacuation plan (materials cut to the site's inventory) and a commander.

For each site, in turn: Debian's Chromium (headless, 1920x1080) signs in on ``/``, opens the
site from the list and waits for its snapshot. The commander then activates the plan through
the API at L2 with zones of 150, 400 and 800 m at the site's centre, which puts most people in
the zones; the wall draws a dot for each person who must move (on its people canvas,
``canvas.rp-people``, whose ``data-drawn`` counts them). Then every
person's position is posted ``--rate`` times a second for ``--seconds``
(``POST /api/sites/{site}/positions``): those who must move walk at 1.5 m/s towards their
muster point, the others shuffle by up to 0.3 m.

Measured in the page, without touching the app: an init script wraps ``WebSocket`` so that
every ``message`` listener call is timed with ``performance.now()`` (by message type) and
marked (``performance.mark``), and a ``PerformanceObserver`` records ``longtask`` entries. A
Chromium trace of the positions phase gives each update's main-thread time: the tasks from the
one that received a ``positions`` message to the next one's, which counts the style, layout
and paint that Chromium runs in tasks of their own after the listener. For the ``incident``
message: the time from the listener's start to the second ``requestAnimationFrame`` after it
(the picture painted). The pointer is kept off the map: Leaflet places the open tooltip of a
dot under it at every move, forcing a layout of every dot.

``--profile`` also prints the main thread's self time by trace event (script, style, layout,
paint) and the page's CPU profiles (Chrome DevTools Protocol) of the activation and of the
positions phase; the profiler slows the page, so a profiled run's figures are not the
benchmark's. ``--frontend DIR`` serves the page's files from ``DIR`` (for example the last
commit's, ``git archive HEAD frontend | tar -x -C /tmp/wall``) to compare two walls.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
from playwright.sync_api import (
    Browser,
    BrowserContext,
    CDPSession,
    Page,
    Route,
    sync_playwright,
)
from shapely.geometry import shape

from benchmarks.bench_command import FAST_HASHER, pct, synthetic_bodies, synthetic_plan
from command.auth import Role, create_user
from gis.site_bundle import load_bundle, write_bundle
from gis.sitegen import generate_site
from gis.storage.db import Database, make_engine, upgrade
from plans.store import approve_as_operator, create_plan, site_inventory
from tests.live_server import LiveServer

CHROMIUM = Path("/usr/bin/chromium")
USERNAME = "wall-bench"
PASSWORD = "correct horse battery"
WAIT_MS = 60_000
WALK_M_S = 1.5  # people who must move walk to their muster point at this speed
SHUFFLE_M = 0.3  # the others move up to this far per update
M_PER_DEG_LAT = 111_320.0
TARGET_MESSAGE_MS = 16.0
TARGET_PICTURE_MS = 1000.0
TRACE_CATEGORIES = [
    "devtools.timeline",
    "disabled-by-default-devtools.timeline",
    "blink.user_timing",
]

# Runs before the app's modules. It wraps every 'message' listener of every WebSocket (and the
# onmessage property) to time it; nothing else of the page is changed.
PROBE = """
(() => {
  const rec = (window.__wallBench = {
    phase: "open", messages: [], longtasks: [],
  });
  const kindOf = (data) => {
    if (typeof data !== "string") return "binary";
    const m = /"type"\\s*:\\s*"([a-z_]+)"/.exec(data.slice(0, 200));
    return m ? m[1] : "other";
  };
  const timed = (listener) =>
    function (event) {
      // The mark shows in a Chromium trace too, where it finds the task of the message.
      const kind = kindOf(event.data);
      const start = performance.mark(`wall-bench:${kind}`).startTime;
      try {
        return typeof listener === "function"
          ? listener.call(this, event)
          : listener.handleEvent(event);
      } finally {
        const end = performance.now();
        const data = event.data;
        const entry = {
          kind, phase: rec.phase, start, end,
          bytes: typeof data === "string" ? data.length : 0,
        };
        rec.messages.push(entry);
        if (entry.kind === "incident") {
          // Painted: two frames after the listener, and the people canvas (painted by its
          // worker, off the main thread) showing dots.
          const canvas = document.querySelector("canvas.rp-people");
          const dots = () => Number(canvas?.dataset.drawn || 0)
            + document.querySelectorAll(".rp-person").length;
          const done = () => {
            entry.painted = performance.now();
            entry.dots = dots();
          };
          requestAnimationFrame(() =>
            requestAnimationFrame(() => {
              if (!canvas || dots() > 0) return done();
              const seen = new MutationObserver(() => {
                if (dots() > 0) {
                  seen.disconnect();
                  done();
                }
              });
              seen.observe(canvas, { attributes: true });
            }),
          );
        }
      }
    };
  const wrapped = new WeakMap();
  const proto = WebSocket.prototype;
  const add = proto.addEventListener;
  const remove = proto.removeEventListener;
  proto.addEventListener = function (type, listener, options) {
    if (type !== "message" || !listener) return add.call(this, type, listener, options);
    if (!wrapped.has(listener)) wrapped.set(listener, timed(listener));
    return add.call(this, type, wrapped.get(listener), options);
  };
  proto.removeEventListener = function (type, listener, options) {
    const inner = type === "message" && listener ? wrapped.get(listener) || listener : listener;
    return remove.call(this, type, inner, options);
  };
  const onmessage = Object.getOwnPropertyDescriptor(proto, "onmessage");
  Object.defineProperty(proto, "onmessage", {
    configurable: true,
    get() { return onmessage.get.call(this); },
    set(fn) { onmessage.set.call(this, typeof fn === "function" ? timed(fn) : fn); },
  });
  const observe = (type, keep) => {
    try {
      new PerformanceObserver((list) => list.getEntries().forEach(keep))
        .observe({ type, buffered: true });
    } catch {
      // not supported by this browser: the figure is reported as absent
    }
  };
  observe("longtask", (e) =>
    rec.longtasks.push({ start: e.startTime, duration: e.duration, phase: rec.phase }));
})();
"""


# -- the sites ----------------------------------------------------------------------------------


@dataclass
class Site:
    id: str
    people: int
    centre: tuple[float, float]
    person_xy: dict[str, tuple[float, float]]
    muster_xy: dict[str, tuple[float, float]]


def build_database(folder: Path, sizes: Sequence[int]) -> tuple[str, list[Site]]:
    """A migrated SQLite file with one generated site per size (the demo works' layout), each
    with the general evacuation plan, and a commander of every site; its URL and the sites."""
    url = f"sqlite:///{folder / 'wall.db'}"
    engine = make_engine(url)
    sites = []
    try:
        upgrade(engine)
        db = Database(engine)
        with db.write() as session:
            create_user(session, USERNAME, PASSWORD, [Role.COMMANDER], hasher=FAST_HASHER)
        for people in sizes:
            site_id = f"wall-{people}"
            site, layers = generate_site(
                people=people, site_id=site_id, name=f"Wall benchmark, {people} people"
            )
            bundle = folder / site_id
            write_bundle(bundle, site, layers)
            loaded, _ = load_bundle(db, bundle, actor="bench")
            with db.write() as session:
                inventory = site_inventory(session, loaded.id)
                made = create_plan(session, loaded.id, synthetic_plan(inventory), actor="bench")
                approve_as_operator(session, loaded.id, made.template.id, "bench")
            centre = shape(site["boundary"]).centroid
            musters = {
                str(f["id"]): (shape(f["geometry"]).centroid.x, shape(f["geometry"]).centroid.y)
                for f in layers["zones"]["features"]
                if f["properties"]["kind"] == "muster_point"
            }
            sites.append(
                Site(
                    loaded.id,
                    people,
                    (round(centre.x, 7), round(centre.y, 7)),
                    {
                        str(f["id"]): (
                            f["geometry"]["coordinates"][0],
                            f["geometry"]["coordinates"][1],
                        )
                        for f in layers["people"]["features"]
                    },
                    musters,
                )
            )
    finally:
        engine.dispose()
    return url, sites


# -- the page -----------------------------------------------------------------------------------


def serve_from(context: BrowserContext, base: str, frontend: Path) -> None:
    """The page's own files (``/`` and ``/static/``) read from ``frontend`` instead of the
    server's folder, with the server's headers (its Content-Security-Policy among them)."""

    def answer(route: Route) -> None:
        path = urlsplit(route.request.url).path
        name = "index.html" if path == "/" else path.removeprefix("/static/")
        local = (frontend / name).resolve()
        if not local.is_relative_to(frontend.resolve()) or not local.is_file():
            route.continue_()
            return
        route.fulfill(response=route.fetch(), body=local.read_bytes())

    context.route(base + "/", answer)
    context.route(base + "/static/**", answer)


def open_wall(browser: Browser, base: str, site_id: str, frontend: Path | None) -> Page:
    """A fresh page at ``/``, signed in, with the site open and its snapshot handled."""
    context = browser.new_context(viewport={"width": 1920, "height": 1080})
    context.add_init_script(PROBE)
    if frontend is not None:
        serve_from(context, base, frontend)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(base + "/")
    page.fill("#username", USERNAME)
    page.fill("#password", PASSWORD)
    page.click("#login-submit")
    page.click(f'button[data-site="{site_id}"]')
    # The pointer off the map: a dot under it has its tooltip open, and Leaflet places an open
    # tooltip (reading its size, so forcing a layout of every dot) whenever its dot moves.
    page.mouse.move(0, 0)
    page.wait_for_function("() => window.__wallBench.messages.some((m) => m.kind === 'snapshot')")
    page.wait_for_timeout(500)  # let the snapshot's frame settle before the activation
    return page


def set_phase(page: Page, phase: str) -> None:
    page.evaluate(f"window.__wallBench.phase = {phase!r}")


@dataclass
class MainThread:
    """The page's main thread while positions flow, from a Chromium trace."""

    updates: list[float]  # ms of work from each positions message until the next
    lines: list[str]


def main_thread(trace: bytes) -> MainThread:
    """Each position update's main-thread time (the tasks from the one that received its
    positions message until the next one's: the listeners, and the style, layout and paint
    after them, in whichever task Chromium ran them), and self time by trace event name."""
    events = json.loads(trace)["traceEvents"]
    mains = {
        (e["pid"], e["tid"])
        for e in events
        if e.get("ph") == "M" and e.get("args", {}).get("name") == "CrRendererMain"
    }
    spans = Counter((e["pid"], e["tid"]) for e in events if e.get("ph") == "X")
    main = max(mains, key=lambda k: spans[k])
    complete = sorted(
        (e for e in events if e.get("ph") == "X" and (e["pid"], e["tid"]) == main),
        key=lambda e: (e["ts"], -e.get("dur", 0)),
    )
    self_us: Counter[str] = Counter()  # microseconds
    top: list[tuple[int, int]] = []  # (start, duration) of the tasks, in microseconds
    marks = sorted(int(e["ts"]) for e in events if e.get("name") == "wall-bench:positions")
    stack: list[tuple[int, str, int]] = []  # (end, name, start) of the events open now
    for e in complete:
        ts, dur = int(e["ts"]), int(e.get("dur", 0))
        while stack and stack[-1][0] <= ts:
            stack.pop()
        if stack:
            self_us[stack[-1][1]] -= dur
        else:
            top.append((ts, dur))
        self_us[e["name"]] += dur
        stack.append((ts + dur, e["name"], ts))
    # From the task that received each positions message to the next one's.
    starts = [next((t for t, d in top if t <= m < t + d), m) for m in marks]
    bounds = [*starts, math.inf]
    updates = [
        sum(d for ts, d in top if bounds[i] <= ts < bounds[i + 1]) / 1000
        for i in range(len(starts))
    ]
    busy = sum(self_us.values()) / 1000
    lines = [f"  main thread (trace): {busy:.0f} ms in tasks; most self time:"]
    for name, us in self_us.most_common(10):
        lines.append(f"    {us / 1000:8.1f} ms  {us / 1000 / busy:5.1%}  {name}")
    return MainThread(updates, lines)


def cpu_profile(cdp: CDPSession, during: str) -> list[str]:
    """The page's CPU profile since ``Profiler.start``: the functions with the most self time."""
    profile = cdp.send("Profiler.stop")["profile"]
    nodes = {n["id"]: n for n in profile["nodes"]}
    self_ms: Counter[str] = Counter()
    for node_id, delta in zip(profile["samples"], profile["timeDeltas"], strict=True):
        frame = nodes[node_id]["callFrame"]
        where = frame["url"].rsplit("/", 1)[-1]
        name = frame["functionName"] or "(anonymous)"
        label = f"{name} {where}:{frame['lineNumber'] + 1}" if where else name
        self_ms[label] += delta / 1000
    busy = sum(v for k, v in self_ms.items() if k != "(idle)")
    lines = [f"  CPU profile of {during}: {busy:.0f} ms busy; most self time:"]
    for label, ms in self_ms.most_common(16):
        if label != "(idle)":
            lines.append(f"    {ms:8.1f} ms  {ms / busy:5.1%}  {label}")
    return lines


# -- the run ------------------------------------------------------------------------------------


def walkers(site: Site, picture: dict[str, Any]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Every person's id and position, and the direction they walk (degrees per metre, east
    and north): towards their muster point for those who must move; none for the others."""
    ids = sorted(site.person_xy)
    xy = np.array([site.person_xy[i] for i in ids], dtype=float)
    step = np.zeros_like(xy)
    row = {pid: k for k, pid in enumerate(ids)}
    lat0 = math.radians(site.centre[1])
    scale = np.array([M_PER_DEG_LAT * math.cos(lat0), M_PER_DEG_LAT])
    for person in picture["evacuation"]["people"]:
        target = site.muster_xy.get(str(person.get("muster")))
        if target is None or person["id"] not in row:
            continue
        k = row[person["id"]]
        metres = (np.array(target) - xy[k]) * scale
        length = float(np.hypot(*metres))
        if length > 1.0:
            step[k] = metres / length
    return ids, xy, step / scale  # unit directions in degrees per metre


def run_site(
    browser: Browser,
    server: LiveServer,
    auth: dict[str, str],
    site: Site,
    seconds: float,
    rate: float,
    profile: bool,
    frontend: Path | None,
) -> dict[str, Any]:
    """One site: open the wall, activate, post positions; what the page recorded, with the
    harness's own figures (POST times, updates skipped) and the trace's."""
    page = open_wall(browser, server.base, site.id, frontend)
    http = httpx.Client(base_url=server.base, headers=auth, timeout=60.0)
    try:
        cdp = page.context.new_cdp_session(page) if profile else None
        if cdp is not None:
            cdp.send("Profiler.enable")
            cdp.send("Profiler.setSamplingInterval", {"interval": 250})
            cdp.send("Profiler.start")
        set_phase(page, "activation")
        body = synthetic_bodies(site.centre)[0]  # L2, zones of 150, 400 and 800 m
        posted_at = time.time() * 1000
        answer = http.post(f"/api/sites/{site.id}/incidents", json=body)
        answer.raise_for_status()
        answered_ms = time.time() * 1000 - posted_at
        picture = answer.json()
        page.wait_for_function(
            "() => window.__wallBench.messages.some((m) => m.kind === 'incident' && m.painted)"
        )
        page.wait_for_timeout(1000)
        first_picture = cpu_profile(cdp, "the activation") if cdp is not None else []
        ids, xy, direction = walkers(site, picture)
        moving = direction.any(axis=1)
        rng = np.random.default_rng(42)
        lat0 = math.radians(site.centre[1])
        shuffle_deg = SHUFFLE_M / np.array([M_PER_DEG_LAT * math.cos(lat0), M_PER_DEG_LAT])
        if cdp is not None:
            cdp.send("Profiler.start")
        browser.start_tracing(page=page, categories=TRACE_CATEGORIES)
        set_phase(page, "positions")
        period = 1.0 / rate
        posts: list[float] = []
        late = 0  # updates not sent: the server was still answering the one before
        start = time.monotonic()
        for tick in range(int(seconds * rate)):
            wait = start + tick * period - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            elif -wait > period:
                late += 1
                continue
            xy = xy + direction * (WALK_M_S * period)
            jitter = rng.uniform(-1.0, 1.0, xy.shape) * shuffle_deg
            xy[~moving] += jitter[~moving]
            rows = [
                {"person_id": pid, "lon": round(float(x), 7), "lat": round(float(y), 7)}
                for pid, (x, y) in zip(ids, xy, strict=True)
            ]
            t0 = time.perf_counter()
            taken = http.post(f"/api/sites/{site.id}/positions", json={"positions": rows})
            posts.append((time.perf_counter() - t0) * 1000)
            taken.raise_for_status()
        offered_s = time.monotonic() - start
        page.wait_for_timeout(1500)  # the last messages and their frames
        set_phase(page, "after")
        traced = main_thread(browser.stop_tracing())
        profiled = traced.lines + first_picture
        profiled += cpu_profile(cdp, "positions") if cdp is not None else []
        record: dict[str, Any] = page.evaluate("window.__wallBench")
        record["dots_now"] = page.evaluate(
            "Number(document.querySelector('canvas.rp-people')?.dataset.drawn || 0)"
            " + document.querySelectorAll('.rp-person').length"
        )
        time_origin: float = page.evaluate("performance.timeOrigin")
    finally:
        http.close()
        page.context.close()
    record.update(
        site=site,
        posts=posts,
        late=late,
        offered_s=offered_s,
        ticks=len(posts),
        answered_ms=answered_ms,
        posted_at=posted_at - time_origin,
        must_move=int(moving.sum()),
        picture_people=len(picture["evacuation"]["people"]),
        profiled=profiled,
        updates=traced.updates,
    )
    return record


# -- figures ------------------------------------------------------------------------------------


def spread(values: Sequence[float]) -> str:
    if not values:
        return "n=0"
    return (
        f"n={len(values):4d}  p50 {pct(values, 0.5):7.2f}  p95 {pct(values, 0.95):7.2f}  "
        f"max {max(values):7.2f} ms"
    )


def summary(record: dict[str, Any]) -> tuple[list[str], dict[str, float]]:
    """The lines to print for one site, and its figures for the ratios to the peer."""
    site: Site = record["site"]
    out = [
        f"== {site.id}: {site.people} people, {record['picture_people']} must move "
        f"({record['must_move']} walking to a muster point)"
    ]
    messages = record["messages"]
    incidents = [m for m in messages if m["kind"] == "incident" and m["phase"] == "activation"]
    first = incidents[0]
    painted = first["painted"] - first["start"]
    out.append(
        f"activation: API answered in {record['answered_ms']:.0f} ms; the wall's incident message "
        f"({first['bytes'] / 1e6:.2f} MB) arrived {first['start'] - record['posted_at']:.0f} ms "
        f"after the POST was sent"
    )
    out.append(
        f"first picture: handler {first['end'] - first['start']:.0f} ms, painted (2nd rAF) "
        f"{painted:.0f} ms after the message "
        f"({first['dots']} dots drawn; target < {TARGET_PICTURE_MS:.0f} ms: ratio "
        f"{painted / TARGET_PICTURE_MS:.2f})"
    )
    live = [m for m in messages if m["phase"] == "positions"]
    posts = record["posts"]
    out.append(
        f"positions posted: {record['ticks']} x {site.people} in {record['offered_s']:.1f} s "
        f"({record['ticks'] / record['offered_s']:.2f}/s; {record['late']} skipped: the server "
        f"was still answering); POST " + spread(posts)
    )
    by_kind: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for m in live:
        by_kind[m["kind"]].append(m)
    out.append("while positions flow, the listener's time per message type (Performance API):")
    for kind in sorted(by_kind):
        got = by_kind[kind]
        size = statistics.median(m["bytes"] for m in got) / 1000
        out.append(
            f"  {kind:10s} {spread([m['end'] - m['start'] for m in got])}   ({size:.0f} kB median)"
        )
    listeners = [m["end"] - m["start"] for m in live]
    out.append(f"  {'all':10s} {spread(listeners)}")
    tasks = [t["duration"] for t in record["longtasks"] if t["phase"] == "positions"]
    window = record["offered_s"] * 1000
    out.append(
        f"long tasks (> 50 ms): {len(tasks)}, {sum(tasks):.0f} ms in all "
        f"({sum(tasks) / window:.1%} of the {window / 1000:.0f} s)"
        + (f", longest {max(tasks):.0f} ms" if tasks else "")
    )
    updates = record["updates"]
    p95 = pct(updates, 0.95) if updates else math.nan
    out.append(
        f"main-thread time per position update (trace: the listeners, style, layout and "
        f"paint): {spread(updates)} (target p95 < {TARGET_MESSAGE_MS:.0f} ms: ratio "
        f"{p95 / TARGET_MESSAGE_MS:.2f})"
    )
    dots = record["dots_now"]
    out.append(f"dots drawn at the end: {dots}")
    out.extend(record["profiled"])
    positions = [m["end"] - m["start"] for m in by_kind.get("positions", [])]
    figures = {
        "picture": painted,
        "listener_p95": pct(positions, 0.95) if positions else math.nan,
        "update_p95": p95,
    }
    return out, figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--people", type=int, default=5_000)
    parser.add_argument("--peer", type=int, default=500, help="people of the peer site")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=4.0, help="position updates a second")
    parser.add_argument("--profile", action="store_true", help="print a CPU profile too")
    parser.add_argument(
        "--frontend",
        type=Path,
        help="serve the wall's files from this folder (e.g. 'git archive HEAD frontend' "
        "unpacked) instead of the server's frontend/",
    )
    args = parser.parse_args()
    if not CHROMIUM.is_file():
        raise SystemExit(f"no Chromium at {CHROMIUM} ('make test' installs it)")
    with tempfile.TemporaryDirectory(prefix="rallypoint-bench-wall-") as tmp:
        start = time.perf_counter()
        url, sites = build_database(Path(tmp), [args.peer, args.people])
        print(
            f"sites generated and loaded in {time.perf_counter() - start:.1f} s; "
            f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}",
            flush=True,
        )
        figures = []
        with LiveServer(url) as server, sync_playwright() as playwright:
            login = {"username": USERNAME, "password": PASSWORD}
            token = httpx.post(f"{server.base}/api/auth/login", json=login).json()
            auth = {"Authorization": f"Bearer {token['access_token']}"}
            # A page whose files the harness answers counts as from outside for Chromium's
            # local network access checks, which then block its websocket to loopback.
            flags = ["--disable-features=LocalNetworkAccessChecks"] if args.frontend else []
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=flags
            )
            try:
                for site in sites:
                    record = run_site(
                        browser,
                        server,
                        auth,
                        site,
                        args.seconds,
                        args.rate,
                        args.profile,
                        args.frontend,
                    )
                    lines, figure = summary(record)
                    print("\n".join(lines), flush=True)
                    figures.append(figure)
            finally:
                browser.close()
        peer, big = figures
        print(
            f"ratio {args.people} / {args.peer} people: first picture "
            f"{big['picture'] / peer['picture']:.1f}x, positions listener p95 "
            f"{big['listener_p95'] / peer['listener_p95']:.1f}x, main-thread time per "
            f"update p95 {big['update_p95'] / peer['update_p95']:.1f}x; "
            f"load average {os.getloadavg()[0]:.1f}"
        )


if __name__ == "__main__":
    main()
