"""Accounts: failed sign-ins throttled per username and per address; an administrator disables
users, resets passwords, grants roles per site and revokes device tokens (API and command
line); a user changes their own password; every act is recorded."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import select

from command import accounts, ratelimit
from command.app import create_app
from command.auth import (
    Role,
    create_device_token,
    create_user,
    find_user,
    issue_token,
    resolve_token,
)
from command.cli import main
from command.settings import Settings
from gis.errors import Unauthorized
from gis.storage.db import Database, make_engine
from gis.storage.tables import LoginFailureRow
from plans.clock import ManualClock
from tests.conftest import (
    DEMO_ID,
    DEMO_SITE,
    FAST_HASHER,
    TEST_PASSWORD,
    sign_in,
    site_database,
)
from tests.live_server import LiveServer
from tests.problems import assert_problem

WRONG = "not the password at all"


@contextmanager
def served(db: Database, clock: ManualClock, address: str = "10.0.0.1") -> Iterator[TestClient]:
    """An app on the test's database and clock, reached from ``address``. Two of them on one
    database are two server processes: the failure counts are the database's, shared."""
    app = create_app(
        Settings(database_url=str(db.engine.url)), database=db, clock=clock, ticking=False
    )
    with TestClient(app, client=(address, 50000)) as client:
        yield client


def attempt(client: TestClient, username: str, password: str) -> httpx.Response:
    response: httpx.Response = client.post(
        "/api/auth/login", json={"username": username, "password": password}
    )
    return response


def add_user(db: Database, username: str, roles: list[str] | None = None) -> None:
    with db.write() as session:
        create_user(session, username, TEST_PASSWORD, roles or ["commander"], hasher=FAST_HASHER)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- failed sign-ins ------------------------------------------------------------------------------


def test_fifty_wrong_passwords_get_429_until_the_lock_ends(
    db: Database, clock: ManualClock
) -> None:
    """The reproduction: 50 guesses at one user's password. Five are answered 401; the other
    45 are 429 with Retry-After, unchecked, and so is the right password, until the clock
    passes the lock."""
    add_user(db, "target")
    with served(db, clock) as client:
        answers = [attempt(client, "target", f"{WRONG} {i}") for i in range(50)]
        assert [a.status_code for a in answers] == [401] * 5 + [429] * 45
        body = assert_problem(answers[-1], 429, field="password")
        assert body["type"] == "/problems/too-many-attempts"
        assert answers[-1].headers["retry-after"] == "1" and body["retry_after_s"] == 1
        right = attempt(client, "target", TEST_PASSWORD)
        assert_problem(right, 429)  # the right password too: nothing is checked while locked
        clock.advance(0.5)
        assert attempt(client, "target", TEST_PASSWORD).status_code == 429
        clock.advance(0.5)
        signed_in = attempt(client, "target", TEST_PASSWORD)
        assert signed_in.status_code == 200, signed_in.text
        # A right password starts the username's count over: five free failures again.
        codes = [attempt(client, "target", WRONG).status_code for _ in range(6)]
        assert codes == [401] * 5 + [429]


def test_the_lock_backs_off_to_fifteen_minutes(db: Database, clock: ManualClock) -> None:
    """Each failure after the free ones doubles the lock, up to 15 minutes; waiting out the
    lock is the only way on, and a refusal while locked does not lengthen it."""
    add_user(db, "target")
    waits = []
    with served(db, clock) as client:
        for _ in range(5):
            assert attempt(client, "target", WRONG).status_code == 401
        for _ in range(12):
            refused = attempt(client, "target", WRONG)
            assert refused.status_code == 429
            wait = int(refused.headers["retry-after"])
            waits.append(wait)
            assert int(attempt(client, "target", WRONG).headers["retry-after"]) == wait
            clock.advance(wait)
            assert attempt(client, "target", WRONG).status_code == 401  # checked, and wrong
    assert waits == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900]


def test_one_address_cannot_lock_out_many_users(db: Database, clock: ManualClock) -> None:
    """An attacker spreads guesses over five users (four each, under the per-user limit): after
    20 failures their address is refused for every username, the right password too, while
    the five sign in from their own desks. A restart forgives nothing: the counts are in the
    database."""
    users = [f"worker-{i}" for i in range(5)]
    for username in users:
        add_user(db, username, ["viewer"])
    with served(db, clock, "203.0.113.9") as attacker:
        codes = [attempt(attacker, u, f"{WRONG} {i}").status_code for i in range(4) for u in users]
        assert codes == [401] * 20
        locked = attempt(attacker, "worker-0", TEST_PASSWORD)
        assert_problem(locked, 429)
        assert attempt(attacker, "somebody-else", WRONG).status_code == 429
    with served(db, clock, "203.0.113.9") as attacker_after_restart:
        assert attempt(attacker_after_restart, "worker-1", WRONG).status_code == 429
    with served(db, clock, "10.1.1.1") as desk:
        for username in users:
            assert attempt(desk, username, TEST_PASSWORD).status_code == 200, username
    with db.read() as session:
        keys = set(session.scalars(select(LoginFailureRow.key)))
    assert "address:203.0.113.9" in keys
    assert not any(k.startswith("user:worker-") for k in keys)  # cleared by their sign-ins


def test_counts_are_forgotten_after_an_hour(db: Database, clock: ManualClock) -> None:
    with db.write() as session:
        for _ in range(4):
            ratelimit.failed(session, "forgetful", "10.0.0.2", now=clock.now())
    clock.advance(timedelta(hours=1, seconds=1))
    with db.write() as session:
        ratelimit.failed(session, "forgetful", "10.0.0.2", now=clock.now())
        ratelimit.check(session, "forgetful", "10.0.0.2", now=clock.now())  # 1 failure, not 5
        counts = dict(session.execute(select(LoginFailureRow.key, LoginFailureRow.failures)).all())
    assert counts == {"user:forgetful": 1, "address:10.0.0.2": 1}


# -- a user's own password ---------------------------------------------------------------------


def test_changing_ones_password(db: Database, clock: ManualClock) -> None:
    add_user(db, "chen-jie")
    with served(db, clock) as client:
        mine = bearer(attempt(client, "chen-jie", TEST_PASSWORD).json()["access_token"])
        other = bearer(attempt(client, "chen-jie", TEST_PASSWORD).json()["access_token"])
        url = "/api/auth/password"
        anonymous = client.post(url, json={"old_password": WRONG, "new_password": "x" * 12})
        assert_problem(anonymous, 401)
        wrong = client.post(
            url, json={"old_password": WRONG, "new_password": "a new one, long"}, headers=mine
        )
        assert_problem(wrong, 422, field="old_password")
        weak = client.post(
            url, json={"old_password": TEST_PASSWORD, "new_password": "short"}, headers=mine
        )
        assert_problem(weak, 422, field="password")
        changed = client.post(
            url,
            json={"old_password": TEST_PASSWORD, "new_password": "a new one, long"},
            headers=mine,
        )
        assert changed.status_code == 204, changed.text
        assert client.get("/api/auth/me", headers=mine).status_code == 200  # this session stays
        assert_problem(client.get("/api/auth/me", headers=other), 401)  # the others end
        assert attempt(client, "chen-jie", TEST_PASSWORD).status_code == 401
        assert attempt(client, "chen-jie", "a new one, long").status_code == 200
        # Guessing the old password with a stolen session counts as failed sign-ins.
        for _ in range(5):
            client.post(url, json={"old_password": WRONG, "new_password": "x" * 12}, headers=mine)
        assert_problem(
            client.post(url, json={"old_password": WRONG, "new_password": "x" * 12}, headers=mine),
            429,
        )
    with db.read() as session:
        actions = [(e.actor, e.action, e.subject) for e in accounts.events(session)]
    assert ("chen-jie", "user.password_changed", "chen-jie") in actions


# -- administration over the API -----------------------------------------------------------------


def test_an_administrator_disables_resets_and_grants(
    anonymous_client: TestClient, db: Database
) -> None:
    client = anonymous_client
    admin = sign_in(db, "root-admin", [Role.ADMIN])
    add_user(db, "sun-hao", ["responder"])
    session_a, session_b = sign_in(db, "sun-hao"), sign_in(db, "sun-hao")
    assert_problem(client.get("/api/sites", headers=admin), 403)  # nothing on a site
    listed = client.get("/api/admin/users", headers=admin).json()["users"]
    assert {"username": "sun-hao", "roles": ["responder"], "disabled": False}.items() <= next(
        u for u in listed if u["username"] == "sun-hao"
    ).items()

    disabled = client.post("/api/admin/users/sun-hao/disable", headers=admin)
    assert disabled.status_code == 200 and disabled.json()["sessions_revoked"] == 2
    for headers in (session_a, session_b):
        assert_problem(client.get("/api/sites", headers=headers), 401)
    assert attempt(client, "sun-hao", TEST_PASSWORD).status_code == 401
    assert client.post("/api/admin/users/sun-hao/enable", headers=admin).status_code == 200
    fresh = bearer(attempt(client, "sun-hao", TEST_PASSWORD).json()["access_token"])
    assert client.get("/api/sites", headers=fresh).status_code == 200
    assert_problem(client.get("/api/sites", headers=session_a), 401)  # old ones stay revoked

    reset = client.post(
        "/api/admin/users/sun-hao/password", json={"password": "given by the admin"}, headers=admin
    )
    assert reset.status_code == 204, reset.text
    assert_problem(client.get("/api/sites", headers=fresh), 401)
    assert attempt(client, "sun-hao", "given by the admin").status_code == 200
    short = client.post("/api/admin/users/sun-hao/password", json={"password": "x"}, headers=admin)
    assert_problem(short, 422, field="password")
    assert_problem(client.post("/api/admin/users/nobody/disable", headers=admin), 404)
    assert_problem(client.post("/api/admin/users/root-admin/disable", headers=admin), 422)

    grant = {"site": DEMO_ID, "role": "commander"}
    granted = client.post("/api/admin/users/sun-hao/grants", json=grant, headers=admin)
    assert granted.json()["site_roles"] == {DEMO_ID: ["commander"]}
    assert_problem(
        client.post(
            "/api/admin/users/sun-hao/grants", json={**grant, "role": "admin"}, headers=admin
        ),
        422,
    )
    assert_problem(
        client.post("/api/admin/users/sun-hao/grants", json={**grant, "site": "x"}, headers=admin),
        404,
    )
    taken = client.delete(f"/api/admin/users/sun-hao/grants/{DEMO_ID}/commander", headers=admin)
    assert taken.json()["site_roles"] == {}
    again = client.delete(f"/api/admin/users/sun-hao/grants/{DEMO_ID}/commander", headers=admin)
    assert_problem(again, 404)

    events = client.get("/api/admin/events", headers=admin).json()["events"]
    assert [(e["actor"], e["action"], e["subject"]) for e in events] == [
        ("root-admin", "user.disabled", "sun-hao"),
        ("root-admin", "user.enabled", "sun-hao"),
        ("root-admin", "user.password_reset", "sun-hao"),
        ("root-admin", "role.granted", "sun-hao"),
        ("root-admin", "role.revoked", "sun-hao"),
    ]
    assert events[3]["site"] == DEMO_ID and events[3]["detail"] == {"role": "commander"}
    assert all(e["at"].endswith("Z") for e in events)


def test_an_administrator_revokes_a_device_token(
    anonymous_client: TestClient, db: Database
) -> None:
    client = anonymous_client
    admin = sign_in(db, "root-admin", [Role.ADMIN])
    with db.write() as session:
        gateway = create_device_token(session, DEMO_ID, "gateway-east", timedelta(days=30)).token
        create_device_token(session, DEMO_ID, "gateway-west", None)
    reading: dict[str, list[object]] = {"readings": []}
    before = client.post(f"/api/sites/{DEMO_ID}/readings", json=reading, headers=bearer(gateway))
    assert before.status_code not in (401, 403), before.text
    devices = client.get(f"/api/admin/sites/{DEMO_ID}/devices", headers=admin).json()["devices"]
    assert [d["name"] for d in devices] == ["gateway-east", "gateway-west"]
    assert all(gateway not in str(d) for d in devices)  # ids only, never the token
    east = devices[0]["id"]
    revoked = client.delete(f"/api/admin/sites/{DEMO_ID}/devices/{east}", headers=admin)
    assert revoked.status_code == 200 and revoked.json()["revoked"][0]["name"] == "gateway-east"
    answer = client.post(f"/api/sites/{DEMO_ID}/readings", json=reading, headers=bearer(gateway))
    assert_problem(answer, 401)
    listed = client.get(f"/api/admin/sites/{DEMO_ID}/devices", headers=admin).json()["devices"]
    assert [d["revoked"] for d in listed] == [True, False]
    assert_problem(client.delete(f"/api/admin/sites/{DEMO_ID}/devices/{east}", headers=admin), 404)
    assert_problem(client.get("/api/admin/sites/nowhere/devices", headers=admin), 404)
    by_name = client.delete(f"/api/admin/sites/{DEMO_ID}/devices/gateway-west", headers=admin)
    assert by_name.status_code == 200
    events = client.get("/api/admin/events", headers=admin).json()["events"]
    assert [(e["action"], e["subject"], e["site"]) for e in events] == [
        ("device.revoked", "device:gateway-east", DEMO_ID),
        ("device.revoked", "device:gateway-west", DEMO_ID),
    ]


# -- the command line ---------------------------------------------------------------------------


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[CliRunner, Database]]:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("RALLYPOINT_DATABASE_URL", url)
    runner = CliRunner()
    assert runner.invoke(main, ["db", "upgrade"]).exit_code == 0
    assert runner.invoke(main, ["site", "load", str(DEMO_SITE)]).exit_code == 0
    engine = make_engine(url)
    try:
        yield runner, Database(engine)
    finally:
        engine.dispose()


def run(runner: CliRunner, *args: str, stdin: str | None = None, code: int = 0) -> str:
    result = runner.invoke(main, list(args), input=stdin)
    assert result.exit_code == code, (args, result.output)
    return str(result.output)


def test_users_from_the_command_line(cli: tuple[CliRunner, Database]) -> None:
    runner, db = cli
    pw = "a fine password\n"
    run(runner, "user", "add", "li-wei", "--role", "viewer", "--password-stdin", stdin=pw)
    added = run(
        runner, "user", "add", "ma-ke", "--role", "commander", "--site", DEMO_ID,
        "--password-stdin", stdin=pw,
    )  # fmt: skip
    assert f"added user ma-ke (commander) on {DEMO_ID}" in added
    run(runner, "user", "add", "root", "--role", "admin", "--password-stdin", stdin=pw)
    granted = run(runner, "user", "grant", "li-wei", "--site", DEMO_ID, "--role", "commander")
    assert f"li-wei holds commander on {DEMO_ID}" in granted
    run(runner, "user", "grant", "li-wei", "--site", "nowhere", "--role", "planner", code=1)
    run(runner, "user", "grant", "li-wei", "--site", DEMO_ID, "--role", "admin", code=2)
    listing = run(runner, "user", "list").splitlines()
    assert f"li-wei\tli-wei\tviewer\tsites: {DEMO_ID}=commander" in listing
    assert f"ma-ke\tma-ke\t\tsites: {DEMO_ID}=commander" in listing
    assert "root\troot\tadmin" in listing

    with db.write() as session:
        token = issue_token(session, find_user(session, "li-wei"), ttl_s=3600).token
    assert "1 session(s) revoked" in run(runner, "user", "disable", "li-wei")
    assert run(runner, "user", "list").splitlines()[0].endswith("\tdisabled")
    with db.read() as session, pytest.raises(Unauthorized):
        resolve_token(session, token)
    run(runner, "user", "enable", "li-wei")
    new = "another fine one\n"
    assert "new password set for li-wei" in run(
        runner, "user", "passwd", "li-wei", "--password-stdin", stdin=new
    )
    run(runner, "user", "passwd", "li-wei", "--password-stdin", stdin="short\n", code=1)
    run(runner, "user", "disable", "nobody", code=1)
    run(runner, "user", "revoke-grant", "li-wei", "--site", DEMO_ID, "--role", "commander")
    run(runner, "user", "revoke-grant", "li-wei", "--site", DEMO_ID, "--role", "commander", code=1)
    with db.read() as session:
        done = [(e.action, e.subject) for e in accounts.events(session)]
        actors = {e.actor for e in accounts.events(session)}
    assert done == [
        ("user.added", "li-wei"),
        ("user.added", "ma-ke"),
        ("user.added", "root"),
        ("role.granted", "li-wei"),
        ("user.disabled", "li-wei"),
        ("user.enabled", "li-wei"),
        ("user.password_reset", "li-wei"),
        ("role.revoked", "li-wei"),
    ]
    assert len(actors) == 1 and next(iter(actors)).startswith("cli")


def test_device_tokens_from_the_command_line(cli: tuple[CliRunner, Database]) -> None:
    runner, db = cli
    token = run(runner, "device", "add", DEMO_ID, "gateway-1").splitlines()[-1]
    run(runner, "device", "add", DEMO_ID, "gateway-2")
    listing = run(runner, "device", "list", DEMO_ID).splitlines()
    assert [line.split("\t")[1] for line in listing] == ["gateway-1", "gateway-2"]
    assert all(line.endswith("\tlive") for line in listing) and token not in "".join(listing)
    ident = listing[0].split("\t")[0]
    assert f"revoked {ident} (gateway-1)" in run(runner, "device", "revoke", DEMO_ID, ident)
    run(runner, "device", "revoke", DEMO_ID, ident, code=1)  # already revoked
    run(runner, "device", "revoke", "nowhere", "gateway-2", code=1)
    assert "(gateway-2)" in run(runner, "device", "revoke", DEMO_ID, "gateway-2")
    listing = run(runner, "device", "list", DEMO_ID).splitlines()
    assert all(line.endswith("\trevoked") for line in listing)
    with db.read() as session, pytest.raises(Unauthorized):
        resolve_token(session, token)
    with db.read() as session:
        done = [(e.action, e.subject) for e in accounts.events(session)]
    assert done == [
        ("device.added", "device:gateway-1"),
        ("device.added", "device:gateway-2"),
        ("device.revoked", "device:gateway-1"),
        ("device.revoked", "device:gateway-2"),
    ]


def test_a_burst_of_parallel_guesses_gets_no_more_than_the_free_ones(tmp_path: Path) -> None:
    """The review's bypass: the lock was checked, then the password, then the failure counted,
    so 40 guesses sent at once all passed the check. Now each attempt is counted before its
    password is checked, one after another: a burst of 30 gets the 5 free 401s, then 429."""
    url = site_database(tmp_path / "burst.db", {"burst-target": Role.VIEWER})
    with LiveServer(url) as live:

        def guess(i: int) -> int:
            answer = httpx.post(
                f"{live.base}/api/auth/login",
                json={"username": "burst-target", "password": f"wrong-guess-{i:04d}"},
                timeout=60,
            )
            return answer.status_code

        with ThreadPoolExecutor(max_workers=30) as pool:
            statuses = list(pool.map(guess, range(30)))
    assert sorted(set(statuses)) == [401, 429], statuses
    assert statuses.count(401) <= ratelimit.PER_USER.free, statuses
