"""Physically impossible input is refused (422 naming the field, nothing taken); errors tell the
client nothing of the server (no SQL, paths or tracebacks); the database is its user's alone.

The attacks of issue 12, item 9: a site the size of the world, gas readings of ±1e308, a position
at (0, 0) where no site is, NaN and Infinity in JSON, a database error whose text would reach
the client, and a database file others may read.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import text

from command.app import create_app
from command.auth import Role
from command.cli import main
from command.problems import problem_body
from command.settings import Settings
from command.strict_json import non_finite_field
from gis.errors import FieldError, InvalidInput
from gis.storage.db import make_engine
from tests.conftest import DEMO_ID, ROOT, TEST_PASSWORD, site_database, zone_centroid
from tests.problems import assert_problem

SITE = f"/api/sites/{DEMO_ID}"
CHLORINE = "S-062"  # a chlorine detector of the demo site, in ppm
LEL = "S-075"  # a flammable-gas detector, in %LEL
WIND = "S-005"  # a wind station, m/s
TEMPERATURE = "S-023"  # a temperature sensor, degC


def square(lon: float, lat: float, size_deg: float) -> dict[str, Any]:
    ring = [
        [lon, lat],
        [lon + size_deg, lat],
        [lon + size_deg, lat + size_deg],
        [lon, lat + size_deg],
        [lon, lat],
    ]
    return {"type": "Polygon", "coordinates": [ring]}


def raw_post(client: TestClient, url: str, body: str) -> Any:
    """POST ``body`` as it is: ``json=`` could not send NaN or Infinity."""
    return client.post(url, content=body.encode(), headers={"content-type": "application/json"})


# -- a site the size of the world ----------------------------------------------------------------


def test_a_site_the_size_of_the_world_is_refused(client: TestClient) -> None:
    world = {
        "id": "world",
        "name": "The world",
        "boundary": {
            "type": "Polygon",
            "coordinates": [[[-180, -85], [180, -85], [180, 85], [-180, 85], [-180, -85]]],
        },
    }
    body = assert_problem(client.post("/api/sites", json=world), 422, field="boundary")
    assert "km across" in body["errors"][0]["reason"]
    assert_problem(client.get("/api/sites/world"), 404)
    # 1.5 degrees of latitude and longitude at 30 N: about 200 km across, still too wide.
    county = {**world, "id": "county", "boundary": square(121.0, 30.0, 1.5)}
    assert_problem(client.post("/api/sites", json=county), 422, field="boundary")
    # A large complex, some 40 km across, is a site.
    port = {**world, "id": "port", "boundary": square(121.0, 30.0, 0.25)}
    assert client.post("/api/sites", json=port).status_code == 201


# -- readings beyond what a sensor can read --------------------------------------------------------


def events(client: TestClient) -> list[dict[str, Any]]:
    answer = client.get(f"{SITE}/events")
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()["events"]
    return found


def reading(sensor: str, value: float) -> dict[str, Any]:
    return {"readings": [{"sensor_id": sensor, "value": value}]}


@pytest.mark.parametrize(
    ("sensor", "value"),
    [
        (CHLORINE, 1e308),
        (CHLORINE, -1e308),
        (CHLORINE, -0.5),  # no concentration is negative
        (CHLORINE, 1_000_001),  # more than the pure gas
        (LEL, 100.5),
        (LEL, -1),
        (WIND, 1e308),
        (TEMPERATURE, 5000),
        (TEMPERATURE, -1e308),
    ],
)
def test_impossible_readings_are_refused_and_nothing_is_taken(
    command: TestClient, sensor: str, value: float
) -> None:
    before = events(command)
    # The first reading is a real alarm: it is not taken either, as the batch is refused whole.
    batch = {
        "readings": [{"sensor_id": CHLORINE, "value": 50}, reading(sensor, value)["readings"][0]]
    }
    body = assert_problem(
        command.post(f"{SITE}/readings", json=batch), 422, field="readings[1].value"
    )
    assert sensor in body["errors"][0]["reason"]
    assert events(command) == before
    state = {s["sensor_id"]: s for s in command.get(f"{SITE}/sensors/state").json()["sensors"]}
    assert state.get(CHLORINE, {}).get("tier") is None


def test_readings_at_the_edges_of_the_range_are_taken(command: TestClient) -> None:
    for sensor, value in (
        (CHLORINE, 0),
        (CHLORINE, 1e6),
        (LEL, 100),
        (WIND, 0),
        (TEMPERATURE, -40),
    ):
        answer = command.post(f"{SITE}/readings", json=reading(sensor, value))
        assert answer.status_code == 200, (sensor, value, answer.text)


# -- positions where no site is --------------------------------------------------------------------


def position(person: str, lon: float, lat: float) -> dict[str, Any]:
    return {"person_id": person, "lon": lon, "lat": lat}


def test_a_position_at_null_island_or_far_off_is_refused(command: TestClient) -> None:
    post = command.app.state.post  # type: ignore[attr-defined]
    here = zone_centroid("Z-001")
    batch = {
        "positions": [
            position("P-0001", *here),
            position("P-0002", 0, 0),
            position("P-0003", here[0] + 0.1, here[1]),  # about 10 km east
        ]
    }
    body = assert_problem(command.post(f"{SITE}/positions", json=batch), 422)
    fields = {e["field"] for e in body["errors"]}
    assert fields == {"positions.P-0002", "positions.P-0003"}
    assert "P-0001" not in post.live.get(DEMO_ID, {})  # nothing of the batch was taken
    # On the site, and just outside its fence (a kilometre out), people are followed.
    near = {"positions": [position("P-0001", *here), position("P-0002", here[0] + 0.01, here[1])]}
    answer = command.post(f"{SITE}/positions", json=near)
    assert answer.status_code == 200, answer.text
    assert answer.json()["accepted"] == 2


# -- NaN and Infinity --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "body", "field"),
    [
        (f"{SITE}/readings", '{"readings": [{"sensor_id": "S-062", "value": NaN}]}', None),
        (f"{SITE}/readings", '{"readings": [{"sensor_id": "S-062", "value": -Infinity}]}', None),
        (
            f"{SITE}/positions",
            '{"positions": [{"person_id": "P-0001", "lon": 1e999, "lat": 0}]}',
            None,
        ),
        (f"{SITE}/incidents/none/notes", '{"text": "x", "extra": NaN}', "extra"),
    ],
)
def test_nan_and_infinity_are_not_json(
    command: TestClient, url: str, body: str, field: str | None
) -> None:
    expected = field or ("readings[0].value" if "readings" in url else "positions[0].lon")
    assert_problem(raw_post(command, url, body), 422, field=expected)


def test_a_nan_kept_as_it_came_is_refused_before_it_reaches_the_database(
    client: TestClient,
) -> None:
    # A site's note goes to the change log as it came: PostgreSQL's jsonb refuses NaN (a 500).
    site = (
        f'{{"id": "noted", "name": "Noted", "note": NaN, "boundary": {square(121.0, 30.0, 0.01)}}}'
    )
    assert_problem(raw_post(client, "/api/sites", site.replace("'", '"')), 422, field="note")
    assert_problem(client.get("/api/sites/noted"), 404)


def test_only_numbers_that_are_not_finite_are_found() -> None:
    assert non_finite_field(b'{"name": "NaN", "note": "Infinity", "x": 1e99}') is None
    assert non_finite_field(b'{"a": {"b": [1, [2, NaN]]}}') == "a.b[1][1]"
    assert non_finite_field(b"[0, Infinity]") == "body[1]"
    assert non_finite_field(b"NaN") == "body"
    assert non_finite_field(b'{"not json": NaN') is None  # the route says what is wrong


# -- errors tell nothing of the server -----------------------------------------------------------

SECRETS = ("SELECT", "INSERT", "UPDATE ", "sqlite", "Traceback", "/work", "/tmp", ".py", "\\")


@pytest.fixture
def broken(tmp_path: Path) -> Iterator[TestClient]:
    """A server on a throwaway database whose change log table has been dropped."""
    url = site_database(tmp_path / "broken.db", {"broken-planner": Role.PLANNER})
    app = create_app(Settings(database_url=url), ticking=False)
    # As a real server: the answer is sent, not the exception raised into the test.
    with TestClient(app, raise_server_exceptions=False) as client:
        login = {"username": "broken-planner", "password": TEST_PASSWORD}
        token = client.post("/api/auth/login", json=login).json()["access_token"]
        client.headers["Authorization"] = f"Bearer {token}"
        engine = make_engine(url)
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE changes"))
        engine.dispose()
        yield client


def test_a_database_error_answers_an_error_id_and_logs_the_rest(
    broken: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    feature = {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": zone_centroid("Z-001")},
        "properties": {"kind": "hydrant"},
    }
    with caplog.at_level(logging.ERROR, logger="command.problems"):
        answer = broken.post(f"{SITE}/layers/resources", json=feature)
    body = assert_problem(answer, 500)
    assert body["type"] == "/problems/internal-error"
    assert set(body) == {"type", "title", "status", "detail", "instance", "error_id"}
    for secret in SECRETS:
        assert secret not in answer.text, secret
    assert body["error_id"] in body["detail"]
    # The server's log has the whole story, under the same id.
    logged = [r for r in caplog.records if body["error_id"] in r.getMessage()]
    assert logged and logged[0].exc_text and "INSERT INTO changes" in logged[0].exc_text


def test_a_library_message_does_not_carry_the_servers_paths(client: TestClient) -> None:
    # GDAL's message names the SQL it ran on the file (and for other faults the temporary file's
    # path): the server's log has it, the answer says what is wrong in words of its own.
    answer = client.post(
        f"{SITE}/layers/zones/import",
        params={"format": "gpkg", "mode": "merge"},
        content=b"SQLite format 3\x00" + b"\x00" * 200,
        headers={"content-type": "application/octet-stream"},
    )
    body = assert_problem(answer, 422, field="file")
    assert "cannot read" in body["detail"]
    for secret in (*SECRETS, "sqlite_master", "rallypoint-import"):
        assert secret not in answer.text, (secret, body["detail"])


def test_server_paths_are_cut_from_every_problem() -> None:
    temporary = f"{tempfile.gettempdir()}/rallypoint-import-x1/layer.gpkg"
    refusal = InvalidInput(
        f"cannot read '{temporary}': not a GeoPackage",
        errors=[FieldError("file", f"see {ROOT / 'gis' / 'layer_io.py'}, line 3")],
    )
    body = problem_body(refusal)
    text = json.dumps(body)
    for secret in (temporary, str(ROOT), "layer_io.py", "rallypoint-import"):
        assert secret not in text, secret
    assert body["detail"].startswith("cannot read '<server path>'") and "not a GeoPackage" in text
    assert problem_body(InvalidInput("/api/sites/x is not a site"))["detail"] == (
        "/api/sites/x is not a site"  # a path of the API is not the server's
    )


# -- the database file and var/ are the server user's alone ----------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """A umask that takes nothing away: the modes must not depend on it."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.usefixtures("open_umask")
def test_a_new_database_and_its_folder_are_private(tmp_path: Path) -> None:
    database = tmp_path / "fresh" / "rallypoint.db"
    engine = make_engine(f"sqlite:///{database}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x)"))
    engine.dispose()
    assert mode(database.parent) == 0o700
    assert mode(database) == 0o600
    for extra in (Path(f"{database}-wal"), Path(f"{database}-shm")):
        if extra.exists():
            assert mode(extra) == 0o600


@pytest.mark.usefixtures("open_umask")
def test_db_upgrade_makes_var_private_and_tightens_an_open_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RALLYPOINT_DATABASE_URL", raising=False)
    result = CliRunner().invoke(main, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert mode(tmp_path / "var") == 0o700
    assert mode(tmp_path / "var" / "rallypoint.db") == 0o600
    # Someone opened both up: the next start closes them again, and says so.
    (tmp_path / "var").chmod(0o755)
    (tmp_path / "var" / "rallypoint.db").chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="gis.storage.db"):
        result = CliRunner().invoke(main, ["db", "current"])
    assert result.exit_code == 0, result.output
    assert mode(tmp_path / "var") == 0o700
    assert mode(tmp_path / "var" / "rallypoint.db") == 0o600
    tightened = [r.getMessage() for r in caplog.records if "tightened" in r.getMessage()]
    assert any("from mode 755 to 700" in m for m in tightened), tightened
    assert any("from mode 644 to 600" in m for m in tightened), tightened


def test_a_folder_of_the_operators_is_left_as_it_is(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    make_engine(f"sqlite:///{shared / 'rallypoint.db'}").dispose()
    assert mode(shared) == 0o755
    assert mode(shared / "rallypoint.db") == 0o600
