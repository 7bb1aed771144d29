"""Device events from the field: a wristband's SOS button or fall detector, a tag read at a
gate's NFC reader, a low battery.

They arrive over MQTT (``command.mqtt``) or ``POST /api/sites/{site}/device-events``, are
checked here, row by row, and taken whole or not at all by ``CommandPost.device_events``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gis.errors import FieldError, InvalidInput

#: What a device can report.
#: - ``sos``: the wearer pressed the SOS button;
#: - ``fall``: the device detected a fall (its own man-down detection);
#: - ``battery_low``: the device will stop reporting soon;
#: - ``tag_read``: a reader at a zone's gate read a person's helmet or badge (``zone_id``), who
#:   asks to enter.
KINDS = ("sos", "fall", "battery_low", "tag_read")
MAX_EVENTS = 1_000


@dataclass(frozen=True)
class DeviceEvent:
    device_id: str
    kind: str
    person_id: str | None = None
    zone_id: str | None = None
    observed_at: datetime | None = None
    lonlat: tuple[float, float] | None = None
    detail: dict[str, Any] = field(default_factory=dict)


def parse_device_events(body: Any, *, limit: int = MAX_EVENTS) -> list[DeviceEvent]:
    """``{"events": [{"device_id", "kind", "person_id"?, "zone_id"?, "observed_at"?, "lon"?,
    "lat"?, "detail"?}, ...]}``, every row checked; :class:`InvalidInput` names each bad field
    and none is taken."""
    rows = body.get("events") if isinstance(body, dict) else None
    if not isinstance(rows, list) or not 1 <= len(rows) <= limit:
        raise InvalidInput(
            "send device events as a list", errors=[FieldError("events", f"1 to {limit} events")]
        )
    out: list[DeviceEvent] = []
    errors: list[FieldError] = []
    for i, row in enumerate(rows):
        where = f"events[{i}]"
        if not isinstance(row, dict):
            errors.append(FieldError(where, "an object"))
            continue
        bad: list[FieldError] = []
        device = row.get("device_id")
        kind = row.get("kind")
        person = row.get("person_id")
        zone = row.get("zone_id")
        if not _text(device):
            bad.append(FieldError(f"{where}.device_id", "a device id"))
        if kind not in KINDS:
            bad.append(FieldError(f"{where}.kind", f"one of {', '.join(KINDS)}"))
        if person is not None and not _text(person):
            bad.append(FieldError(f"{where}.person_id", "a person id"))
        if kind in ("sos", "fall", "tag_read") and person is None:
            bad.append(FieldError(f"{where}.person_id", f"a {kind} names the person"))
        if zone is not None and not _text(zone):
            bad.append(FieldError(f"{where}.zone_id", "a zone id"))
        if kind == "tag_read" and zone is None:
            bad.append(FieldError(f"{where}.zone_id", "a tag read names the zone of the reader"))
        observed = _time(row.get("observed_at"))
        if observed is False:
            bad.append(FieldError(f"{where}.observed_at", "an ISO 8601 time with a UTC offset"))
        lon: Any = row.get("lon")
        lat: Any = row.get("lat")
        lonlat: tuple[float, float] | None = None
        if lon is not None or lat is not None:
            if _number(lon) and _number(lat) and -180 <= lon <= 180 and -90 <= lat <= 90:
                lonlat = (float(lon), float(lat))
            else:
                bad.append(FieldError(where, "lon -180..180 and lat -90..90, both or neither"))
        detail = row.get("detail", {})
        if not isinstance(detail, dict):
            bad.append(FieldError(f"{where}.detail", "an object"))
        errors += bad
        if not bad:
            out.append(
                DeviceEvent(
                    str(device),
                    str(kind),
                    None if person is None else str(person),
                    None if zone is None else str(zone),
                    observed if isinstance(observed, datetime) else None,
                    lonlat,
                    dict(detail),
                )
            )
    if errors:
        raise InvalidInput(f"{len(errors)} bad device event(s); none was taken", errors=errors)
    return out


def _text(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 64


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _time(value: object) -> datetime | bool | None:
    """None when not given, False when not a time with an offset."""
    if value is None:
        return None
    if not isinstance(value, str):
        return False
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        return False
    return at if at.tzinfo is not None else False
