"""Initial isolation and protective action distances from the Emergency Response Guidebook.

The ERG (US DOT/PHMSA, Transport Canada, SCT Mexico) gives first responders two distances for a
spill of a toxic-by-inhalation material: an **isolation** radius around the spill, and a
**protective action** distance downwind, in which people are evacuated or sheltered. Table 1
gives them for small (≤ 208 L) and large spills, by day and by night. For six common gases
Table 1 sends large spills to Table 3, which sets them by transport container and wind speed
(low < 10 km/h, moderate 10 to 20 km/h, high > 20 km/h).

The figures live in ``data/erg2024.json``; each record names its edition, table, page and
source, and says how well it is verified. They were transcribed from two independent
extractions of the official ERG 2024 PDF that agree on every Table 1 figure, and Table 3 was
compared with a third, separate transcription; the printed guidebook itself could not be
consulted. Some Table 3 distances are printed with a "+" (they can be larger in certain
atmospheric conditions): :attr:`ErgDistances.at_least` says so. A figure the file does not
hold is ``null``, and this module refuses to make it up: asking for one raises
:class:`gis.errors.NotFound`.

This module returns distances only; the caller draws the isolation circle and the downwind
protective-action square.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

from gis.errors import FieldError, InvalidInput, NotFound

Spill = Literal["small", "large"]
Wind = Literal["low", "moderate", "high"]

_DATA_FILE = "erg2024.json"
WINDS: tuple[Wind, ...] = ("low", "moderate", "high")


@dataclass(frozen=True, slots=True)
class SpillDistances:
    """One row of Table 1; ``None`` where the figure could not be sourced."""

    isolate_m: float | None
    protect_day_km: float | None
    protect_night_km: float | None


@dataclass(frozen=True, slots=True)
class ContainerDistances:
    """One container row of Table 3: isolation, then protective distances by wind (km)."""

    isolate_m: float | None
    day_km: dict[str, float | None]
    night_km: dict[str, float | None]
    #: The cells ("night.low"...) the ERG prints with "+": they can be larger in some weather.
    at_least: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Table3Entry:
    """Table 3 for one material: every container the ERG lists, ``None`` where unsourced."""

    containers: dict[str, ContainerDistances | None]
    page: int | None
    source: str
    verification: str


@dataclass(frozen=True, slots=True)
class ErgEntry:
    """A Table 1 entry. ``large`` is ``None`` when large spills are referred to Table 3."""

    un: str
    name: str
    guide: str
    edition: str
    table: str
    page: int | None
    small: SpillDistances | None
    large: SpillDistances | None
    table3: Table3Entry | None
    source: str
    verification: str

    def __hash__(self) -> int:
        # Table 3 holds dicts; the UN number identifies an entry here.
        return hash(self.un)


@dataclass(frozen=True, slots=True)
class ErgDistances:
    """What the lead draws: an isolation radius and a downwind distance, both in metres."""

    isolate_m: float
    protect_m: float
    edition: str
    table: str
    verification: str
    #: The ERG prints the protective distance with "+": it can be larger in some weather.
    at_least: bool = False


def _spill(raw: Any) -> SpillDistances | None:
    if not isinstance(raw, dict):
        return None
    return SpillDistances(raw["isolate_m"], raw["protect_day_km"], raw["protect_night_km"])


def _container(raw: Any) -> ContainerDistances | None:
    if raw is None:
        return None
    return ContainerDistances(
        raw["isolate_m"],
        dict(raw["day"]),
        dict(raw["night"]),
        frozenset(raw.get("at_least", ())),
    )


@functools.cache
def _load() -> dict[str, Any]:
    text = resources.files("gis.hazards").joinpath("data", _DATA_FILE).read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


@functools.cache
def all_entries() -> tuple[ErgEntry, ...]:
    """Every Table 1 entry held, in file order."""
    data = _load()
    table3 = {
        raw["un"]: Table3Entry(
            containers={name: _container(row) for name, row in raw["containers"].items()},
            page=raw["page"],
            source=raw["source"],
            verification=raw["verification"],
        )
        for raw in data["table3"]
    }
    return tuple(
        ErgEntry(
            un=raw["un"],
            name=raw["name"],
            guide=raw["guide"],
            edition=raw["edition"],
            table=raw["table"],
            page=raw["page"],
            small=_spill(raw["small"]),
            large=_spill(raw["large"]),
            table3=table3.get(raw["un"]) if raw["large"] == "Table 3" else None,
            source=raw["source"],
            verification=raw["verification"],
        )
        for raw in data["table1"]
    )


def _unknown(key: str) -> InvalidInput:
    known = ", ".join(f"UN{e.un} {e.name}" for e in all_entries())
    return InvalidInput(
        f"No ERG entry for '{key}'.",
        errors=[FieldError("substance", f"unknown substance '{key}'; known: {known}")],
    )


def erg_entry(substance_or_un: str) -> ErgEntry:
    """The entry for a UN number ("1017", "UN1017") or a substance key of ``substances``."""
    if not isinstance(substance_or_un, str):
        raise InvalidInput(
            "the substance must be named by a string",
            errors=[FieldError("substance", "a UN number or a substance name as text")],
        )
    key = substance_or_un.strip()
    digits = key[2:].strip() if key.upper().startswith("UN") else key
    by_un = {e.un: e for e in all_entries()}
    if digits in by_un:
        return by_un[digits]
    # Imported here: substances is only needed when the key is a name, slug or CAS number.
    from gis.hazards.substances import get_substance

    try:
        substance = get_substance(key)
    except InvalidInput:
        raise _unknown(substance_or_un) from None
    if substance.un in by_un:
        return by_un[substance.un]
    raise _unknown(substance_or_un)


def _container_key(text: str) -> str:
    return "_".join(text.strip().casefold().replace("-", " ").split())


def _metres(km: float) -> float:
    # The ERG gives kilometres to one decimal; rounding to the metre removes float noise.
    return float(round(km * 1000.0))


def _missing(entry: ErgEntry, what: str) -> NotFound:
    return NotFound(
        f"ERG figure not held for UN{entry.un} {entry.name}: {what}. It could not be sourced "
        f"from {entry.edition} and is not estimated; consult the printed guidebook."
    )


def protective_distances(
    entry: ErgEntry,
    *,
    spill: Spill,
    daytime: bool,
    container: str | None = None,
    wind: Wind | None = None,
) -> ErgDistances:
    """Isolation radius and downwind protective distance for one spill, in metres."""
    if spill not in ("small", "large"):
        raise InvalidInput(
            f"unknown spill size {spill!r}", errors=[FieldError("spill", "small or large")]
        )
    if not isinstance(daytime, bool):
        raise InvalidInput(
            "daytime must be true or false", errors=[FieldError("daytime", "true or false")]
        )
    if container is not None and not isinstance(container, str):
        raise InvalidInput(
            "the container must be named", errors=[FieldError("container", "a container name")]
        )
    period = "day" if daytime else "night"
    if spill == "small" or entry.table3 is None:
        row = entry.small if spill == "small" else entry.large
        if row is None:
            raise _missing(entry, f"{spill} spill")
        protect_km = row.protect_day_km if daytime else row.protect_night_km
        if row.isolate_m is None or protect_km is None:
            raise _missing(entry, f"{spill} spill, {period}")
        return ErgDistances(
            float(row.isolate_m), _metres(protect_km), entry.edition, "Table 1", entry.verification
        )

    table3 = entry.table3
    allowed = ", ".join(table3.containers)
    key = None if container is None else _container_key(container)
    errors = []
    if key is None:
        errors.append(FieldError("container", f"required for a large spill; one of: {allowed}"))
    elif key not in table3.containers:
        errors.append(
            FieldError("container", f"unknown container '{container}'; one of: {allowed}")
        )
    if wind is None:
        errors.append(FieldError("wind", f"required for a large spill; one of: {', '.join(WINDS)}"))
    elif wind not in WINDS:
        errors.append(FieldError("wind", f"unknown wind '{wind}'; one of: {', '.join(WINDS)}"))
    if errors or key is None or wind is None:
        raise InvalidInput(
            f"A large spill of UN{entry.un} {entry.name} is looked up in ERG Table 3, "
            "by transport container and wind speed.",
            errors=errors,
        )
    row3 = table3.containers[key]
    protect = None if row3 is None else (row3.day_km if daytime else row3.night_km)[wind]
    if row3 is None or row3.isolate_m is None or protect is None:
        raise _missing(entry, f"large spill, {key}, {period}, {wind} wind")
    return ErgDistances(
        float(row3.isolate_m),
        _metres(protect),
        entry.edition,
        "Table 3",
        table3.verification,
        at_least=f"{period}.{wind}" in row3.at_least,
    )
