"""The `rallypoint` command line, against a fresh SQLite database."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyogrio
import pytest
from click.testing import CliRunner
from sqlalchemy.orm import Session

from command import accounts
from command.auth import password_matches, resolve_token
from command.cli import main
from gis.storage.db import make_engine
from tests.conftest import DEMO_SITE, OSM_EXTRACT

COMMANDS = [
    [],
    ["serve"],
    ["db"],
    ["db", "upgrade"],
    ["db", "current"],
    ["site"],
    ["site", "load"],
    ["site", "list"],
    ["layer"],
    ["layer", "import"],
    ["layer", "export"],
    ["fixtures"],
    ["fixtures", "generate"],
    ["osm"],
    ["osm", "import"],
    ["user"],
    ["user", "add"],
    ["user", "list"],
    ["user", "seed-demo"],
    ["user", "disable"],
    ["user", "enable"],
    ["user", "passwd"],
    ["user", "grant"],
    ["user", "revoke-grant"],
    ["device"],
    ["device", "add"],
    ["device", "list"],
    ["device", "revoke"],
    ["drill"],
    ["drill", "list"],
    ["plan"],
    ["plan", "load"],
    ["plan", "list"],
    ["plan", "versions"],
    ["plan", "diff"],
    ["plan", "submit"],
    ["plan", "approve"],
    ["plan", "return"],
    ["plan", "withdraw"],
    ["plan", "document"],
]


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("RALLYPOINT_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    return CliRunner()


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "main")
def test_every_command_explains_itself(cli: CliRunner, command: list[str]) -> None:
    result = cli.invoke(main, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: " in result.output
    # Each command's help has a sentence of its own, not just the usage line.
    assert len(result.output.splitlines()) > 3


def test_load_twice_does_not_duplicate(cli: CliRunner) -> None:
    assert cli.invoke(main, ["db", "upgrade"]).exit_code == 0
    first = cli.invoke(main, ["site", "load", str(DEMO_SITE), "--if-exists", "skip"])
    assert first.exit_code == 0 and "loaded site demo-works" in first.output
    second = cli.invoke(main, ["site", "load", str(DEMO_SITE), "--if-exists", "skip"])
    assert second.exit_code == 0 and "already loaded" in second.output
    refused = cli.invoke(main, ["site", "load", str(DEMO_SITE)])
    assert refused.exit_code == 1 and "exists already" in refused.output
    listing = cli.invoke(main, ["site", "list"]).output
    assert "zones=48" in listing and "people=430" in listing


def test_commands_refuse_an_unmigrated_database(cli: CliRunner) -> None:
    result = cli.invoke(main, ["site", "list"])
    assert result.exit_code != 0 and "rallypoint db upgrade" in result.output


def test_layer_export_edit_import(cli: CliRunner, tmp_path: Path) -> None:
    cli.invoke(main, ["db", "upgrade"])
    cli.invoke(main, ["site", "load", str(DEMO_SITE)])
    out = tmp_path / "zones.gpkg"
    exported = cli.invoke(main, ["layer", "export", "demo-works", "zones", str(out)])
    assert exported.exit_code == 0 and out.stat().st_size > 0
    unchanged = cli.invoke(main, ["layer", "import", "demo-works", "zones", str(out)])
    assert unchanged.exit_code == 0 and "48 unchanged" in unchanged.output
    frame = pyogrio.read_dataframe(out)  # a planner's edit, as QGIS would save it
    frame.loc[frame["id"] == "Z-002", "capacity"] = 12
    pyogrio.write_dataframe(frame, out, driver="GPKG", layer="zones")
    edited = cli.invoke(main, ["layer", "import", "demo-works", "zones", str(out)])
    assert edited.exit_code == 0 and "1 updated, 47 unchanged" in edited.output
    bad = tmp_path / "bad.geojson"
    bad.write_text(
        '{"type": "FeatureCollection", "features": [{"type": "Feature", '
        '"geometry": null, "properties": {"name": "X", "kind": "office"}}]}'
    )
    refused = cli.invoke(main, ["layer", "import", "demo-works", "zones", str(bad)])
    assert refused.exit_code == 1
    assert "row 1: geometry: geometry is required" in refused.output


def test_fixtures_generate_and_osm_import(cli: CliRunner, tmp_path: Path) -> None:
    cli.invoke(main, ["db", "upgrade"])
    out = tmp_path / "synthetic"
    made = cli.invoke(main, ["fixtures", "generate", str(out), "--people", "50", "--edges", "2000"])
    assert made.exit_code == 0 and (out / "site.json").is_file()
    loaded = cli.invoke(main, ["site", "load", str(out)])
    assert loaded.exit_code == 0 and "people 50" in loaded.output
    osm = cli.invoke(
        main, ["osm", "import", str(OSM_EXTRACT), "--site", "oakland", "--create-site", "Oakland"]
    )
    assert osm.exit_code == 0, osm.output
    assert "connected part(s)" in osm.output


def test_user_add_and_list(cli: CliRunner) -> None:
    cli.invoke(main, ["db", "upgrade"])
    add = [
        "user",
        "add",
        "chen-jing",
        "--role",
        "planner",
        "--role",
        "viewer",
        "--name",
        "Chen Jing",
    ]
    piped = cli.invoke(main, [*add, "--password-stdin"], input="a fine password\n")
    assert piped.exit_code == 0, piped.output
    assert "added user chen-jing (planner, viewer)" in piped.output
    taken = cli.invoke(main, [*add, "--password-stdin"], input="a fine password\n")
    assert taken.exit_code == 1 and "taken" in taken.output
    short = cli.invoke(main, ["user", "add", "ma-lin", "--role", "viewer"], input="short\nshort\n")
    assert short.exit_code == 1 and "password: at least 10 characters" in short.output
    prompted = cli.invoke(
        main,
        ["user", "add", "ma-lin", "--role", "commander"],
        input="first try!!\ndiffers!!!!\nthe password\nthe password\n",
    )
    assert prompted.exit_code == 0, prompted.output
    assert "Password: " in prompted.output and "do not match" in prompted.output
    unknown_role = cli.invoke(main, ["user", "add", "x-y-z", "--role", "root"])
    assert unknown_role.exit_code == 2 and "root" in unknown_role.output
    listing = cli.invoke(main, ["user", "list"]).output.splitlines()
    assert listing == ["chen-jing\tChen Jing\tplanner,viewer", "ma-lin\tma-lin\tcommander"]
    with _session() as session:
        assert password_matches(session, "ma-lin", "the password")


def test_seed_demo_users_once(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the credentials go to ./var/demo-users.txt
    cli.invoke(main, ["db", "upgrade"])
    first = cli.invoke(main, ["user", "seed-demo"])
    assert first.exit_code == 0, first.output
    kept = tmp_path / "var" / "demo-users.txt"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    lines = [line.split("\t") for line in kept.read_text().splitlines()[1:]]
    assert [(u, r) for u, _, r in lines] == [
        ("demo-commander", "commander"),
        ("demo-drill-controller", "drill_controller"),
        ("demo-planner", "planner"),
        ("demo-approver", "approver"),
        ("demo-responder", "responder"),
        ("demo-viewer", "viewer"),
        ("demo-admin", "admin"),
    ]
    for username, password, role in lines:
        assert f"{username}" in first.output and password in first.output and role in first.output
    again = cli.invoke(main, ["user", "seed-demo"])
    assert again.exit_code == 0 and again.output == first.output
    listing = cli.invoke(main, ["user", "list"]).output.splitlines()
    assert len(listing) == 7 and "demo-admin\tDemo admin\tadmin" in listing
    with _session() as session:
        assert all(password_matches(session, u, p) for u, p, _ in lines)
        added = [(e.action, e.subject) for e in accounts.events(session)]
    assert added == [("user.added", u) for u, _, _ in lines]  # the second run added nothing

    kept.unlink()  # the file is lost: the users stay, with new passwords written down
    third = cli.invoke(main, ["user", "seed-demo"])
    assert third.exit_code == 0 and third.output != first.output
    new = {u: p for u, p, _ in (line.split("\t") for line in kept.read_text().splitlines()[1:])}
    with _session() as session:
        assert all(password_matches(session, u, p) for u, p in new.items())
        resets = [(e.action, e.subject) for e in accounts.events(session)][len(lines) :]
    assert resets == [("user.password_reset", u) for u in new]
    assert len(cli.invoke(main, ["user", "list"]).output.splitlines()) == 7

    # A fresh database while the file stays: the users come back with the passwords in the file.
    monkeypatch.setenv("RALLYPOINT_DATABASE_URL", f"sqlite:///{tmp_path / 'fresh.db'}")
    cli.invoke(main, ["db", "upgrade"])
    fourth = cli.invoke(main, ["user", "seed-demo"])
    assert fourth.exit_code == 0 and fourth.output == third.output
    with _session() as session:
        assert all(password_matches(session, u, p) for u, p in new.items())


def test_device_add_prints_a_token_once(cli: CliRunner) -> None:
    cli.invoke(main, ["db", "upgrade"])
    cli.invoke(main, ["site", "load", str(DEMO_SITE)])
    added = cli.invoke(main, ["device", "add", "demo-works", "gateway-1", "--ttl-days", "30"])
    assert added.exit_code == 0, added.output
    token = added.output.splitlines()[-1]
    with _session() as session:
        principal = resolve_token(session, token)
    assert principal.kind == "device" and principal.site_id == "demo-works"
    unknown = cli.invoke(main, ["device", "add", "nowhere", "gateway-1"])
    assert unknown.exit_code == 1 and "no site 'nowhere'" in unknown.output


@contextmanager
def _session() -> Iterator[Session]:
    engine = make_engine(os.environ["RALLYPOINT_DATABASE_URL"])
    try:
        with Session(engine) as session:
            yield session
    finally:
        engine.dispose()


def test_drill_list_flags_a_review_not_signed_off_in_72_hours(cli: CliRunner) -> None:
    """A drill run in June and ended, its review never signed off: OVERDUE in December."""
    from datetime import UTC, datetime

    from fastapi.testclient import TestClient

    from command.app import create_app
    from command.auth import Role, create_user
    from command.settings import Settings
    from gis.storage.db import Database, make_engine
    from plans.clock import ManualClock
    from tests.conftest import DEMO_PLANS, FAST_HASHER, TEST_PASSWORD
    from tests.test_drills import SCENARIO

    assert cli.invoke(main, ["db", "upgrade"]).exit_code == 0
    cli.invoke(main, ["site", "load", str(DEMO_SITE)])
    cli.invoke(main, ["plan", "load", str(DEMO_PLANS), "--site", "demo-works"])
    url = os.environ["RALLYPOINT_DATABASE_URL"]
    db = Database(make_engine(url))
    with db.write() as session:
        create_user(session, "ctl", TEST_PASSWORD, ["drill_controller"], hasher=FAST_HASHER)
    clock = ManualClock(datetime(2026, 6, 1, 20, 0, tzinfo=UTC))
    app = create_app(Settings(database_url=url), database=db, clock=clock, ticking=False)
    with TestClient(app) as client:
        token = client.post(
            "/api/auth/login", json={"username": "ctl", "password": TEST_PASSWORD}
        ).json()["access_token"]
        client.headers["Authorization"] = f"Bearer {token}"
        site = "/api/sites/demo-works/drills"
        assert client.post(f"{site}/scenarios", json=SCENARIO).status_code == 201
        drill = client.post(site, json={"scenario_id": SCENARIO["id"], "mode": "announced"})
        drill_id = drill.json()["id"]
        clock.advance(600)
        assert client.post(f"{site}/{drill_id}/end", json={}).status_code == 200
    db.dispose()
    listing = cli.invoke(main, ["drill", "list", "--site", "demo-works"])
    assert listing.exit_code == 0, listing.output
    assert drill_id in listing.output and "ended" in listing.output
    assert "review OVERDUE" in listing.output
    assert Role.DRILL_CONTROLLER.value not in listing.output  # lists drills, not people


def test_outside_the_repo_the_cli_creates_no_database_and_says_which_it_looked_for(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 15: run elsewhere, the CLI made an empty var/rallypoint.db and then said "no site
    'demo-works'". Now it names the database it looked for, and where that came from."""
    monkeypatch.delenv("RALLYPOINT_DATABASE_URL")
    monkeypatch.delenv("RALLYPOINT_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    for command in (["site", "list"], ["plan", "list", "--site", "demo-works"], ["db", "current"]):
        result = cli.invoke(main, command)
        assert result.exit_code == 1, result.output
        assert str(tmp_path / "var" / "rallypoint.db") in result.output
        assert "rallypoint db upgrade" in result.output and "the default" in result.output
    assert not (tmp_path / "var").exists()  # nothing created
    made = cli.invoke(main, ["db", "upgrade"])
    assert made.exit_code == 0 and "created" in made.output
    assert (tmp_path / "var" / "rallypoint.db").is_file()


def test_a_settings_file_names_the_database(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RALLYPOINT_DATABASE_URL")
    elsewhere = tmp_path / "plant" / "site.db"
    config = tmp_path / "rallypoint.toml"
    config.write_text(f'database_url = "sqlite:///{elsewhere}"\n', encoding="utf-8")
    monkeypatch.setenv("RALLYPOINT_CONFIG", str(config))
    monkeypatch.chdir(tmp_path / "..")
    made = cli.invoke(main, ["db", "upgrade"])
    assert made.exit_code == 0, made.output
    assert str(elsewhere) in made.output and str(config) in made.output
    assert elsewhere.is_file()
    assert cli.invoke(main, ["site", "list"]).exit_code == 0
    # The environment wins over the file.
    other = tmp_path / "other.db"
    monkeypatch.setenv("RALLYPOINT_DATABASE_URL", f"sqlite:///{other}")
    refused = cli.invoke(main, ["site", "list"])
    assert refused.exit_code == 1 and str(other) in refused.output
    assert "RALLYPOINT_DATABASE_URL" in refused.output
    monkeypatch.setenv("RALLYPOINT_CONFIG", str(tmp_path / "missing.toml"))
    monkeypatch.delenv("RALLYPOINT_DATABASE_URL")
    broken = cli.invoke(main, ["site", "list"])
    assert (
        broken.exit_code == 1 and "missing.toml" in broken.output and "not a file" in broken.output
    )
