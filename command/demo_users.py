"""One demo user per role, for ``make run``: random passwords, kept in a file only you can read.
``demo-admin`` holds ``admin`` (users and tokens, nothing on a site).

The first run picks the passwords and writes them down; later runs read them back, so the
credentials printed stay the same and nothing is created twice. A file lost while the users
remain gives them new passwords; a database reset while the file remains recreates the users
with the passwords in the file. Both go in the account record, as ``user add`` and ``user
passwd`` do.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from command.accounts import record, reset_password
from command.auth import Role, create_user, list_users, password_matches

DEMO_ROLES = (
    Role.COMMANDER,
    Role.DRILL_CONTROLLER,
    Role.PLANNER,
    Role.APPROVER,
    Role.RESPONDER,
    Role.VIEWER,
    Role.ADMIN,
)
HEADER = (
    "# Rallypoint demo users (written by 'rallypoint user seed-demo'): username, password, role.\n"
)


@dataclass(frozen=True, slots=True)
class DemoCredential:
    username: str
    password: str
    role: Role


def demo_username(role: Role) -> str:
    return "demo-" + role.value.replace("_", "-")


def _read(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    passwords = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        if line.startswith("#") or len(parts) != 3:
            continue
        passwords[parts[0]] = parts[1]
    return passwords


def _write(path: Path, credentials: list[DemoCredential]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = HEADER + "".join(f"{c.username}\t{c.password}\t{c.role}\n" for c in credentials)
    # Created 0600, and chmod'ed too in case an older file was readable by others.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    path.chmod(0o600)


def seed_demo_users(session: Session, path: Path, *, actor: str) -> list[DemoCredential]:
    """Make sure the demo users exist with the passwords in ``path``; their credentials.

    ``actor`` is who is named in the account record for a user added or a password reset (a
    reset revokes the user's sessions, as any reset does)."""
    stored = _read(path)
    existing = {u.username for u in list_users(session)}
    credentials = []
    for role in DEMO_ROLES:
        username = demo_username(role)
        password = stored.get(username) or secrets.token_urlsafe(12)
        credentials.append(DemoCredential(username, password, role))
        if username not in existing:
            title = role.value.replace("_", " ")
            create_user(session, username, password, [role], f"Demo {title}")
            record(session, actor, "user.added", username, detail={"roles": [role.value]})
        elif not password_matches(session, username, password):
            reset_password(session, username, password, actor=actor)
    if [(c.username, c.password) for c in credentials] != list(stored.items()):
        _write(path, credentials)
    else:
        path.chmod(0o600)
    return credentials
