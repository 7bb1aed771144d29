"""Substances common in chemical parks, with their toxic and flammable levels of concern.

A threat-zone model needs, for the substance released, a few figures: the concentrations that
mark the edge of each zone (AEGL, ERPG or IDLH, in ppm), and for fire and explosion the lower
flammability limit and the heat of combustion. This module serves them from one table,
``data/substances.csv``, read once.

Every figure in the table carries its source in a column beside it (one source per group of
figures: physical data, AEGL, ERPG, IDLH, LFL, heat of combustion). A blank is a figure that
could not be sourced and is never a guess; ``NR`` in an AEGL column is EPA's "not recommended"
and reads as ``None`` here. The column ``cross_checked`` names the figures that were compared
with a second public source when the table was compiled; the others are transcriptions of the
standard references and should be checked against them before operational use.

Levels of concern follow ALOHA (NOAA/EPA): AEGLs (60 min) by default, ERPGs when a substance
has no AEGLs, and the IDLH as the only, most severe level when it has neither. A level the
scheme lacks for a substance draws no zone; :func:`missing_levels` says which and why, so that
a threat zone can say so in its notes.
"""

from __future__ import annotations

import csv
import functools
import io
from dataclasses import dataclass
from importlib import resources
from typing import Literal

from gis.errors import FieldError, InvalidInput

Scheme = Literal["AEGL", "ERPG", "IDLH"]

_DATA_FILE = "substances.csv"
_NOT_RECOMMENDED = "NR"
_UNSOURCED = "is not in the substance table (no sourced value)"

#: Mean molar mass of dry air, g/mol (U.S. Standard Atmosphere 1976: 28.9644). A gas with a
#: larger molecular weight makes a cloud denser than the air around it.
AIR_MOLECULAR_WEIGHT_G_MOL = 28.96


@dataclass(frozen=True, slots=True)
class Substance:
    """One substance; ppm, vol %, kJ/kg, g/mol and °C; ``None`` where no value is sourced."""

    id: str
    name_en: str
    name_zh: str
    aliases: tuple[str, ...]
    cas: str
    un: str | None
    molecular_weight_g_mol: float | None
    boiling_point_c: float | None
    aegl1_60min_ppm: float | None
    aegl2_60min_ppm: float | None
    aegl3_60min_ppm: float | None
    #: AEGL levels that EPA marked "not recommended" (e.g. ``("AEGL-1",)``).
    aegl_not_recommended: tuple[str, ...]
    erpg1_ppm: float | None
    erpg2_ppm: float | None
    erpg3_ppm: float | None
    idlh_ppm: float | None
    lfl_vol_pct: float | None
    heat_of_combustion_kj_kg: float | None
    #: Source of each group of figures, keyed by group ("physical", "aegl", "erpg", "idlh",
    #: "lfl", "heat_of_combustion"); a group without figures may have no source.
    sources: dict[str, str]
    cross_checked: tuple[str, ...]
    notes: str

    def __hash__(self) -> int:
        # ``sources`` is a dict, so the generated hash would fail; the id is unique.
        return hash(self.id)


@dataclass(frozen=True, slots=True)
class LevelsOfConcern:
    """The levels a threat zone is drawn at, most severe first, and the scheme they come from."""

    scheme: Scheme
    levels: tuple[tuple[str, float], ...]


@dataclass(frozen=True, slots=True)
class MissingLevel:
    """A level of concern (3, 2 or 1) that a scheme does not give for a substance, and why
    (``reason`` reads on from ``label``: "AEGL-1 (60 min)" "is not recommended by EPA ...")."""

    level: int
    label: str
    reason: str


#: Which figures belong to which source column.
SOURCE_GROUPS: dict[str, tuple[str, ...]] = {
    "physical": ("molecular_weight_g_mol", "boiling_point_c"),
    "aegl": ("aegl1_60min_ppm", "aegl2_60min_ppm", "aegl3_60min_ppm", "aegl_not_recommended"),
    "erpg": ("erpg1_ppm", "erpg2_ppm", "erpg3_ppm"),
    "idlh": ("idlh_ppm",),
    "lfl": ("lfl_vol_pct",),
    "heat_of_combustion": ("heat_of_combustion_kj_kg",),
}

_SOURCE_COLUMNS = {
    "physical": "physical_source",
    "aegl": "aegl_source",
    "erpg": "erpg_source",
    "idlh": "idlh_source",
    "lfl": "lfl_source",
    "heat_of_combustion": "heat_of_combustion_source",
}


def _number(text: str) -> float | None:
    text = text.strip()
    if not text or text == _NOT_RECOMMENDED:
        return None
    return float(text)


def _split(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(";") if part.strip())


def _from_row(row: dict[str, str]) -> Substance:
    aegl_nr = tuple(
        f"AEGL-{level}"
        for level in (1, 2, 3)
        if row[f"aegl{level}_60min_ppm"].strip() == _NOT_RECOMMENDED
    )
    return Substance(
        id=row["id"],
        name_en=row["name_en"],
        name_zh=row["name_zh"],
        aliases=_split(row["aliases"]),
        cas=row["cas"],
        un=row["un"] or None,
        molecular_weight_g_mol=_number(row["mw_g_mol"]),
        boiling_point_c=_number(row["boiling_point_c"]),
        aegl1_60min_ppm=_number(row["aegl1_60min_ppm"]),
        aegl2_60min_ppm=_number(row["aegl2_60min_ppm"]),
        aegl3_60min_ppm=_number(row["aegl3_60min_ppm"]),
        aegl_not_recommended=aegl_nr,
        erpg1_ppm=_number(row["erpg1_ppm"]),
        erpg2_ppm=_number(row["erpg2_ppm"]),
        erpg3_ppm=_number(row["erpg3_ppm"]),
        idlh_ppm=_number(row["idlh_ppm"]),
        lfl_vol_pct=_number(row["lfl_vol_pct"]),
        heat_of_combustion_kj_kg=_number(row["heat_of_combustion_kj_kg"]),
        sources={
            group: row[column].strip()
            for group, column in _SOURCE_COLUMNS.items()
            if row[column].strip()
        },
        cross_checked=_split(row["cross_checked"]),
        notes=row["notes"],
    )


@functools.cache
def all_substances() -> tuple[Substance, ...]:
    """Every substance in the table, in table order."""
    text = resources.files("gis.hazards").joinpath("data", _DATA_FILE).read_text("utf-8")
    return tuple(_from_row(row) for row in csv.DictReader(io.StringIO(text)))


def _normalise(key: str) -> str:
    key = key.strip().casefold()
    # "UN1017", "UN 1017" and "1017" name the same entry.
    if key.startswith("un") and key[2:].strip().isdigit():
        return key[2:].strip()
    return key


@functools.cache
def _index() -> dict[str, Substance]:
    index: dict[str, Substance] = {}
    for substance in all_substances():
        keys = [substance.id, substance.cas, substance.name_en, substance.name_zh]
        keys += list(substance.aliases)
        if substance.un:
            keys.append(substance.un)
        for key in keys:
            # The first substance to claim a key keeps it, so table order settles ties.
            index.setdefault(_normalise(key), substance)
    return index


def get_substance(key: str) -> Substance:
    """The substance named by slug, CAS number, UN number or (case-insensitive) name."""
    if not isinstance(key, str):
        raise InvalidInput(
            "the substance must be named by a string",
            errors=[FieldError("substance", "a name, slug, CAS or UN number as text")],
        )
    found = _index().get(_normalise(key))
    if found is None:
        known = ", ".join(s.id for s in all_substances())
        raise InvalidInput(
            f"Unknown substance '{key}'.",
            errors=[FieldError("substance", f"unknown substance '{key}'; known: {known}")],
        )
    return found


def levels_of_concern(
    substance: Substance, scheme: Scheme = "AEGL"
) -> tuple[tuple[str, float], ...]:
    """``(label, ppm)`` of one scheme, level 3 (most severe) first; undefined levels left out."""
    if scheme == "AEGL":
        candidates = [
            ("AEGL-3 (60 min)", substance.aegl3_60min_ppm),
            ("AEGL-2 (60 min)", substance.aegl2_60min_ppm),
            ("AEGL-1 (60 min)", substance.aegl1_60min_ppm),
        ]
    elif scheme == "ERPG":
        candidates = [
            ("ERPG-3", substance.erpg3_ppm),
            ("ERPG-2", substance.erpg2_ppm),
            ("ERPG-1", substance.erpg1_ppm),
        ]
    else:
        candidates = [("IDLH", substance.idlh_ppm)]
    return tuple((label, ppm) for label, ppm in candidates if ppm is not None)


def missing_levels(substance: Substance, scheme: Scheme) -> tuple[MissingLevel, ...]:
    """The levels 3, 2 and 1 that ``scheme`` leaves without a value for ``substance``.

    A level EPA marked "not recommended" says so; any other gap is a figure the table could
    not source. The IDLH is a single value, drawn as level 3: levels 2 and 1 are always missing.
    """
    if scheme == "IDLH":
        gaps = [MissingLevel(3, "IDLH", _UNSOURCED)] if substance.idlh_ppm is None else []
        single = "is a single level, drawn as level 3"
        return (*gaps, *(MissingLevel(lv, "the IDLH", single) for lv in (2, 1)))
    present = {label for label, _ in levels_of_concern(substance, scheme)}
    missing = []
    for level in (3, 2, 1):
        name = f"{scheme}-{level}"
        label = f"{name} (60 min)" if scheme == "AEGL" else name
        if label not in present:
            not_recommended = name in substance.aegl_not_recommended
            reason = (
                "is not recommended by EPA (insufficient data)" if not_recommended else _UNSOURCED
            )
            missing.append(MissingLevel(level, label, reason))
    return tuple(missing)


def heavier_than_air(substance: Substance) -> bool | None:
    """Whether the gas is denser than air by molecular weight; ``None`` if the weight is unknown.

    Molecular weight alone: a cold or aerosol cloud (a flashing liquefied gas) can be denser
    than air even for a lighter gas.
    """
    weight = substance.molecular_weight_g_mol
    return None if weight is None else weight > AIR_MOLECULAR_WEIGHT_G_MOL


def default_levels_of_concern(substance: Substance) -> LevelsOfConcern:
    """ALOHA's default: AEGLs, else ERPGs, else the IDLH as the single level 3."""
    for scheme in ("AEGL", "ERPG", "IDLH"):
        levels = levels_of_concern(substance, scheme)
        if levels:
            return LevelsOfConcern(scheme=scheme, levels=levels)
    raise InvalidInput(
        f"No toxic level of concern is recorded for {substance.name_en}.",
        errors=[
            FieldError(
                "substance",
                f"'{substance.id}' has no AEGL, ERPG or IDLH; model it for fire or explosion",
            )
        ],
    )
