"""The app: ``create_app(settings)`` builds a fresh one; its lifespan owns the database."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from command.hub import Hub
from command.middleware import BodyLimit, RequestLog, SecurityHeaders, redact_queries
from command.notifications import Notice, deliver
from command.post import CommandPost
from command.problems import add_problem_handlers
from command.routes import auth, feed, incidents, layers, live, plans, sites, ws
from command.routes.wall import mount as mount_map_wall
from command.settings import Settings
from command.site_model import SiteModels
from gis.errors import RallypointError
from gis.storage.db import Database, make_engine, schema_is_current
from plans.clock import Clock, SystemClock

log = logging.getLogger(__name__)


class SchemaOutOfDate(RallypointError):
    status_code = 503
    slug = "schema-out-of-date"
    title = "Database schema out of date"


async def _tick(post: CommandPost) -> None:
    """Fire passed plan deadlines once a second (the overdue events are logged and sent)."""
    while True:
        await asyncio.sleep(1.0)
        try:
            await run_in_threadpool(post.tick)
        except Exception:
            log.exception("deadline tick failed; next tick retries")
        try:
            await run_in_threadpool(post.save_positions)
        except Exception:
            log.exception("storing positions failed; the next second retries")


def _webhook_sender(post: CommandPost, url: str) -> asyncio.Task[None]:
    """Post new call-tree notices to the outbound gateway, each in its own task, with retries;
    the outcome of each is logged."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Notice] = asyncio.Queue()

    def outbox(notices: list[Notice]) -> None:
        for notice in notices:
            loop.call_soon_threadsafe(queue.put_nowait, notice)

    post.outbox = outbox

    async def send() -> None:
        async with httpx.AsyncClient() as client:
            pending: set[asyncio.Task[None]] = set()

            async def one(notice: Notice) -> None:
                ok, attempts, detail = await deliver(client, url, notice)
                try:
                    await run_in_threadpool(post.delivered, notice, ok, attempts, detail)
                except Exception:
                    log.exception("could not log the delivery of notification %s", notice.seq)

            while True:
                task = asyncio.create_task(one(await queue.get()))
                pending.add(task)
                task.add_done_callback(pending.discard)

    return asyncio.create_task(send())


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


def create_app(
    settings: Settings | None = None,
    *,
    database: Database | None = None,
    clock: Clock | None = None,
    ticking: bool = True,
) -> FastAPI:
    """A new Rallypoint app. Tests pass ``database`` (a rolled-back connection) to share rows,
    and ``clock`` (a manual one) with ``ticking=False`` to fire deadlines themselves."""
    settings = settings or Settings()
    redact_queries()  # no token in a URL's query string reaches the log

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = database or open_database(settings)
        app.state.db = db
        hub = Hub(queue_size=settings.ws_queue_size)
        hub.bind(asyncio.get_running_loop())
        post = CommandPost(db, hub, clock or SystemClock(), SiteModels(db))
        app.state.hub, app.state.post = hub, post
        sender = _webhook_sender(post, settings.webhook_url) if settings.webhook_url else None
        recovered = await run_in_threadpool(post.recover)
        log.info("serving %s database; %d incidents recovered", db.dialect, len(recovered))
        ticker = asyncio.create_task(_tick(post)) if ticking else None
        try:
            yield
        finally:
            for task in (ticker, sender):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            try:
                await run_in_threadpool(post.save_positions)
            except Exception:
                log.exception("could not store the last positions on shutdown")
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
    app.include_router(auth.router)
    app.include_router(sites.router)
    app.include_router(layers.router)
    app.include_router(plans.router)
    app.include_router(incidents.router)
    app.include_router(live.router)
    app.include_router(ws.router)
    app.include_router(feed.router)

    # Open to all, as a load balancer or monitor asks it without signing in.
    @app.get("/healthz", tags=["meta"], summary="Liveness (needs no token)")
    def healthz() -> dict[str, Any]:
        return {"status": "ok"}

    # The map wall (frontend/): its page, its files and Leaflet, all served from here.
    mount_map_wall(app)

    app.add_middleware(BodyLimit, max_bytes=settings.max_request_bytes)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(RequestLog)
    return app
