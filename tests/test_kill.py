"""Issue 12, item 5: a real `rallypoint serve` killed with SIGKILL loses neither the incident,
nor where people were, nor the headcount at the muster points.

The reproduction lost positions and the headcount on restart; positions are now stored once a
second. The server here is the real process, killed without any chance to clean up, and then
started again on the same database file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from shapely.geometry import shape

from tests.conftest import CHLORINE_ACTIVATION, DEMO_ID, DEMO_PLANS, DEMO_SITE, ROOT
from tests.test_server import free_port

CLI = [sys.executable, "-m", "command.cli"]
WAIT_S = 60.0
SITE = f"/api/sites/{DEMO_ID}"


def run(env: dict[str, str], *args: str, stdin: bytes | None = None) -> None:
    subprocess.run([*CLI, *args], env=env, check=True, cwd=ROOT, capture_output=True, input=stdin)


@contextmanager
def serving(env: dict[str, str], port: int) -> Iterator[tuple[subprocess.Popen[str], str]]:
    server = subprocess.Popen(
        [*CLI, "serve", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        until(lambda: _healthy(base, server), "the server never answered")
        yield server, base
    finally:
        if server.poll() is None:
            server.kill()
        server.wait(WAIT_S)


def _healthy(base: str, server: subprocess.Popen[str]) -> bool:
    assert server.poll() is None, "the server exited"
    try:
        return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def until(ready: Any, what: str) -> Any:
    """Poll ``ready`` (a real process is being waited for: its own clock runs) until truthy."""
    deadline = time.monotonic() + WAIT_S
    while not (found := ready()):
        assert time.monotonic() < deadline, what
        time.sleep(0.1)
    return found


def stored_at(base: str, auth: dict[str, str], moves: list[dict[str, Any]]) -> bool:
    """Whether the people layer (read from the database) has each person where they moved."""
    layer = httpx.get(f"{base}{SITE}/layers/people", headers=auth).json()["features"]
    where = {f["id"]: f["geometry"]["coordinates"] for f in layer if f["geometry"]}
    return all(
        abs(where[m["person_id"]][0] - m["lon"]) < 1e-7
        and abs(where[m["person_id"]][1] - m["lat"]) < 1e-7
        for m in moves
    )


def test_kill_9_mid_incident_keeps_the_incident_positions_and_headcount(tmp_path: Path) -> None:
    db_path = tmp_path / "killed.db"
    env = {
        **os.environ,
        "RALLYPOINT_DATABASE_URL": f"sqlite:///{db_path}",
        "RALLYPOINT_AUDIT_KEY": str(tmp_path / "audit-key.pem"),
        "RALLYPOINT_AUDIT_CHECKPOINTS": str(tmp_path / "checkpoints.jsonl"),
    }
    run(env, "db", "upgrade")
    run(env, "site", "load", str(DEMO_SITE))
    run(env, "plan", "load", str(DEMO_PLANS), "--site", DEMO_ID)
    run(
        env,
        "user",
        "add",
        "cmd-kill",
        "--role",
        "commander",
        "--password-stdin",
        stdin=b"kill-9-password\n",
    )
    port = free_port()
    login = {"username": "cmd-kill", "password": "kill-9-password"}
    with serving(env, port) as (server, base):
        token = httpx.post(f"{base}/api/auth/login", json=login).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        answer = httpx.post(f"{base}{SITE}/incidents", json=CHLORINE_ACTIVATION, headers=auth)
        assert answer.status_code == 201, answer.text
        incident = answer.json()["incident"]["id"]
        # Three people walk into the area of a muster point.
        zones = httpx.get(f"{base}{SITE}/layers/zones?kind=muster_point", headers=auth).json()[
            "features"
        ]
        point = shape(zones[0]["geometry"]).representative_point()
        people = httpx.get(f"{base}{SITE}/layers/people", headers=auth).json()["features"]
        moves = [{"person_id": p["id"], "lon": point.x, "lat": point.y} for p in people[:3]]
        taken = httpx.post(f"{base}{SITE}/positions", json={"positions": moves}, headers=auth)
        assert taken.status_code == 200, taken.text
        before = taken.json()["headcount"]
        assert before["at"][zones[0]["id"]] >= 3
        # Stored within a second or two (the ticker writes them; the people layer reads the
        # database): then the process dies hard.
        until(lambda: stored_at(base, auth, moves), "the positions were never stored")
        os.kill(server.pid, signal.SIGKILL)
        server.wait(WAIT_S)
    with serving(env, port) as (server, base):
        token = httpx.post(f"{base}/api/auth/login", json=login).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        until(
            lambda: httpx.get(f"{base}/healthz").json().get("recovery", {}).get("finished"),
            "recovery never finished",
        )
        picture = httpx.get(f"{base}{SITE}/incidents/{incident}", headers=auth)
        assert picture.status_code == 200, picture.text
        assert stored_at(base, auth, moves), "the positions are where they were stored"
        after = picture.json()["headcount"]
        assert after["accounted"] == before["accounted"]
        assert after["at"] == before["at"]
