"""The ``rallypoint`` command line."""

from __future__ import annotations

import getpass
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from command.auth import HUMAN_ROLES, USER_ROLES
from command.settings import Settings, database_source, describe_database, missing_sqlite_file
from gis.errors import RallypointError
from gis.storage.db import Database, make_engine, schema_is_current, upgrade


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _existing_database_url() -> str:
    """The database URL in force, refusing (with which database and where its URL came from)
    a SQLite file that does not exist: only 'rallypoint db upgrade' creates a database."""
    url = Settings().database_url
    missing = missing_sqlite_file(url)
    if missing is not None:
        raise click.ClickException(
            f"no database at {missing} (from {database_source()}): "
            "'rallypoint db upgrade' creates one there, or point RALLYPOINT_DATABASE_URL "
            "(or database_url in a settings file, RALLYPOINT_CONFIG) at yours"
        )
    return url


@contextmanager
def _database() -> Iterator[Database]:
    url = _existing_database_url()
    db = Database(make_engine(url))
    try:
        current, head = schema_is_current(db.engine)
        if current != head:
            raise click.ClickException(
                f"the database {describe_database(url)} (from {database_source()}) has schema "
                f"{current}, the code needs {head}: run 'rallypoint db upgrade' first"
            )
        yield db
    finally:
        db.dispose()


def _report_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn domain errors into a readable message and exit status 1, instead of a traceback."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RallypointError as exc:
            click.echo(f"error: {exc.detail}", err=True)
            for error in exc.errors[:50]:
                row = f"row {error.row}: " if error.row is not None else ""
                click.echo(f"  {row}{error.field}: {error.reason}", err=True)
            if len(exc.errors) > 50:
                click.echo(f"  ... and {len(exc.errors) - 50} more", err=True)
            sys.exit(1)

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Rallypoint: GIS-centric emergency command server for industrial sites.

    Configuration comes from RALLYPOINT_* environment variables (see the README); the database
    is RALLYPOINT_DATABASE_URL, an embedded SQLite file under var/ by default.
    """
    try:
        settings = Settings()
    except ValueError as exc:  # a bad setting, or RALLYPOINT_CONFIG naming no file
        raise click.ClickException(str(exc)) from exc
    logging.basicConfig(level=settings.log_level, format="%(levelname)s %(name)s: %(message)s")
    # Alembic announces every connection; its news matters only to 'db upgrade'.
    logging.getLogger("alembic").setLevel(logging.WARNING)


@main.command()
@click.option("--host", default=None, help="Listen address (default RALLYPOINT_HOST, 127.0.0.1).")
@click.option("--port", default=None, type=int, help="Port (default RALLYPOINT_PORT, 8000).")
def serve(host: str | None, port: int | None) -> None:
    """Serve the API and map wall over HTTP until interrupted."""
    import uvicorn

    from command.app import create_app
    from command.serving import uvicorn_options

    settings = Settings()
    _existing_database_url()  # never serve a database made empty on the way
    host, port = host or settings.host, port or settings.port
    click.echo(f"database: {describe_database(settings.database_url)} ({database_source()})")
    click.echo(f"Rallypoint serving on http://{host}:{port} (API docs: http://{host}:{port}/docs)")
    # access_log off: RequestLog already writes one line per request.
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_level=settings.log_level.lower(),
        access_log=False,
        **uvicorn_options(settings),  # header deadline and keep-alive: no slowloris
    )


@main.group()
def db() -> None:
    """Database schema (Alembic migrations)."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
def db_upgrade(revision: str) -> None:
    """Create or migrate the schema of the database (RALLYPOINT_DATABASE_URL or the settings
    file's database_url): the one command that creates a database."""
    url = Settings().database_url
    missing = missing_sqlite_file(url)
    if missing is not None:
        missing.parent.mkdir(parents=True, exist_ok=True)
    engine = make_engine(url)
    upgrade(engine, revision)
    current, _ = schema_is_current(engine)
    made = "created" if missing is not None else "at"
    click.echo(f"database {describe_database(url)} ({database_source()}): {made} schema {current}")
    engine.dispose()


@db.command("current")
def db_current() -> None:
    """Show which database is used, its schema revision and the code's."""
    url = _existing_database_url()
    click.echo(f"database {describe_database(url)} ({database_source()})")
    engine = make_engine(url)
    current, head = schema_is_current(engine)
    click.echo(f"database: {current}  code: {head}")
    engine.dispose()


@main.group()
def site() -> None:
    """Sites: load a site folder, list sites."""


@site.command("load")
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--if-exists",
    type=click.Choice(["fail", "skip", "replace"]),
    default="fail",
    show_default=True,
    help="What to do when the site is already in the database.",
)
@_report_errors
def site_load(path: Path, if_exists: str) -> None:
    """Load a site folder (site.json plus one GeoJSON file per layer), all or nothing."""
    from gis.site_bundle import IfExists, load_bundle

    with _database() as database:
        loaded, reports = load_bundle(database, path, actor=_actor(), if_exists=IfExists(if_exists))
    if reports is None:
        click.echo(f"site {loaded.id} is already loaded; left as it is")
        return
    counts = ", ".join(f"{name} {r.created}" for name, r in reports.items())
    click.echo(f"loaded site {loaded.id} ({loaded.name}): {counts}")


@site.command("list")
def site_list() -> None:
    """List sites and their layer counts."""
    from gis.sites import list_sites

    with _database() as database:
        for s, counts in list_sites(database):
            layer_counts = " ".join(f"{k}={v}" for k, v in counts.items())
            click.echo(f"{s.id}\t{s.name}\t{layer_counts}")


@main.group()
def plan() -> None:
    """Plan templates: load YAML/JSON files, list, compare, move through the workflow, print.

    The workflow commands act as the server's operator (cli:<user>), on the plan's latest
    version, named by --version as its ETag ("4", or "4.2" for a draft saved twice); each is
    logged in the site's event log. Whoever saved or submitted a version may not approve it."""


@plan.command("load")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--site", "site_id", required=True, help="The site the plans belong to.")
@click.option(
    "--if-exists",
    type=click.Choice(["fail", "skip", "replace"]),
    default="fail",
    show_default=True,
    help="What to do with a plan already there (replace stores a new version if it changed).",
)
@click.option(
    "--draft",
    is_flag=True,
    help="Store new or changed plans as drafts for review, instead of approved.",
)
@click.option("--change-note", default=None, help='Default: "loaded from FILE".')
@_report_errors
def plan_load(
    path: Path, site_id: str, if_exists: str, draft: bool, change_note: str | None
) -> None:
    """Load a plan file, or every *.yaml, *.yml and *.json file of a folder, all or nothing.

    The operator's load approves what it stores (in force for activations at once, logged as
    approved by the operator via 'plan load'), unless --draft."""
    from command.plan_log import PlanLog
    from plans.store import load_plan_files

    files = (
        [p for p in path.iterdir() if p.suffix in (".yaml", ".yml", ".json")]
        if path.is_dir()
        else [path]
    )
    with _database() as database, database.write() as session:
        results = load_plan_files(
            session,
            site_id,
            files,
            actor=_actor(),
            if_exists=if_exists,  # type: ignore[arg-type]  # click.Choice checked it
            approve=not draft,
            change_note=change_note,
            record=PlanLog(session, site_id),
        )
    for plan_id, what in results:
        click.echo(f"{plan_id}: {what}")


@plan.command("list")
@click.option("--site", "site_id", required=True)
@_report_errors
def plan_list(site_id: str) -> None:
    """List a site's plans: the version in force (approved), and the latest with its state."""
    from plans.store import list_plans

    with _database() as database, database.read() as session:
        for s in list_plans(session, site_id):
            approved = s["approved_version"]
            in_force = f"v{approved} approved" if approved else "not approved"
            latest = (
                f"\tv{s['latest_version']} {s['latest_status']}"
                if s["latest_version"] != approved
                else ""
            )
            click.echo(f"{s['id']}\t{in_force}{latest}\t{s['scenario']}\t{s['title']}")


@plan.command("versions")
@click.argument("plan_id")
@click.option("--site", "site_id", required=True)
@_report_errors
def plan_versions(plan_id: str, site_id: str) -> None:
    """Every version of a plan: ETag, state, change note, and each step of its history."""
    from plans.store import plan_versions as versions

    with _database() as database, database.read() as session:
        found = versions(session, site_id, plan_id)
    for v in found:
        note = f"\t{v['change_note']}" if v["change_note"] else ""
        click.echo(f"v{v['version']}\t{v['etag']}\t{v['status']}{note}")
        for h in v["history"]:
            said = h.get("change_note") or h.get("reason") or h.get("comment") or ""
            seq = f" (event {h['seq']})" if "seq" in h else ""
            click.echo(f"  {h['at']}\t{h['action']}\t{h['by']}{seq}\t{said}".rstrip())


@plan.command("diff")
@click.argument("plan_id")
@click.option("--site", "site_id", required=True)
@click.option("--from", "from_version", type=int, default=None, help="Default: the approved one.")
@click.option("--to", "to_version", type=int, default=None, help="Default: the latest.")
@click.option("--json", "as_json", is_flag=True, help="The changes as JSON.")
@_report_errors
def plan_diff(
    plan_id: str, site_id: str, from_version: int | None, to_version: int | None, as_json: bool
) -> None:
    """What changed between two versions of a plan: steps, levels, call trees, materials,
    scripts (by default, what the latest version changes from the one in force)."""
    import json

    from plans.approval import version_diff

    with _database() as database, database.read() as session:
        found = version_diff(
            session, site_id, plan_id, from_version=from_version, to_version=to_version
        )
    if as_json:
        click.echo(json.dumps(found, ensure_ascii=False, indent=2))
    else:
        click.echo(found["text"], nl=False)


def _workflow_command(action: str) -> click.Command:
    """``plan submit|approve|return|withdraw PLAN --site S --version ETAG [--note TEXT]``."""
    needs = {
        "submit": ("--change-note", "What the version changes (if the draft has none yet)."),
        "approve": ("--comment", "A comment kept with the approval."),
        "return": ("--reason", "Why it goes back to draft (required)."),
        "withdraw": ("--reason", "Why the draft is withdrawn."),
    }
    option, help_text = needs[action]
    summary = {
        "submit": "Submit the plan's draft for approval.",
        "approve": "Approve the plan's submitted version: in force for activation from now.",
        "return": "Return the plan's submitted version to draft, with a reason.",
        "withdraw": "Withdraw the plan's draft; the approved version stays in force.",
    }[action]

    @plan.command(action, help=summary)
    @click.argument("plan_id")
    @click.option("--site", "site_id", required=True)
    @click.option(
        "--version",
        "version",
        required=True,
        help='The ETag of the version you act on, as "plan versions" shows it ("4", "4.2").',
    )
    @click.option(option, "text", default=None, help=help_text)
    @_report_errors
    def command(plan_id: str, site_id: str, version: str, text: str | None) -> None:
        from command.plan_log import PlanLog
        from plans import approval
        from plans.workflow import parse_etag

        expected = parse_etag(version, field_name="--version")
        with _database() as database, database.write() as session:
            log = PlanLog(session, site_id)
            common: dict[str, Any] = {
                "actor": _actor(),
                "expected": expected,
                "header": False,
                "record": log,
                "via": "cli",
            }
            if action == "submit":
                done = approval.submit_plan(session, site_id, plan_id, change_note=text, **common)
            elif action == "approve":
                done = approval.approve_plan(session, site_id, plan_id, comment=text, **common)
            elif action == "return":
                done = approval.return_plan(session, site_id, plan_id, reason=text, **common)
            else:
                done = approval.withdraw_plan(session, site_id, plan_id, reason=text, **common)
        seq = f" (event {log.logged[-1].seq})" if log.logged else ""
        click.echo(f"{plan_id} version {done.version} ({done.etag}): {done.status.value}{seq}")

    return command


for _action in ("submit", "approve", "return", "withdraw"):
    _workflow_command(_action)


@main.group()
def drill() -> None:
    """Drills (docs/drills.md): what is scheduled, running and ended, and overdue reviews."""


@drill.command("list")
@click.option("--site", "site_id", required=True)
@_report_errors
def drill_list(site_id: str) -> None:
    """List a site's drills: state, window (never a blind drill's sealed start), when it
    started and ended, and its review: signed off, open, or OVERDUE (not signed off 72 hours
    after the end)."""
    from datetime import UTC, datetime

    from sqlalchemy import select

    from command.reviews import overdue_reviews
    from gis.sites import load_site
    from gis.storage.tables import DrillRow, ReviewRow

    now = datetime.now(UTC)
    with _database() as database:
        with database.read() as session:
            load_site(session, site_id)  # a clear error for an unknown site
            drills = list(
                session.scalars(
                    select(DrillRow)
                    .where(DrillRow.site_id == site_id)
                    .order_by(DrillRow.created_at)
                )
            )
            reviews = {
                r.drill_id: r
                for r in session.scalars(
                    select(ReviewRow).where(
                        ReviewRow.site_id == site_id, ReviewRow.drill_id.is_not(None)
                    )
                )
            }
        late = {r["drill_id"] for r in overdue_reviews(database, now=now, site_id=site_id)}
    if not drills:
        click.echo(f"no drills at {site_id}")
    for row in drills:
        window = f"{row.window['start']} .. {row.window['end']}" if row.window else "announced"
        review = reviews.get(row.id)
        if row.id in late:
            verdict = "review OVERDUE (not signed off 72 h after the end)"
        elif review is None:
            verdict = "no review" if row.state in ("ended", "aborted") else ""
        elif review.signed_off_at is not None:
            verdict = (
                f"review signed off {review.signed_off_at.isoformat()} by {review.signed_off_by}"
            )
        else:
            verdict = "review open"
        started = row.started_at.isoformat() if row.started_at else "-"
        ended = row.ended_at.isoformat() if row.ended_at else "-"
        click.echo(
            f"{row.id}\t{row.scenario_id} v{row.scenario_version}\t{row.state}\t{window}"
            f"\tstarted {started}\tended {ended}\t{verdict}".rstrip()
        )


@plan.command("document")
@click.argument("plan_id")
@click.argument("file", type=click.Path(dir_okay=False, writable=True, path_type=Path))
@click.option("--site", "site_id", required=True)
@click.option("--version", type=int, default=None, help="A version other than the latest.")
@_report_errors
def plan_document(plan_id: str, file: Path, site_id: str, version: int | None) -> None:
    """Write a plan as a printable document: HTML, or Markdown for a .md file."""
    from plans.document import plan_html, plan_markdown
    from plans.store import get_plan

    with _database() as database, database.read() as session:
        stored = get_plan(session, site_id, plan_id, version=version)
    render = plan_markdown if file.suffix == ".md" else plan_html
    file.write_text(render(stored.template, version=stored.version), encoding="utf-8")
    click.echo(f"wrote {file} ({plan_id} version {stored.version})")


@main.group()
def layer() -> None:
    """Import or export one layer of a site (GeoJSON, GeoPackage, zipped Shapefile)."""


@layer.command("import")
@click.argument("site_id")
@click.argument("layer_name", metavar="LAYER")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--mode",
    type=click.Choice(["merge", "replace"]),
    default="merge",
    show_default=True,
    help="merge: add and update (rows must carry their current version); "
    "replace: the file becomes the whole layer.",
)
@click.option(
    "--merge",
    is_flag=True,
    help="Rows others changed since the file was read: merge those whose edits touched other "
    "attributes, skip and list the rest, and import everything else.",
)
@_report_errors
def layer_import(site_id: str, layer_name: str, file: Path, mode: str, merge: bool) -> None:
    """Import FILE into LAYER of SITE_ID; any bad row refuses the whole file, and so does a row
    others changed since it was read unless --merge."""
    from gis.layer_io import ArchiveLimits, ImportMode, format_from_path, import_file

    settings = Settings()
    limits = ArchiveLimits(
        max_bytes=settings.max_unzipped_bytes, max_ratio=settings.max_unzip_ratio
    )
    with _database() as database:
        report = import_file(
            database,
            site_id,
            layer_name,
            file.read_bytes(),
            format_from_path(file),
            actor=_actor(),
            mode=ImportMode(mode),
            limits=limits,
            merge=merge,
        )
    click.echo(f"{layer_name}: {report.summary()}")
    for conflict in report.conflicts:
        click.echo(f"  row {conflict['row']}: skipped: {conflict['detail']}")


@layer.command("export")
@click.argument("site_id")
@click.argument("layer_name", metavar="LAYER")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@_report_errors
def layer_export(site_id: str, layer_name: str, file: Path) -> None:
    """Export LAYER of SITE_ID to FILE (.geojson, .gpkg, or .zip for a Shapefile)."""
    from gis.layer_io import export_layer, format_from_path

    with _database() as database:
        file.write_bytes(export_layer(database, site_id, layer_name, format_from_path(file)))
    click.echo(f"wrote {file}")


@main.group()
def user() -> None:
    """Users who sign in, and their roles (commander, drill_controller, planner, approver,
    responder, viewer on every site or granted on one; admin for users and tokens only)."""


def _new_password(password_stdin: bool) -> str:
    if password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))


@user.command("add")
@click.argument("username")
@click.option(
    "--role",
    "roles",
    multiple=True,
    required=True,
    type=click.Choice(sorted(r.value for r in USER_ROLES)),
    help="A role of the user; repeat for several.",
)
@click.option(
    "--site",
    "site_id",
    default=None,
    help="Hold the roles on this site only (default: on every site).",
)
@click.option("--name", "display_name", default=None, help="Display name (default: USERNAME).")
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from the first line of standard input instead of prompting.",
)
@_report_errors
def user_add(
    username: str,
    roles: tuple[str, ...],
    site_id: str | None,
    display_name: str | None,
    password_stdin: bool,
) -> None:
    """Add a user who signs in with USERNAME and a password (at least 10 characters)."""
    from command.accounts import record
    from command.auth import create_user

    password = _new_password(password_stdin)
    with _database() as database, database.write() as session:
        created = create_user(session, username, password, roles, display_name, site_id=site_id)
        record(
            session,
            _actor(),
            "user.added",
            created.username,
            site_id=site_id,
            detail={"roles": sorted(roles)},
        )
    where = f" on {site_id}" if site_id else ""
    click.echo(f"added user {created.username} ({', '.join(sorted(roles))}){where}")


@user.command("list")
def user_list() -> None:
    """List users: username, display name, roles, the roles granted per site, and whether they
    are disabled."""
    from command.auth import list_users

    with _database() as database, database.read() as session:
        for u in list_users(session):
            grants = "; ".join(
                f"{s}={','.join(sorted(r))}" for s, r in sorted(u.site_roles.items())
            )
            shown = f"\tsites: {grants}" if grants else ""
            state = "\tdisabled" if u.disabled else ""
            click.echo(f"{u.username}\t{u.display_name}\t{','.join(sorted(u.roles))}{shown}{state}")


@user.command("disable")
@click.argument("username")
@_report_errors
def user_disable(username: str) -> None:
    """Disable USERNAME: no sign-in, every session revoked; a running server closes their
    websockets within a second."""
    from command.accounts import disable_user

    with _database() as database, database.write() as session:
        revoked = disable_user(session, username, actor=_actor())
    click.echo(f"disabled {username}; {len(revoked)} session(s) revoked")


@user.command("enable")
@click.argument("username")
@_report_errors
def user_enable(username: str) -> None:
    """Let a disabled USERNAME sign in again (their old sessions stay revoked)."""
    from command.accounts import enable_user

    with _database() as database, database.write() as session:
        enable_user(session, username, actor=_actor())
    click.echo(f"enabled {username}")


@user.command("passwd")
@click.argument("username")
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the new password from the first line of standard input instead of prompting.",
)
@_report_errors
def user_passwd(username: str, password_stdin: bool) -> None:
    """Set a new password for USERNAME; every session they hold is revoked."""
    from command.accounts import reset_password

    password = _new_password(password_stdin)
    with _database() as database, database.write() as session:
        revoked = reset_password(session, username, password, actor=_actor())
    click.echo(f"new password set for {username}; {len(revoked)} session(s) revoked")


SITE_ROLE_CHOICE = click.Choice(sorted(r.value for r in HUMAN_ROLES))


@user.command("grant")
@click.argument("username")
@click.option("--site", "site_id", required=True, help="The site the role is held on.")
@click.option("--role", required=True, type=SITE_ROLE_CHOICE, help="The role on that site.")
@_report_errors
def user_grant(username: str, site_id: str, role: str) -> None:
    """Give USERNAME a role on one site only (roles held on every site come with 'user add')."""
    from command.accounts import grant

    with _database() as database, database.write() as session:
        held = grant(session, username, site_id, role, actor=_actor())
    click.echo(f"{username} holds {', '.join(sorted(held))} on {site_id} (by grant)")


@user.command("revoke-grant")
@click.argument("username")
@click.option("--site", "site_id", required=True, help="The site the role was granted on.")
@click.option("--role", required=True, type=SITE_ROLE_CHOICE, help="The role to take back.")
@_report_errors
def user_revoke_grant(username: str, site_id: str, role: str) -> None:
    """Take back a role granted to USERNAME on one site."""
    from command.accounts import revoke_grant

    with _database() as database, database.write() as session:
        held = revoke_grant(session, username, site_id, role, actor=_actor())
    left = ", ".join(sorted(held)) or "no role"
    click.echo(f"{username} holds {left} on {site_id} by grant")


@user.command("seed-demo")
@click.option(
    "--file",
    "path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("var/demo-users.txt"),
    show_default=True,
    help="Where the demo credentials are kept (readable by you only).",
)
@_report_errors
def user_seed_demo(path: Path) -> None:
    """Create one demo user per role (demo-commander, ..., demo-admin) and print their
    credentials.

    The first run picks random passwords and keeps them in the file; later runs print the
    same credentials and create nothing.
    """
    from command.demo_users import seed_demo_users

    with _database() as database, database.write() as session:
        credentials = seed_demo_users(session, path, actor=_actor())
    click.echo(f"demo users (credentials kept in {path}):")
    for c in credentials:
        click.echo(f"  {c.username:<24} password: {c.password}   role: {c.role}")


@main.group()
def device() -> None:
    """Device tokens for sensor gateways: they may only post readings for their site."""


@device.command("add")
@click.argument("site_id", metavar="SITE")
@click.argument("name")
@click.option(
    "--ttl-days",
    type=click.IntRange(1, 3650),
    default=365,
    show_default=True,
    help="Days until the token expires.",
)
@_report_errors
def device_add(site_id: str, name: str, ttl_days: int) -> None:
    """Issue a token for device NAME of SITE; it is printed once and stored only as a hash."""
    from datetime import timedelta

    from command.accounts import record
    from command.auth import create_device_token, device_id, token_hash

    with _database() as database, database.write() as session:
        issued = create_device_token(session, site_id, name, timedelta(days=ttl_days))
        ident = device_id(token_hash(issued.token))
        record(
            session,
            _actor(),
            "device.added",
            f"device:{name}",
            site_id=site_id,
            detail={"id": ident},
        )
    assert issued.expires_at is not None
    click.echo(f"device token for {name} at {site_id}, valid until {issued.expires_at:%Y-%m-%d}:")
    click.echo(issued.token)


@device.command("list")
@click.argument("site_id", metavar="SITE")
@_report_errors
def device_list(site_id: str) -> None:
    """List the device tokens of SITE: id, name, created, expires, and whether revoked or
    expired (the tokens themselves are never shown: only their hashes are kept)."""
    from datetime import UTC, datetime

    from command.accounts import list_devices

    now = datetime.now(UTC)
    with _database() as database, database.read() as session:
        for d in list_devices(session, site_id):
            expires = f"{d.expires_at:%Y-%m-%d}" if d.expires_at else "never"
            expired = d.expires_at is not None and d.expires_at <= now
            state = "revoked" if d.revoked else "expired" if expired else "live"
            click.echo(f"{d.id}\t{d.name}\t{d.created_at:%Y-%m-%d}\t{expires}\t{state}")


@device.command("revoke")
@click.argument("site_id", metavar="SITE")
@click.argument("device", metavar="NAME|ID")
@_report_errors
def device_revoke(site_id: str, device: str) -> None:
    """Revoke the device token of SITE with that id, or every live one of that name; a running
    server closes its feed within a second."""
    from command.accounts import revoke_device

    with _database() as database, database.write() as session:
        revoked, _ = revoke_device(session, site_id, device, actor=_actor())
    for d in revoked:
        click.echo(f"revoked {d.id} ({d.name}) at {site_id}")


@main.group()
def wall() -> None:
    """Wall tokens for map walls in kiosk mode: a viewer of one site that only reads it."""


@wall.command("add")
@click.argument("site_id", metavar="SITE")
@click.argument("name")
@click.option(
    "--ttl-days",
    type=click.IntRange(1, 3650),
    default=365,
    show_default=True,
    help="Days until the token expires.",
)
@_report_errors
def wall_add(site_id: str, name: str, ttl_days: int) -> None:
    """Issue a read-only token for wall NAME of SITE; it is printed once, with the kiosk URL's
    path (the token rides in the fragment, which never reaches the server or its logs)."""
    from datetime import timedelta

    from command.accounts import add_wall

    with _database() as database, database.write() as session:
        issued, _ = add_wall(session, site_id, name, timedelta(days=ttl_days), actor=_actor())
    assert issued.expires_at is not None
    click.echo(f"wall token for {name} at {site_id}, valid until {issued.expires_at:%Y-%m-%d}:")
    click.echo(issued.token)
    click.echo(f"kiosk URL: http://HOST:PORT/#wall={issued.token}")


@wall.command("list")
@click.argument("site_id", metavar="SITE")
@_report_errors
def wall_list(site_id: str) -> None:
    """List the wall tokens of SITE: id, name, created, expires, and whether revoked or expired."""
    from datetime import UTC, datetime

    from command.accounts import list_devices

    now = datetime.now(UTC)
    with _database() as database, database.read() as session:
        for w in list_devices(session, site_id, "wall"):
            expires = f"{w.expires_at:%Y-%m-%d}" if w.expires_at else "never"
            expired = w.expires_at is not None and w.expires_at <= now
            state = "revoked" if w.revoked else "expired" if expired else "live"
            click.echo(f"{w.id}\t{w.name}\t{w.created_at:%Y-%m-%d}\t{expires}\t{state}")


@wall.command("revoke")
@click.argument("site_id", metavar="SITE")
@click.argument("wall_name", metavar="NAME|ID")
@_report_errors
def wall_revoke(site_id: str, wall_name: str) -> None:
    """Revoke the wall token of SITE with that id, or every live one of that name; a running
    server closes the wall's websocket within a second."""
    from command.accounts import revoke_device

    with _database() as database, database.write() as session:
        revoked, _ = revoke_device(session, site_id, wall_name, actor=_actor(), kind="wall")
    for w in revoked:
        click.echo(f"revoked {w.id} ({w.name}) at {site_id}")


@main.group()
def demo() -> None:
    """The demo's stand-ins for field equipment."""


@demo.command("wind")
@click.option("--site", "site_id", default="demo-works", show_default=True, help="Site id.")
@click.option(
    "--speed",
    type=float,
    default=3.0,
    show_default=True,
    help="Wind speed, metres a second.",
)
@click.option(
    "--from-deg",
    type=float,
    default=45.0,
    show_default=True,
    help="Where the wind blows from, degrees clockwise from north.",
)
@_report_errors
def demo_wind(site_id: str, speed: float, from_deg: float) -> None:
    """Give every wind station of the site a reading observed now (the demo has no real
    stations). A plan's design release uses a wind under 10 minutes old, so ``make run`` calls
    this before serving; a running server reads it at its next activation."""
    from command.stored_readings import seed_wind

    with _database() as database, database.write() as session:
        stations = seed_wind(session, site_id, speed_m_s=speed, from_deg=from_deg, actor=_actor())
    click.echo(f"wind {speed:g} m/s from {from_deg:g} deg at {site_id}, now: {', '.join(stations)}")


@demo.command("history")
@click.option("--site", "site_id", default="demo-works", show_default=True, help="Site id.")
@click.option("--days", type=int, default=30, show_default=True, help="Days of history, 7 to 90.")
@click.option("--seed", type=int, default=16, show_default=True, help="Random seed.")
@click.option(
    "--replace", is_flag=True, help="Replace generated history already there (else: keep it)."
)
@_report_errors
def demo_history(site_id: str, days: int, seed: int, replace: bool) -> None:
    """Generate days of alarm history ending now, with planted patterns (a chattering
    detector by the welding shop, a drifting one, a stuck one, a real small leak), marked
    generated, into the history tables (never the event log): docs/monitoring.md."""
    from command.monitoring.demo_history import generate_history, has_generated

    with _database() as database, database.write() as session:
        if has_generated(session, site_id) and not replace:
            click.echo(f"{site_id} has generated history already (--replace to make it again)")
            return
        made = generate_history(session, site_id, days=days, seed=seed)
    planted = ", ".join(f"{k} {v}" for k, v in made["planted"].items())
    click.echo(
        f"{made['alarms']} alarms, {made['permits']} hot-work permits and {made['periods']} "
        f"reading periods at {site_id}, {made['from']} to {made['to']}; planted: {planted}"
    )


@main.group()
def fixtures() -> None:
    """Generate site folders: the demo works, or large synthetic sites for benchmarks."""


@fixtures.command("generate")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--people", default=430, show_default=True, help="Number of people on site.")
@click.option(
    "--edges",
    default=None,
    type=int,
    help="About this many network edges (synthetic grid site); leave out for the demo works.",
)
@click.option("--seed", default=42, show_default=True, help="Random seed.")
@click.option("--site-id", default=None, help="Site id (default demo-works or synthetic-N).")
@_report_errors
def fixtures_generate(
    out: Path, people: int, edges: int | None, seed: int, site_id: str | None
) -> None:
    """Write a deterministic site folder to OUT (load it with 'rallypoint site load OUT')."""
    from gis.site_bundle import write_bundle
    from gis.sitegen import generate_site

    if people < 0 or (edges is not None and edges < 1):
        raise click.BadParameter("--people and --edges must be positive")
    kwargs: dict[str, Any] = {"seed": seed, "people": people, "edges": edges}
    if edges is not None:
        kwargs["site_id"] = site_id or f"synthetic-{edges}"
        kwargs["name"] = f"Synthetic site ({edges} edges, {people} people)"
    elif site_id:
        kwargs["site_id"] = site_id
    site_data, layers = generate_site(**kwargs)
    write_bundle(out, site_data, layers)
    counts = ", ".join(f"{k} {len(v['features'])}" for k, v in layers.items())
    click.echo(f"wrote {out}: {counts}")


@main.group()
def osm() -> None:
    """OpenStreetMap road data."""


@osm.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--site", "site_id", required=True, help="Site whose network layer receives it.")
@click.option(
    "--create-site",
    "site_name",
    default=None,
    help="Create the site first, named so, bounded by the extract's extent.",
)
@click.option("--timezone", default="UTC", show_default=True, help="Time zone of a new site.")
@click.option(
    "--mode",
    type=click.Choice(["merge", "replace"]),
    default="replace",
    show_default=True,
    help="replace: the OSM roads become the network layer; merge: add them to it.",
)
@_report_errors
def osm_import(path: Path, site_id: str, site_name: str | None, timezone: str, mode: str) -> None:
    """Import the ways people or vehicles travel in an OSM XML file (.osm, .osm.bz2, .osm.gz)
    as the network (highway=* only, filtered as docs/routing.md says), and the extract's
    roads, buildings, water, landuse and place names as the basemap layer and its schools,
    hospitals, care homes and homes as the receptors layer (gis/osm.py says how)."""
    from gis.layer_io import ImportMode
    from gis.osm import import_osm

    with _database() as database:
        result = import_osm(
            database,
            path,
            site_id=site_id,
            create_site_name=site_name,
            timezone=timezone,
            actor=_actor(),
            mode=ImportMode(mode),
        )
    click.echo(
        f"network of {site_id}: {result.report.created} created, {result.report.updated} "
        f"updated, {result.report.deleted} deleted; {result.components} connected part(s)"
    )
    skipped = ", ".join(f"{count} {reason}" for reason, count in result.skipped.items() if count)
    click.echo(f"ways: {result.ways} imported; skipped: {skipped or 'none'}")
    for part in result.detached[:10]:
        click.echo(f"  detached part: {part}")
    if len(result.detached) > 10:
        click.echo(f"  ... and {len(result.detached) - 10} more detached parts")
    for name, report in (("basemap", result.basemap), ("receptors", result.receptors)):
        if report is not None:
            click.echo(
                f"{name} of {site_id}: {report.created} created, {report.updated} updated, "
                f"{report.deleted} deleted"
            )
    left_out = ", ".join(f"{n} {reason}" for reason, n in result.surroundings_skipped.items())
    click.echo(f"surroundings left out: {left_out or 'none'}")


if __name__ == "__main__":
    main()


@main.group()
def audit() -> None:
    """The event log: check that nothing in it was changed, removed or inserted, against the
    heads and the signed checkpoints (docs/audit.md)."""


@audit.command("verify")
@click.option("--site", "site_id", default=None, help="One site only (default: every site).")
@click.option(
    "--checkpoints",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A checkpoint file, e.g. an export (default RALLYPOINT_AUDIT_CHECKPOINTS).",
)
@click.option(
    "--public-key",
    "public_keys",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Trust only this public key (PEM; repeat for several), not the keyring beside the "
    "checkpoints.",
)
@_report_errors
def audit_verify(site_id: str | None, checkpoints: Path | None, public_keys: tuple[Path]) -> None:
    """Recompute the hash chain of the event log, check each site's last event against its
    head and both against the signed checkpoints; name every break and exit with status 1."""
    from command.audit import AuditKeyError, load_public_keys, required_files, verify_anchor

    if checkpoints is not None and not checkpoints.is_file():
        raise AuditKeyError(f"no checkpoint file at {checkpoints}")
    path = checkpoints or required_files(Settings()).checkpoints
    keys = load_public_keys(public_keys) if public_keys else None
    with _database() as database, database.read() as session:
        report = verify_anchor(session, path, keys=keys, site_id=site_id)
    for found in report.breaks:
        click.echo(f"BROKEN {found}", err=True)
    for note in report.notes:
        click.echo(f"note: {note}", err=True)
    if report.breaks:
        sys.exit(1)
    anchored = f"the heads and {report.checkpoints} signed checkpoints agree with it"
    if not report.checkpoints:
        anchored = "the heads agree with it (no signed checkpoint to check against)"
    click.echo(f"event log intact: {report.count} events; {anchored}")


@audit.command("checkpoint")
@_report_errors
def audit_checkpoint() -> None:
    """Sign each site's head that moved since the last checkpoint, now (the server does so
    every RALLYPOINT_AUDIT_CHECKPOINT_S and when it stops)."""
    from command.audit import Checkpointer, required_files
    from plans.clock import SystemClock

    settings = Settings()
    with _database() as database:
        anchor = Checkpointer(
            database, required_files(settings), SystemClock(), settings.audit_checkpoint_s
        )
        written = anchor.checkpoint()
    for checkpoint in written:
        click.echo(f"{checkpoint.site} event {checkpoint.seq} signed by key {checkpoint.key_id}")
    if not written:
        click.echo("no head moved since the last checkpoint")


@audit.command("export-checkpoints")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@_report_errors
def audit_export_checkpoints(out: Path) -> None:
    """Copy the checkpoints to OUT and their public keys beside it (OUT-STEM.keys.jsonl), for
    an auditor to keep off the server and check with 'audit verify --checkpoints OUT'."""
    from command.audit import export_checkpoints, keyring_path, required_files

    count = export_checkpoints(required_files(Settings()), out)
    click.echo(f"{count} checkpoints written to {out}, their public keys to {keyring_path(out)}")


@audit.command("public-key")
@_report_errors
def audit_public_key() -> None:
    """Print the public key of the signing key (PEM; the key is created if there is none)."""
    from command.audit import key_id, load_key, public_pem, required_files
    from plans.clock import SystemClock

    public = load_key(required_files(Settings()), now=SystemClock().now()).public_key()
    click.echo(public_pem(public), nl=False)
    click.echo(f"key id {key_id(public)}", err=True)


@audit.command("rotate-key")
@_report_errors
def audit_rotate_key() -> None:
    """Sign with a new key from now on, and sign every head with it at once. The old private
    key is overwritten; its public key stays in the keyring, so what it signed still verifies."""
    from command.audit import Checkpointer, required_files, rotate_key
    from plans.clock import SystemClock

    settings, clock = Settings(), SystemClock()
    files = required_files(settings)
    with _database() as database:
        new = rotate_key(files, now=clock.now())
        signed = Checkpointer(database, files, clock, settings.audit_checkpoint_s).checkpoint(
            force=True
        )
    click.echo(f"new audit key {new}; {len(signed)} heads signed with it")
    click.echo("give auditors its public key: rallypoint audit public-key")


@main.group()
def replica() -> None:
    """At the group: sites whose event log is replicated here from their own server
    (docs/offline.md, "The site and the group")."""


@replica.command("add")
@click.argument("site_id")
@click.option("--owner", required=True, help="The site server that owns the log (a name).")
@_report_errors
def replica_add(site_id: str, owner: str) -> None:
    """Make SITE's log here a replica of its site server's, and issue the token its forwarder
    uses (printed once): role replicator at SITE only."""
    from command import replication
    from plans.clock import SystemClock

    now = SystemClock().now()
    with _database() as database, database.write() as session:
        replication.add_replica(session, site_id, owner, actor=_actor(), now=now)
        token = replication.issue_replicator_token(session, site_id, owner, now)
    click.echo(f"site {site_id} is a replica of {owner}'s log; its forwarder's token:")
    click.echo(token)


@replica.command("token")
@click.argument("site_id")
@click.option("--name", required=True, help="A name for the token (e.g. the site server's).")
@_report_errors
def replica_token(site_id: str, name: str) -> None:
    """Issue another forwarder token for replicated SITE (printed once), e.g. to rotate it:
    "replica revoke" revokes every live one, so rotate by revoking first, then issuing."""
    from command import replication
    from plans.clock import SystemClock

    with _database() as database, database.write() as session:
        replication.link(session, site_id)
        token = replication.issue_replicator_token(session, site_id, name, SystemClock().now())
    click.echo(token)


@replica.command("revoke")
@click.argument("site_id")
@_report_errors
def replica_revoke(site_id: str) -> None:
    """Revoke every forwarder token of SITE: its forwarder is refused (401) from now on."""
    from command import replication

    with _database() as database, database.write() as session:
        count = replication.revoke_replicator_tokens(session, site_id)
    click.echo(f"{count} replicator token(s) of {site_id} revoked")


@replica.command("list")
@_report_errors
def replica_list() -> None:
    """Each replicated site: its link's state, how far the group holds its log, how far behind
    it is, and the last batch refused."""
    from command import replication
    from plans.clock import FileClock, SystemClock

    settings = Settings()
    clock = FileClock(settings.clock_file) if settings.clock_file else SystemClock()
    with _database() as database, database.read() as session:
        states = replication.link_states(session, clock.now(), settings.replication_cut_after_s)
    for site_id, s in sorted(states.items()):
        since = "never" if s["since_ack_s"] is None else f"{s['since_ack_s']:.0f} s ago"
        click.echo(
            f"{site_id}\t{s['state']}\towner {s['owner']}\tacked {s['acked_seq']} "
            f"(site at {s['site_seq']}, {s['behind_events']} behind)\tlast ack {since}"
        )
        if s["refused"]:
            click.echo(f"  REFUSED: {s['refused']}")


@main.command()
@click.option(
    "--site", "site_id", default=None, help="Default RALLYPOINT_FORWARD_SITE, or the only site."
)
@click.option("--once", is_flag=True, help="Catch up once (log up, plans down) and exit.")
@click.option("--batch", default=2000, show_default=True, help="Events per batch.")
@click.option(
    "--status", "show_status", is_flag=True, help="Say how the forwarding stands, and exit."
)
@_report_errors
def forward(site_id: str | None, once: bool, batch: int, show_status: bool) -> None:
    """At a site server: forward the site's event log to the group (RALLYPOINT_GROUP_URL, with
    RALLYPOINT_GROUP_TOKEN) and take the group's approved plans, every
    RALLYPOINT_FORWARD_EVERY_S until interrupted."""
    import signal
    import threading

    from command.forwarder import Forwarder, ForwardError, status
    from gis.storage.tables import SiteRow
    from plans.clock import FileClock, SystemClock

    settings = Settings()
    clock = FileClock(settings.clock_file) if settings.clock_file else SystemClock()
    with _database() as database:
        site_id = site_id or settings.forward_site
        if site_id is None:
            with database.read() as session:
                sites = list(session.scalars(select_site_ids(SiteRow)))
            if len(sites) != 1:
                raise click.ClickException(
                    f"{len(sites)} sites here: name the one to forward (--site)"
                )
            site_id = sites[0]
        if show_status:
            state = status(database, site_id)
            if state is None:
                click.echo(f"site {site_id}: never forwarded")
                return
            at = state.acked_at.isoformat() if state.acked_at else "never"
            click.echo(
                f"site {site_id} -> {state.group_url}: acknowledged up to {state.acked_seq} ({at})"
            )
            if state.error:
                click.echo(f"ERROR ({state.error_at}): {state.error}")
            for c in state.plan_conflicts:
                click.echo(
                    f"PLAN CONFLICT {c['plan_id']} v{c['version']} ({c['at']}): {c['reason']}"
                )
            from command.layer_replication import describe, is_open

            taken = state.layers_at.isoformat() if state.layers_at else "never"
            click.echo(f"layers: took the group's changes up to {state.layer_cursor} ({taken})")
            kept = state.layer_conflicts or []
            for c in kept:  # the open ones; the resolved ones are kept, counted
                if is_open(c):
                    click.echo(f"LAYER CONFLICT {c['seq']} ({c['at']}): {describe(c)}")
            settled = sum(1 for c in kept if not is_open(c))
            if settled:
                click.echo(f"layer conflicts resolved: {settled} (not shown; the API lists them)")
            return
        if not settings.group_url or settings.group_token is None:
            raise click.ClickException("set RALLYPOINT_GROUP_URL and RALLYPOINT_GROUP_TOKEN")
        forwarder = Forwarder(
            database,
            site_id,
            settings.group_url,
            settings.group_token.get_secret_value(),
            clock,
            batch=batch,
        )
        try:
            if once:
                try:
                    done = forwarder.once()
                except ForwardError as exc:
                    raise click.ClickException(str(exc)) from exc
                click.echo(
                    f"site {site_id}: {done.stored} events stored at the group in "
                    f"{done.batches} batches; the group holds the log up to {done.acked_seq}"
                )
                return
            stop = threading.Event()
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
            signal.signal(signal.SIGINT, lambda *_: stop.set())
            click.echo(f"forwarding site {site_id} to {settings.group_url}")
            forwarder.run(settings.forward_every_s, stop)
        finally:
            forwarder.close()


def select_site_ids(row: Any) -> Any:
    from sqlalchemy import select

    return select(row.id).order_by(row.id)
