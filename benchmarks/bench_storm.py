"""A reconnect storm: 1,000 websocket clients subscribing at once, each with a token of its own.

Run: ``.venv/bin/python -m benchmarks.bench_storm [--clients 1000] [--storms 3]
[--backend sqlite|postgis] [--baseline DIR] [--profile]``; PostGIS under
``scripts/with-postgis.sh`` (``RALLYPOINT_TEST_POSTGIS_URL``).

The server is ``rallypoint serve`` as a subprocess (``tests/processes.py``) on a database holding
the demo site and one viewer with ``--clients`` session tokens (a phone or wall each). The clients
are ``websockets`` in this process's event loop. A storm opens every connection at once, each
sends its ``subscribe`` and waits for the snapshot; measured is the time until all have it, and
each client's connect-to-snapshot time. The first subscription (the site model's first build) is
made before the storms. Between storms every client is closed, as a network blip does.

``--baseline DIR`` also starts a server from another checkout (``git archive HEAD | tar -x -C
DIR``) on the same database, and storms the two in turn, in alternating order, so the ratios
hold on a loaded machine. ``--fanout N`` measures the delivery of one event to ``N`` open
connections instead (``--storms`` rounds; with ``--baseline`` alternating, each server on its
own copy of the SQLite database): the time until each client has it, and the server's CPU.
``--profile`` serves in this process instead (``tests/live_server.py``) and adds up the time
spent in the subscription's steps (sign-in, the site model check, the first answer).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

from benchmarks.bench_command import raise_file_limit
from command.auth import Role, find_user, issue_token
from gis.storage.db import Database, make_engine
from tests.conftest import DEMO_ID, _load_demo
from tests.processes import ServerProcess, drop_database, postgis_demo_database

VIEWER = "storm-viewer"
COMMANDER = "storm-commander"
CL2 = "S-057"  # a chlorine detector of the demo site: alarm at 1 ppm
TIMEOUT_S = 120.0


def prepare(backend: str, folder: Path, clients: int) -> tuple[str, list[str]]:
    """A database with the demo site and a viewer; its URL and ``clients`` session tokens."""
    users = {VIEWER: Role.VIEWER, COMMANDER: Role.COMMANDER}
    if backend == "postgis":
        url = postgis_demo_database("storm", users)
    else:
        url = f"sqlite:///{folder / 'storm.db'}"
        _load_demo(url, users)
    engine = make_engine(url)
    try:
        with Database(engine).write() as session:
            viewer = find_user(session, VIEWER)
            tokens = [issue_token(session, viewer, ttl_s=24 * 3600).token for _ in range(clients)]
    finally:
        engine.dispose()
    return url, tokens


class CheckoutServer(ServerProcess):
    """``rallypoint serve`` from another checkout (``python -m command.cli`` with its folder
    first on the path), for the baseline."""

    def __init__(self, tree: Path, database_url: str, log: Path, **settings: Any) -> None:
        super().__init__(database_url, log, **settings)
        self.tree = tree

    def start(self, *, wait: bool = True) -> ServerProcess:
        env = {
            **os.environ,
            "PYTHONPATH": str(self.tree),
            "RALLYPOINT_DATABASE_URL": self.database_url,
            **{f"RALLYPOINT_{k.upper()}": str(v) for k, v in self.settings.items()},
        }
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [*(sys.executable, "-m", "command.cli", "serve"), *self._address()],
                cwd=self.tree,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if wait:
            self.wait_ready()
        return self

    def _address(self) -> list[str]:
        return ["--host", "127.0.0.1", "--port", str(self.port)]


async def subscribe(ws_url: str, token: str) -> tuple[ClientConnection, float]:
    """Connect with ``token`` and subscribe to the demo site; the connection and the time from
    connecting to the snapshot (seconds)."""
    start = time.perf_counter()
    ws = await connect(
        ws_url,
        additional_headers={"Authorization": f"Bearer {token}"},
        max_size=None,
        open_timeout=TIMEOUT_S,
        ping_interval=None,
    )
    await ws.send(json.dumps({"type": "subscribe", "site": DEMO_ID}))
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT_S))
        if message.get("type") == "snapshot":
            return ws, time.perf_counter() - start
        if message.get("type") == "error":
            raise RuntimeError(f"refused: {message}")


async def storm(ws_url: str, tokens: list[str]) -> tuple[float, list[float]]:
    """Every client at once; the time until all have their snapshot, and each one's (s)."""
    start = time.perf_counter()
    opened = await asyncio.gather(*(subscribe(ws_url, t) for t in tokens))
    took = time.perf_counter() - start
    await asyncio.gather(*(ws.close() for ws, _ in opened))
    return took, [t for _, t in opened]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def cpu_s(pid: int | None) -> float:
    """The CPU time (user and system) process ``pid`` has used, in seconds (Linux /proc)."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def storms(
    label: str, ws_url: str, tokens: list[str], count: int, pid: int | None = None
) -> list[float]:
    """``count`` storms; their times. With the server's ``pid``, its CPU time in each too: on
    a loaded machine the steadier figure."""
    await subscribe(ws_url, tokens[0])  # the site model's first build, not part of a storm
    totals = []
    for n in range(count):
        took, _ = await one_storm(f"{label} storm {n + 1}", ws_url, tokens, pid)
        totals.append(took)
    return totals


async def one_storm(
    label: str, ws_url: str, tokens: list[str], pid: int | None
) -> tuple[float, float]:
    """One storm, printed; its time and the server's CPU time in it (seconds)."""
    cpu = cpu_s(pid)
    took, each = await storm(ws_url, tokens)
    used = cpu_s(pid) - cpu
    text = f"; server CPU {used:.2f} s" if pid is not None else ""
    print(
        f"{label}: {len(tokens)} clients all served in {took:.2f} s "
        f"(connect -> snapshot p50 {pct(each, 50):.2f} s, p99 {pct(each, 99):.2f} s{text}; "
        f"load {os.getloadavg()[0]:.1f})",
        flush=True,
    )
    await asyncio.sleep(1.0)  # the closed connections leave the server
    return took, used


async def paired(
    servers: dict[str, ServerProcess], tokens: list[str], count: int
) -> dict[str, list[tuple[float, float]]]:
    """``count`` rounds of one storm on each server, both running, in alternating order (the
    load of other work then falls on both alike); each storm's time and server CPU."""
    for server in servers.values():
        await subscribe(server.ws_url, tokens[0])  # the first build, not part of a storm
    results: dict[str, list[tuple[float, float]]] = {label: [] for label in servers}
    for n in range(count):
        order = list(servers) if n % 2 == 0 else list(servers)[::-1]
        for label in order:
            server = servers[label]
            took = await one_storm(f"{label} storm {n + 1}", server.ws_url, tokens, pid_of(server))
            results[label].append(took)
    return results


def commander_token(url: str) -> str:
    engine = make_engine(url)
    try:
        with Database(engine).write() as session:
            return issue_token(session, find_user(session, COMMANDER), ttl_s=24 * 3600).token
    finally:
        engine.dispose()


async def _read(ws: ClientConnection, arrived: dict[ClientConnection, float]) -> None:
    """Note when an event reaches ``ws`` (the first since ``arrived`` was cleared); answer
    pings."""
    with contextlib.suppress(Exception):
        async for text in ws:
            kind = json.loads(text).get("type")
            if kind == "event" and ws not in arrived:
                arrived[ws] = time.perf_counter()
            elif kind == "ping":
                await ws.send('{"type": "pong"}')


async def fanout(
    servers: dict[str, tuple[ServerProcess, str]], tokens: list[str], count: int
) -> dict[str, list[tuple[float, float, float]]]:
    """``len(tokens)`` clients on each server; ``count`` rounds of one reading (S-057 into its
    alarm tier and out: an event each, and the alarm's follow-ups) posted to each server in
    turn, alternating the order. Per round and server: the p50 and p99 of the time until each
    client has the first event (s), and the server's CPU in the round (s; the POST, the event,
    its follow-ups and their delivery, over 1.5 s)."""
    results: dict[str, list[tuple[float, float, float]]] = {label: [] for label in servers}
    arrived: dict[ClientConnection, float] = {}
    clients: dict[str, list[ClientConnection]] = {}
    readers = []
    for label, (server, _) in servers.items():
        opened = await asyncio.gather(*(subscribe(server.ws_url, t) for t in tokens))
        clients[label] = [ws for ws, _ in opened]
        readers += [asyncio.create_task(_read(ws, arrived)) for ws in clients[label]]
    await asyncio.sleep(2.0)
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT_S) as http:
            for n in range(count):
                order = list(servers) if n % 2 == 0 else list(servers)[::-1]
                for label in order:
                    server, commander = servers[label]
                    arrived.clear()
                    value = 1.4 if n % 2 == 0 else 0.0
                    cpu = cpu_s(pid_of(server))
                    sent = time.perf_counter()
                    answer = await http.post(
                        f"{server.base}/api/sites/{DEMO_ID}/readings",
                        json={"readings": [{"sensor_id": CL2, "value": value}]},
                        headers={"Authorization": f"Bearer {commander}"},
                    )
                    answer.raise_for_status()
                    async with asyncio.timeout(TIMEOUT_S):
                        while not all(ws in arrived for ws in clients[label]):
                            await asyncio.sleep(0.01)
                    took = [arrived[ws] - sent for ws in clients[label]]
                    await asyncio.sleep(1.5)  # the follow-ups, delivered too
                    used = cpu_s(pid_of(server)) - cpu
                    results[label].append((pct(took, 50), pct(took, 99), used))
                    print(
                        f"{label} fan-out {n + 1}: to {len(took)} clients p50 "
                        f"{pct(took, 50) * 1000:.0f} ms, p99 {pct(took, 99) * 1000:.0f} ms; "
                        f"server CPU {used:.2f} s; load {os.getloadavg()[0]:.1f}",
                        flush=True,
                    )
    finally:
        await asyncio.gather(*(ws.close() for group in clients.values() for ws in group))
        for reader in readers:
            reader.cancel()
    return results


def fanout_table(results: dict[str, list[tuple[float, float, float]]]) -> None:
    medians = {
        label: [statistics.median(r[i] for r in runs) for i in range(3)]
        for label, runs in results.items()
    }
    for label, (p50, p99, cpu) in medians.items():
        print(
            f"{label}: fan-out median p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
            f"server CPU a round {cpu:.2f} s"
        )
    if len(medians) == 2:
        after, before = medians["this tree"], medians["baseline"]
        print(
            "fan-out, this tree / baseline: "
            + ", ".join(
                f"{n} {a / b:.2f}x"
                for n, a, b in zip(("p50", "p99", "CPU"), after, before, strict=True)
            )
        )


@contextlib.contextmanager
def served(server: ServerProcess) -> Iterator[ServerProcess]:
    server.start()
    try:
        yield server
    finally:
        server.stop()


def pid_of(server: ServerProcess) -> int | None:
    return server.process.pid if server.process is not None else None


def run_processes(args: argparse.Namespace, url: str, tokens: list[str], folder: Path) -> None:
    settings = {"log_level": "WARNING"}
    if args.fanout:
        run_fanout(args, url, tokens, folder, settings)
        return
    if args.baseline is None:
        with served(ServerProcess(url, folder / "server.log", **settings)) as server:
            totals = asyncio.run(
                storms("this tree", server.ws_url, tokens, args.storms, pid_of(server))
            )
        print(f"this tree: median storm {statistics.median(totals):.2f} s over {len(totals)}")
        return
    baseline = CheckoutServer(args.baseline, url, folder / "baseline.log", **settings)
    with served(baseline), served(ServerProcess(url, folder / "server.log", **settings)) as tree:
        both = {"baseline": baseline, "this tree": tree}
        results = asyncio.run(paired(both, tokens, args.storms))
    medians = {}
    for label, runs in results.items():
        took = statistics.median(t for t, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        medians[label] = (took, cpu)
        print(f"{label}: median storm {took:.2f} s, server CPU {cpu:.2f} s, over {len(runs)}")
    pairs = list(zip(results["this tree"], results["baseline"], strict=True))
    print(
        "this tree / baseline: "
        f"{medians['this tree'][0] / medians['baseline'][0]:.2f}x the time, "
        f"{medians['this tree'][1] / medians['baseline'][1]:.2f}x the server CPU (medians); "
        f"per round {statistics.median(a[0] / b[0] for a, b in pairs):.2f}x and "
        f"{statistics.median(a[1] / b[1] for a, b in pairs):.2f}x (median of the rounds' ratios)"
        " (target: all served within 3 s)"
    )


def run_fanout(
    args: argparse.Namespace,
    url: str,
    tokens: list[str],
    folder: Path,
    settings: dict[str, str],
) -> None:
    """Fan-out rounds; with ``--baseline``, on each server's own copy of the SQLite database
    (two processes writing one SQLite file do not follow each other's log)."""
    commander = commander_token(url)
    servers = {"this tree": (ServerProcess(url, folder / "server.log", **settings), commander)}
    if args.baseline is not None:
        if not url.startswith("sqlite:///"):
            raise SystemExit("--fanout with --baseline: SQLite only")
        copy = folder / "baseline.db"
        shutil.copyfile(url.removeprefix("sqlite:///"), copy)
        baseline = CheckoutServer(
            args.baseline, f"sqlite:///{copy}", folder / "baseline.log", **settings
        )
        servers = {"baseline": (baseline, commander), **servers}
    with contextlib.ExitStack() as stack:
        for server, _ in servers.values():
            stack.enter_context(served(server))
        results = asyncio.run(fanout(servers, tokens[: args.fanout], args.storms))
    fanout_table(results)


Timings = dict[str, list[float]]


def _timed(timings: Timings, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    lock = threading.Lock()

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            took = time.perf_counter() - start
            with lock:
                timings[name].append(took)

    return wrapper


def run_profile(args: argparse.Namespace, url: str, tokens: list[str]) -> None:
    """In this process, with the subscription's steps timed (their sum over all clients, and
    the slowest: steps run in 40 worker threads at once, so sums exceed the wall clock)."""
    from command import sessions, site_model
    from command.routes import ws
    from tests.live_server import LiveServer

    timings: Timings = defaultdict(list)
    for module, name, label in (
        (ws, "websocket_principal", "sign-in (websocket_principal)"),
        (sessions, "resolve_token_hash", "  token lookups (SQL)"),
        (ws, "_catch_up", "first answer (_catch_up)"),
        (site_model, "_tokens", "  layer tokens (SQL)"),
    ):
        setattr(module, name, _timed(timings, label, getattr(module, name)))
    models = site_model.SiteModels
    models.get = _timed(timings, "site model check (SiteModels.get)", models.get)  # type: ignore[method-assign]  # timed in place for the run
    with LiveServer(url) as server:
        server.recovered()
        asyncio.run(storms("in process", server.ws_url, tokens, args.storms))
    for name, values in timings.items():
        print(
            f"  {name}: {len(values)} calls, sum {sum(values):.2f} s, "
            f"median {statistics.median(values) * 1000:.1f} ms, max {max(values) * 1000:.0f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--storms", type=int, default=3)
    parser.add_argument("--backend", choices=("sqlite", "postgis"), default="sqlite")
    parser.add_argument("--baseline", type=Path, default=None, help="another checkout's folder")
    parser.add_argument("--profile", action="store_true", help="serve in process, time steps")
    parser.add_argument(
        "--fanout", type=int, default=0, help="instead of storms: one event to this many clients"
    )
    args = parser.parse_args()
    raise_file_limit(args.clients)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        url, tokens = prepare(args.backend, folder, args.clients)
        print(f"{args.backend}: demo site, {len(tokens)} session tokens; load {os.getloadavg()}")
        try:
            if args.profile:
                run_profile(args, url, tokens)
            else:
                run_processes(args, url, tokens, folder)
        finally:
            if args.backend == "postgis":
                drop_database(url)


if __name__ == "__main__":
    main()
