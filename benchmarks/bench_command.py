"""Command server benchmark: the real server, real websocket clients, over loopback.

Run: ``.venv/bin/python -m benchmarks.bench_command [--clients 1000] [--repeat 20]
[--synthetic-edges 100000]``.

The server is the app of ``create_app`` under uvicorn, in a background thread of this process,
on a free loopback port, over a SQLite file in a temporary folder (migrated, holding the demo
site and the plans of fixtures/plans, a synthetic site with one plan, and a commander). The
clients are ``websockets`` and ``httpx`` in this process's event loop. Measured:

1. **activation -> first frame, demo site**: a subscriber of the site; the commander activates
   the chlorine plan (a chlorine release at the centroid of zone Z-027, L2 and L3 in turn). The
   time from sending the POST to the subscriber receiving the ``incident`` message (the whole
   picture), and to its first ``event`` message. Each incident is stood down before the next.
   With it, the median of each pipeline stage (``timings_ms`` of the picture) and what remains
   (HTTP, auth, the site model check, the commit, the snapshot, JSON and the websocket send).
2. **the same on a synthetic site** (``benchmarks.bench_routing.load_site``: ~100k edges, 5,000
   people) with the general evacuation plan (its materials cut to the site's inventory) and a
   radius hazard at the site's centroid. The site model is built on first use (the first
   subscription): reported on its own, as it is paid once per layer change.
3. **fan-out**: ``--clients`` subscribers of the demo site, then one note on an incident: the
   time until each client has the note's event, over clients and repeats.

Client and server share one process (and its GIL), so client work (reading frames, parsing
JSON) counts in every figure: they are upper bounds of what a separate client would see.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import resource
import socket
import statistics
import tempfile
import threading
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from argon2 import PasswordHasher
from fastapi import FastAPI
from shapely.geometry import shape
from websockets.asyncio.client import ClientConnection, connect

from benchmarks.bench_routing import load_site
from command.app import create_app
from command.auth import Role, create_user, issue_token
from command.hub import encode
from command.incidents import snapshot
from command.post import CommandPost
from command.settings import Settings
from gis.site_bundle import load_bundle, write_bundle
from gis.storage.db import Database, make_engine, upgrade
from plans.model import data_from_yaml
from plans.store import approve_as_operator, create_plan, load_plan_files, site_inventory

ROOT = Path(__file__).resolve().parent.parent
DEMO_SITE = ROOT / "fixtures" / "demo-site"
PLANS = ROOT / "fixtures" / "plans"
DEMO_ID = "demo-works"
STAGES = ("load", "threat", "exposure", "evacuation", "resources", "plan", "log")
# Argon2id with the smallest parameters, as in the tests: the password is never checked here.
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
TIMEOUT_S = 60.0


class Out:
    """Printed as they come (the run takes minutes)."""

    def add(self, *lines: str) -> None:
        for line in lines:
            print(line, flush=True)


# -- figures ------------------------------------------------------------------------------------


def pct(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


def target_line(label: str, values: Sequence[float], q: float, target_ms: float) -> str:
    stat = pct(values, q)
    return (
        f"{label}: p50 {pct(values, 0.5):7.1f} ms   p95 {pct(values, 0.95):7.1f} ms   "
        f"p99 {pct(values, 0.99):7.1f} ms   max {max(values):7.1f} ms   "
        f"(target p{round(q * 100)} < {target_ms:.0f} ms: ratio {stat / target_ms:4.2f})"
    )


def spread_line(label: str, values: Sequence[float]) -> str:
    return (
        f"{label}: p50 {pct(values, 0.5):7.1f} ms   p95 {pct(values, 0.95):7.1f} ms   "
        f"max {max(values):7.1f} ms"
    )


# -- the server ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class BackgroundServer:
    """uvicorn serving ``app`` in a daemon thread (its own event loop)."""

    def __init__(self, app: FastAPI, port: int) -> None:
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + TIMEOUT_S
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=TIMEOUT_S)


@dataclass
class Setup:
    url: str
    token: str
    synthetic_id: str
    synthetic_centre: tuple[float, float]
    notes: list[str] = field(default_factory=list)


def zone_centroid(zone_id: str) -> tuple[float, float]:
    zones = json.loads((DEMO_SITE / "zones.geojson").read_text(encoding="utf-8"))
    found = next(f for f in zones["features"] if f["id"] == zone_id)
    centre = shape(found["geometry"]).centroid
    return (round(centre.x, 7), round(centre.y, 7))


def synthetic_plan(inventory: dict[str, int]) -> dict[str, Any]:
    """The general evacuation plan, with only the materials the synthetic site holds."""
    data: dict[str, Any] = data_from_yaml(
        (PLANS / "general-evacuation.yaml").read_text(encoding="utf-8")
    )
    for level in data["levels"].values():
        level["materials"] = [
            m for m in level.get("materials", []) if inventory.get(m["kind"], 0) >= m["quantity"]
        ]
    return data


def prepare(folder: Path, edges: int, people: int, cache: Path) -> Setup:
    """Migrate a SQLite file and fill it: the demo site and plans, the synthetic site and its
    plan, and a commander's token."""
    url = f"sqlite:///{folder / 'rallypoint.db'}"
    engine = make_engine(url)
    upgrade(engine)
    db = Database(engine)
    notes = []
    load_bundle(db, DEMO_SITE, actor="bench")
    with db.write() as session:
        load_plan_files(session, DEMO_ID, sorted(PLANS.glob("*.yaml")), actor="bench")
        user = create_user(
            session,
            "bench-commander",
            "correct horse battery",
            [Role.COMMANDER, Role.VIEWER],
            hasher=FAST_HASHER,
        )
        token = issue_token(session, user, ttl_s=3600).token

    start = time.perf_counter()
    site, layers = load_site(edges, people, cache)
    bundle = folder / "synthetic"
    write_bundle(bundle, site, layers)
    read_s = time.perf_counter() - start
    start = time.perf_counter()
    loaded, _ = load_bundle(db, bundle, actor="bench")
    load_s = time.perf_counter() - start
    with db.write() as session:
        made = create_plan(
            session,
            loaded.id,
            synthetic_plan(site_inventory(session, loaded.id)),
            actor="bench",
        )
        approve_as_operator(session, loaded.id, made.template.id, "bench")
    centre = shape(site["boundary"]).centroid
    notes.append(
        f"synthetic site {loaded.id}: {len(layers['network']['features'])} edges, "
        f"{len(layers['people']['features'])} people, "
        f"{len(layers['resources']['features'])} resources; generated/read and written "
        f"{read_s:.1f} s, loaded into SQLite {load_s:.1f} s"
    )
    engine.dispose()
    return Setup(url, token, loaded.id, (round(centre.x, 7), round(centre.y, 7)), notes)


# -- clients ------------------------------------------------------------------------------------


@dataclass
class Received:
    message: dict[str, Any]
    size: int


class Subscriber:
    """A websocket client of one site: keeps every message with the time it arrived."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.inbox: asyncio.Queue[tuple[float, dict[str, Any]]] = asyncio.Queue()
        self.event_at: dict[int, float] = {}
        self.keep_inbox = True
        self.reader: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls, base: str, token: str, site_id: str, *, compression: str | None
    ) -> tuple[Subscriber, float, Received]:
        """Connect and subscribe; the time to the first answer (the snapshot), and it."""
        start = time.perf_counter()
        ws = await connect(
            base.replace("http://", "ws://", 1) + "/ws",
            additional_headers={"Authorization": f"Bearer {token}"},
            max_size=None,
            compression=compression,
            open_timeout=TIMEOUT_S,
            ping_interval=None,
        )
        await ws.send(json.dumps({"type": "subscribe", "site": site_id}))
        first = await asyncio.wait_for(ws.recv(), TIMEOUT_S)
        took = (time.perf_counter() - start) * 1000
        message = json.loads(first)
        if message.get("type") != "snapshot":
            raise RuntimeError(f"expected a snapshot, got {str(message)[:200]}")
        subscriber = cls(ws)
        subscriber.reader = asyncio.create_task(subscriber._read())
        return subscriber, took, Received(message, len(first))

    async def _read(self) -> None:
        with contextlib.suppress(Exception):
            async for raw in self.ws:
                at = time.perf_counter()
                message = json.loads(raw)
                kind = message.get("type")
                if kind == "ping":
                    await self.ws.send(json.dumps({"type": "pong"}))
                    continue
                if kind == "event":
                    self.event_at.setdefault(int(message["seq"]), at)
                if self.keep_inbox:
                    message["_bytes"] = len(raw)
                    self.inbox.put_nowait((at, message))

    async def next_message(self) -> tuple[float, dict[str, Any]]:
        return await asyncio.wait_for(self.inbox.get(), TIMEOUT_S)

    def drain(self) -> None:
        while not self.inbox.empty():
            self.inbox.get_nowait()

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(BaseException):
                await self.reader
        with contextlib.suppress(Exception):
            await self.ws.close()


@dataclass
class Activation:
    to_incident_ms: float
    to_first_event_ms: float
    to_response_ms: float
    timings_ms: dict[str, float]
    incident_id: str
    level: str
    message_bytes: int
    events: int  # event messages before the incident message
    to_publish_ms: float  # the server handing the messages to the hub


class PublishClock:
    """When the server hands each incident's picture to the hub (a wrapper on
    ``Hub.publish``, in the server's process: it only reads the clock)."""

    def __init__(self, post: CommandPost) -> None:
        self.incident_at: dict[str, float] = {}
        self.event_at: dict[int, float] = {}
        original = post.hub.publish

        def publish(site_id: str, messages: Sequence[dict[str, Any]]) -> None:
            at = time.perf_counter()
            for m in messages:
                if m.get("type") == "incident":
                    self.incident_at[str(m["incident_id"])] = at
                elif m.get("type") == "event":
                    self.event_at[int(m["seq"])] = at
            original(site_id, messages)

        setattr(post.hub, "publish", publish)  # noqa: B010  # instance attribute over the method


async def activate_once(
    http: httpx.AsyncClient,
    sub: Subscriber,
    site_id: str,
    body: dict[str, Any],
    clock: PublishClock,
) -> Activation:
    """POST an activation; wait for its picture on the websocket."""
    sub.drain()
    start = time.perf_counter()
    post = asyncio.create_task(http.post(f"/api/sites/{site_id}/incidents", json=body))
    first_event: float | None = None
    events = 0
    while True:
        at, message = await sub.next_message()
        if message["type"] == "event":
            events += 1
            first_event = first_event or at
        if message["type"] == "incident":
            break
    response = await post
    responded = time.perf_counter()
    response.raise_for_status()
    picture = response.json()
    if message["incident_id"] != picture["incident"]["id"]:
        raise RuntimeError("the websocket's incident is not the one activated")
    return Activation(
        to_incident_ms=(at - start) * 1000,
        to_first_event_ms=((first_event or at) - start) * 1000,
        to_response_ms=(responded - start) * 1000,
        timings_ms=dict(picture["timings_ms"]),
        incident_id=picture["incident"]["id"],
        level=body["level"],
        message_bytes=int(message["_bytes"]),
        events=events,
        to_publish_ms=(clock.incident_at[message["incident_id"]] - start) * 1000,
    )


async def stand_down(
    http: httpx.AsyncClient, sub: Subscriber | None, site_id: str, incident_id: str
) -> None:
    response = await http.post(
        f"/api/sites/{site_id}/incidents/{incident_id}/stand-down",
        json={"force": True, "reason": "benchmark run over"},
    )
    response.raise_for_status()
    if sub is not None:
        last = max(e["seq"] for e in response.json()["events"])
        deadline = time.monotonic() + TIMEOUT_S
        while last not in sub.event_at and time.monotonic() < deadline:
            await asyncio.sleep(0.005)


# -- measures -----------------------------------------------------------------------------------


def stage_line(runs: Sequence[Activation], label: str) -> str:
    """Median per stage, and what remains of the time to the incident message."""
    medians = {
        s: statistics.median(r.timings_ms.get(s, 0.0) for r in runs)
        for s in STAGES
        if any(s in r.timings_ms for r in runs)
    }
    before = statistics.median(
        r.to_publish_ms - sum(r.timings_ms.get(s, 0.0) for s in STAGES) for r in runs
    )
    after = statistics.median(r.to_incident_ms - r.to_publish_ms for r in runs)
    parts = {
        **medians,
        "untimed before publish (HTTP, auth, model check, commit, snapshot)": before,
        "publish -> client has it (JSON, deflate, ws send, client parse)": after,
    }
    top = max(parts, key=parts.__getitem__)
    shown = "  ".join(f"{k} {v:.1f}" for k, v in parts.items())
    return f"  {label}, median ms: {shown}\n    dominant: {top}"


async def activation_runs(
    http: httpx.AsyncClient,
    sub: Subscriber,
    site_id: str,
    bodies: Sequence[dict[str, Any]],
    repeat: int,
    clock: PublishClock,
) -> list[Activation]:
    runs = []
    for i in range(repeat):
        run = await activate_once(http, sub, site_id, bodies[i % len(bodies)], clock)
        runs.append(run)
        await stand_down(http, sub, site_id, run.incident_id)
    return runs


def report_activations(name: str, runs: Sequence[Activation], target_ms: float) -> list[str]:
    lines = [
        target_line(
            f"{name}: activation -> incident message ({len(runs)} runs, each stood down)",
            [r.to_incident_ms for r in runs],
            0.95,
            target_ms,
        ),
        spread_line(
            f"{name}: activation -> first event message", [r.to_first_event_ms for r in runs]
        ),
        spread_line(f"{name}: activation -> HTTP response", [r.to_response_ms for r in runs]),
    ]
    for level in sorted({r.level for r in runs}):
        at = [r for r in runs if r.level == level]
        size = statistics.median(r.message_bytes for r in at)
        lines.append(
            f"  {level}: incident message p50 "
            f"{statistics.median(r.to_incident_ms for r in at):.1f} ms, "
            f"{size / 1024:.0f} KiB of JSON"
        )
    lines.append(stage_line(runs, "stages, all runs"))
    for level in sorted({r.level for r in runs}):
        lines.append(stage_line([r for r in runs if r.level == level], f"stages, {level} only"))
    return lines


def breakdown(post: CommandPost, site_id: str, incident_id: str) -> str:
    """The untimed parts of an activation, measured in this process on the last picture."""

    def ms(fn: Any, n: int = 5) -> float:
        samples = []
        for _ in range(n):
            start = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - start) * 1000)
        return statistics.median(samples)

    model = post.models.get(site_id)
    incident = post.incidents[incident_id]
    picture = snapshot(model, incident, seq=incident.seq)
    message = {"type": "incident", "seq": incident.seq, "incident_id": incident_id}
    message["snapshot"] = picture
    text = encode(message)

    def deflate() -> bytes:
        # As permessage-deflate (websockets' server settings: memLevel 5, default level).
        packer = zlib.compressobj(wbits=-15, memLevel=5)
        return packer.compress(text.encode()) + packer.flush(zlib.Z_SYNC_FLUSH)

    return (
        f"  untimed parts, in process on the last picture ({incident.run.state.level.value}, "
        f"{len(text) / 1024:.0f} KiB): site model check (models.get) "
        f"{ms(lambda: post.models.get(site_id)):.1f} ms, snapshot() "
        f"{ms(lambda: snapshot(model, incident, seq=incident.seq)):.1f} ms, JSON (orjson) "
        f"{ms(lambda: encode(message)):.1f} ms (json.dumps {ms(lambda: json.dumps(message)):.1f} "
        f"ms), deflate {ms(deflate):.1f} ms "
        f"(to {len(deflate()) / 1024:.0f} KiB), the client's json.loads "
        f"{ms(lambda: json.loads(text)):.1f} ms"
    )


def raise_file_limit(clients: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 2 * clients + 256  # both ends of every socket may live in this process
    if soft != resource.RLIM_INFINITY and soft < wanted:
        limit = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))


@dataclass
class Opened:
    seconds: float  # all of them subscribed
    subscribe_ms: list[float]  # each: connect -> snapshot received
    snapshot_bytes: int
    snapshot_incidents: int


class LocalFleet:
    """Subscribers in this process's event loop (sharing the GIL with the server)."""

    def __init__(self, base: str, token: str, clients: int, compression: str | None) -> None:
        self.args = (base, token, clients, compression)
        self.subs: list[Subscriber] = []

    async def open(self) -> Opened:
        base, token, clients, compression = self.args
        gate = asyncio.Semaphore(100)

        async def one() -> tuple[Subscriber, float, Received]:
            async with gate:
                return await Subscriber.open(base, token, DEMO_ID, compression=compression)

        start = time.perf_counter()
        opened = await asyncio.gather(*(one() for _ in range(clients)))
        took = time.perf_counter() - start
        self.subs = [s for s, _, _ in opened]
        for s in self.subs:
            s.keep_inbox = False
        first = opened[0][2]
        return Opened(took, [t for _, t, _ in opened], first.size, len(first.message["incidents"]))

    async def arrivals(self, seq: int) -> list[float | None]:
        """When each subscriber received event ``seq`` (perf_counter; None: never)."""
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline and not all(seq in s.event_at for s in self.subs):
            await asyncio.sleep(0.005)
        return [s.event_at.get(seq) for s in self.subs]

    async def close(self) -> None:
        await asyncio.gather(*(s.close() for s in self.subs))


def _child_fleet(
    conn: Connection, base: str, token: str, clients: int, compression: str | None
) -> None:
    """A child process's subscribers, driven over ``conn`` (perf_counter is CLOCK_MONOTONIC on
    Linux: its times compare with the parent's)."""
    raise_file_limit(clients)

    async def serve() -> None:
        fleet = LocalFleet(base, token, clients, compression)
        conn.send(await fleet.open())
        loop = asyncio.get_running_loop()
        try:
            while (seq := await loop.run_in_executor(None, conn.recv)) is not None:
                conn.send(await fleet.arrivals(int(seq)))
        finally:
            await fleet.close()

    asyncio.run(serve())


class ChildFleet:
    """Subscribers in a child process: the server keeps this process's GIL to itself."""

    def __init__(self, base: str, token: str, clients: int, compression: str | None) -> None:
        context = multiprocessing.get_context("spawn")  # no fork of a process with threads
        self.conn, child = context.Pipe()
        self.process = context.Process(
            target=_child_fleet, args=(child, base, token, clients, compression), daemon=True
        )

    async def _recv(self) -> Any:
        loop = asyncio.get_running_loop()
        ready = await loop.run_in_executor(None, self.conn.poll, 2 * TIMEOUT_S)
        if not ready:
            raise RuntimeError("the client process did not answer")
        return self.conn.recv()

    async def open(self) -> Opened:
        self.process.start()
        opened: Opened = await self._recv()
        return opened

    async def arrivals(self, seq: int) -> list[float | None]:
        self.conn.send(seq)
        got: list[float | None] = await self._recv()
        return got

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.send(None)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.process.join, TIMEOUT_S)
        if self.process.is_alive():
            self.process.terminate()


async def fan_out(
    http: httpx.AsyncClient,
    fleet: LocalFleet | ChildFleet,
    where: str,
    clients: int,
    repeat: int,
    clock: PublishClock,
    out: Out,
) -> None:
    """``clients`` subscribers of the demo site; ``repeat`` notes; time until each has it."""
    response = await http.post(f"/api/sites/{DEMO_ID}/incidents", json=demo_bodies()[0])
    response.raise_for_status()
    incident_id = response.json()["incident"]["id"]
    over_clients: list[float] = []
    to_publish: list[float] = []
    per_repeat: list[str] = []
    try:
        opened = await fleet.open()
        out.add(
            f"[3] fan-out, clients {where}: {clients} subscribed in {opened.seconds:.1f} s "
            f"(subscribe -> snapshot p50 {pct(opened.subscribe_ms, 0.5):.0f} ms, "
            f"max {max(opened.subscribe_ms):.0f} ms; snapshot {opened.snapshot_bytes / 1024:.0f} "
            f"KiB, {opened.snapshot_incidents} incident(s))"
        )
        for i in range(repeat):
            await asyncio.sleep(0.2)
            start = time.perf_counter()
            response = await http.post(
                f"/api/sites/{DEMO_ID}/incidents/{incident_id}/notes",
                json={"text": f"fan-out note {i}"},
            )
            responded = (time.perf_counter() - start) * 1000
            response.raise_for_status()
            seq = next(e["seq"] for e in response.json()["events"] if e["type"] == "plan.note")
            got = [(t - start) * 1000 for t in await fleet.arrivals(seq) if t is not None]
            to_publish.append((clock.event_at[seq] - start) * 1000)
            if len(got) < clients:
                out.add(f"  repeat {i}: only {len(got)} of {clients} clients got the note")
            over_clients += got
            per_repeat.append(
                f"#{i} p50 {pct(got, 0.5):.0f} / p99 {pct(got, 0.99):.0f} / max {max(got):.0f} "
                f"(HTTP {responded:.0f})"
            )
    finally:
        await fleet.close()
        await stand_down(http, None, DEMO_ID, incident_id)
    out.add(
        target_line(
            f"[3] fan-out, clients {where}: note -> each of {clients} clients ({repeat} repeats)",
            over_clients,
            0.99,
            300.0,
        )
    )
    out.add("  per repeat, ms (p50 / p99 / max; HTTP response): " + "; ".join(per_repeat))
    out.add(
        f"  note POST -> server publishes: median {statistics.median(to_publish):.1f} ms; "
        f"the rest is sending {clients} copies and the clients reading them"
    )


def demo_bodies() -> list[dict[str, Any]]:
    lon, lat = zone_centroid("Z-027")
    hazard = {
        "model": "toxic_release",
        "substance": "chlorine",
        "rate_g_s": 2000,
        "wind_speed_m_s": 3,
        "wind_from_deg": 45,
    }
    return [
        {
            "plan_id": "chlorine-leak",
            "level": level,
            "location": {"type": "Point", "coordinates": [lon, lat]},
            "hazard": hazard,
        }
        for level in ("L2", "L3")
    ]


def synthetic_bodies(centre: tuple[float, float]) -> list[dict[str, Any]]:
    return [
        {
            "plan_id": "general-evacuation",
            "level": level,
            "location": {"type": "Point", "coordinates": list(centre)},
            "hazard": {"model": "radius", "radii_m": [150, 400, 800]},
        }
        for level in ("L2", "L3")
    ]


async def bench(app: FastAPI, setup: Setup, base: str, args: argparse.Namespace) -> None:
    out = Out()
    out.add(*setup.notes)
    compression = None if args.compression == "none" else "deflate"
    post: CommandPost = app.state.post
    clock = PublishClock(post)
    async with httpx.AsyncClient(
        base_url=base,
        headers={"Authorization": f"Bearer {setup.token}"},
        timeout=TIMEOUT_S,
    ) as http:
        # The demo site model is built by its first subscription.
        sub, took, first = await Subscriber.open(
            base, setup.token, DEMO_ID, compression=compression
        )
        out.add(
            f"demo site: first subscription {took:.0f} ms (site model built in "
            f"{post.models.get(DEMO_ID).build_ms:.0f} ms of it)"
        )
        # 3. Fan-out first: a new subscriber's snapshot holds every incident activated since
        # the server started (stood down or not), so it is done before the activation runs.
        raise_file_limit(args.clients)
        fleets: list[tuple[str, LocalFleet | ChildFleet]] = []
        if args.fanout_clients in ("here", "both"):
            fleets.append(
                ("in this process", LocalFleet(base, setup.token, args.clients, compression))
            )
        if args.fanout_clients in ("child", "both"):
            fleets.append(
                ("in a child process", ChildFleet(base, setup.token, args.clients, compression))
            )
        for where, fleet in fleets:
            await fan_out(http, fleet, where, args.clients, args.fanout_repeat, clock, out)

        # 1. The demo site.
        await activation_runs(http, sub, DEMO_ID, demo_bodies(), 2, clock)  # warm up
        runs = await activation_runs(http, sub, DEMO_ID, demo_bodies(), args.repeat, clock)
        out.add(*report_activations("[1] demo site", runs, 100.0))
        out.add(
            "  each run, activation -> incident message, ms: "
            + " ".join(f"{r.to_incident_ms:.0f}" for r in runs)
        )
        # Stood-down incidents leave memory: one more, kept, for the in-process breakdown.
        kept = await activate_once(http, sub, DEMO_ID, demo_bodies()[-1], clock)
        out.add(breakdown(post, DEMO_ID, kept.incident_id))
        await stand_down(http, sub, DEMO_ID, kept.incident_id)
        await sub.close()
        late, took, last = await Subscriber.open(
            base, setup.token, DEMO_ID, compression=compression
        )
        await late.close()
        statuses = [i["incident"]["status"] for i in last.message["incidents"]]
        out.add(
            f"  a new subscriber of the demo site now: snapshot of {len(statuses)} incidents "
            f"({statuses.count('stood_down')} stood down), {last.size / 1024:.0f} KiB, "
            f"{took:.0f} ms (at start: {len(first.message['incidents'])} incidents, "
            f"{first.size / 1024:.1f} KiB)"
        )

        # 2. The synthetic site. While its model builds, the demo site is asked for its
        # incidents: does one site's build hold up the others?
        opening = asyncio.create_task(
            Subscriber.open(base, setup.token, setup.synthetic_id, compression=compression)
        )
        await asyncio.sleep(0.5)
        start = time.perf_counter()
        (await http.get(f"/api/sites/{DEMO_ID}/incidents")).raise_for_status()
        other_ms = (time.perf_counter() - start) * 1000
        sub, took, _ = await opening
        model = post.models.get(setup.synthetic_id)
        out.add(
            f"[2] synthetic site: first subscription {took:.0f} ms, of which the site model "
            f"build {model.build_ms:.0f} ms (once per layer change; foot graph "
            f"{model.foot.node_count} nodes); meanwhile GET /api/sites/{DEMO_ID}/incidents "
            f"took {other_ms:.0f} ms"
        )
        bodies = synthetic_bodies(setup.synthetic_centre)
        once = await activate_once(http, sub, setup.synthetic_id, bodies[0], clock)
        await stand_down(http, sub, setup.synthetic_id, once.incident_id)
        out.add(
            f"[2] synthetic site: first activation -> incident message "
            f"{once.to_incident_ms:.0f} ms (the subscription had built the model)"
        )
        runs = await activation_runs(
            http, sub, setup.synthetic_id, bodies, max(4, args.repeat // 2), clock
        )
        out.add(*report_activations("[2] synthetic site", runs, 500.0))
        kept = await activate_once(http, sub, setup.synthetic_id, bodies[-1], clock)
        out.add(breakdown(post, setup.synthetic_id, kept.incident_id))
        await stand_down(http, sub, setup.synthetic_id, kept.incident_id)
        await sub.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--fanout-repeat", type=int, default=5)
    parser.add_argument(
        "--fanout-clients",
        choices=("here", "child", "both"),
        default="both",
        help="where the fan-out subscribers run: this process (with the server), a child "
        "process, or one after the other",
    )
    parser.add_argument("--synthetic-edges", type=int, default=100_000)
    parser.add_argument("--synthetic-people", type=int, default=5_000)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/rallypoint-bench"))
    parser.add_argument(
        "--compression",
        choices=("deflate", "none"),
        default="deflate",
        help="websocket permessage-deflate (browsers ask for it)",
    )
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rallypoint-bench-command-") as tmp:
        setup = prepare(
            Path(tmp), args.synthetic_edges, args.synthetic_people, args.cache.expanduser()
        )
        settings = Settings(database_url=setup.url, ws_heartbeat_s=300)
        app = create_app(settings)
        port = free_port()
        server = BackgroundServer(app, port)
        server.start()
        try:
            asyncio.run(bench(app, setup, f"http://127.0.0.1:{port}", args))
        finally:
            server.stop()
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
