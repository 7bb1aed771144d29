"""False-alarm analysis: the alarm journal and outcomes, hot-work permits, the analysis as JSON
and as a printable report, and a sensor's trace (``docs/monitoring.md``).

Who may do what:
- read the journal, permits, analysis, report and traces: anyone with a role at the site
  (a wall token too);
- record an alarm's outcome: whoever checks alarms, a commander or a responder;
- record a hot-work permit: a commander or a planner (the safety engineer).

The analysis page of the wall is ``/static/analysis.html`` (``frontend/analysis.js``); its
charts are ECharts, served from ``/vendor/echarts/`` (:func:`mount`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Body, Depends, FastAPI, Query
from fastapi import Path as PathParam
from fastapi.responses import Response
from sqlalchemy import select
from starlette.exceptions import HTTPException
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from command.auth import HUMAN_ROLES, Principal, Role, user_row
from command.deps import DatabaseDep, requires
from command.monitoring import analysis as fa
from command.monitoring.history import (
    journal_row,
    list_permits,
    record_outcome,
    record_permit,
)
from command.monitoring.report import report_html
from command.post import CommandPost
from command.routes.incidents import PostDep
from gis.errors import FieldError, InvalidInput, NotFound
from gis.storage.tables import AlarmJournalRow, ReadingHistoryRow

router = APIRouter(prefix="/api/sites/{site_id}", tags=["false-alarm analysis"])

ReaderDep = Annotated[Principal, Depends(requires(*HUMAN_ROLES))]
CheckerDep = Annotated[Principal, Depends(requires(Role.COMMANDER, Role.RESPONDER))]
IssuerDep = Annotated[Principal, Depends(requires(Role.COMMANDER, Role.PLANNER))]
From = Annotated[
    datetime | None,
    Query(
        alias="from", description="Start (ISO 8601 with an offset); default: 30 days before 'to'"
    ),
]
To = Annotated[
    datetime | None, Query(alias="to", description="End (ISO 8601 with an offset); default: now")
]
MAX_SPAN = timedelta(days=92)
MAX_ALARMS = 5000


def period(
    post: CommandPost, start: datetime | None, end: datetime | None
) -> tuple[datetime, datetime]:
    """The period asked for, checked: offsets given, start before end, at most 92 days."""
    errors = [
        FieldError(name, "an ISO 8601 time with a UTC offset")
        for name, value in (("from", start), ("to", end))
        if value is not None and value.tzinfo is None
    ]
    if errors:
        raise InvalidInput("times need an offset", errors=errors)
    try:
        stop = (end or post.clock.now()).astimezone(UTC)
        begin = (start or stop - timedelta(days=30)).astimezone(UTC)
        for edge in (begin - MAX_SPAN, stop + MAX_SPAN):  # what the analysis will compute
            edge.timestamp()
    except (OverflowError, ValueError, OSError) as exc:  # year 1 or 9999 and an offset
        raise InvalidInput(
            "the period lies outside the times kept",
            errors=[FieldError("from", "a time between the years 1970 and 9998")],
        ) from exc
    if not timedelta(0) < stop - begin <= MAX_SPAN:
        raise InvalidInput(
            "the period must be longer than nothing and at most 92 days",
            errors=[FieldError("from", "before 'to', at most 92 days before it")],
        )
    return begin, stop


def _inputs(post: CommandPost, site_id: str, begin: datetime, stop: datetime) -> fa.Inputs:
    model = post.model(site_id)
    zones = model.layers["zones"]
    sensors = fa.sensor_frame(model.layers["sensors"], zones)
    sources = fa.sources_from_site(sensors, zones)
    return fa.load_inputs(post.db, site_id, sensors, sources, begin, stop)


@router.get("/alarm-analysis", summary="The false-alarm analysis of a period (default: 30 days)")
def get_analysis(
    post: PostDep, _: ReaderDep, site_id: str, start: From = None, end: To = None
) -> dict[str, Any]:
    begin, stop = period(post, start, end)
    return fa.analyse(_inputs(post, site_id, begin, stop))


@router.get(
    "/alarm-analysis/report.html",
    summary="The analysis as one printable, self-contained HTML document (a download)",
    response_class=Response,
    responses={200: {"content": {"text/html": {}}}},
)
def get_report(
    post: PostDep, _: ReaderDep, site_id: str, start: From = None, end: To = None
) -> Response:
    begin, stop = period(post, start, end)
    result = fa.analyse(_inputs(post, site_id, begin, stop))
    text = report_html(result, site_name=post.model(site_id).site.name)
    name = f"alarm-analysis-{site_id}-{begin.date()}-{stop.date()}.html"
    return Response(
        text,
        media_type="text/html; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get("/alarms", summary="The alarm journal: each alarm, its outcome and its checks")
def get_alarms(
    post: PostDep,
    _: ReaderDep,
    site_id: str,
    start: From = None,
    end: To = None,
    sensor: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_ALARMS)] = 500,
) -> dict[str, Any]:
    """The latest first, with the plume check (``plume``: explained, suspect, no_wind or
    n/a; ``source``), the wind then, and the hot-work permit active near (``permit``)."""
    begin, stop = period(post, start, end)
    inp = _inputs(post, site_id, begin, stop)
    if sensor is not None:
        inp.alarms = inp.alarms[inp.alarms["sensor_id"] == sensor]
    checked = fa.alarm_verdicts(inp).sort_values("start_s", ascending=False).head(limit)
    verdicts = {
        str(r["id"]): {
            "plume": r["plume"],
            "source": r["source"],
            "wind_m_s": _number(r["wind_m_s"]),
            "wind_from_deg": _number(r["wind_from_deg"]),
            "hot_work": bool(r["hot_work"]),
            "permit": r["permit"] if isinstance(r["permit"], str) else None,
        }
        for r in checked.to_dict("records")
    }
    with post.db.read() as session:
        rows = session.scalars(
            select(AlarmJournalRow).where(
                AlarmJournalRow.site_id == site_id, AlarmJournalRow.id.in_(list(verdicts))
            )
        ).all()
    found = sorted(rows, key=lambda r: r.started_at, reverse=True)
    return {"alarms": [{**journal_row(r), **verdicts[r.id]} for r in found]}


def _number(value: Any) -> float | None:
    return None if value is None or bool(np.isnan(value)) else float(value)


@router.post(
    "/alarms/{alarm_id}/outcome",
    summary="Record what an alarm was: real, false, test or maintenance (whoever checked it)",
)
def post_outcome(
    post: PostDep,
    db: DatabaseDep,
    principal: CheckerDep,
    site_id: str,
    alarm_id: Annotated[str, PathParam(max_length=64)],
    body: Annotated[dict[str, Any], Body(examples=[{"outcome": "false", "note": "welding"}])],
) -> dict[str, Any]:
    """``{"outcome": "real" | "false" | "test" | "maintenance", "note"?}``: logged as
    ``alarm.outcome``; a later outcome corrects an earlier one."""
    with db.read() as session:
        name = user_row(session, principal.username).display_name
    return record_outcome(post, site_id, alarm_id, body, actor=principal.username, by_name=name)


@router.get(
    "/hot-work-permits",
    summary="Hot-work permits valid in a period (default: the last 30 days and the next 31)",
)
def get_permits(
    post: PostDep, _: ReaderDep, site_id: str, start: From = None, end: To = None
) -> dict[str, Any]:
    now = post.clock.now()
    begin, stop = period(post, start or now - timedelta(days=30), end or now + timedelta(days=31))
    post.model(site_id)
    with post.db.read() as session:
        return {"permits": list_permits(session, site_id, begin, stop)}


@router.post(
    "/hot-work-permits",
    status_code=201,
    summary="Record a hot-work permit (a commander or a planner)",
)
def post_permit(
    post: PostDep,
    principal: IssuerDep,
    site_id: str,
    body: Annotated[
        dict[str, Any],
        Body(
            examples=[
                {
                    "kind": "welding",
                    "location": {"type": "Point", "coordinates": [121.3493, 30.7185]},
                    "radius_m": 15,
                    "valid_from": "2026-12-03T00:00:00+00:00",
                    "valid_to": "2026-12-03T08:00:00+00:00",
                    "issued_by": "Maintenance supervisor Li",
                }
            ]
        ),
    ],
) -> dict[str, Any]:
    """``{"id"?, "kind", "location": GeoJSON Point or Polygon, "radius_m", "valid_from",
    "valid_to", "issued_by", "note"?}``: logged as ``permit.recorded``."""
    return record_permit(post, site_id, body, actor=principal.username)


@router.get(
    "/alarm-analysis/trace",
    summary="One sensor's 10-minute trace, its alarms, the permits near it and the wind",
)
def get_trace(
    post: PostDep,
    _: ReaderDep,
    site_id: str,
    sensor: Annotated[str, Query(max_length=64)],
    start: From = None,
    end: To = None,
) -> dict[str, Any]:
    begin, stop = period(post, start, end)
    inp = _inputs(post, site_id, begin, stop)
    sensors = inp.sensors.set_index("id", drop=False)
    if sensor not in sensors.index:
        raise NotFound(
            f"no sensor '{sensor}' at site '{site_id}'", errors=[FieldError("sensor", "unknown")]
        )
    with post.db.read() as session:
        rows = session.execute(
            select(
                ReadingHistoryRow.period_s,
                ReadingHistoryRow.low,
                ReadingHistoryRow.mean,
                ReadingHistoryRow.high,
            )
            .where(
                ReadingHistoryRow.site_id == site_id,
                ReadingHistoryRow.sensor_id == sensor,
                ReadingHistoryRow.period_s >= int(inp.start_s),
                ReadingHistoryRow.period_s < int(inp.end_s),
            )
            .order_by(ReadingHistoryRow.period_s)
        ).all()
    inp.alarms = inp.alarms[inp.alarms["sensor_id"] == sensor]
    checked = fa.alarm_verdicts(inp)
    t = np.array([r[0] for r in rows], dtype=float)
    metres = fa.LocalMetres(float(sensors["lon"].mean()), float(sensors["lat"].mean()))
    speed, direction = fa.wind_at(inp, sensors, metres, np.array([sensor] * len(t)), t)
    s = sensors.loc[sensor]
    return {
        "sensor": {
            "id": sensor,
            "name": s["name"],
            "substance": s["substance"] if isinstance(s["substance"], str) else None,
            "unit": s["unit"] if isinstance(s["unit"], str) else None,
            "warning": _number(s["warning"]),
        },
        "periods": [[int(r[0]), float(r[1]), float(r[2]), float(r[3])] for r in rows],
        "wind": [
            [_number(a), _number(b)]
            for a, b in zip(speed.tolist(), direction.tolist(), strict=True)
        ],
        "alarms": [
            {
                "id": str(r["id"]),
                "start_s": float(r["start_s"]),
                "end_s": _number(r["end_s"]),
                "tier": str(r["tier"]),
                "outcome": str(r["outcome"]),
                "plume": str(r["plume"]),
                "hot_work": bool(r["hot_work"]),
            }
            for r in checked.to_dict("records")
        ],
        "permits": [
            {"id": str(p["id"]), "from_s": float(p["from_s"]), "to_s": float(p["to_s"])}
            for p in inp.permits.to_dict("records")
            if str(p["id"]) in set(checked["permit"].dropna().astype(str))
        ],
    }


# -- the page's charting library -------------------------------------------------------------------

#: The files of the npm install the page may load: the bundle and the licences (zrender, its
#: renderer, is bundled in it).
ECHARTS_FILES = {
    "echarts.min.js": "echarts/dist/echarts.min.js",
    "LICENSE": "echarts/LICENSE",
    "NOTICE": "echarts/NOTICE",
    "LICENSE-d3": "echarts/licenses/LICENSE-d3",
    "LICENSE-zrender": "zrender/LICENSE",
}
SETUP_HINT = "ECharts is not installed: run 'make run', or 'npm ci --prefix frontend'."


class _EchartsFiles(StaticFiles):
    """Only :data:`ECHARTS_FILES` of the installed package, 503 until it is installed."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.directory is None or not (Path(self.directory) / "echarts").is_dir():
            await Response(SETUP_HINT, status_code=503, media_type="text/plain")(
                scope, receive, send
            )
            return
        await super().__call__(scope, receive, send)

    async def get_response(self, path: str, scope: Scope) -> Response:
        wanted = ECHARTS_FILES.get(path)
        if wanted is None:
            raise HTTPException(status_code=404)
        response = await super().get_response(wanted, scope)
        if path.endswith(".js"):
            response.headers["content-type"] = "text/javascript; charset=utf-8"
        elif "content-type" in response.headers:
            response.headers["content-type"] = "text/plain; charset=utf-8"
        return response


def mount(app: FastAPI, frontend: Path) -> None:
    """Serve ECharts (``/vendor/echarts/echarts.min.js`` and its licences)."""
    app.mount(
        "/vendor/echarts",
        _EchartsFiles(directory=frontend / "node_modules", check_dir=False),
        name="echarts",
    )
