"""One server process against three on one PostGIS database, in the same run (issue 17).

Run: ``scripts/with-postgis.sh .venv/bin/python -m benchmarks.bench_scale [--clients 3000]
[--storm 1000] [--storms 3] [--rounds 10] [--activations 6] [--no-deflate] [--postgis-url URL]``;
lower the counts for a quick run.

The servers are ``rallypoint serve`` subprocesses (``tests/processes.py``) on one database holding
the demo site, a viewer with a session token per client, and a commander. The clients are
``websockets`` in this process's event loop, spread evenly over the processes; the REST calls that
cause the events are sent from the same loop, so every time below is ``time.monotonic`` of one
process, from the call's send to the message's arrival. Measured, first on 1 process, then on 3:

- **fan-out**: ``--clients`` subscribers; a chlorine detector (S-057) crosses its alarm tier and
  back (``POST .../readings``, to the processes in turn), one event per round; each client's time
  to that event, pooled over the rounds: p50, p99, max (and the median of the rounds' own p99,
  the steadier figure on a loaded machine); beside them, when the POST was answered and when the
  first client had the event, the messages each client got, and this process's CPU time;
- **reconnect storm**: the fan-out's clients gone, ``--storm`` clients connect and subscribe at
  once; the time until the last has its snapshot, and each one's p50;
- **activation -> picture**: one watcher on each process; the chlorine plan activated on each
  process in turn (stood down between rounds); at a watcher on the same process and on another:
  the time to the activation's first ``event``, and to its picture (the ``incident`` message:
  built by the activating process from the plan it computed, which it relays with the events;
  the others send that picture once their follower has read the events, then rebuild the
  incident from the log for their own memory).

The client machine is the servers' machine (2 cores, with PostgreSQL): a client loop busy reading
3,000 sockets adds to every figure (its CPU time per round is printed), and the load of other
work swings them; the same-run ratios are the figures to read. The clients ask for
permessage-deflate, as browsers do; ``--no-deflate`` shows what compressing every message once
per client costs the servers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from benchmarks.bench_command import raise_file_limit
from command.auth import Role, find_user, issue_token
from gis.storage.db import Database, make_engine
from tests.conftest import DEMO_ID, POSTGIS_URL_ENV
from tests.processes import ServerProcess, drop_database, postgis_demo_database
from tests.test_incidents import chlorine

VIEWER = "scale-viewer"
COMMANDER = "scale-commander"
SITE = f"/api/sites/{DEMO_ID}"
CL2 = "S-057"  # a chlorine detector: alarm at 1 ppm
TIMEOUT_S = 180.0
#: permessage-deflate, as browsers ask for it; ``--no-deflate`` turns it off (the server then
#: sends every message as it is, instead of compressing it once per client).
DEFLATE: dict[str, str | None] = {"compression": "deflate"}
#: Subscriptions opened at once while the fan-out's clients are set up (not a storm: not timed).
OPENING = 100


def prepare(clients: int) -> tuple[str, list[str], str]:
    """A fresh database with the demo site; its URL, ``clients`` viewer tokens and a commander's."""
    url = postgis_demo_database("scale", {VIEWER: Role.VIEWER, COMMANDER: Role.COMMANDER})
    engine = make_engine(url)
    try:
        with Database(engine).write() as session:
            viewer = find_user(session, VIEWER)
            tokens = [issue_token(session, viewer, ttl_s=24 * 3600).token for _ in range(clients)]
            commander = issue_token(session, find_user(session, COMMANDER), ttl_s=24 * 3600)
    finally:
        engine.dispose()
    return url, tokens, commander.token


@dataclass
class Client:
    """A subscriber: its connection, and the arrival time of every message it was told to wait
    for (``expect``)."""

    ws: ClientConnection
    snapshot_s: float  # connect -> snapshot
    last_seq: int = 0
    first_event: float | None = None  # the first event after ``after``
    picture: float | None = None  # the first ``incident`` message after ``after``
    after: int = 0
    messages: int = 0  # every message received since the snapshot
    kinds: Counter[str] = field(default_factory=Counter)  # the same, by type
    reader: asyncio.Task[None] | None = field(default=None, repr=False)

    def expect(self, after: int) -> None:
        self.after, self.first_event, self.picture = after, None, None

    async def read(self) -> None:
        """Keep reading: answer pings, note arrivals (the clock first, the parsing after)."""
        try:
            async for raw in self.ws:
                now = time.monotonic()
                self.messages += 1
                message = json.loads(raw)
                kind = message.get("type")
                self.kinds[
                    kind if kind != "event" else f"event {message['event'].get('type')}"
                ] += 1
                if kind == "ping":
                    await self.ws.send('{"type": "pong"}')
                elif kind == "event":
                    seq = int(message["seq"])
                    self.last_seq = max(self.last_seq, seq)
                    if seq > self.after and self.first_event is None:
                        self.first_event = now
                elif (
                    kind == "incident"
                    and self.picture is None
                    # The picture's seq is the last event it includes: this round's or later.
                    and int(message.get("seq", 0)) > self.after
                ):
                    self.picture = now
        except ConnectionClosed:
            pass

    async def close(self) -> None:
        await self.ws.close()
        if self.reader is not None:
            await self.reader


async def subscribe(ws_url: str, token: str, *, read: bool = True) -> Client:
    """Connect with ``token``, subscribe to the demo site and wait for the snapshot; then (with
    ``read``) keep reading in a task of its own."""
    start = time.monotonic()
    ws = await connect(
        ws_url,
        additional_headers={"Authorization": f"Bearer {token}"},
        max_size=None,
        open_timeout=TIMEOUT_S,
        ping_interval=None,
        compression=DEFLATE["compression"],
    )
    await ws.send(json.dumps({"type": "subscribe", "site": DEMO_ID, "last_seq": None}))
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT_S))
        if message.get("type") == "snapshot":
            break
        if message.get("type") == "error":
            raise RuntimeError(f"refused: {message}")
    client = Client(ws, time.monotonic() - start, last_seq=int(message.get("seq", 0)))
    if read:
        client.reader = asyncio.create_task(client.read())
    return client


def spread(urls: Sequence[str], tokens: Sequence[str]) -> list[tuple[str, str]]:
    """Each token with a process, in turn: the clients evenly over the processes."""
    return [(urls[i % len(urls)], token) for i, token in enumerate(tokens)]


async def open_clients(pairs: list[tuple[str, str]]) -> list[Client]:
    """Subscribe every (process, token) pair, at most :data:`OPENING` at a time."""
    gate = asyncio.Semaphore(OPENING)

    async def one(url: str, token: str) -> Client:
        async with gate:
            return await subscribe(url, token)

    return list(await asyncio.gather(*(one(u, t) for u, t in pairs)))


async def wait_all(clients: Sequence[Client], what: str, *, picture: bool = False) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not all((c.picture if picture else c.first_event) is not None for c in clients):
        if time.monotonic() > deadline:
            missing = sum((c.picture if picture else c.first_event) is None for c in clients)
            raise TimeoutError(f"{missing} of {len(clients)} clients never got {what}")
        await asyncio.sleep(0.01)


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


@dataclass
class Figures:
    fanout_ms: list[float] = field(default_factory=list)  # every client, every round
    storms_s: list[float] = field(default_factory=list)  # the last snapshot, per storm
    storm_each_s: list[float] = field(default_factory=list)
    same_event_ms: list[float] = field(default_factory=list)
    same_picture_ms: list[float] = field(default_factory=list)
    other_event_ms: list[float] = field(default_factory=list)
    other_picture_ms: list[float] = field(default_factory=list)
    activate_ms: list[float] = field(default_factory=list)  # the POST's answer
    # other-process watcher minus the same round's same-process one
    behind_event_ms: list[float] = field(default_factory=list)
    behind_picture_ms: list[float] = field(default_factory=list)
    client_cpu_ms: list[float] = field(default_factory=list)  # this process, per fan-out round
    round_p99_ms: list[float] = field(default_factory=list)  # each fan-out round's own p99
    answered_ms: list[float] = field(default_factory=list)  # the reading's POST answered
    first_ms: list[float] = field(default_factory=list)  # the first client to get the event


async def fanout(
    http: httpx.AsyncClient, bases: Sequence[str], tokens: list[str], rounds: int, out: Figures
) -> None:
    urls = [f"{b.replace('http', 'ws', 1)}/ws" for b in bases]
    started = time.monotonic()
    clients = await open_clients(spread(urls, tokens))
    print(f"  {len(clients)} clients subscribed in {time.monotonic() - started:.1f} s", flush=True)
    try:
        await asyncio.sleep(1.0)
        for n in range(rounds):
            after = max(c.last_seq for c in clients)
            for client in clients:
                client.expect(after)
            value = 1.4 if n % 2 == 0 else 0.0  # into the alarm tier and out: an event each
            body = {"readings": [{"sensor_id": CL2, "value": value}]}
            cpu = time.process_time()
            received = sum(c.messages for c in clients)
            kinds = sum((c.kinds for c in clients), Counter[str]())
            sent = time.monotonic()
            answer = await http.post(f"{bases[n % len(bases)]}{SITE}/readings", json=body)
            answered = 1000 * (time.monotonic() - sent)
            answer.raise_for_status()
            await wait_all(clients, "the reading's event")
            out.client_cpu_ms.append(1000 * (time.process_time() - cpu))
            took = [1000 * (c.first_event - sent) for c in clients if c.first_event is not None]
            out.fanout_ms += took
            out.round_p99_ms.append(pct(took, 99))
            out.answered_ms.append(answered)
            out.first_ms.append(min(took))
            per_client = (sum(c.messages for c in clients) - received) / len(clients)
            print(
                f"  fan-out round {n + 1}: POST answered {answered:.0f} ms; first client"
                f" {min(took):.0f} ms, p50 {pct(took, 50):.0f} ms, p99 {pct(took, 99):.0f} ms,"
                f" max {max(took):.0f} ms; {per_client:.1f} messages a client;"
                f" client CPU {out.client_cpu_ms[-1]:.0f} ms",
                flush=True,
            )
            new = sum((c.kinds for c in clients), Counter[str]()) - kinds
            print(f"    received, by type: {dict(new)}", flush=True)
            await asyncio.sleep(1.0)  # the alarm's follow-ups settle
    finally:
        await asyncio.gather(*(c.close() for c in clients))


async def storm(urls: Sequence[str], tokens: list[str], storms: int, out: Figures) -> None:
    for n in range(storms):
        await asyncio.sleep(2.0)  # the closed connections leave; sign-ins fall out of the cache
        pairs = spread(urls, tokens)
        start = time.monotonic()
        opened = await asyncio.gather(*(subscribe(u, t, read=False) for u, t in pairs))
        took = time.monotonic() - start
        each = [c.snapshot_s for c in opened]
        out.storms_s.append(took)
        out.storm_each_s += each
        print(
            f"  storm {n + 1}: {len(opened)} all served in {took:.2f} s"
            f" (connect -> snapshot p50 {pct(each, 50):.2f} s)",
            flush=True,
        )
        await asyncio.gather(*(c.ws.close() for c in opened))


async def activations(
    http: httpx.AsyncClient, bases: Sequence[str], token: str, rounds: int, out: Figures
) -> None:
    urls = [f"{b.replace('http', 'ws', 1)}/ws" for b in bases]
    watchers = [await subscribe(url, token) for url in urls]
    try:
        for n in range(rounds):
            at = n % len(bases)
            after = max(w.last_seq for w in watchers)
            for watcher in watchers:
                watcher.expect(after)
            sent = time.monotonic()
            answer = await http.post(f"{bases[at]}{SITE}/incidents", json=chlorine())
            out.activate_ms.append(1000 * (time.monotonic() - sent))
            if answer.status_code != 201:
                raise RuntimeError(f"activation refused: {answer.status_code} {answer.text}")
            incident = answer.json()["incident"]["id"]
            await wait_all(watchers, "the activation's event")
            await wait_all(watchers, "the activation's picture", picture=True)
            here = watchers[at]
            assert here.first_event is not None and here.picture is not None
            for i, watcher in enumerate(watchers):
                assert watcher.first_event is not None and watcher.picture is not None
                event_ms = 1000 * (watcher.first_event - sent)
                picture_ms = 1000 * (watcher.picture - sent)
                if i == at:
                    out.same_event_ms.append(event_ms)
                    out.same_picture_ms.append(picture_ms)
                else:
                    out.other_event_ms.append(event_ms)
                    out.other_picture_ms.append(picture_ms)
                    out.behind_event_ms.append(1000 * (watcher.first_event - here.first_event))
                    out.behind_picture_ms.append(1000 * (watcher.picture - here.picture))
            print(
                f"  activation {n + 1} on p{at}: answered in {out.activate_ms[-1]:.0f} ms; "
                + ", ".join(
                    f"p{i} event {1000 * (w.first_event - sent):.0f} ms"  # type: ignore[operator]
                    f" picture {1000 * (w.picture - sent):.0f} ms"  # type: ignore[operator]
                    for i, w in enumerate(watchers)
                ),
                flush=True,
            )
            after = max(w.last_seq for w in watchers)
            for watcher in watchers:
                watcher.expect(after)
            down = await http.post(
                f"{bases[at]}{SITE}/incidents/{incident}/stand-down",
                json={"force": True, "reason": "benchmark round over"},
            )
            down.raise_for_status()
            await wait_all(watchers, "the stand-down")
            await asyncio.sleep(1.0)
    finally:
        await asyncio.gather(*(w.close() for w in watchers))


async def measure(
    bases: Sequence[str], tokens: list[str], commander: str, args: argparse.Namespace
) -> Figures:
    out = Figures()
    headers = {"Authorization": f"Bearer {commander}"}
    async with httpx.AsyncClient(headers=headers, timeout=TIMEOUT_S) as http:
        await fanout(http, bases, tokens[: args.clients], args.rounds, out)
        urls = [f"{b.replace('http', 'ws', 1)}/ws" for b in bases]
        await storm(urls, tokens[: args.storm], args.storms, out)
        await activations(http, bases, tokens[0], args.activations, out)
    return out


@contextlib.contextmanager
def cluster(url: str, folder: Path, count: int) -> Iterator[list[ServerProcess]]:
    servers = [
        ServerProcess(url, folder / f"{count}p{i}.log", name=f"p{i}", log_level="WARNING")
        for i in range(count)
    ]
    try:
        for server in servers:
            server.start(wait=False)
        for server in servers:
            server.wait_ready()
        yield servers
    finally:
        for server in servers:
            server.stop()


def med(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def table(results: dict[int, Figures], args: argparse.Namespace) -> list[str]:
    one, three = results[1], results[3]
    rows: list[tuple[str, float, float, str]] = [
        (
            f"fan-out to {args.clients}, p50 (ms)",
            pct(one.fanout_ms, 50),
            pct(three.fanout_ms, 50),
            "",
        ),
        (
            f"fan-out to {args.clients}, p99 (ms)",
            pct(one.fanout_ms, 99),
            pct(three.fanout_ms, 99),
            "p99 < 300 ms on 3",
        ),
        (f"fan-out to {args.clients}, max (ms)", max(one.fanout_ms), max(three.fanout_ms), ""),
        (
            "fan-out: median of the rounds' p99 (ms)",
            med(one.round_p99_ms),
            med(three.round_p99_ms),
            "",
        ),
        (
            "fan-out: reading POST answered (ms, median)",
            med(one.answered_ms),
            med(three.answered_ms),
            "",
        ),
        ("fan-out: first client (ms, median)", med(one.first_ms), med(three.first_ms), ""),
        (
            f"storm of {args.storm}: all served (s, median)",
            med(one.storms_s),
            med(three.storms_s),
            "< 3 s",
        ),
        (
            f"storm of {args.storm}: connect -> snapshot p50 (s)",
            pct(one.storm_each_s, 50),
            pct(three.storm_each_s, 50),
            "",
        ),
        (
            "activation: POST answered (ms, median)",
            med(one.activate_ms),
            med(three.activate_ms),
            "",
        ),
        (
            "activation -> event, same process (ms)",
            med(one.same_event_ms),
            med(three.same_event_ms),
            "",
        ),
        (
            "activation -> picture, same process (ms)",
            med(one.same_picture_ms),
            med(three.same_picture_ms),
            "",
        ),
        ("activation -> event, other process (ms)", float("nan"), med(three.other_event_ms), ""),
        (
            "activation -> picture, other process (ms)",
            float("nan"),
            med(three.other_picture_ms),
            "other - same <= 20 ms",
        ),
    ]
    rows.append(
        (
            "client process CPU per fan-out round (ms)",
            med(one.client_cpu_ms),
            med(three.client_cpu_ms),
            "",
        )
    )
    lines = [
        "| measure | 1 process | 3 processes | 3 / 1 | target |",
        "|---|---|---|---|---|",
    ]
    for label, a, b, target in rows:
        ratio = f"{b / a:.2f}x" if a == a and a > 0 else "-"
        lines.append(f"| {label} | {figure(a)} | {figure(b)} | {ratio} | {target} |")
    lines.append("")
    lines.append(
        f"On 3 processes, a wall on another process than the activating one is behind a wall on "
        f"the activating one by {figure(med(three.behind_event_ms))} ms for the first event and "
        f"{figure(med(three.behind_picture_ms))} ms for the picture (median over "
        f"{len(three.behind_picture_ms)} pairs, each other-process watcher against the same "
        f"round's same-process one; target: at most 20 ms)."
    )
    return lines


def figure(value: float) -> str:
    if value != value:  # nan: not measured
        return "-"
    return f"{value:.2f}" if abs(value) < 10 else f"{value:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=3000, help="fan-out subscribers")
    parser.add_argument("--storm", type=int, default=1000, help="clients in a reconnect storm")
    parser.add_argument("--storms", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=10, help="fan-out rounds")
    parser.add_argument("--activations", type=int, default=6)
    parser.add_argument(
        "--no-deflate", action="store_true", help="clients without permessage-deflate"
    )
    parser.add_argument("--postgis-url", default=os.environ.get(POSTGIS_URL_ENV))
    args = parser.parse_args()
    if not args.postgis_url:
        parser.error("no PostGIS: run under scripts/with-postgis.sh, or give --postgis-url")
    os.environ[POSTGIS_URL_ENV] = args.postgis_url
    if args.no_deflate:
        DEFLATE["compression"] = None
    raise_file_limit(max(args.clients, args.storm) + 64)
    print(
        f"clients in this one process, on the servers' machine ({os.cpu_count()} cores, "
        f"PostgreSQL too); load average {os.getloadavg()[0]:.1f} at the start",
        flush=True,
    )
    url, tokens, commander = prepare(max(args.clients, args.storm))
    results: dict[int, Figures] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
            for count in (1, 3):
                print(f"{count} process{'es' if count > 1 else ''}:", flush=True)
                with cluster(url, Path(tmp), count) as servers:
                    bases = [s.base for s in servers]
                    results[count] = asyncio.run(measure(bases, tokens, commander, args))
    finally:
        drop_database(url)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    print("\n".join(table(results, args)))


if __name__ == "__main__":
    main()
