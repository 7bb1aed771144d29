"""Position ingestion benchmark: sustained updates with threat-zone and muster checks.

Run: ``.venv/bin/python -m benchmarks.bench_ingest [--rate 5000] [--seconds 10] [--batch 500]``.

The real server (uvicorn in a thread, a SQLite file) holds the demo site with one active
chlorine incident. A feeder posts batches of positions at a fixed rate for the given time. Each
position is an update for one of the site's 430 people, walking a few metres. Each batch goes
through the whole server path:
- the device-facing endpoint;
- the site model's update and re-snapping;
- the threat-zone check against the incident (who walked in or out, logged);
- the muster headcount;
- the websocket fan-out to a subscriber, coalesced per client.

The figures are the achieved rate against the offered one, the per-request latency, and how
many position messages the subscriber received (coalescing keeps that to a few a second).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect

from benchmarks.bench_command import DEMO_ID, BackgroundServer, free_port
from command.app import create_app
from command.auth import Role, create_user, issue_token
from command.settings import Settings
from gis.site_bundle import IfExists, load_bundle, read_bundle
from gis.storage.db import Database, make_engine, upgrade
from plans.store import load_plan_files

ROOT = Path(__file__).resolve().parent.parent
CHLORINE = [121.3478160, 30.7194760]  # the chlorine store (zone Z-027)


def prepare(folder: Path) -> tuple[str, str]:
    url = f"sqlite:///{folder / 'ingest.db'}"
    engine = make_engine(url)
    upgrade(engine)
    db = Database(engine)
    load_bundle(db, ROOT / "fixtures" / "demo-site", actor="bench", if_exists=IfExists.FAIL)
    with db.write() as session:
        load_plan_files(
            session, DEMO_ID, sorted((ROOT / "fixtures" / "plans").glob("*.yaml")), actor="bench"
        )
        user = create_user(session, "bench-commander", "bench-password", [Role.COMMANDER])
        token = issue_token(session, user, ttl_s=3600).token
    db.dispose()
    return url, token


def chlorine_activation() -> dict[str, Any]:
    """The demo's L2 chlorine release at its store: the incident whose people the positions move."""
    return {
        "plan_id": "chlorine-leak",
        "level": "L2",
        "location": {"type": "Point", "coordinates": CHLORINE},
        "hazard": {
            "model": "toxic_release",
            "substance": "chlorine",
            "rate_g_s": 2000,
            "wind_speed_m_s": 3,
            "wind_from_deg": 45,
        },
    }


async def run(base: str, token: str, rate: int, seconds: float, batch: int) -> list[str]:
    _, layers = read_bundle(ROOT / "fixtures" / "demo-site")
    people = [
        (f["id"], f["geometry"]["coordinates"])
        for f in layers["people"]["features"]
        if f["geometry"] is not None
    ]
    rng = random.Random(42)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as http:
        activation = chlorine_activation()
        response = await http.post(f"/api/sites/{DEMO_ID}/incidents", json=activation)
        response.raise_for_status()
        uri = base.replace("http", "ws") + "/ws"
        received = {"positions": 0, "people_moved": 0}
        async with connect(uri, additional_headers=headers, max_size=None) as ws:
            await ws.send(json.dumps({"type": "subscribe", "site": DEMO_ID, "last_seq": None}))
            await ws.recv()  # the snapshot

            async def listen() -> None:
                async for raw in ws:
                    message = json.loads(raw)
                    if message["type"] == "positions":
                        received["positions"] += 1
                    elif message.get("event", {}).get("type") == "incident.people_moved":
                        received["people_moved"] += 1

            listener = asyncio.create_task(listen())
            latencies: list[float] = []
            sent = 0
            interval = batch / rate
            start = time.perf_counter()
            pending: set[asyncio.Task[None]] = set()

            async def post_batch(body: dict[str, object]) -> None:
                t0 = time.perf_counter()
                answer = await http.post(f"/api/sites/{DEMO_ID}/positions", json=body)
                answer.raise_for_status()
                latencies.append((time.perf_counter() - t0) * 1000)

            while (now := time.perf_counter() - start) < seconds:
                rows = []
                for _ in range(batch):
                    pid, (lon, lat) = rng.choice(people)
                    rows.append(
                        {
                            "person_id": pid,
                            "lon": lon + rng.uniform(-5e-5, 5e-5),
                            "lat": lat + rng.uniform(-5e-5, 5e-5),
                        }
                    )
                task = asyncio.create_task(post_batch({"positions": rows}))
                pending.add(task)
                task.add_done_callback(pending.discard)
                sent += batch
                await asyncio.sleep(max(0.0, (sent / rate) - now))
            await asyncio.gather(*pending)
            elapsed = time.perf_counter() - start
            await asyncio.sleep(0.5)  # the last coalesced message
            listener.cancel()
    ordered = sorted(latencies)

    def pct(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    achieved = sent / elapsed
    return [
        f"offered {rate} positions/s in batches of {batch} for {seconds:.0f} s; "
        f"achieved {achieved:.0f}/s ({achieved / rate:.2f} of offered)",
        f"per batch ({batch} positions): p50 {statistics.median(ordered):.1f} ms  "
        f"p95 {pct(0.95):.1f} ms  p99 {pct(0.99):.1f} ms  max {ordered[-1]:.1f} ms "
        f"(a batch is due every {interval * 1000:.0f} ms)",
        f"subscriber received {received['positions']} coalesced position messages "
        f"({received['positions'] / elapsed:.1f}/s) and {received['people_moved']} "
        "zone entry/exit events",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rallypoint-bench-ingest-") as tmp:
        url, token = prepare(Path(tmp))
        app = create_app(Settings(database_url=url, ws_heartbeat_s=300))
        port = free_port()
        server = BackgroundServer(app, port)
        server.start()
        try:
            lines = asyncio.run(
                run(f"http://127.0.0.1:{port}", token, args.rate, args.seconds, args.batch)
            )
        finally:
            server.stop()
    for line in lines:
        print(line)


if __name__ == "__main__":
    main()
