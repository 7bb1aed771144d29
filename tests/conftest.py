"""Fixtures: every storage test runs on SQLite and on a real PostGIS.

The demo site is loaded once per backend and committed; each test then runs inside a
transaction that is rolled back at the end (GeoAlchemy2's own test suite does the same).

``make test`` runs the suite in parallel (pytest-xdist, ``--dist loadfile``: a file's tests
stay together on one worker). Each worker gets a PostGIS database of its own, made from the
one ``scripts/with-postgis.sh`` made; the costliest files (by the last run's times) are
handed out first, so that no long file starts last.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from shapely.geometry import shape
from sqlalchemy import Connection, Engine, make_url

from command.app import create_app
from command.auth import HUMAN_ROLES, Role, create_user, find_user, issue_token
from command.settings import Settings
from gis.errors import NotFound
from gis.site_bundle import load_bundle
from gis.storage.db import (
    Database,
    downgrade,
    keep_private,
    make_engine,
    schema_is_current,
    upgrade,
)
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
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker and os.environ.get(POSTGIS_URL_ENV):
        # Parallel workers would migrate and roll back one database under each other: each
        # gets its own, and every test (and process it starts) reads this worker's URL.
        os.environ[POSTGIS_URL_ENV] = _worker_database(os.environ[POSTGIS_URL_ENV], worker)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _site_template is not None:
        shutil.rmtree(_site_template.parent, ignore_errors=True)
    shared = os.environ.pop(_SHARED_POSTGIS_URL_ENV, None)
    if shared:
        _drop_database(shared, make_url(os.environ[POSTGIS_URL_ENV]).database or "")
        os.environ[POSTGIS_URL_ENV] = shared


#: The URL a worker was given, while its own database's is in ``POSTGIS_URL_ENV``.
_SHARED_POSTGIS_URL_ENV = "RALLYPOINT_TEST_POSTGIS_SHARED_URL"


def _worker_database(url: str, worker: str) -> str:
    """A database for this xdist ``worker``: a copy of the one at ``url`` (PostGIS enabled and
    nothing else, when 'make test' made it); its URL."""
    shared = make_url(url)
    name = f"{shared.database}_{worker}"
    _drop_database(url, name)  # left behind by a run that was killed
    with _admin(url) as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE "{shared.database}"')
    os.environ[_SHARED_POSTGIS_URL_ENV] = url
    return shared.set(database=name).render_as_string(hide_password=False)


def _drop_database(url: str, name: str) -> None:
    with _admin(url) as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def _admin(url: str) -> Iterator[Connection]:
    """An autocommit connection to the server's ``postgres`` database (CREATE DATABASE and
    DROP DATABASE run outside a transaction, and not in the database they name)."""
    admin = make_engine(
        make_url(url).set(database="postgres").render_as_string(hide_password=False)
    )
    try:
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            yield conn
    finally:
        admin.dispose()


def _fresh_engine(url: str) -> Engine:
    engine = make_engine(url)
    current, _ = schema_is_current(engine)
    if current is not None:
        downgrade(engine, "base")
    upgrade(engine)
    return engine


@pytest.fixture(scope="session")
def demo_engines() -> Iterator[dict[str, Engine]]:
    """The ``engine`` of each backend, once made: kept for the whole session."""
    engines: dict[str, Engine] = {}
    yield engines
    for made in engines.values():
        made.dispose()


@pytest.fixture(scope="session", params=BACKENDS)
def engine(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    demo_engines: dict[str, Engine],
) -> Engine:
    """A migrated database holding the demo site, per backend.

    Made once per test process and kept: pytest sets a session fixture up again whenever its
    parameter changes, which a serial run does once (all SQLite tests come first) but a
    parallel worker does in every file (a file's SQLite tests, its PostGIS ones, the next
    file's SQLite ones...).
    """
    if request.param == "postgis" and not os.environ.get(POSTGIS_URL_ENV):
        pytest.skip(f"no PostGIS ({POSTGIS_URL_ENV} unset); 'make test' provides one")
    if request.param not in demo_engines:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'rallypoint.db'}"
        else:
            url = os.environ[POSTGIS_URL_ENV]
        made = _fresh_engine(url)
        load_bundle(Database(made), DEMO_SITE, actor="test-setup")
        demo_engines[request.param] = made
    return demo_engines[request.param]


@pytest.fixture
def db(engine: Engine) -> Iterator[Database]:
    """A database whose every change is rolled back after the test."""
    with engine.connect() as connection:
        transaction = connection.begin()
        try:
            yield Database(engine, connection=connection)
        finally:
            transaction.rollback()
            if engine.dialect.name == "postgresql":
                # Never back to the pool: the test's app ran its ticks, listeners and senders
                # on this one connection from worker threads, and a thread still finishing
                # when the test ended left it inside a failed transaction at times (1 setup in
                # 2,271 failed its pre-ping with "connection in transaction status INERROR").
                # A fresh connection per test costs a few milliseconds.
                connection.invalidate()


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
#: Seconds spent in each test file (setup, call and teardown) in this run.
_file_seconds: defaultdict[str, float] = defaultdict(float)
#: Where pytest's cache keeps each file's seconds from the last run that ran it.
FILE_SECONDS = "rallypoint/file-seconds"


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _file_seconds[report.nodeid.split("::", 1)[0]] += report.duration
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


def pytest_sessionfinish(session: pytest.Session) -> None:
    # The controller (or a serial run) saw every report; a parallel worker saw only its own.
    cache: pytest.Cache | None = getattr(session.config, "cache", None)  # no:cacheprovider
    if cache is None or hasattr(session.config, "workerinput") or not _file_seconds:
        return
    known: dict[str, float] = cache.get(FILE_SECONDS, {})
    cache.set(FILE_SECONDS, {**known, **_file_seconds})


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """With ``--dist loadfile``, hand out the costliest file still waiting first (its seconds
    in the last run; a file not timed yet, its number of tests times the mean seconds of a
    test), so that the workers finish together rather than one running a long file alone at
    the end. xdist's own order is by number of tests: a file with one long test came last."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    cache: pytest.Cache | None = getattr(config, "cache", None)
    known: dict[str, float] = cache.get(FILE_SECONDS, {}) if cache else {}

    class CostliestFirst(LoadFileScheduling):  # type: ignore[misc]
        def _assign_work_unit(self, node: Any) -> None:
            queue: dict[str, dict[str, bool]] = self.workqueue
            timed = [f for f in queue if f in known]
            tests = sum(len(queue[f]) for f in timed)
            per_test = sum(known[f] for f in timed) / tests if tests else 1.0

            def cost(file: str) -> float:
                return known.get(file, len(queue[file]) * per_test)

            self.workqueue.move_to_end(max(queue, key=cost), last=False)
            super()._assign_work_unit(node)

    return CostliestFirst(config, log)


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
    role, with the test password); its URL. For tests that run a server of their own.

    A new file is a copy of one made once per test process (loading the demo site takes
    seconds, copying the file milliseconds), the users then added to it."""
    url = f"sqlite:///{path}"
    if path.exists() and path.stat().st_size:
        _load_demo(url, users)  # a database already there: load into it, as ever
        return url
    keep_private(path)  # its folder and an empty file, with the modes make_engine gives them
    shutil.copyfile(_demo_template(), path)
    if users:
        _load_demo(url, users, site=False)
    return url


#: The file site_database copies, made on its first call; removed when pytest ends.
_site_template: Path | None = None


def _demo_template() -> Path:
    global _site_template
    if _site_template is None:
        path = Path(tempfile.mkdtemp(prefix="rallypoint-demo-")) / "demo.db"
        _load_demo(f"sqlite:///{path}", None)
        # Closing the last connection checkpointed the WAL: the file alone is the database.
        assert not Path(f"{path}-wal").exists(), "the template's WAL was not checkpointed"
        _site_template = path
    return _site_template


def _load_demo(url: str, users: Mapping[str, Role] | None, *, site: bool = True) -> None:
    """Migrate the database at ``url`` and load the demo site and its plans into it (unless
    not ``site``); then add ``users``."""
    engine = make_engine(url)
    try:
        db = Database(engine)
        if site:
            upgrade(engine)
            load_bundle(db, DEMO_SITE, actor="test-setup")
        with db.write() as session:
            if site:
                load_plan_files(session, DEMO_ID, sorted(DEMO_PLANS.glob("*.yaml")), actor="test")
            for username, role in (users or {}).items():
                create_user(session, username, TEST_PASSWORD, [role], hasher=FAST_HASHER)
    finally:
        engine.dispose()
