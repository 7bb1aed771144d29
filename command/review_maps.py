"""The review's situation maps: the threat zones at a moment, over the site's own map.

A review keeps, for each moment (activation, first full muster, each wind change), the hazard in
force and its zones recomputed from it with :func:`command.incidents.assess`: the log holds the
request, never the zones, and the zones follow from it deterministically. They are drawn two
ways:

- **HTML** with folium: one self-contained page. Leaflet's script and styles are inlined from
  the local npm copy (``frontend/node_modules/leaflet/dist``), its images as data URIs; folium's
  CDN links (Leaflet, jQuery, Bootstrap, Font Awesome) are dropped, and there is no tile layer:
  sites have no internet. The site's basemap, zones and muster points are drawn as vectors.
- **PNG** with matplotlib (Agg, no display), for print.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import shapely
import shapely.geometry
from pydantic import TypeAdapter, ValidationError
from shapely.geometry.base import BaseGeometry

from command.incidents import HazardSpec, assess
from command.site_model import SiteModel
from gis.errors import FieldError, RallypointError
from gis.geometry import validate_geometry
from gis.layers import Feature

log = logging.getLogger(__name__)

LEAFLET = Path(__file__).resolve().parents[1] / "frontend" / "node_modules" / "leaflet" / "dist"
#: At most this many basemap features are drawn on one map (those nearest the view's centre
#: first): an OpenStreetMap extract's basemap can hold a hundred thousand buildings.
MAX_BASEMAP = 5000
#: Zone coordinates are kept to this many decimals (about 0.1 m).
DECIMALS = 6
#: Threat levels' colours, innermost (3) first, as the map wall draws them.
LEVEL_COLOURS = {3: "#c62828", 2: "#ef6c00", 1: "#f9a825"}
#: Fonts tried for the PNGs' text, the CJK ones for Chinese names (matplotlib falls back
#: glyph by glyph along the list).
PNG_FONTS = ("DejaVu Sans", "Noto Sans CJK SC", "Source Han Sans SC", "WenQuanYi Micro Hei")

_HAZARD = TypeAdapter[Any](HazardSpec)
LEAFLET_PLACEHOLDER = "<!-- leaflet: inlined after rendering -->"


class MapAssetsMissing(RallypointError):
    """Leaflet's files are not installed, so no self-contained map can be written."""

    status_code = 503
    slug = "map-assets-missing"
    title = "Map assets missing"


@dataclass(frozen=True)
class MapFrame:
    """What every map of a site draws under the zones: its boundary, basemap, zones and muster
    points (WGS84 geometries with their properties)."""

    site_name: str
    timezone: str
    boundary: BaseGeometry
    basemap: tuple[tuple[BaseGeometry, Mapping[str, Any]], ...]
    zones: tuple[tuple[BaseGeometry, Mapping[str, Any]], ...]
    musters: tuple[tuple[str, BaseGeometry], ...]


def map_frame(model: SiteModel, basemap: Iterable[Feature]) -> MapFrame:
    zones = tuple(
        (shapely.geometry.shape(f["geometry"]), dict(f.get("properties") or {}))
        for f in model.layers.get("zones", [])
        if f.get("geometry")
    )
    return MapFrame(
        site_name=model.site.name,
        timezone=model.site.timezone,
        boundary=model.site.boundary,
        basemap=tuple((f.geometry, f.properties) for f in basemap if f.geometry is not None),
        zones=zones,
        musters=tuple(model.muster_areas.items()),
    )


# -- the zones at each moment ----------------------------------------------------------------


def add_threat_zones(model: SiteModel, maps: Sequence[dict[str, Any]]) -> None:
    """Give each map entry (a review's moment) ``threat``: its zones as GeoJSON, recomputed from
    the logged hazard and location on the site model. A hazard the model can no longer compute
    (a substance removed since) leaves ``threat`` None and says why in ``error``."""
    done: dict[str, tuple[dict[str, Any] | None, str | None]] = {}
    for entry in maps:
        key = json.dumps([entry["location"], entry["hazard"]], sort_keys=True)
        if key not in done:
            done[key] = _zones(model, entry["location"], entry["hazard"])
        entry["threat"], entry["error"] = done[key]


def _zones(
    model: SiteModel, location: Mapping[str, Any], hazard: Mapping[str, Any]
) -> tuple[dict[str, Any] | None, str | None]:
    try:
        spec = _HAZARD.validate_python(dict(hazard))
        kind = location.get("type")
        place = validate_geometry(
            dict(location),
            expected_type=kind if kind in ("Point", "Polygon") else "Point",
            extent=model.site.extent,
            field_name="location",
        )
        assert place is not None  # a logged activation had a place
        point = place.representative_point()
        found = assess(model, (float(point.x), float(point.y)), spec).as_geojson()
    except (RallypointError, ValidationError) as exc:
        reason = exc.detail if isinstance(exc, RallypointError) else str(exc).splitlines()[0]
        log.warning("review map not drawn: %s", reason)
        return None, reason
    rounded: dict[str, Any] = _rounded(found)
    return rounded, None


def _rounded(value: Any) -> Any:
    """GeoJSON with coordinates to :data:`DECIMALS` places and tuples as lists (JSON)."""
    if isinstance(value, float):
        return round(value, DECIMALS)
    if isinstance(value, Mapping):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(v) for v in value]
    return value


def _threat(entry: Mapping[str, Any]) -> list[tuple[BaseGeometry, Mapping[str, Any]]]:
    features = (entry.get("threat") or {}).get("features", [])
    return [(shapely.geometry.shape(f["geometry"]), f["properties"]) for f in features]


def _view(
    frame: MapFrame, threat: Sequence[tuple[BaseGeometry, Mapping[str, Any]]]
) -> tuple[float, float, float, float]:
    """The map's extent (lon/lat): the site and the threat zones (not the wind's uncertainty
    area, which may be far wider), with a margin."""
    west, south, east, north = frame.boundary.bounds
    for geometry, properties in threat:
        if properties.get("kind") != "threat_zone":
            continue
        w, s, e, n = geometry.bounds
        west, south, east, north = min(west, w), min(south, s), max(east, e), max(north, n)
    pad_x, pad_y = (east - west) * 0.05, (north - south) * 0.05
    return west - pad_x, south - pad_y, east + pad_x, north + pad_y


def _basemap_in(
    frame: MapFrame, view: tuple[float, float, float, float]
) -> list[tuple[BaseGeometry, Mapping[str, Any]]]:
    box = shapely.box(*view)
    hits = shapely.intersects(np.array([g for g, _ in frame.basemap], dtype=object), box)
    inside = [item for item, hit in zip(frame.basemap, hits.tolist(), strict=True) if hit]
    if len(inside) > MAX_BASEMAP:
        centre = box.centroid
        inside.sort(key=lambda gp: gp[0].distance(centre))
        inside = inside[:MAX_BASEMAP]
    return inside


# -- HTML (folium) ---------------------------------------------------------------------------


@functools.cache
def leaflet_inline() -> str:
    """Leaflet's CSS and script as inline elements, its images as data URIs."""
    try:
        script = (LEAFLET / "leaflet.js").read_text(encoding="utf-8")
        css = (LEAFLET / "leaflet.css").read_text(encoding="utf-8")
        for image in sorted((LEAFLET / "images").glob("*.png")):
            data = base64.b64encode(image.read_bytes()).decode()
            css = css.replace(f"images/{image.name}", f"data:image/png;base64,{data}")
    except OSError as exc:
        raise MapAssetsMissing(
            "Leaflet is not installed, so the review's maps cannot be written: run "
            "'npm ci --prefix frontend'",
            errors=[FieldError("maps", "frontend/node_modules/leaflet is missing")],
        ) from exc
    # Inside a <script> element, "</" could end it early: Leaflet 1.9 has none, but be sure.
    # The source map is not inlined: a browser's developer tools would go looking for it.
    script = script.replace("</", "<\\/").replace("//# sourceMappingURL=leaflet.js.map", "")
    return f"<style>{css}</style>\n<script>{script}</script>"


def _style(properties: Mapping[str, Any], layer: str) -> dict[str, Any]:
    if layer == "threat":
        if properties.get("kind") == "wind_direction_uncertainty":
            return {"color": "#6a1b9a", "weight": 1, "dashArray": "4 4", "fillOpacity": 0.0}
        colour = LEVEL_COLOURS.get(int(properties.get("level") or 1), "#f9a825")
        return {"color": colour, "weight": 2, "fillColor": colour, "fillOpacity": 0.25}
    if layer == "muster":
        return {"color": "#2e7d32", "weight": 2, "fillColor": "#66bb6a", "fillOpacity": 0.5}
    if layer == "zones":
        return {"color": "#546e7a", "weight": 1, "fillOpacity": 0.05}
    kind = properties.get("kind")
    if kind == "water":
        return {"color": "#64b5f6", "weight": 1, "fillColor": "#bbdefb", "fillOpacity": 0.8}
    if kind == "road":
        return {"color": "#9e9e9e", "weight": 3}
    return {"color": "#bdbdbd", "weight": 1, "fillColor": "#e0e0e0", "fillOpacity": 0.8}


def _collection(
    items: Iterable[tuple[BaseGeometry, Mapping[str, Any]]], fields: Sequence[str]
) -> dict[str, Any]:
    """The features with only ``fields`` (the tooltip's), each given, "" where absent."""
    return {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "geometry": shapely.geometry.mapping(g),
                "properties": {k: _shown(p.get(k)) for k in fields},
            }
            for g, p in items
        ],
    }


def _shown(value: Any) -> str | int | float:
    return value if isinstance(value, str | int | float) else ""


def map_html(entry: Mapping[str, Any], frame: MapFrame, *, title: str | None = None) -> str:
    """One situation map as a self-contained HTML page (nothing loaded from elsewhere)."""
    import folium  # only a review's export needs it
    from branca.element import Element, Figure

    threat = _threat(entry)
    west, south, east, north = _view(frame, threat)
    fmap = folium.Map(
        location=[(south + north) / 2, (west + east) / 2],
        tiles=None,
        zoom_start=15,
        control_scale=True,
        prefer_canvas=True,
    )
    layers: list[tuple[str, list[tuple[BaseGeometry, Mapping[str, Any]]]]] = [
        ("basemap", _basemap_in(frame, (west, south, east, north))),
        ("zones", list(frame.zones)),
        ("muster", [(g, {"name": name}) for name, g in frame.musters]),
        ("threat", sorted(threat, key=lambda gp: int(gp[1].get("level") or 0))),
    ]
    for layer, items in layers:
        if not items:
            continue
        fields = [k for k in ("name", "label", "kind", "level") if any(k in p for _, p in items)]
        folium.GeoJson(
            _collection(items, fields),
            name=layer,
            style_function=lambda feature, layer=layer: _style(feature["properties"], layer),
            tooltip=folium.GeoJsonTooltip(fields=fields) if fields else None,
            # Points as circles: Leaflet's default marker finds its icon by a path that an
            # inlined image does not have.
            marker=folium.CircleMarker(radius=4, fill=True, fill_opacity=0.8),
        ).add_to(fmap)
    folium.GeoJson(
        shapely.geometry.mapping(frame.boundary),
        name="site",
        style_function=lambda _: {"color": "#000", "weight": 2, "dashArray": "6 4", "fill": False},
    ).add_to(fmap)
    source = (entry.get("threat") or {}).get("properties", {}).get("source")
    if source:
        folium.CircleMarker(
            [source[1], source[0]], radius=6, color="#000", fill=True, fill_color="#c62828"
        ).add_to(fmap)
    fmap.fit_bounds([[south, west], [north, east]])
    figure = fmap.get_root()
    assert isinstance(figure, Figure)  # a map always renders inside a figure
    # Folium links its scripts and styles from CDNs: drop them all, then inline Leaflet.
    for element in _elements(figure):
        if hasattr(element, "default_js"):
            element.default_js = []
            element.default_css = []
    # A placeholder, replaced after rendering: Leaflet's source is no Jinja template.
    figure.header.add_child(Element(LEAFLET_PLACEHOLDER), name="leaflet")
    # In a frame (the printable review's) the map may be laid out only after its script ran, even
    # after the page's load (a busy machine, a frame shown later), at size 0, which fits the
    # bounds at zoom 0: fit them again whenever the container gets a size, until the map has
    # been fitted at a real size once (then a resize only redraws, keeping the reader's view).
    bounds = json.dumps([[south, west], [north, east]])
    name = fmap.get_name()
    figure.script.add_child(
        Element(
            # After the page's script (folium's map is declared further down in it).
            "document.addEventListener('DOMContentLoaded', function () {"
            f" var map = {name}, fitted = false;"
            " function fit() {"
            "  var box = map.getContainer();"
            "  if (!box.clientWidth || !box.clientHeight) { return; }"
            "  map.invalidateSize();"
            f"  if (!fitted) {{ map.fitBounds({bounds}); fitted = true; }}"
            " }"
            # Chromium throttles an offscreen frame's rendering (no ResizeObserver, no animation
            # frame until it is scrolled to) but still tells its window of a resize.
            " new ResizeObserver(fit).observe(map.getContainer());"
            " window.addEventListener('resize', fit);"
            " window.addEventListener('load', fit);"
            " fit();"
            "});"
        )
    )
    caption = _escape(title or f"{entry.get('title', '')}, {_local(entry, frame)}")
    figure.html.add_child(
        Element(
            '<div style="position:absolute;top:8px;left:50px;z-index:1000;background:#fff;'
            'padding:4px 8px;border:1px solid #444;font:14px sans-serif">'
            f"{caption}</div>"
        )
    )
    page: str = figure.render()
    return page.replace(LEAFLET_PLACEHOLDER, leaflet_inline(), 1)


def _elements(root: Any) -> Iterable[Any]:
    pending = [root]
    while pending:
        element = pending.pop()
        yield element
        pending.extend(getattr(element, "_children", {}).values())


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# -- PNG (matplotlib) ------------------------------------------------------------------------


@functools.cache
def _fonts() -> list[str]:
    from matplotlib import font_manager

    have = {f.name for f in font_manager.fontManager.ttflist}
    return [name for name in PNG_FONTS if name in have] or ["sans-serif"]


def map_png(
    entry: Mapping[str, Any], frame: MapFrame, *, width_in: float = 8.0, dpi: int = 110
) -> bytes:
    """One situation map as a PNG, for print."""
    from matplotlib import rc_context
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    threat = _threat(entry)
    view = west, south, east, north = _view(frame, threat)
    aspect = 1 / max(math.cos(math.radians((south + north) / 2)), 0.01)
    height_in = min(max(width_in * (north - south) * aspect / max(east - west, 1e-9), 3.0), 11.0)
    title = f"{frame.site_name}: {entry.get('title', '')}, {_local(entry, frame)}"
    # The CJK fonts (slow to lay out) only where a text needs them.
    fonts = ["DejaVu Sans"] if title.isascii() else _fonts()
    with rc_context({"font.family": fonts, "font.size": 8}):
        figure = Figure(figsize=(width_in, height_in), dpi=dpi)
        FigureCanvasAgg(figure)
        ax = figure.add_axes((0.02, 0.02, 0.96, 0.9))
        ax.set_xlim(west, east)
        ax.set_ylim(south, north)
        ax.set_aspect(aspect)
        ax.set_xticks([])
        ax.set_yticks([])
        basemap = _basemap_in(frame, view)
        polygons = [(g, _style(p, "basemap")) for g, p in basemap if g.geom_type.endswith("gon")]
        lines = [g for g, _ in basemap if "LineString" in g.geom_type]
        _patches(ax, polygons)
        if lines:
            ax.add_collection(
                LineCollection(
                    [list(part.coords) for g in lines for part in getattr(g, "geoms", [g])],
                    colors="#9e9e9e",
                    linewidths=1.5,
                )
            )
        _patches(ax, [(g, _style(p, "zones")) for g, p in frame.zones])
        _patches(ax, [(g, _style({}, "muster")) for _, g in frame.musters])
        ordered = sorted(threat, key=lambda gp: int(gp[1].get("level") or 0))
        _patches(ax, [(g, _style(p, "threat")) for g, p in ordered])
        x, y = frame.boundary.exterior.xy if hasattr(frame.boundary, "exterior") else ([], [])
        ax.plot(list(x), list(y), color="#000", linewidth=1.2, linestyle="--")
        source = (entry.get("threat") or {}).get("properties", {}).get("source")
        if source:
            ax.plot([source[0]], [source[1]], marker="o", color="#c62828", markeredgecolor="#000")
        handles: list[Any] = [
            Patch(
                facecolor=LEVEL_COLOURS.get(int(p.get("level") or 1)),
                alpha=0.5,
                label=str(p.get("label") or f"level {p.get('level')}"),
            )
            for _, p in ordered[::-1]
            if p.get("kind") == "threat_zone"
        ]
        if any(p.get("kind") == "wind_direction_uncertainty" for _, p in ordered):
            handles.append(
                Line2D([], [], color="#6a1b9a", linewidth=1, label="wind direction uncertainty")
            )
        handles += [
            Patch(facecolor="#66bb6a", label="muster point"),
            Line2D([], [], color="#000", linestyle="--", label="site boundary"),
        ]
        ax.legend(handles=handles, loc="lower right", framealpha=0.9)
        figure.suptitle(title)
        out = io.BytesIO()
        # No software version in the file: the same map gives the same bytes.
        figure.savefig(
            out, format="png", metadata={"Software": None}, pil_kwargs={"compress_level": 1}
        )
    return out.getvalue()


def _local(entry: Mapping[str, Any], frame: MapFrame) -> str:
    """The moment's time in the site's time zone."""
    at = entry.get("at")
    if not isinstance(at, str):
        return ""
    local = datetime.fromisoformat(at).astimezone(ZoneInfo(frame.timezone))
    return local.strftime("%Y-%m-%d %H:%M:%S %Z")


def _patches(ax: Any, items: Sequence[tuple[BaseGeometry, Mapping[str, Any]]]) -> None:
    """Polygons as one collection: outer rings as a PolyCollection (fast), polygons with
    holes as compound paths."""
    from matplotlib.collections import PatchCollection, PolyCollection
    from matplotlib.patches import PathPatch
    from matplotlib.path import Path as MplPath

    rings: list[Any] = []
    holed: list[Any] = []
    styles: tuple[list[Any], list[Any]] = ([], [])
    for geometry, style in items:
        fill = style.get("fillColor", style.get("color", "#999"))
        alpha = float(style.get("fillOpacity", 0.2)) if style.get("fill", True) else 0.0
        look = (_rgba(fill, alpha), style.get("color", "#000"), float(style.get("weight", 1)))
        for polygon in getattr(geometry, "geoms", [geometry]):
            if polygon.geom_type != "Polygon" or polygon.is_empty:
                continue
            if polygon.interiors:
                paths = [MplPath(np.asarray(polygon.exterior.coords), closed=True)]
                paths += [MplPath(np.asarray(r.coords), closed=True) for r in polygon.interiors]
                holed.append(PathPatch(MplPath.make_compound_path(*paths)))
                styles[1].append(look)
            else:
                rings.append(np.asarray(polygon.exterior.coords))
                styles[0].append(look)
    for made, looks in ((rings, styles[0]), (holed, styles[1])):
        if not made:
            continue
        faces, edges, widths = zip(*looks, strict=True)
        kind = PolyCollection if made is rings else PatchCollection
        ax.add_collection(
            kind(
                made,
                facecolors=list(faces),
                edgecolors=list(edges),
                linewidths=[w * 0.6 for w in widths],
            )
        )


def _rgba(colour: str, alpha: float) -> tuple[float, float, float, float]:
    text = colour.lstrip("#")
    if len(text) == 3:
        text = "".join(c * 2 for c in text)
    r, g, b = (int(text[i : i + 2], 16) / 255 for i in (0, 2, 4))
    return (r, g, b, alpha)
