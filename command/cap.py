"""Outbound alerts in CAP 1.2 (the OASIS Common Alerting Protocol) for a park's or an
authority's platform.

An activation, an escalation or de-escalation and a stand-down each become one alert, written
from the site's event log alone, so the same events always give the same alerts (the identifier
is the site and the event's number). A drill's incident gives ``status=Exercise`` and carries
"EXERCISE / 演练"; a real one gives ``Actual``. Threat zones are ``<area><polygon>``.

Every alert is checked before it leaves, by :func:`validate`: the official OASIS schema
(``command/schemas/CAP-v1.2.xsd``, bundled unmodified with its copyright notice) through
xmlschema, and then the rules of the CAP text that the schema leaves to prose, because the
schema types a polygon as any string and lets "+00:00" through:

- times carry a numeric offset, no fraction of a second, and UTC is written "-00:00", never "Z"
  (CAP 1.2, 3.3.2);
- a polygon is "lat,lon" pairs (latitude first), at least 4, the first and last the same;
- identifiers and senders hold no spaces, commas, "<" or "&"; ``references`` are
  "sender,identifier,sent" triples.

Nothing here posts or stores: the caller logs each alert and hands it to the outbound webhook.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal, NamedTuple, get_args
from xml.etree import ElementTree as ET
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
import xmlschema
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry
from shapely.validation import explain_validity

from command.events import LoggedEvent
from command.notifications import ATTEMPTS as DELIVERY_ATTEMPTS
from command.notifications import FIRST_BACKOFF_S
from gis.errors import FieldError, InvalidGeometry, InvalidInput
from plans.model import LEVEL_NAMES, Level

log = logging.getLogger(__name__)

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"
SCHEMA_PATH = Path(__file__).with_name("schemas") / "CAP-v1.2.xsd"
#: At most this many coordinate pairs in one ``<polygon>``. Receivers that pass alerts on to
#: phones and sirens bound the size of a polygon, and 100 pairs is a common ceiling; a zone
#: with more vertices is simplified outwards to fit (see :func:`polygon_texts`).
MAX_POLYGON_PAIRS = 100
#: Coordinates are written to 6 decimals of a degree, about 0.1 m: zones are drawn, not surveyed.
COORD_DECIMALS = 6
#: What every drill alert carries in its headline and note.
EXERCISE_MARK = "EXERCISE / 演练"

Status = Literal["Actual", "Exercise"]
MsgType = Literal["Alert", "Update", "Cancel"]
Scope = Literal["Public", "Restricted"]
Category = Literal[
    "Geo",
    "Met",
    "Safety",
    "Security",
    "Rescue",
    "Fire",
    "Health",
    "Env",
    "Transport",
    "Infra",
    "CBRNE",
    "Other",
]
ResponseType = Literal[
    "Shelter", "Evacuate", "Prepare", "Execute", "Avoid", "Monitor", "Assess", "AllClear", "None"
]
Urgency = Literal["Immediate", "Expected", "Future", "Past", "Unknown"]
Severity = Literal["Extreme", "Severe", "Moderate", "Minor", "Unknown"]
Certainty = Literal["Observed", "Likely", "Possible", "Unlikely", "Unknown"]

#: A CAP time: numeric offset, whole seconds. (The schema's pattern also admits a comma for
#: the sign, a slip that xs:dateTime then refuses anyway.)
CAP_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[-+]\d\d:\d\d")
#: Spaces, commas and the XML-restricted characters, which CAP forbids in identifiers.
_ID_FORBIDDEN = re.compile(r"[\s,<&]")
#: Characters XML 1.0 cannot carry at all (ElementTree would write them, unreadably).
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_LANGUAGE = re.compile(r"[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8})*")
_TIME_FIELDS = ("sent", "effective", "onset", "expires")
ET.register_namespace("", CAP_NS)  # the alert in CAP's default namespace, as receivers expect


class Reference(NamedTuple):
    """An earlier alert this one refers to: CAP writes it "sender,identifier,sent"."""

    sender: str
    identifier: str
    sent: str  # CAP form, as the earlier alert carried it

    def text(self) -> str:
        return f"{self.sender},{self.identifier},{self.sent}"


@dataclass(frozen=True)
class Area:
    """One ``<area>``: a description for people and a Polygon or MultiPolygon (WGS84 lon/lat)."""

    desc: str
    geometry: BaseGeometry


@dataclass(frozen=True)
class Translation:
    """The alert's words in another language: a second ``<info>`` block with the same category,
    urgency, severity, certainty and areas."""

    language: str
    event: str
    headline: str
    description: str
    instruction: str | None = None


@dataclass(frozen=True)
class CapAlert:
    """One outbound alert and what it was made from."""

    seq: int  # the site event it reports
    incident_id: str
    identifier: str
    sent: str
    status: Status
    msg_type: MsgType
    xml: bytes

    def log_data(self) -> dict[str, Any]:
        """The data of a ``cap.alert`` log event: enough to find, resend or audit the alert."""
        return {
            "identifier": self.identifier,
            "source_seq": self.seq,
            "sent": self.sent,
            "status": self.status,
            "msg_type": self.msg_type,
            "xml": self.xml.decode("utf-8"),
        }


def _refuse(field: str, reason: str) -> InvalidInput:
    return InvalidInput(f"{field}: {reason}", errors=[FieldError(field, reason)])


# -- times ----------------------------------------------------------------------------------


def cap_time(value: datetime | str, *, field: str = "sent") -> str:
    """``value`` written as CAP wants it: "2026-12-03T01:02:03+08:00", UTC as "-00:00".

    A datetime must be aware; its fraction of a second is dropped (CAP has none). A string must
    already be in CAP form: "Z", a missing offset, a fraction or "+00:00" are refused, not fixed,
    since a caller that writes them would send them elsewhere too.
    """
    if isinstance(value, str):
        if value[-1:] in ("Z", "z"):
            raise _refuse(field, "'Z' is not allowed: CAP writes UTC as -00:00")
        if not CAP_TIME.fullmatch(value):
            raise _refuse(
                field,
                "write YYYY-MM-DDThh:mm:ss with a numeric offset, e.g. 2026-12-03T01:02:03+08:00",
            )
        if value.endswith("+00:00"):
            raise _refuse(field, "CAP writes UTC as -00:00, not +00:00")
        try:
            datetime.fromisoformat(value)
        except ValueError as exc:
            raise _refuse(field, f"not a real date and time ({exc})") from exc
        return value
    offset = value.utcoffset()
    if offset is None:
        raise _refuse(field, "a time without a time zone: give it the site's zone")
    if offset % timedelta(minutes=1):
        raise _refuse(field, "the UTC offset must be whole minutes")
    text = value.replace(microsecond=0).isoformat()
    return text[:-6] + "-00:00" if not offset else text


# -- polygons -------------------------------------------------------------------------------


def ring_text(ring: Iterable[Sequence[float]], *, field: str = "polygon") -> str:
    """A ring of (lon, lat) pairs as CAP's "lat,lon lat,lon ..." text.

    Refused: fewer than 4 pairs, a ring whose last pair is not its first (CAP 1.2 3.2.4 wants
    both), coordinates outside WGS84 or not finite. Consecutive pairs that round to the same
    point are written once.
    """
    pairs: list[tuple[float, float]] = []
    for i, point in enumerate(ring):
        if len(point) < 2:
            raise _refuse(field, f"point {i + 1} is not a (lon, lat) pair")
        lon, lat = float(point[0]), float(point[1])
        if not (math.isfinite(lon) and math.isfinite(lat)):
            raise _refuse(field, f"point {i + 1} is not a finite number")
        if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
            raise _refuse(field, f"point {i + 1} ({lon}, {lat}) is outside WGS84 lon/lat")
        pairs.append((lon, lat))
    if len(pairs) < 4:
        raise _refuse(field, f"{len(pairs)} coordinate pairs: a CAP polygon needs at least 4")
    if pairs[0] != pairs[-1]:
        raise _refuse(field, "the polygon is not closed: its last pair must repeat its first")
    written: list[str] = []
    for lon, lat in pairs:
        text = f"{lat:.{COORD_DECIMALS}f},{lon:.{COORD_DECIMALS}f}"
        if not written or written[-1] != text:
            written.append(text)
    if len(written) < 4:
        raise _refuse(field, f"the polygon is too small to draw at {COORD_DECIMALS} decimals")
    return " ".join(written)


def fit_polygon(polygon: Polygon, *, max_pairs: int = MAX_POLYGON_PAIRS) -> Polygon:
    """The polygon's outline (holes dropped) in at most ``max_pairs`` pairs, still covering it.

    An alert's area must not be smaller than the zone it warns of. Douglas-Peucker with
    tolerance t keeps every point of the outline within t of the result but cuts corners
    inwards, so the result is then grown by t (mitred corners, few new vertices) and kept only
    if it covers the outline; t grows until it fits. An outline too jagged for that (a star)
    goes the same way from its convex hull, and as a last resort the smallest rotated rectangle
    around it. The minimum t (1e-6 degrees) is larger than the rounding of the written text, so
    the written polygon covers too. Holes are dropped because a CAP polygon has none, and the
    ground inside a ring is no safer for belonging to another zone.
    """
    shell = Polygon(polygon.exterior.coords)
    if len(shell.exterior.coords) <= max_pairs:
        return shell
    minx, miny, maxx, maxy = shell.bounds
    size = max(maxx - minx, maxy - miny)
    for outline in (shell, shell.convex_hull):
        tolerance = max(size * 1e-4, 1e-6)
        while tolerance < size:
            simple = outline.simplify(tolerance, preserve_topology=False)
            # Growing drops few vertices, so an outline still far too long is not worth a buffer.
            if (
                isinstance(simple, Polygon)
                and simple.is_valid
                and 4 <= len(simple.exterior.coords) <= 2 * max_pairs
            ):
                # 2% over t: a point of the outline lies up to t from the simplified one, and
                # may sit exactly at t, where rounding in the buffer could leave it outside.
                grown = simple.buffer(tolerance * 1.02, join_style="mitre", mitre_limit=10.0)
                if (
                    isinstance(grown, Polygon)
                    and len(grown.exterior.coords) <= max_pairs
                    and grown.covers(shell)
                ):
                    return Polygon(grown.exterior.coords)
            tolerance *= 1.5
    box = shell.minimum_rotated_rectangle.buffer(size * 1e-4, join_style="mitre")
    return Polygon(box.exterior.coords)


def polygon_texts(
    geometry: BaseGeometry, *, field: str = "areas", max_pairs: int = MAX_POLYGON_PAIRS
) -> list[str]:
    """A Polygon or MultiPolygon (WGS84 lon/lat) as CAP ``<polygon>`` texts, one per part."""
    if not isinstance(geometry, Polygon | MultiPolygon):
        raise InvalidGeometry(
            f"{field}: a {geometry.geom_type} is not a polygon",
            errors=[FieldError(field, "a Polygon or MultiPolygon (WGS84 lon/lat)")],
        )
    if geometry.is_empty:
        raise InvalidGeometry(
            f"{field}: the polygon is empty", errors=[FieldError(field, "empty polygon")]
        )
    if not geometry.is_valid:
        reason = explain_validity(geometry)
        raise InvalidGeometry(f"{field}: {reason}", errors=[FieldError(field, reason)])
    parts = list(geometry.geoms) if isinstance(geometry, MultiPolygon) else [geometry]
    return [
        ring_text(fit_polygon(part, max_pairs=max_pairs).exterior.coords, field=field)
        for part in parts
    ]


# -- writing an alert -----------------------------------------------------------------------


def _text(value: str, field: str, *, required: bool = True) -> str:
    stripped = value.strip()
    if required and not stripped:
        raise _refuse(field, "must not be empty")
    if _XML_ILLEGAL.search(stripped):
        raise _refuse(field, "holds a control character XML cannot carry")
    return stripped


def _token(value: str, field: str) -> str:
    if not value or _ID_FORBIDDEN.search(value):
        raise _refuse(field, "must be non-empty, without spaces, commas, '<' or '&'")
    return _text(value, field)


def _one_of(value: str, allowed: Any, field: str) -> str:
    options = get_args(allowed)
    if value not in options:
        raise _refuse(field, f"{value!r} is not one of {', '.join(options)}")
    return value


def _sub(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    element = ET.SubElement(parent, f"{{{CAP_NS}}}{tag}")
    if text is not None:
        element.text = text
    return element


def incident_alert(
    *,
    sender: str,
    identifier: str,
    sent: datetime | str,
    status: Status,
    msg_type: MsgType,
    event: str,
    headline: str,
    description: str,
    severity: Severity,
    urgency: Urgency,
    certainty: Certainty,
    areas: Sequence[Area],
    categories: Sequence[Category] = ("Safety",),
    response_types: Sequence[ResponseType] = (),
    references: Sequence[Reference] = (),
    incidents: Sequence[str] = (),
    language: str = "en-US",
    instruction: str | None = None,
    note: str | None = None,
    sender_name: str | None = None,
    expires: datetime | str | None = None,
    parameters: Mapping[str, str] | None = None,
    scope: Scope = "Public",
    restriction: str | None = None,
    translations: Sequence[Translation] = (),
) -> bytes:
    """One CAP 1.2 alert as UTF-8 XML bytes, checked by :func:`validate` before it is returned.

    ``areas`` are written in every ``<info>`` block (one per language: ``language`` first, then
    each of ``translations``), each area's Polygon or MultiPolygon as one ``<polygon>`` per part.
    An ``Exercise`` alert's headlines start with "EXERCISE / 演练" and its note says so, whatever
    the caller wrote: no drill alert may read as a real one.
    Refusals are :class:`InvalidInput` naming the field.
    """
    _one_of(status, Status, "status")
    _one_of(msg_type, MsgType, "msg_type")
    _one_of(scope, Scope, "scope")
    _one_of(severity, Severity, "severity")
    _one_of(urgency, Urgency, "urgency")
    _one_of(certainty, Certainty, "certainty")
    if not categories:
        raise _refuse("categories", "at least one CAP category")
    for category in categories:
        _one_of(category, Category, "categories")
    for response in response_types:
        _one_of(response, ResponseType, "response_types")
    if msg_type != "Alert" and not references:
        raise _refuse("references", f"msgType {msg_type} must name the alert(s) it follows")
    if scope == "Restricted" and not (restriction and restriction.strip()):
        raise _refuse("restriction", "a Restricted alert says who may see it")
    for lang_field, lang in [("language", language)] + [
        (f"translations[{i}].language", t.language) for i, t in enumerate(translations)
    ]:
        if not _LANGUAGE.fullmatch(lang):
            raise _refuse(lang_field, f"{lang!r} is not an RFC 3066 language tag")
    polygons = [
        (_text(area.desc, f"areas[{i}].desc"), polygon_texts(area.geometry, field=f"areas[{i}]"))
        for i, area in enumerate(areas)
    ]
    notes = [_text(note, "note")] if note and note.strip() else []
    if status == "Exercise" and not any(EXERCISE_MARK in n for n in notes):
        notes.insert(0, EXERCISE_MARK)

    alert = ET.Element(f"{{{CAP_NS}}}alert")
    _sub(alert, "identifier", _token(identifier, "identifier"))
    _sub(alert, "sender", _token(sender, "sender"))
    _sub(alert, "sent", cap_time(sent, field="sent"))
    _sub(alert, "status", status)
    _sub(alert, "msgType", msg_type)
    _sub(alert, "scope", scope)
    if scope == "Restricted" and restriction:
        _sub(alert, "restriction", _text(restriction, "restriction"))
    if notes:
        _sub(alert, "note", "; ".join(notes))
    if references:
        texts = []
        for i, ref in enumerate(references):
            field = f"references[{i}]"
            texts.append(
                Reference(
                    _token(ref.sender, field),
                    _token(ref.identifier, field),
                    cap_time(ref.sent, field=field),
                ).text()
            )
        _sub(alert, "references", " ".join(texts))
    if incidents:
        _sub(alert, "incidents", " ".join(_token(i, "incidents") for i in incidents))

    blocks = [Translation(language, event, headline, description, instruction), *translations]
    expiry = cap_time(expires, field="expires") if expires is not None else None
    for n, words in enumerate(blocks):
        where = "" if n == 0 else f"translations[{n - 1}]."
        info = _sub(alert, "info")
        _sub(info, "language", words.language)
        for category in categories:
            _sub(info, "category", category)
        _sub(info, "event", _text(words.event, f"{where}event"))
        for response in response_types:
            _sub(info, "responseType", response)
        _sub(info, "urgency", urgency)
        _sub(info, "severity", severity)
        _sub(info, "certainty", certainty)
        if expiry is not None:
            _sub(info, "expires", expiry)
        if sender_name:
            _sub(info, "senderName", _text(sender_name, "sender_name"))
        line = _text(words.headline, f"{where}headline")
        if status == "Exercise" and not line.startswith(EXERCISE_MARK):
            line = f"{EXERCISE_MARK}: {line}"
        _sub(info, "headline", line)
        _sub(info, "description", _text(words.description, f"{where}description"))
        if words.instruction:
            _sub(info, "instruction", _text(words.instruction, f"{where}instruction"))
        for name, value in (parameters or {}).items():
            parameter = _sub(info, "parameter")
            _sub(parameter, "valueName", _text(name, "parameters"))
            _sub(parameter, "value", _text(value, f"parameters.{name}"))
        for desc, texts in polygons:
            area = _sub(info, "area")
            _sub(area, "areaDesc", desc)
            for text in texts:
                _sub(area, "polygon", text)

    ET.indent(alert)  # read by people too, in the log and the review
    xml = (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        + ET.tostring(alert, encoding="unicode").encode()
    )
    validate(xml)
    return xml


# -- checking an alert ----------------------------------------------------------------------


@functools.cache
def schema() -> xmlschema.XMLSchema10:
    """The bundled OASIS CAP 1.2 schema, built once (about 0.3 s); it reads no other file."""
    return xmlschema.XMLSchema10(str(SCHEMA_PATH), allow="sandbox", defuse="always")


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _paths(root: ET.Element) -> dict[ET.Element, str]:
    """Each element's path as a field name: "alert/sent", "alert/info[2]/area/polygon[3]" (an
    index only where a name repeats among siblings, counted from 1)."""
    out = {root: _local(root.tag)}
    stack = [root]
    while stack:
        parent = stack.pop()
        names = [_local(child.tag) for child in parent]
        seen: dict[str, int] = {}
        for child, name in zip(parent, names, strict=True):
            seen[name] = seen.get(name, 0) + 1
            index = f"[{seen[name]}]" if names.count(name) > 1 else ""
            out[child] = f"{out[parent]}/{name}{index}"
            stack.append(child)
    return out


def _polygon_reason(text: str) -> str | None:
    pairs = text.split()
    points = []
    for pair in pairs:
        parts = pair.split(",")
        try:
            lat, lon = (float(p) for p in parts) if len(parts) == 2 else (math.nan, math.nan)
        except ValueError:
            lat = lon = math.nan
        if not (math.isfinite(lat) and math.isfinite(lon)):
            return f"{pair!r} is not a 'lat,lon' pair"
        if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
            return f"{pair!r} is outside WGS84 (latitude first, then longitude)"
        points.append((lat, lon))
    if len(points) < 4:
        return f"{len(points)} coordinate pairs: a CAP polygon needs at least 4"
    if points[0] != points[-1]:
        return "the polygon is not closed: its last pair must repeat its first"
    return None


def _cap_rules(root: ET.Element) -> list[FieldError]:
    """What CAP 1.2 requires in prose and the schema cannot say."""
    errors = []
    paths = _paths(root)
    for element, path in paths.items():
        name, text = _local(element.tag), (element.text or "").strip()
        reason: str | None = None
        if name in _TIME_FIELDS and text.endswith("+00:00"):
            reason = "CAP writes UTC as -00:00, not +00:00"
        elif path in ("alert/identifier", "alert/sender") and _ID_FORBIDDEN.search(text):
            reason = "no spaces, commas, '<' or '&'"
        elif name == "references":
            for triple in text.split():
                parts = triple.split(",")
                if len(parts) != 3 or not CAP_TIME.fullmatch(parts[2]):
                    reason = f"{triple!r} is not 'sender,identifier,sent'"
                    break
        elif name == "polygon":
            reason = _polygon_reason(text)
        if reason is not None:
            errors.append(FieldError(path, reason))
    return errors


def validate(xml: bytes) -> None:
    """Raise :class:`InvalidInput` unless ``xml`` is a CAP 1.2 alert: valid against the bundled
    OASIS schema, then against the CAP rules the schema leaves to prose. Each field error names
    the element ("alert/sent", "alert/info[1]/area/polygon[2]") and its reason."""
    try:
        resource = xmlschema.XMLResource(xml, allow="none", defuse="always")
    except (ET.ParseError, xmlschema.XMLResourceError) as exc:
        raise _refuse("alert", f"not readable as XML: {exc}") from exc
    root = resource.root
    if root.tag != f"{{{CAP_NS}}}alert":
        raise _refuse("alert", f"the root is {root.tag}, not a CAP 1.2 alert ({CAP_NS})")
    paths = _paths(root)
    errors: list[FieldError] = []
    for error in schema().iter_errors(resource):
        element = error.elem if isinstance(error.elem, ET.Element) else None
        path = paths.get(element, "alert") if element is not None else "alert"
        text = (element.text or "").strip() if element is not None else ""
        if element is not None and _local(element.tag) in _TIME_FIELDS and text[-1:] in "Zz":
            reason = "'Z' is not allowed: CAP writes UTC as -00:00"
        else:
            reason = str(error.reason or error.message)
        errors.append(FieldError(path, f"schema: {reason}"))
    errors.extend(_cap_rules(root))
    if errors:
        first = errors[0]
        raise InvalidInput(
            f"not a valid CAP 1.2 alert: {first.field}: {first.reason}", errors=errors[:20]
        )


# -- alerts from the event log --------------------------------------------------------------

#: A plan level as a CAP severity: the level is how far the site's response reaches (team,
#: workshop, plant, group), which is the measure of severity the site itself declared.
LEVEL_SEVERITY: dict[str, Severity] = {
    "L1": "Minor",
    "L2": "Moderate",
    "L3": "Severe",
    "L4": "Extreme",
}
#: The hazard model as CAP words: (event, 中文, categories). CAP's categories are coarse; a
#: chemical hazard is filed under CBRNE (its "chemical" letter) besides public safety.
HAZARD_WORDS: dict[str, tuple[str, str, tuple[Category, ...]]] = {
    "toxic_release": ("Toxic gas release", "有毒气体泄漏", ("Safety", "CBRNE")),
    "erg": ("Hazardous materials release", "危险化学品泄漏", ("Safety", "CBRNE")),
    "pool_fire": ("Pool fire", "池火", ("Safety", "Fire")),
    "explosion": ("Explosion", "爆炸", ("Safety", "Fire")),
    "radius": ("Site emergency", "厂区突发事件", ("Safety",)),
    "plan": ("Site emergency", "厂区突发事件", ("Safety",)),
}
#: Events that produce an alert; every other event type gives none.
ALERTING = ("incident.activated", "plan.run.escalated", "plan.run.deescalated", "incident.closed")


@dataclass
class _Incident:
    """What the alerts of one incident need to remember across its events."""

    first: Reference
    sent: list[Reference]
    event: str
    event_zh: str
    categories: tuple[Category, ...]
    plan_id: str
    level: str
    exercise: bool


def alert_identifier(site_id: str, seq: int) -> str:
    """Unique per sender and stable: the same site event always gives the same alert id."""
    return f"rallypoint.{site_id}.{seq}"


def _level_words(level: str) -> tuple[str, str]:
    try:
        return LEVEL_NAMES[Level(level)]
    except ValueError:
        return level, level


def alerts_for_events(
    events: Sequence[LoggedEvent],
    zones_for: Callable[[LoggedEvent], Sequence[tuple[str, BaseGeometry]]],
    *,
    sender: str,
    site_name: str,
    site_tz: str,
    activations: Mapping[str, LoggedEvent] | None = None,
    chinese: bool = True,
) -> list[CapAlert]:
    """The CAP alerts ``events`` call for, in order: one per activation, escalation,
    de-escalation and close; other events give none.

    - ``incident.activated`` -> msgType ``Alert``: the threat zones, severity from the level.
    - ``plan.run.escalated`` / ``plan.run.deescalated`` -> ``Update`` of the incident's
      alerts, with the new level and its severity.
    - ``incident.closed`` -> ``Update`` with responseType ``AllClear``, urgency ``Past``. CAP
      keeps ``Cancel`` for withdrawing messages (one sent in error, say): receivers may simply
      drop a cancelled alert from view, while an all-clear is news people are waiting for, and
      AllClear is the response type CAP 1.2 gives for "the subject event no longer poses a
      threat".

    An Update references the incident's activation alert and every alert of the incident made
    before it in this call. When ``events`` starts after an activation (a caller mapping each
    batch as it is logged), pass the activation event in ``activations`` (incident id ->
    event); an Update whose activation is unknown is skipped with a warning, since CAP gives an
    Update no meaning without the alert it updates.

    An incident is an exercise when its activation's data holds "exercise" or the event's data
    does: its alerts are ``status=Exercise`` and marked "EXERCISE / 演练".

    ``zones_for(event)`` gives the threat zones to draw for that event as (description,
    Polygon or MultiPolygon in WGS84 lon/lat); each becomes one ``<area>``, its description
    prefixed with ``site_name``. Times are written in ``site_tz``. With ``chinese``, each alert
    carries a second ``<info>`` in zh-CN.
    """
    try:
        tz = ZoneInfo(site_tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise _refuse("site_tz", f"unknown IANA time zone {site_tz!r}") from exc
    _token(sender, "sender")
    known: dict[str, _Incident] = {}
    for activation in (activations or {}).values():
        known[str(activation.incident_id)] = _opened(activation, sender, tz)
    out: list[CapAlert] = []
    for logged in events:
        if logged.type not in ALERTING or logged.incident_id is None:
            continue
        incident_id = logged.incident_id
        if logged.type == "incident.activated":
            state = known[incident_id] = _opened(logged, sender, tz)
        elif incident_id in known:
            state = known[incident_id]
        else:
            log.warning(
                "no CAP alert for event %s (%s): incident %s's activation is not known",
                logged.seq,
                logged.type,
                incident_id,
            )
            continue
        state.exercise = state.exercise or "exercise" in logged.data
        alert = _alert_for(logged, state, zones_for(logged), sender, site_name, tz, chinese)
        if logged.type != "incident.activated":
            state.sent.append(Reference(sender, alert.identifier, alert.sent))
        out.append(alert)
    return out


def _opened(activation: LoggedEvent, sender: str, tz: ZoneInfo) -> _Incident:
    request = activation.data.get("request", {})
    hazard = request.get("hazard", {})
    event, event_zh, categories = HAZARD_WORDS.get(str(hazard.get("model")), HAZARD_WORDS["plan"])
    what = hazard.get("substance") or hazard.get("fuel")
    if what:
        event, event_zh = f"{event} ({what})", f"{event_zh}（{what}）"
    first = Reference(
        sender,
        alert_identifier(activation.site_id, activation.seq),
        cap_time(activation.at.astimezone(tz)),
    )
    return _Incident(
        first=first,
        sent=[],
        event=event,
        event_zh=event_zh,
        categories=categories,
        plan_id=str(request.get("plan_id", "")),
        level=str(request.get("level", "")),
        exercise="exercise" in activation.data,
    )


def _alert_for(
    logged: LoggedEvent,
    state: _Incident,
    zones: Sequence[tuple[str, BaseGeometry]],
    sender: str,
    site_name: str,
    tz: ZoneInfo,
    chinese: bool,
) -> CapAlert:
    kind = logged.type
    if kind in ("plan.run.escalated", "plan.run.deescalated"):
        state.level = str(logged.data.get("data", {}).get("to", state.level))
    level_en, level_zh = _level_words(state.level)
    plan = f"plan {state.plan_id}, {state.level} ({level_en} level)"
    plan_zh = f"预案 {state.plan_id}，{state.level}（{level_zh}）"
    severity: Severity = LEVEL_SEVERITY.get(state.level, "Unknown")
    urgency: Urgency = "Immediate"
    responses: tuple[ResponseType, ...] = ("Execute",)
    instruction = "Follow the site emergency plan. Keep out of the threat zones."
    instruction_zh = "按厂区应急预案行动，远离危险区域。"
    if kind == "incident.activated":
        msg_type: MsgType = "Alert"
        headline = f"{state.event} at {site_name}"
        headline_zh = f"{site_name}{state.event_zh}"
        text = f"Emergency response activated: {plan}."
        text_zh = f"已启动应急响应：{plan_zh}。"
    elif kind == "incident.closed":
        msg_type, severity, urgency, responses = "Update", "Minor", "Past", ("AllClear",)
        headline = f"All clear: {state.event} at {site_name} is over"
        headline_zh = f"解除警报：{site_name}{state.event_zh}已结束"
        text = "The incident is closed and the emergency response stood down."
        text_zh = "事件已关闭，应急响应已解除。"
        instruction = "The threat zones are no longer dangerous. Follow site staff's directions."
        instruction_zh = "危险区域已解除，请听从厂区人员指挥。"
    else:
        msg_type = "Update"
        up = kind == "plan.run.escalated"
        headline = (
            f"{state.event} at {site_name}: {'escalated' if up else 'lowered'} to {state.level}"
        )
        headline_zh = f"{site_name}{state.event_zh}：响应{'升级' if up else '降级'}至{state.level}"
        text = f"The response was {'escalated' if up else 'lowered'}: {plan}."
        text_zh = f"应急响应已{'升级' if up else '降级'}：{plan_zh}。"
    identifier = alert_identifier(logged.site_id, logged.seq)
    sent = cap_time(logged.at.astimezone(tz))
    status: Status = "Exercise" if state.exercise else "Actual"
    references = [] if msg_type == "Alert" else [state.first, *state.sent]
    xml = incident_alert(
        sender=sender,
        identifier=identifier,
        sent=sent,
        status=status,
        msg_type=msg_type,
        event=state.event,
        headline=headline,
        description=text,
        instruction=instruction,
        severity=severity,
        urgency=urgency,
        certainty="Observed",
        categories=state.categories,
        response_types=responses,
        references=references,
        incidents=[str(logged.incident_id)],
        sender_name=site_name,
        parameters={"level": state.level},
        areas=[Area(f"{site_name}: {desc}", geometry) for desc, geometry in zones],
        translations=[Translation("zh-CN", state.event_zh, headline_zh, text_zh, instruction_zh)]
        if chinese
        else [],
    )
    return CapAlert(logged.seq, str(logged.incident_id), identifier, sent, status, msg_type, xml)


#: CAP's media type (registered with IANA by OASIS).
CAP_MEDIA_TYPE = "application/cap+xml"


async def post_cap(client: httpx.AsyncClient, url: str, alert: CapAlert) -> tuple[bool, int, str]:
    """Post one alert to the platform, retrying as call-outs do: (delivered, attempts,
    detail)."""
    detail = ""
    for attempt in range(1, DELIVERY_ATTEMPTS + 1):
        try:
            response = await client.post(
                url, content=alert.xml, headers={"Content-Type": CAP_MEDIA_TYPE}, timeout=5.0
            )
            if response.status_code < 300:
                return True, attempt, f"HTTP {response.status_code}"
            detail = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            detail = type(exc).__name__
        if attempt < DELIVERY_ATTEMPTS:
            await asyncio.sleep(FIRST_BACKOFF_S * 2 ** (attempt - 1))
    log.warning("CAP alert %s not delivered: %s", alert.identifier, detail)
    return False, DELIVERY_ATTEMPTS, detail
