"""Real ``rallypoint serve`` processes on one PostGIS database, for the scale-out tests (issue 17):
each a subprocess of its own, started as an operator would start one, on a loopback port of its
own, stopped politely (SIGTERM) or killed (SIGKILL, as a crash).

``postgis_demo_database(name, users)`` makes the database they share: a fresh one on the test
PostGIS server (``RALLYPOINT_TEST_POSTGIS_URL``), migrated, holding the demo site, its plans and
the users (each with the test password). Without PostGIS the test skips (fails with CI=true).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from command.auth import Role
from tests.conftest import POSTGIS_URL_ENV, TEST_PASSWORD, _admin, _drop_database, _load_demo

RALLYPOINT = Path(sys.executable).with_name("rallypoint")
#: The longest a process may take to start serving (migrations checked, incidents recovered).
START_S = 60.0
STOP_S = 20.0


def require_postgis() -> str:
    """The test PostGIS server's URL; skips (fails with CI=true) without one."""
    url = os.environ.get(POSTGIS_URL_ENV)
    if not url:
        message = f"no PostGIS ({POSTGIS_URL_ENV} unset); 'make test' provides one"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return url


def postgis_demo_database(name: str, users: Mapping[str, Role] | None = None) -> str:
    """A fresh PostGIS database ``<worker's database>_<name>`` with the demo site, its plans and
    ``users``; its URL (dropped first if a killed run left it behind)."""
    shared = require_postgis()
    database = f"{make_url(shared).database}_{name}"
    url = make_url(shared).set(database=database).render_as_string(hide_password=False)
    _drop_database(shared, database)
    with _admin(shared) as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{database}"')
    _load_demo(url, users)
    return url


def drop_database(url: str) -> None:
    shared = require_postgis()
    _drop_database(shared, make_url(url).database or "")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class ServerProcess:
    """``rallypoint serve`` on ``database_url``, on a free loopback port, as a subprocess; its
    output in ``log`` (a file). ``settings`` are more ``RALLYPOINT_*`` variables, without the
    prefix (``{"ws_heartbeat_s": 1}``)."""

    def __init__(self, database_url: str, log: Path, *, name: str = "", **settings: Any) -> None:
        self.database_url = database_url
        self.log = log
        self.name = name or log.stem
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/ws"
        self.settings = settings
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *, wait: bool = True) -> ServerProcess:
        assert self.process is None, f"{self.name} is running already"
        env = {
            **os.environ,
            "RALLYPOINT_DATABASE_URL": self.database_url,
            "RALLYPOINT_LOG_LEVEL": "INFO",
            **{f"RALLYPOINT_{k.upper()}": str(v) for k, v in self.settings.items()},
        }
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [str(RALLYPOINT), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a test's Ctrl-C does not reach it twice
            )
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = START_S) -> None:
        """Until ``/healthz`` answers 200 with recovery finished."""
        deadline = time.monotonic() + timeout
        while True:
            assert self.process is not None
            code = self.process.poll()
            assert code is None, f"{self.name} exited with {code}:\n{self.output()[-3000:]}"
            try:
                answer = httpx.get(f"{self.base}/healthz", timeout=2.0)
                if answer.status_code == 200 and answer.json().get("recovery", {}).get(
                    "finished", True
                ):
                    return
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (
                f"{self.name} did not serve within {timeout} s:\n{self.output()[-3000:]}"
            )
            time.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM, as an operator stops it (it finishes its requests), then waits."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(STOP_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(STOP_S)
        self.process = None

    def kill(self) -> None:
        """SIGKILL: a crash, nothing finished, no goodbye to the database or the clients."""
        if self.process is None:
            return
        self.process.kill()
        self.process.wait(STOP_S)
        self.process = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""

    def sign_in(self, username: str, password: str = TEST_PASSWORD) -> dict[str, str]:
        answer = httpx.post(
            f"{self.base}/api/auth/login",
            json={"username": username, "password": password},
            timeout=30.0,
        )
        assert answer.status_code == 200, answer.text
        return {"Authorization": f"Bearer {answer.json()['access_token']}"}

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
