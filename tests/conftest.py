"""Fixtures: every storage test runs on SQLite and on a real PostGIS.

The demo site is loaded once per backend and committed; each test then runs inside a
transaction that is rolled back at the end (GeoAlchemy2's own test suite does the same).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from shapely.geometry import shape
from sqlalchemy import Engine

from command.app import create_app
from command.auth import HUMAN_ROLES, Role, create_user, find_user, issue_token
from command.settings import Settings
from gis.errors import NotFound
from gis.site_bundle import load_bundle
from gis.storage.db import Database, downgrade, make_engine, schema_is_current, upgrade
from plans.clock import ManualClock
from plans.store import load_plan_files
from tests.live_server import LiveServer

ROOT = Path(__file__).resolve().parent.parent
DEMO_SITE = ROOT / "fixtures" / "demo-site"
DEMO_PLANS = ROOT / "fixtures" / "plans"
DEMO_ID = "demo-works"
OSM_EXTRACT = ROOT.parent / "shared" / "data" / "osm" / "West-Oakland.osm.bz2"
POSTGIS_URL_ENV = "RALLYPOINT_TEST_POSTGIS_URL"
BACKENDS = ["sqlite", "postgis"]
# Still Argon2id, but with the smallest parameters: a real hash costs ~0.1 s, and every test
# that uses the API signs a user in. The password is the same for every test user.
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
TEST_PASSWORD = "correct horse battery"


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("CI") == "true" and not os.environ.get(POSTGIS_URL_ENV):
        raise pytest.UsageError(
            f"CI=true but {POSTGIS_URL_ENV} is not set: the PostGIS tests must run in CI "
            "(use 'make test', which brings up a throwaway PostGIS)"
        )


def _fresh_engine(url: str) -> Engine:
    engine = make_engine(url)
    current, _ = schema_is_current(engine)
    if current is not None:
        downgrade(engine, "base")
    upgrade(engine)
    return engine


@pytest.fixture(scope="session", params=BACKENDS)
def engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    """A migrated database holding the demo site, per backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'rallypoint.db'}"
    else:
        url = os.environ.get(POSTGIS_URL_ENV, "")
        if not url:
            pytest.skip(f"no PostGIS ({POSTGIS_URL_ENV} unset); 'make test' provides one")
    engine = _fresh_engine(url)
    load_bundle(Database(engine), DEMO_SITE, actor="test-setup")
    yield engine
    engine.dispose()


@pytest.fixture
def db(engine: Engine) -> Iterator[Database]:
    """A database whose every change is rolled back after the test."""
    with engine.connect() as connection:
        transaction = connection.begin()
        try:
            yield Database(engine, connection=connection)
        finally:
            transaction.rollback()


def sign_in(db: Database, username: str, roles: Iterable[Role] = HUMAN_ROLES) -> dict[str, str]:
    """Headers of a session of ``username`` (created with ``roles`` if new), rolled back with
    the test; the token is issued directly, skipping the password check of a real login."""
    with db.write() as session:
        try:
            user = find_user(session, username)
        except NotFound:
            user = create_user(session, username, TEST_PASSWORD, roles, hasher=FAST_HASHER)
        token = issue_token(session, user, ttl_s=3600).token
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def anonymous_client(db: Database) -> Iterator[TestClient]:
    """A client that has not signed in."""
    settings = Settings(database_url=str(db.engine.url))
    with TestClient(create_app(settings, database=db)) as test_client:
        yield test_client


@pytest.fixture
def client(anonymous_client: TestClient, db: Database) -> TestClient:
    """A client signed in as ``tester``, who holds every human role."""
    anonymous_client.headers.update(sign_in(db, "tester"))
    return anonymous_client


_backend_results: Counter[tuple[str, str]] = Counter()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when != "call" and not (report.when == "setup" and not report.passed):
        return
    for backend in BACKENDS:
        if any(f"{a}{backend}{b}" in report.nodeid for a in "[-" for b in "]-"):
            _backend_results[(backend, report.outcome)] += 1


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = []
    for backend in BACKENDS:
        counts = {o: _backend_results[(backend, o)] for o in ("passed", "failed", "skipped")}
        lines.append(f"{backend}: " + ", ".join(f"{n} {o}" for o, n in counts.items()))
    terminalreporter.write_sep("-", "storage backends")
    for line in lines:
        terminalreporter.write_line(line)


#: The tests' clock starts after the demo people were last seen (the fixture's ``seen_at``,
#: January 2026): a live position is then newer than the stored one, as on a real site.
TEST_START = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(TEST_START)


@pytest.fixture
def command(db: Database, clock: ManualClock) -> Iterator[TestClient]:
    """A commander's client on an app with a manual clock (no ticker); the demo plans
    loaded."""
    with db.write() as session:
        load_plan_files(session, DEMO_ID, sorted(DEMO_PLANS.glob("*.yaml")), actor="test")
    app = create_app(
        Settings(database_url=str(db.engine.url)), database=db, clock=clock, ticking=False
    )
    with TestClient(app) as client:
        client.headers.update(sign_in(db, "cmd-zhou", [Role.COMMANDER]))
        yield client


def zone_centroid(zone_id: str) -> list[float]:
    """The centroid of a demo-site zone, lon/lat rounded to 7 decimals (about 1 cm)."""
    zones = json.loads((DEMO_SITE / "zones.geojson").read_text(encoding="utf-8"))
    for feature in zones["features"]:
        if feature.get("id") == zone_id:
            point = shape(feature["geometry"]).centroid
            return [round(point.x, 7), round(point.y, 7)]
    raise LookupError(zone_id)


#: A chlorine release at the middle of the chlorine store (zone Z-027), plan level L2.
CHLORINE_ACTIVATION: dict[str, Any] = {
    "plan_id": "chlorine-leak",
    "level": "L2",
    "location": {"type": "Point", "coordinates": zone_centroid("Z-027")},
    "hazard": {
        "model": "toxic_release",
        "substance": "chlorine",
        "rate_g_s": 2000,
        "wind_speed_m_s": 3,
        "wind_from_deg": 45,
    },
}


def live_with_tokens(path: Path, users: Mapping[str, Role]) -> Iterator[tuple[Any, dict[str, str]]]:
    """A real server (tests/live_server.py) on a SQLite file holding the demo site, and a token
    for each of ``users`` (username -> role): for module fixtures of websocket tests."""
    url = site_database(path, users)
    engine = make_engine(url)
    try:
        with Database(engine).write() as session:
            tokens = {
                name: issue_token(session, find_user(session, name), ttl_s=3600).token
                for name in users
            }
    finally:
        engine.dispose()
    with LiveServer(url) as server:
        yield server, tokens


def site_database(path: Path, users: Mapping[str, Role] | None = None) -> str:
    """A migrated SQLite file holding the demo site, its plans and ``users`` (username ->
    role, with the test password); its URL. For tests that run a server of their own."""
    engine = make_engine(f"sqlite:///{path}")
    try:
        upgrade(engine)
        db = Database(engine)
        load_bundle(db, DEMO_SITE, actor="test-setup")
        with db.write() as session:
            load_plan_files(session, DEMO_ID, sorted(DEMO_PLANS.glob("*.yaml")), actor="test")
            for username, role in (users or {}).items():
                create_user(session, username, TEST_PASSWORD, [role], hasher=FAST_HASHER)
    finally:
        engine.dispose()
    return f"sqlite:///{path}"
