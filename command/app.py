"""The app: ``create_app(settings)`` builds a fresh one; its lifespan owns the database."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool

from command.audit import Checkpointer, anchor_files
from command.cap import CapAlert, post_cap
from command.drills import DrillDesk
from command.event_reads import EventReadBudget
from command.hub import Hub
from command.layer_listener import LayerFollower, LayerListener
from command.leader import Leadership
from command.log_follower import EventListener, LogFollower
from command.middleware import (
    BodyLimit,
    BodyTimeout,
    JsonNesting,
    RequestLog,
    SecurityHeaders,
    redact_queries,
)
from command.mqtt import ingest_from_settings
from command.notifications import Notice, deliver
from command.pg_session import conninfo
from command.post import CommandPost
from command.problems import add_problem_handlers
from command.ratelimit import TooManyAttempts
from command.reviews import generate_review
from command.routes import (
    admin,
    alarms,
    auth,
    feed,
    group,
    incidents,
    layers,
    live,
    notices,
    ogc,
    plans,
    replay,
    reviews,
    sites,
    ws,
)
from command.routes import drills as drills_routes
from command.routes import fences as fence_routes
from command.routes import layer_conflicts as layer_conflict_routes
from command.routes import maintenance as maintenance_routes
from command.routes import monitoring as monitoring_routes
from command.routes import replication as replication_routes
from command.routes import topology as topology_routes
from command.routes import wristbands as wristband_routes
from command.routes.docs import mount as mount_api_docs
from command.routes.monitoring import mount as mount_echarts
from command.routes.phone import mount as mount_phone
from command.routes.wall import FRONTEND
from command.routes.wall import mount as mount_map_wall
from command.sessions import AuthListener, LiveSockets, sweep_forever
from command.settings import Settings
from command.site_model import SiteModels
from command.strict_json import FiniteJson
from gis.errors import RallypointError
from gis.storage.db import Database, make_engine, schema_is_current
from plans.clock import Clock, FileClock, SystemClock

log = logging.getLogger(__name__)


class SchemaOutOfDate(RallypointError):
    status_code = 503
    slug = "schema-out-of-date"
    title = "Database schema out of date"


async def _in_thread(work: Callable[[], object]) -> None:
    """Run ``work`` in a worker thread; cancelled meanwhile, wait for it to finish first.

    Cancelling the await alone would leave the thread running on after the server stopped,
    using a database (a test's connection) that is no longer its own."""
    task = asyncio.ensure_future(run_in_threadpool(work))
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await task
        raise


async def _tick(post: CommandPost, anchor: Checkpointer | None = None) -> None:
    """Fire passed plan deadlines once a second (the overdue events are logged and sent); sign
    the audit log's heads that moved, every RALLYPOINT_AUDIT_CHECKPOINT_S."""
    while True:
        await asyncio.sleep(1.0)
        try:
            await _in_thread(post.tick)
        except Exception:
            log.exception("deadline tick failed; next tick retries")
        try:
            await _in_thread(post.save_positions)
        except Exception:
            log.exception("storing positions failed; the next second retries")
        if anchor is not None:
            try:
                await _in_thread(anchor.tick)
            except Exception:
                log.exception("audit checkpoint failed; tried again in audit_checkpoint_s")


async def _while_leading(post: CommandPost, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``work`` while this process leads (``command.leader``; on SQLite, always), and
    stop it when it no longer does. MQTT ingestion runs so: the broker keeps one persistent
    session under the one client id, and a new leader takes up what waits in it."""
    while True:
        while not post.leading:
            await asyncio.sleep(0.25)
        task = asyncio.create_task(work())
        try:
            while post.leading and not task.done():
                await asyncio.sleep(0.25)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if not task.cancelled() and task.exception() is not None:
            log.error("%s stopped (%s); started again", work, task.exception())
            await asyncio.sleep(1.0)


def _webhook_sender(
    post: CommandPost, url: str, public_url: str | None = None, *, exercise: bool = False
) -> asyncio.Task[None]:
    """Post new call-tree notices to the outbound gateway, each in its own task, with retries;
    the outcome of each is logged. ``exercise``: the gateway configured as exercise-safe,
    the only one a drill's call-outs reach."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Notice] = asyncio.Queue()

    def outbox(notices: list[Notice]) -> None:
        for notice in notices:
            loop.call_soon_threadsafe(queue.put_nowait, notice)

    if exercise:
        post.exercise_outbox = outbox
    else:
        post.outbox = outbox

    async def send() -> None:
        async with httpx.AsyncClient() as client:
            pending: set[asyncio.Task[None]] = set()

            async def one(notice: Notice) -> None:
                ok, attempts, detail = await deliver(client, url, notice, public_url)
                try:
                    await run_in_threadpool(post.delivered, notice, ok, attempts, detail)
                except Exception:
                    log.exception("could not log the delivery of notification %s", notice.seq)

            while True:
                task = asyncio.create_task(one(await queue.get()))
                pending.add(task)
                task.add_done_callback(pending.discard)

    return asyncio.create_task(send())


def _cap_sender(post: CommandPost, url: str) -> asyncio.Task[None]:
    """Post each CAP alert to the platform, with the call-outs' retries; each outcome is
    logged (``cap.delivered`` or ``cap.failed``, naming the alert)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[CapAlert] = asyncio.Queue()

    def outbox(alerts: list[CapAlert]) -> None:
        for alert in alerts:
            loop.call_soon_threadsafe(queue.put_nowait, alert)

    post.cap_outbox = outbox

    async def send() -> None:
        async with httpx.AsyncClient() as client:
            while True:
                alert = await queue.get()
                ok, attempts, detail = await post_cap(client, url, alert)
                try:
                    await run_in_threadpool(post.cap_delivered, alert, ok, attempts, detail)
                except Exception:
                    log.exception("could not log the delivery of CAP alert %s", alert.identifier)

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
    background_recovery: bool | None = None,
) -> FastAPI:
    """A new Rallypoint app. Tests pass ``database`` (a rolled-back connection) to share rows,
    and ``clock`` (a manual one) with ``ticking=False`` to fire deadlines themselves.

    After a restart the server answers at once: the incidents are rebuilt from the log in the
    background (``background_recovery``; by default unless a test passes its ``database``),
    each answering 503 with the progress until it is back (``/healthz`` shows it too)."""
    settings = settings or Settings()
    redact_queries()  # no token in a URL's query string reaches the log

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = database or open_database(settings)
        app.state.db = db
        hub = Hub(queue_size=settings.ws_queue_size)
        hub.bind(asyncio.get_running_loop())
        given = FileClock(settings.clock_file) if settings.clock_file is not None else None
        post = CommandPost(db, hub, clock or given or SystemClock(), SiteModels(db))
        app.state.hub, app.state.post = hub, post
        app.state.event_reads = EventReadBudget(
            post.clock, burst=settings.event_reads_burst, per_s=settings.event_reads_per_s
        )
        # The open websockets by token: signing out or revoking closes them (command.sessions).
        app.state.sockets = sockets = LiveSockets()
        sockets.bind(asyncio.get_running_loop())
        sweeper = asyncio.create_task(sweep_forever(sockets, db))
        # On PostGIS every process hears of revoked tokens and changed roles at once (0019).
        app.state.auth_listener = auth_listener = (
            AuthListener(sockets, conninfo(db)) if db.is_postgis else None
        )
        revocations = asyncio.create_task(auth_listener.run()) if auth_listener else None
        sender = (
            _webhook_sender(post, settings.webhook_url, settings.public_url)
            if settings.webhook_url
            else None
        )
        exercise_sender = (
            _webhook_sender(post, settings.exercise_webhook_url, settings.public_url, exercise=True)
            if settings.exercise_webhook_url
            else None
        )
        cap_sender = (
            _cap_sender(post, settings.cap_webhook_url) if settings.cap_webhook_url else None
        )
        post.cap_exercise_safe = settings.cap_exercise_safe
        post.cap_enabled = bool(settings.cap_webhook_url) or settings.cap_alerts
        app.state.drills = drills = DrillDesk(post)

        def review(site_id: str, incident_id: str, drill_id: str | None) -> None:
            # The after-action review, the moment an incident stands down or a drill ends.
            generate_review(db, post.model(site_id), site_id, incident_id, now=post.clock.now())

        drills.on_closed = review
        # Other server processes on the same database (command.log_follower): followed from
        # the log's end as it is now, before the memory is rebuilt from the log (an event in
        # between is then taken twice, which changes nothing, rather than missed).
        log_follower = LogFollower(post) if ticking else None
        if log_follower is not None:
            await run_in_threadpool(log_follower.start)
        # One process fires what is due (command.leader); on SQLite the only one does.
        leadership = Leadership(post, conninfo(db)) if ticking and db.is_postgis else None
        await run_in_threadpool(post.recover_state)
        await run_in_threadpool(drills.recover)
        recovery = None
        if background_recovery if background_recovery is not None else database is None:
            recovery = asyncio.create_task(run_in_threadpool(post.recover_incidents))
            log.info(
                "serving %s database; rebuilding %d incidents in the background",
                db.dialect,
                post.recovery.total,
            )
        else:
            recovered = await run_in_threadpool(post.recover_incidents)
            log.info("serving %s database; %d incidents recovered", db.dialect, len(recovered))
        # A database passed in (a test's) is signed only into a checkpoint file named for it.
        files = anchor_files(settings)
        anchor = None
        if files and (database is None or settings.audit_checkpoints is not None):
            anchor = Checkpointer(db, files, post.clock, settings.audit_checkpoint_s)
        app.state.audit = anchor
        ticker = asyncio.create_task(_tick(post, anchor)) if ticking else None
        # Layer changes to the walls: those no write announced (another process's import)
        # within a second; edits made in the PostGIS tables (QGIS, psql) at once.
        follower = LayerFollower(post)
        following = asyncio.create_task(follower.sweep_forever()) if ticking else None
        app.state.layer_listener = listener = (
            LayerListener(follower, conninfo(db)) if db.is_postgis else None
        )
        listening = asyncio.create_task(listener.run()) if listener is not None else None
        app.state.log_follower = log_follower
        sweeping = asyncio.create_task(log_follower.sweep_forever()) if log_follower else None
        app.state.event_listener = events = (
            EventListener(log_follower, conninfo(db)) if log_follower and db.is_postgis else None
        )
        hearing = asyncio.create_task(events.run()) if events is not None else None
        relaying = (
            asyncio.create_task(log_follower.relay_forever())
            if log_follower is not None and post.relaying
            else None
        )
        app.state.leadership = leadership
        leading = asyncio.create_task(leadership.run()) if leadership is not None else None
        # Readings, positions and device events from gateways over MQTT (RALLYPOINT_MQTT_URL).
        app.state.mqtt = mqtt = ingest_from_settings(post, settings)
        subscribing = asyncio.create_task(_while_leading(post, mqtt.run)) if mqtt else None
        try:
            yield
        finally:
            for task in (
                *(ticker, sender, exercise_sender, cap_sender, sweeper, recovery, revocations),
                *(following, listening, subscribing, sweeping, hearing, leading, relaying),
            ):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            try:
                await run_in_threadpool(post.save_positions)
            except Exception:
                log.exception("could not store the last positions on shutdown")
            if anchor is not None:
                try:
                    await run_in_threadpool(anchor.checkpoint)
                except Exception:
                    log.exception("could not sign the audit log's heads on shutdown")
            if database is None:
                db.dispose()

    app = FastAPI(
        title="Rallypoint",
        summary="GIS-centric emergency command server for industrial sites",
        version="0.1.0",
        lifespan=lifespan,
        # /docs and /redoc are command.routes.docs's: local files, no inline script.
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    add_problem_handlers(app)
    app.add_exception_handler(TooManyAttempts, auth.too_many_attempts)  # with Retry-After
    app.include_router(auth.router)
    app.include_router(admin.router)
    app.include_router(sites.router)
    app.include_router(layers.router)
    app.include_router(layer_conflict_routes.router)  # the group's edits kept as conflicts
    app.include_router(topology_routes.router)  # the site's topology rules
    app.include_router(plans.router)
    app.include_router(incidents.router)
    app.include_router(live.router)
    app.include_router(alarms.router)  # alarm settings, voting, confirmation, modes
    app.include_router(maintenance_routes.router)  # detectors' calibration and bump tests
    app.include_router(wristband_routes.router)  # device events, people's alarms, reports
    app.include_router(fence_routes.router)  # geofences, temporary fences, contractors
    app.include_router(monitoring_routes.router)  # alarm journal, permits, analysis
    app.include_router(ws.router)
    app.include_router(feed.router)
    app.include_router(notices.router)
    app.include_router(reviews.router)
    app.include_router(drills_routes.router)
    app.include_router(replay.router)  # after drills: /drills/scenarios/* is theirs
    app.include_router(ogc.router)  # OGC API - Features for QGIS and GDAL, under /ogc
    app.include_router(group.router)  # the group wall's overview of every site
    app.include_router(replication_routes.router)  # sites' logs replicated to the group

    # Open to all, as a load balancer or monitor asks it without signing in.
    @app.get("/healthz", tags=["meta"], summary="Liveness (needs no token)")
    def healthz(request: Request) -> dict[str, Any]:
        post: CommandPost | None = getattr(request.app.state, "post", None)
        recovery = post.recovery.as_dict() if post is not None else None
        # Whether this process fires deadlines (command.leader): a load balancer may ask.
        leading = {"leading": post.leading} if post is not None else {}
        # How far this process has followed the layers' change log (command.layer_feed).
        layers = {"layer_changes_seen": post.layer_feed.cursor} if post is not None else {}
        return {
            "status": "ok",
            **({"recovery": recovery} if recovery else {}),
            **leading,
            **layers,
        }

    # The map wall (frontend/): its page, its files and Leaflet, all served from here.
    mount_map_wall(app)
    mount_echarts(app, FRONTEND)  # the analysis page's charts
    mount_api_docs(app)
    notices.mount(app)
    mount_phone(app)  # the responder's phone app: /phone/, its manifest and service worker

    # Added innermost first. A body meets them outermost first: it must come in time, with a
    # valid token (before a byte is read), within the size, and as JSON no deeper than 64.
    app.add_middleware(FiniteJson)  # inside JsonNesting: parses only bodies of bounded depth
    app.add_middleware(JsonNesting)
    app.add_middleware(BodyLimit, max_bytes=settings.max_request_bytes)
    app.add_middleware(BodyTimeout, timeout_s=settings.body_timeout_s)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(RequestLog)
    return app
