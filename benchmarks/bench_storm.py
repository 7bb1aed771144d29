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

``--baseline DIR`` runs the same storms first against a server started from another checkout
(``git archive HEAD | tar -x -C DIR``), on the same database, so the ratio holds on a loaded
machine. ``--profile`` serves in this process instead (``tests/live_server.py``) and adds up the
time spent in the subscription's steps (sign-in, the site model check, the first answer).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
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

from websockets.asyncio.client import ClientConnection, connect

from benchmarks.bench_command import raise_file_limit
from command.auth import Role, find_user, issue_token
from gis.storage.db import Database, make_engine
from tests.conftest import DEMO_ID, _load_demo
from tests.processes import ServerProcess, drop_database, postgis_demo_database

VIEWER = "storm-viewer"
TIMEOUT_S = 120.0


def prepare(backend: str, folder: Path, clients: int) -> tuple[str, list[str]]:
    """A database with the demo site and a viewer; its URL and ``clients`` session tokens."""
    users = {VIEWER: Role.VIEWER}
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
        cpu = cpu_s(pid)
        took, each = await storm(ws_url, tokens)
        used = f"; server CPU {cpu_s(pid) - cpu:.2f} s" if pid is not None else ""
        totals.append(took)
        print(
            f"{label} storm {n + 1}: {len(tokens)} clients all served in {took:.2f} s "
            f"(connect -> snapshot p50 {pct(each, 50):.2f} s, p99 {pct(each, 99):.2f} s{used})",
            flush=True,
        )
        await asyncio.sleep(1.0)  # the closed connections leave the server
    return totals


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
    results: dict[str, list[float]] = {}
    if args.baseline is not None:
        baseline = CheckoutServer(args.baseline, url, folder / "baseline.log", **settings)
        with served(baseline):
            results["baseline"] = asyncio.run(
                storms("baseline", baseline.ws_url, tokens, args.storms, pid_of(baseline))
            )
    with served(ServerProcess(url, folder / "server.log", **settings)) as server:
        results["this tree"] = asyncio.run(
            storms("this tree", server.ws_url, tokens, args.storms, pid_of(server))
        )
    for label, totals in results.items():
        print(f"{label}: median storm {statistics.median(totals):.2f} s over {len(totals)}")
    if "baseline" in results:
        ratio = statistics.median(results["this tree"]) / statistics.median(results["baseline"])
        print(f"this tree / baseline: {ratio:.2f}x the time (target: all served within 3 s)")


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
