"""Engines, transactions and migrations.

:class:`Database` hands out sessions: ``read()`` for queries, ``write()`` for changes. On SQLite,
writes go through one lock (a single writer, as SQLite wants) and transactions are real
(``BEGIN`` is emitted explicitly, so savepoints work). Tests pass a ``connection`` whose outer
transaction they roll back; every session then joins it through a savepoint.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from alembic import command as alembic_command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, make_url, text
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
WRITE_OPTION = "rallypoint_write"
#: The setting that marks a transaction as the server's own on PostgreSQL (``SET LOCAL``): the
#: layer tables' triggers leave such writes to the server, which versions and logs them itself.
WRITER_SETTING = "rallypoint.writer"
SERVER_WRITER = "app"
MARK = text(f"SELECT set_config('{WRITER_SETTING}', :value, true)")
#: The mark a transaction had, and the server's set (one round trip: the list runs in order).
REMARK = text(
    f"SELECT current_setting('{WRITER_SETTING}', true), "
    f"set_config('{WRITER_SETTING}', '{SERVER_WRITER}', true)"
)


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """An engine for ``url``; for SQLite the file's folder is created and pragmas are set."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            keep_private(Path(parsed.database))
        engine = create_engine(
            url, echo=echo, connect_args={"check_same_thread": False, "timeout": 30}
        )
        _make_sqlite_transactional(engine)
        return engine
    return create_engine(url, echo=echo, pool_pre_ping=True)


#: The folder of the default database (``sqlite:///var/rallypoint.db``), relative to where the
#: server and the commands run.
DEFAULT_FOLDER = Path("var")
FILE_MODE, FOLDER_MODE = 0o600, 0o700


def keep_private(database: Path) -> None:
    """Make the SQLite file (and its WAL and shared-memory files) mode 600, and its folder 700
    where Rallypoint made it or it is the default ``var/``: the database holds password hashes,
    tokens' hashes and the event log, for the server's user alone. The modes are set with chmod,
    so the umask does not matter; looser modes found at start are tightened, and logged. Another
    folder the database was put in is the operator's, and left as it is."""
    folder = database.parent
    if not folder.exists():
        folder.mkdir(parents=True, mode=FOLDER_MODE)
        folder.chmod(FOLDER_MODE)
    elif folder.resolve() == DEFAULT_FOLDER.resolve():
        _tighten(folder, FOLDER_MODE)
    if not database.exists():
        os.close(os.open(database, os.O_CREAT | os.O_WRONLY, FILE_MODE))
        database.chmod(FILE_MODE)  # SQLite gives its -wal and -shm files this mode too
    for path in (database, Path(f"{database}-wal"), Path(f"{database}-shm")):
        if path.exists():
            _tighten(path, FILE_MODE)


def _tighten(path: Path, mode: int) -> None:
    """Take away from ``path`` every permission ``mode`` does not give."""
    before = stat.S_IMODE(path.stat().st_mode)
    if before & ~mode:
        path.chmod(before & mode)
        log.warning(
            "tightened %s from mode %o to %o: it was open to other users",
            path,
            before,
            before & mode,
        )


def _make_sqlite_transactional(engine: Engine) -> None:
    # pysqlite's own transaction handling defers BEGIN and breaks SAVEPOINT; the SQLAlchemy
    # documentation's recipe ("Serializable isolation / Savepoints / Transactional DDL").
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA busy_timeout = 30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # A writer takes the write lock at once (IMMEDIATE), so a second process's writer
        # waits for busy_timeout instead of failing with "database is locked" mid-transaction.
        write = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


class Database:
    """Sessions over one engine (or one test connection)."""

    def __init__(self, engine: Engine, *, connection: Connection | None = None) -> None:
        self.engine = engine
        self.connection = connection
        self.dialect = engine.dialect.name
        self._write_lock = threading.Lock() if self.dialect == "sqlite" else None
        # One connection (a test's rolled-back transaction) is not for two threads at once:
        # the server's worker threads take turns on it.
        self._connection_lock = threading.RLock() if connection is not None else None
        # Imported here: the spatial index is a cache that belongs to this database.
        from gis.reachability import FootNetworkCache
        from gis.spatial_index import SpatialIndexCache

        self.spatial_indexes = SpatialIndexCache()
        self.foot_networks = FootNetworkCache()  # the topology rules' (gis.topology)

    @property
    def is_postgis(self) -> bool:
        return self.dialect == "postgresql"

    def _session(self) -> Session:
        if self.connection is not None:
            return Session(
                bind=self.connection,
                join_transaction_mode="create_savepoint",
                expire_on_commit=False,
            )
        return Session(self.engine, expire_on_commit=False)

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._connection_lock or nullcontext(), self._session() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session whose changes are committed together, or not at all. On PostgreSQL the
        transaction is marked as the server's (:data:`WRITER_SETTING`): the layer tables'
        triggers (migration 0013) stamp and log only the edits made by others."""
        with self._write_lock or nullcontext(), self._connection_lock or nullcontext():
            if self.connection is not None:
                with self._session() as session, session.begin():
                    # Inside a test's (or a joined) transaction: marked for this savepoint,
                    # then as it was (a savepoint rolled back undoes the mark by itself).
                    before = self._mark(session)
                    yield session
                    if before is not None and before != SERVER_WRITER:
                        session.flush()  # written while marked
                        session.execute(MARK, {"value": before})
                return
            with self.engine.connect() as conn:
                conn.execution_options(**{WRITE_OPTION: True})
                with Session(bind=conn, expire_on_commit=False) as session, session.begin():
                    self._mark(session)
                    yield session

    def _mark(self, session: Session) -> str | None:
        """Mark the transaction as the server's (PostgreSQL); the mark it had before."""
        if not self.is_postgis:
            return None
        before = session.execute(REMARK).scalar()
        return str(before or "")

    def joined(self, session: Session) -> Database:
        """A view of this database inside ``session``'s transaction, for composing writes:
        its sessions join through savepoints, so all commit or roll back with ``session``."""
        inner = Database(self.engine, connection=session.connection())
        inner.spatial_indexes = self.spatial_indexes
        inner.foot_networks = self.foot_networks
        return inner

    def dispose(self) -> None:
        if self.connection is None:
            self.engine.dispose()


def alembic_config(engine_or_connection: Engine | Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = engine_or_connection
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema up to ``revision`` (Alembic)."""
    with engine.begin() as conn:
        _mark_migration(conn)
        alembic_command.upgrade(alembic_config(conn), revision)


def downgrade(engine: Engine, revision: str) -> None:
    with engine.begin() as conn:
        _mark_migration(conn)
        alembic_command.downgrade(alembic_config(conn), revision)


def _mark_migration(conn: Connection) -> None:
    """A migration that rewrites features is the server's write too, not a database user's
    edit (the layer tables' triggers stand aside)."""
    if conn.dialect.name == "postgresql":
        conn.execute(MARK, {"value": SERVER_WRITER})


def schema_is_current(engine: Engine) -> tuple[str | None, str | None]:
    """The database's revision and the code's head revision."""
    head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    return current, head
