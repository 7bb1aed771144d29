"""A detector's own instrument range and silence limit, where its class default does not fit
(a 0-20 ppm chlorine transmitter where the class says 0-10, a gateway that reports every
5 minutes). Each field left out (or null) keeps the class default
(:func:`command.monitoring.health.rules_for`)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gis.errors import FieldError, InvalidInput
from gis.storage.tables import DetectorHealthSettingsRow

if TYPE_CHECKING:
    from command.monitoring.health import HealthRules

FIELDS = ("range_low", "full_scale", "stale_after_s")
MIN_STALE_S = 5.0
MAX_STALE_S = 86_400.0
MAX_MAGNITUDE = 1e9


@dataclass(frozen=True)
class HealthSettings:
    range_low: float | None = None
    full_scale: float | None = None
    stale_after_s: float | None = None

    def as_dict(self) -> dict[str, float | None]:
        return dataclasses.asdict(self)


def apply(rules: HealthRules, settings: HealthSettings | None) -> HealthRules:
    """The class's ``rules`` with a detector's own settings over them: a new full scale also
    moves the reporting step (1 % of the span) and, unless given, the negative zero-drift
    limit (-2.5 % of the span below the clean-air value)."""
    if settings is None:
        return rules
    out = rules
    if settings.full_scale is not None:
        clean = rules.clean_value or 0.0
        out = dataclasses.replace(
            out,
            full_scale=settings.full_scale,
            resolution=0.01 * (settings.full_scale - clean),
            range_low=clean - 0.025 * (settings.full_scale - clean),
        )
    if settings.range_low is not None:
        out = dataclasses.replace(out, range_low=settings.range_low)
    if settings.stale_after_s is not None:
        out = dataclasses.replace(out, stale_after_s=settings.stale_after_s)
    return out


def parse_settings(body: Any, defaults: HealthRules) -> HealthSettings:
    """Settings from a request body, each field checked against the others and the class
    defaults: :class:`InvalidInput` names each bad one, and nothing is taken."""
    if not isinstance(body, dict):
        raise InvalidInput(
            "send the settings as an object", errors=[FieldError("body", "an object")]
        )
    errors = [
        FieldError(str(k)[:64] or "body", f"not a setting: {', '.join(FIELDS)}")
        for k in sorted(str(k) for k in set(body) - set(FIELDS))[:20]
    ]
    values: dict[str, float | None] = {}
    for name in FIELDS:
        value: Any = body.get(name)
        if value is None:
            values[name] = None
        elif not _number(value) or abs(value) > MAX_MAGNITUDE:
            errors.append(FieldError(name, "a finite number, or null for the class default"))
        else:
            values[name] = float(value)
    stale = values.get("stale_after_s")
    if stale is not None and not MIN_STALE_S <= stale <= MAX_STALE_S:
        errors.append(FieldError("stale_after_s", f"{MIN_STALE_S:g} to {MAX_STALE_S:g} seconds"))
    full = values.get("full_scale")
    low = values.get("range_low")
    clean = defaults.clean_value or 0.0
    if full is not None and full <= clean:
        errors.append(FieldError("full_scale", f"above the clean-air value, {clean:g}"))
    top = full if full is not None else defaults.full_scale
    if low is not None and top is not None and low >= top:
        errors.append(FieldError("range_low", f"below the full scale, {top:g}"))
    if low is not None and low > clean:
        errors.append(FieldError("range_low", f"at most the clean-air value, {clean:g}"))
    if errors:
        raise InvalidInput(f"{len(errors)} bad setting(s); nothing was changed", errors=errors)
    return HealthSettings(**values)


def load(session: Session, site_id: str | None = None) -> dict[str, dict[str, HealthSettings]]:
    """site -> sensor -> its own settings."""
    query = select(DetectorHealthSettingsRow)
    if site_id is not None:
        query = query.where(DetectorHealthSettingsRow.site_id == site_id)
    out: dict[str, dict[str, HealthSettings]] = {}
    for row in session.scalars(query):
        out.setdefault(row.site_id, {})[row.sensor_id] = HealthSettings(
            row.range_low, row.full_scale, row.stale_after_s
        )
    return out


def store(
    session: Session,
    site_id: str,
    sensor_id: str,
    settings: HealthSettings,
    *,
    actor: str,
    now: datetime,
) -> None:
    """Keep a detector's settings (all defaults: its row goes)."""
    row = session.get(DetectorHealthSettingsRow, (site_id, sensor_id))
    if settings == HealthSettings():
        if row is not None:
            session.delete(row)
        session.flush()
        return
    if row is None:
        row = DetectorHealthSettingsRow(site_id=site_id, sensor_id=sensor_id)
        session.add(row)
    row.range_low = settings.range_low
    row.full_scale = settings.full_scale
    row.stale_after_s = settings.stale_after_s
    row.updated_at = now
    row.updated_by = actor
    session.flush()


def rules_dict(rules: HealthRules) -> dict[str, Any]:
    return {
        "stale_after_s": rules.stale_after_s,
        "range_low": rules.range_low,
        "full_scale": rules.full_scale,
        "resolution": rules.resolution,
        "clean_value": rules.clean_value,
        "stuck_after_s": rules.stuck_after_s,
        "stuck_readings": rules.stuck_readings,
        "drift_pct_per_day": rules.drift_pct_per_day,
        "drift_min_hours": rules.drift_min_hours,
    }


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
