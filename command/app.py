"""The app: ``create_app(settings)`` builds a fresh one; its lifespan owns the database."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from command.middleware import BodyLimit, RequestLog
from command.problems import add_problem_handlers
from command.routes import layers, plans, sites
from command.settings import Settings
from gis.errors import RallypointError
from gis.storage.db import Database, make_engine, schema_is_current

log = logging.getLogger(__name__)


class SchemaOutOfDate(RallypointError):
    status_code = 503
    slug = "schema-out-of-date"
    title = "Database schema out of date"


def open_database(settings: Settings) -> Database:
    """Connect, and refuse to serve a database whose schema is not the code's."""
    db = Database(make_engine(settings.database_url))
    current, head = schema_is_current(db.engine)
    if current != head:
        db.dispose()
        raise SchemaOutOfDate(
            f"the database is at schema revision {current}, the code needs {head}: "
            "run 'rallypoint db upgrade' first"
        )
    return db


def create_app(settings: Settings | None = None, *, database: Database | None = None) -> FastAPI:
    """A new Rallypoint app. Tests pass ``database`` (a rolled-back connection) to share rows."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = database or open_database(settings)
        app.state.db = db
        log.info("serving %s database", db.dialect)
        try:
            yield
        finally:
            if database is None:
                db.dispose()

    app = FastAPI(
        title="Rallypoint",
        summary="GIS-centric emergency command server for industrial sites",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    add_problem_handlers(app)
    app.include_router(sites.router)
    app.include_router(layers.router)
    app.include_router(plans.router)

    @app.get("/healthz", tags=["meta"], summary="Liveness")
    def healthz() -> dict[str, Any]:
        return {"status": "ok"}

    app.add_middleware(BodyLimit, max_bytes=settings.max_request_bytes)
    app.add_middleware(RequestLog)
    return app
