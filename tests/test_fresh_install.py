"""A fresh install's first activation: the demo's wind stations have a reading from the moment
the demo loads, so the one-action activation (``{"model": "plan"}``) answers 201.

The steps are those of ``make run``, read from the Makefile itself: a fresh database, the demo
site and plans loaded, the demo users seeded, ``rallypoint demo wind``; then a real server and
real HTTP. The wind is kept in ``sensor_readings`` (a restart keeps it), and a reading older than
10 minutes is still refused for a design release.
"""

from __future__ import annotations

import shlex
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from command.cli import main
from command.stored_readings import (
    DEMO_WIND_FROM_DEG,
    DEMO_WIND_M_S,
    seed_wind,
    store_readings,
    stored_readings,
)
from gis.errors import InvalidInput, NotFound
from gis.storage.db import Database, make_engine
from tests.conftest import DEMO_ID
from tests.live_server import LiveServer
from tests.test_incidents import CHLORINE_STORE

ROOT = Path(__file__).resolve().parent.parent
WAIT_S = 10.0
INCIDENTS = f"/api/sites/{DEMO_ID}/incidents"
ONE_ACTION = {
    "plan_id": "chlorine-leak",
    "level": "L2",
    "location": {"type": "Point", "coordinates": CHLORINE_STORE},
    "hazard": {"model": "plan"},
}


def make_run_steps() -> list[list[str]]:
    """The ``rallypoint`` commands of the Makefile's ``run`` target, but ``serve``."""
    lines = (ROOT / "Makefile").read_text(encoding="utf-8").splitlines()
    start = lines.index(next(line for line in lines if line.startswith("run:")))
    steps = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        words = shlex.split(line.strip())
        if words[0] == "$(BIN)/rallypoint" and words[1:] != ["serve"]:
            steps.append(words[1:])
    return steps


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``make run``'s steps but the demo's wind, once for the module, on a new machine's working
    directory (the repository's fixtures, nothing in var/): that ``var/``."""
    work = tmp_path_factory.mktemp("install")
    (work / "fixtures").symlink_to(ROOT / "fixtures")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(work)
        patch.delenv("RALLYPOINT_DATABASE_URL", raising=False)
        for step in make_run_steps():
            if step[0] != "demo":
                run_cli(step)
    return work / "var"


@pytest.fixture
def fresh(installed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A copy of that install, the working directory of the test; the database URL ``make run``
    uses there."""
    shutil.copytree(installed, tmp_path / "var")
    (tmp_path / "fixtures").symlink_to(ROOT / "fixtures")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RALLYPOINT_DATABASE_URL", raising=False)
    return f"sqlite:///{tmp_path / 'var' / 'rallypoint.db'}"


def run_cli(args: list[str]) -> str:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, f"rallypoint {' '.join(args)}: {result.output}"
    return result.output


def commander_password() -> str:
    for line in Path("var/demo-users.txt").read_text(encoding="utf-8").splitlines():
        if line.startswith("demo-commander\t"):
            return line.split("\t")[1]
    raise AssertionError("make run seeded no demo commander")


def sign_in(http: httpx.Client) -> dict[str, str]:
    answer = http.post(
        "/api/auth/login", json={"username": "demo-commander", "password": commander_password()}
    )
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def test_make_run_calls_demo_wind_after_loading_the_demo() -> None:
    steps = make_run_steps()
    assert ["demo", "wind", "--site", DEMO_ID] in steps
    loads = steps.index(["site", "load", "fixtures/demo-site", "--if-exists", "skip"])
    assert loads < steps.index(["demo", "wind", "--site", DEMO_ID])


def test_the_first_activation_on_a_fresh_install_answers_201(fresh: str) -> None:
    for step in make_run_steps():
        if step[0] == "demo":  # the rest ran on this install already
            run_cli(step)
    with LiveServer(fresh) as server, httpx.Client(base_url=server.base, timeout=WAIT_S) as http:
        headers = sign_in(http)
        answer = http.post(INCIDENTS, json=ONE_ACTION, headers=headers)
        assert answer.status_code == 201, answer.text
        hazard = answer.json()["incident"]["hazard"]
        assert (hazard["wind_speed_m_s"], hazard["wind_from_deg"]) == (
            DEMO_WIND_M_S,
            DEMO_WIND_FROM_DEG,
        )
        events = http.get(f"/api/sites/{DEMO_ID}/events", headers=headers).json()["events"]
        activated = next(e for e in events if e["type"] == "incident.activated")
        # The log names the station and when its reading was observed.
        assert activated["data"]["hazard_source"]["wind"]["sensor_id"].startswith("S-")


def test_without_demo_wind_it_is_refused_and_a_running_server_sees_it_after(fresh: str) -> None:
    """The reproduction: without the demo's wind the activation is a 422 naming the field. Run
    against the running server (another process), ``rallypoint demo wind`` is read at the next
    activation."""
    with LiveServer(fresh) as server, httpx.Client(base_url=server.base, timeout=WAIT_S) as http:
        headers = sign_in(http)
        refused = http.post(INCIDENTS, json=ONE_ACTION, headers=headers)
        assert refused.status_code == 422, refused.text
        assert refused.json()["errors"][0]["field"] == "hazard.wind_from_deg"
        run_cli(["demo", "wind", "--site", DEMO_ID, "--speed", "5", "--from-deg", "270"])
        answer = http.post(INCIDENTS, json=ONE_ACTION, headers=headers)
        assert answer.status_code == 201, answer.text
        hazard = answer.json()["incident"]["hazard"]
        assert (hazard["wind_speed_m_s"], hazard["wind_from_deg"]) == (5.0, 270.0)


def test_a_demo_wind_of_yesterday_is_stale(fresh: str) -> None:
    """The 10-minute rule holds for a stored wind too: a demo loaded yesterday has no wind until
    ``rallypoint demo wind`` runs again (as ``make run`` does each time)."""
    engine = make_engine(fresh)
    try:
        with Database(engine).write() as session:
            seed_wind(session, DEMO_ID, now=datetime.now(UTC) - timedelta(days=1))
    finally:
        engine.dispose()
    with LiveServer(fresh) as server, httpx.Client(base_url=server.base, timeout=WAIT_S) as http:
        refused = http.post(INCIDENTS, json=ONE_ACTION, headers=sign_in(http))
        assert refused.status_code == 422, refused.text
        assert "minutes old" in refused.json()["detail"]


def test_a_restart_keeps_the_last_wind_a_station_sent(fresh: str) -> None:
    """A reading posted to the server is stored (once a second) and read back on start: after a
    restart the sensors' state and the activation have it."""
    reading = {"sensor_id": "S-077", "value": 6.5, "direction_deg": 180}
    with LiveServer(fresh) as server, httpx.Client(base_url=server.base, timeout=WAIT_S) as http:
        headers = sign_in(http)
        posted = http.post(
            f"/api/sites/{DEMO_ID}/readings", json={"readings": [reading]}, headers=headers
        )
        assert posted.status_code < 300, posted.text
        deadline = time.monotonic() + WAIT_S
        while server.post._unsaved_readings:  # stored by the once-a-second tick
            assert time.monotonic() < deadline, "the reading was never stored"
            time.sleep(0.05)
    with LiveServer(fresh) as server, httpx.Client(base_url=server.base, timeout=WAIT_S) as http:
        headers = sign_in(http)
        state: list[dict[str, Any]] = http.get(
            f"/api/sites/{DEMO_ID}/sensors/state", headers=headers
        ).json()["sensors"]
        last = next(s for s in state if s["id"] == "S-077")["last_reading"]
        assert (last["value"], last["direction_deg"]) == (6.5, 180.0)
        answer = http.post(INCIDENTS, json=ONE_ACTION, headers=headers)
        assert answer.status_code == 201, answer.text
        assert answer.json()["incident"]["hazard"]["wind_from_deg"] == 180.0


def test_the_latest_reading_is_kept_and_an_older_one_never_replaces_it(db: Database) -> None:
    now = datetime.now(UTC)
    with db.write() as session:
        stations = seed_wind(session, DEMO_ID, now=now - timedelta(minutes=1))
        assert stations and all(s.startswith("S-") for s in stations)
        newer = {"value": 7.0, "direction_deg": 90.0, "at": now.isoformat(), "by": "gw"}
        older = {**newer, "value": 1.0, "at": (now - timedelta(hours=1)).isoformat()}
        assert store_readings(session, DEMO_ID, {stations[0]: newer}) == 1
        assert store_readings(session, DEMO_ID, {stations[0]: older}) == 0
        kept = stored_readings(session, DEMO_ID)[DEMO_ID]
        assert kept[stations[0]]["value"] == 7.0 and kept[stations[0]]["by"] == "gw"
        assert datetime.fromisoformat(kept[stations[0]]["at"]) == now
        assert {kept[s]["value"] for s in stations[1:]} == {DEMO_WIND_M_S}
        with pytest.raises(InvalidInput):
            seed_wind(session, DEMO_ID, speed_m_s=500)
        with pytest.raises(InvalidInput):
            seed_wind(session, DEMO_ID, from_deg=360)
        with pytest.raises(NotFound):
            seed_wind(session, "nowhere")
