"""Several ``rallypoint serve`` processes on one PostGIS database (issue 17), each a real
subprocess (tests/processes.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from command.auth import Role
from tests.conftest import DEMO_ID
from tests.processes import ServerProcess, drop_database, postgis_demo_database

SITE = f"/api/sites/{DEMO_ID}"
USERS = {"cmd-a": Role.COMMANDER, "viewer-b": Role.VIEWER}


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    url = postgis_demo_database("scale_out", USERS)
    yield url
    drop_database(url)


def test_processes_on_one_database_serve_the_same_site(database: str, tmp_path: Path) -> None:
    servers = [ServerProcess(database, tmp_path / f"p{i}.log") for i in range(2)]
    try:
        for server in servers:
            server.start(wait=False)
        for server in servers:
            server.wait_ready()
        for server in servers:
            auth = server.sign_in("viewer-b")
            answer = httpx.get(f"{server.base}{SITE}/events", headers=auth)
            assert answer.status_code == 200, answer.text
    finally:
        for server in servers:
            server.stop()
