"""The daily wristband report of a site: dwell time per person per zone and per zone, and a
trajectory heat map (a PNG), from the sampled positions (``command.monitoring.wristbands``).

A sample stands for the time from it to the same person's next sample, at most ``MAX_GAP_S``
(a band silent longer says nothing of where its wearer was); a person's last sample stands for
nothing. Each span is counted in the zone of its sample, clipped to the day (midnight to
midnight in the site's time zone).
"""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import shapely
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from sqlalchemy.orm import Session

from command.monitoring.wristbands import MAX_GAP_S, read_samples
from gis.sites import Site

#: The heat map's cells (metres) and width (pixels); its height follows the site's shape.
CELL_M = 10.0
WIDTH_PX = 1000
#: The frame around the site's boundary, as a share of its extent on each side.
PAD = 0.05


@dataclass(frozen=True)
class Span:
    person_id: str
    zone_id: str | None
    lon: float
    lat: float
    seconds: float


def day_bounds(site: Site, day: date) -> tuple[datetime, datetime]:
    """The day from midnight to midnight in the site's time zone."""
    tz = ZoneInfo(site.timezone)
    start = datetime.combine(day, datetime.min.time(), tzinfo=tz)
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=tz)
    return start, end


def spans(
    samples: Sequence[tuple[str, datetime, float, float, str | None]],
    start: datetime,
    end: datetime,
) -> list[Span]:
    """Each sample's span (see the module's rule), clipped to ``start``-``end``."""
    out: list[Span] = []
    for i, (pid, at, lon, lat, zone) in enumerate(samples):
        following = samples[i + 1] if i + 1 < len(samples) else None
        if following is None or following[0] != pid:
            continue  # a person's last sample stands for nothing
        until = min(following[1], at + timedelta(seconds=MAX_GAP_S), end)
        seconds = (until - max(at, start)).total_seconds()
        if seconds > 0:
            out.append(Span(pid, zone, lon, lat, seconds))
    return out


def dwell(
    session: Session,
    site: Site,
    day: date,
    zones: Sequence[Mapping[str, Any]],
    names: Mapping[str, str],
) -> dict[str, Any]:
    """The day's dwell times: per person per zone, and per zone (seconds; ``zone_id`` None:
    outside every zone)."""
    start, end = day_bounds(site, day)
    counted = spans(read_samples(session, site.id, start, end), start, end)
    by_person: dict[str, dict[str | None, float]] = defaultdict(lambda: defaultdict(float))
    by_zone: dict[str | None, float] = defaultdict(float)
    people_in: dict[str | None, set[str]] = defaultdict(set)
    for span in counted:
        by_person[span.person_id][span.zone_id] += span.seconds
        by_zone[span.zone_id] += span.seconds
        people_in[span.zone_id].add(span.person_id)
    zone_names = {str(f["id"]): (f.get("properties") or {}) for f in zones}

    def key(zone: str | None) -> str:
        return "" if zone is None else zone

    return {
        "site": site.id,
        "date": day.isoformat(),
        "timezone": site.timezone,
        "from": start.isoformat(),
        "to": end.isoformat(),
        "people": [
            {
                "person_id": pid,
                "name": names.get(pid),
                "seconds": round(sum(per.values()), 1),
                "zones": [
                    {"zone_id": zone, "seconds": round(s, 1)}
                    for zone, s in sorted(per.items(), key=lambda z: key(z[0]))
                ],
            }
            for pid, per in sorted(by_person.items())
        ],
        "zones": [
            {
                "zone_id": zone,
                "name": zone_names.get(key(zone), {}).get("name"),
                "kind": zone_names.get(key(zone), {}).get("kind"),
                "seconds": round(s, 1),
                "people": len(people_in[zone]),
            }
            for zone, s in sorted(by_zone.items(), key=lambda z: key(z[0]))
        ],
    }


@dataclass(frozen=True)
class Frame:
    """The heat map's extent in the site's metric CRS and its size in pixels: a point (x, y)
    is drawn at column ``(x - x0) / (x1 - x0) * width``, row ``(y1 - y) / (y1 - y0) * height``."""

    x0: float
    y0: float
    x1: float
    y1: float
    width: int
    height: int


def heatmap_frame(site: Site) -> Frame:
    """The site's boundary bounds (metric), padded by ``PAD`` on each side; ``WIDTH_PX`` wide,
    as high as keeps a metre a metre both ways (200 to 2,000 pixels)."""
    x0, y0, x1, y1 = site.crs.to_metric(site.boundary).bounds
    dx, dy = x1 - x0, y1 - y0
    x0, x1, y0, y1 = x0 - PAD * dx, x1 + PAD * dx, y0 - PAD * dy, y1 + PAD * dy
    height = round(WIDTH_PX * (y1 - y0) / (x1 - x0))
    return Frame(x0, y0, x1, y1, WIDTH_PX, max(200, min(2000, height)))


def heatmap_png(
    session: Session, site: Site, day: date, zones: Sequence[Mapping[str, Any]]
) -> bytes:
    """The day's trajectory heat map: seconds spent per ``CELL_M`` cell (a histogram of the
    sampled positions weighted by their spans), over the site's outline and zones."""
    start, end = day_bounds(site, day)
    counted = spans(read_samples(session, site.id, start, end), start, end)
    frame = heatmap_frame(site)
    nx = max(1, int(np.ceil((frame.x1 - frame.x0) / CELL_M)))
    ny = max(1, int(np.ceil((frame.y1 - frame.y0) / CELL_M)))
    if counted:
        lonlat = np.array([(s.lon, s.lat) for s in counted], dtype=np.float64)
        xy = site.crs.transform_xy(lonlat)
        weights = np.array([s.seconds for s in counted], dtype=np.float64)
    else:
        xy, weights = np.zeros((0, 2)), np.zeros(0)
    grid, _, _ = np.histogram2d(
        xy[:, 0],
        xy[:, 1],
        bins=(nx, ny),
        range=((frame.x0, frame.x0 + nx * CELL_M), (frame.y0, frame.y0 + ny * CELL_M)),
        weights=weights,
    )
    figure = Figure(figsize=(frame.width / 100, frame.height / 100), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_axes((0, 0, 1, 1))
    axes.set_xlim(frame.x0, frame.x1)
    axes.set_ylim(frame.y0, frame.y1)
    axes.set_axis_off()
    for feature in zones:
        if feature.get("geometry"):
            _outline(axes, site.crs.to_metric(shapely.geometry.shape(feature["geometry"])), 0.5)
    _outline(axes, site.crs.to_metric(site.boundary), 1.5, colour="#222222")
    heat = np.ma.masked_less_equal(grid.T, 0.0)
    top = float(grid.max()) if grid.size and grid.max() > 0 else 1.0
    axes.imshow(
        heat,
        origin="lower",
        extent=(frame.x0, frame.x0 + nx * CELL_M, frame.y0, frame.y0 + ny * CELL_M),
        cmap="YlOrRd",
        norm=Normalize(vmin=0.0, vmax=top),
        interpolation="nearest",
        aspect="auto",
        zorder=3,
    )
    axes.set_xlim(frame.x0, frame.x1)
    axes.set_ylim(frame.y0, frame.y1)
    axes.text(
        0.01,
        0.99,
        f"{site.name} - {day.isoformat()} - time spent per {CELL_M:g} m cell "
        f"(darkest: {top / 60:.1f} min)",
        transform=axes.transAxes,
        va="top",
        fontsize=9,
        zorder=4,
    )
    out = io.BytesIO()
    figure.savefig(out, format="png", dpi=100)
    return out.getvalue()


def _outline(axes: Any, geom: shapely.Geometry, width: float, colour: str = "#9a9a9a") -> None:
    for polygon in getattr(geom, "geoms", [geom]):
        rings = [polygon.exterior, *polygon.interiors] if hasattr(polygon, "exterior") else []
        for ring in rings:
            x, y = ring.xy
            axes.plot(x, y, color=colour, linewidth=width, zorder=2)
