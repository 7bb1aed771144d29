"""Position ingestion on one of several processes on one PostGIS database, relay on (issue 17).

Run: ``scripts/with-postgis.sh .venv/bin/python -m benchmarks.bench_scale_ingest [--rate 5000]
[--seconds 10] [--batch 500] [--processes 1,3] [--postgis-url URL]``.

For each process count, in the same run: a fresh database with the demo site, that many
``rallypoint serve`` subprocesses on it (``tests/processes.py``), one chlorine incident
activated. A feeder (this process) posts batches of positions to the first process at a fixed
rate, as ``benchmarks.bench_ingest`` does (the site's 430 people walking a few metres; each
batch re-snapped, checked against the threat zones, counted at the muster points), with a
subscriber there. With more than one process, the first relays what it took to the others
(``position_feed``, four times a second) and they move the same people: a watcher on each other
process measures the relay's lag. Once a second one person (``MARKER``) is put at a place of
its own; the lag is from that batch's send to the first ``positions`` message at the other
process's watcher that shows it there.

Printed per process count: the achieved rate against the offered one, the batch latency at the
first process, each process's CPU time over the feed (from ``/proc``), and the relay's lag.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect

from benchmarks.bench_command import DEMO_ID
from benchmarks.bench_ingest import ROOT, chlorine_activation
from command.auth import Role, find_user, issue_token
from gis.site_bundle import read_bundle
from gis.storage.db import Database, make_engine
from tests.conftest import POSTGIS_URL_ENV
from tests.processes import ServerProcess, drop_database, postgis_demo_database

COMMANDER = "ingest-commander"
SITE = f"/api/sites/{DEMO_ID}"
MARKER = "P-0001"
TICK = 0.01  # how long a marker's wait sleeps between looks


def prepare(name: str) -> tuple[str, str]:
    url = postgis_demo_database(name, {COMMANDER: Role.COMMANDER})
    engine = make_engine(url)
    try:
        with Database(engine).write() as session:
            token = issue_token(session, find_user(session, COMMANDER), ttl_s=3600).token
    finally:
        engine.dispose()
    return url, token


def cpu_s(pid: int) -> float:
    """User and system CPU seconds of a process (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def feed(
    servers: Sequence[ServerProcess], token: str, rate: int, seconds: float, batch: int
) -> list[str]:
    _, layers = read_bundle(ROOT / "fixtures" / "demo-site")
    people = [
        (f["id"], f["geometry"]["coordinates"])
        for f in layers["people"]["features"]
        if f["geometry"] is not None and f["id"] != MARKER
    ]
    marker_home = next(
        f["geometry"]["coordinates"] for f in layers["people"]["features"] if f["id"] == MARKER
    )
    rng = random.Random(42)
    headers = {"Authorization": f"Bearer {token}"}
    base = servers[0].base
    #: marker lon -> when its batch was sent; and when each watcher first showed it.
    marked: dict[float, float] = {}
    shown: list[dict[float, float]] = [{} for _ in servers[1:]]
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as http:
        activation = chlorine_activation()
        response = await http.post(f"{SITE}/incidents", json=activation)
        response.raise_for_status()
        await asyncio.sleep(2.0)  # the other processes rebuild the incident
        sockets = []
        for server in servers:
            ws = await connect(
                f"{server.ws_url}", additional_headers=headers, max_size=None, open_timeout=60
            )
            await ws.send(json.dumps({"type": "subscribe", "site": DEMO_ID, "last_seq": None}))
            await ws.recv()  # the snapshot
            sockets.append(ws)
        received = [0 for _ in servers]

        async def listen(i: int) -> None:
            async for raw in sockets[i]:
                message: dict[str, Any] = json.loads(raw)
                if message["type"] != "positions":
                    continue
                received[i] += 1
                if i == 0:
                    continue
                where = message.get("positions", {}).get(MARKER)
                if where and where[0] in marked and where[0] not in shown[i - 1]:
                    shown[i - 1][where[0]] = time.perf_counter()

        listeners = [asyncio.create_task(listen(i)) for i in range(len(servers))]
        latencies: list[float] = []
        pending: set[asyncio.Task[None]] = set()

        async def post_batch(body: dict[str, object], mark: float | None) -> None:
            t0 = time.perf_counter()
            if mark is not None:
                marked[mark] = t0
            answer = await http.post(f"{SITE}/positions", json=body)
            answer.raise_for_status()
            latencies.append((time.perf_counter() - t0) * 1000)

        cpu_before = [cpu_s(s.process.pid) for s in servers if s.process is not None]
        sent = 0
        next_mark = 0.0
        start = time.perf_counter()
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
            mark = None
            if now >= next_mark:  # the marker at a place of its own
                next_mark += 1.0
                mark = round(marker_home[0] + 1e-6 * (len(marked) + 1), 7)
                rows.append({"person_id": MARKER, "lon": mark, "lat": marker_home[1]})
            task = asyncio.create_task(post_batch({"positions": rows}, mark))
            pending.add(task)
            task.add_done_callback(pending.discard)
            sent += batch
            await asyncio.sleep(max(0.0, (sent / rate) - now))
        await asyncio.gather(*pending)
        elapsed = time.perf_counter() - start
        await asyncio.sleep(2.0)  # the last relays and coalesced messages
        cpu = [
            cpu_s(s.process.pid) - before
            for s, before in zip(servers, cpu_before, strict=True)
            if s.process is not None
        ]
        for listener in listeners:
            listener.cancel()
        for ws in sockets:
            await ws.close()
    achieved = sent / elapsed
    lines = [
        f"  offered {rate} positions/s in batches of {batch} for {seconds:.0f} s to p0; "
        f"achieved {achieved:.0f}/s ({achieved / rate:.2f} of offered)",
        f"  per batch at p0: p50 {statistics.median(latencies):.1f} ms  "
        f"p95 {pct(latencies, 0.95):.1f} ms  p99 {pct(latencies, 0.99):.1f} ms  "
        f"max {max(latencies):.1f} ms (a batch is due every {1000 * batch / rate:.0f} ms)",
        "  CPU over the feed: "
        + ", ".join(f"p{i} {c:.1f} s ({100 * c / elapsed:.0f} %)" for i, c in enumerate(cpu)),
        "  positions messages: "
        + ", ".join(f"p{i} {n} ({n / elapsed:.1f}/s)" for i, n in enumerate(received)),
    ]
    for i, seen in enumerate(shown, start=1):
        lags = [1000 * (seen[m] - marked[m]) for m in marked if m in seen]
        lines.append(
            f"  relay to p{i}: {len(lags)} of {len(marked)} markers shown; lag p50 "
            f"{pct(lags, 0.5):.0f} ms, p95 {pct(lags, 0.95):.0f} ms, max "
            f"{max(lags, default=float('nan')):.0f} ms"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--processes", default="1,3", help="process counts, in this order")
    parser.add_argument("--postgis-url", default=os.environ.get(POSTGIS_URL_ENV))
    args = parser.parse_args()
    if not args.postgis_url:
        parser.error("no PostGIS: run under scripts/with-postgis.sh, or give --postgis-url")
    os.environ[POSTGIS_URL_ENV] = args.postgis_url
    print(f"load average at the start {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="bench-scale-ingest-") as tmp:
        for count in (int(c) for c in args.processes.split(",")):
            url, token = prepare(f"ingest{count}")
            servers = [
                ServerProcess(
                    url, Path(tmp) / f"{count}p{i}.log", name=f"p{i}", log_level="WARNING"
                )
                for i in range(count)
            ]
            try:
                for server in servers:
                    server.start(wait=False)
                for server in servers:
                    server.wait_ready()
                print(f"{count} process{'es' if count > 1 else ''}:", flush=True)
                lines = asyncio.run(feed(servers, token, args.rate, args.seconds, args.batch))
                print("\n".join(lines), flush=True)
            finally:
                for server in servers:
                    server.stop()
                drop_database(url)
    print(f"load average at the end {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
