"""The real server: `rallypoint serve` answers over a real socket."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import DEMO_SITE, ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_serve_the_demo_site(tmp_path: Path) -> None:
    env = {**os.environ, "RALLYPOINT_DATABASE_URL": f"sqlite:///{tmp_path / 'serve.db'}"}
    cli = [sys.executable, "-m", "command.cli"]
    subprocess.run([*cli, "db", "upgrade"], env=env, check=True, cwd=ROOT, capture_output=True)
    subprocess.run(
        [*cli, "site", "load", str(DEMO_SITE)], env=env, check=True, cwd=ROOT, capture_output=True
    )
    subprocess.run(
        [*cli, "user", "add", "watcher", "--role", "viewer", "--password-stdin"],
        input=b"watcher-password\n",
        env=env,
        check=True,
        cwd=ROOT,
        capture_output=True,
    )
    port = free_port()
    server = subprocess.Popen(
        [*cli, "serve", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.2)
        assert httpx.get(f"{base}/api/sites").status_code == 401
        login = {"username": "watcher", "password": "watcher-password"}
        token = httpx.post(f"{base}/api/auth/login", json=login).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        sites = httpx.get(f"{base}/api/sites", headers=auth).json()["sites"]
        assert [s["id"] for s in sites] == ["demo-works"]
        zones = httpx.get(f"{base}/api/sites/demo-works/layers/zones", headers=auth).json()
        assert len(zones["features"]) == 48
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=10)
    assert f"http://127.0.0.1:{port}" in output
