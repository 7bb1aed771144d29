"""ERG Table 1 and Table 3 lookups: stored figures, the Table 3 rules, refusals, provenance.

Source of every expected figure: ERG 2024 (US DOT/PHMSA), Table 1 (printed pages 290-291) and
Table 3 (printed pages 341-343), as two independent extractions of the official PDF give them
(see the provenance in gis/hazards/data/erg2024.json). Tolerance: none; the ERG prints metres
and tenths of a kilometre, and the lookups return them exactly.
"""

from __future__ import annotations

import dataclasses

import pytest

from gis.errors import InvalidInput, NotFound
from gis.hazards.erg import (
    WINDS,
    ErgDistances,
    SpillDistances,
    all_entries,
    erg_entry,
    protective_distances,
)

REQUIRED_UN = ["1017", "1005", "1053", "1079", "1050", "1051", "1076"]
TABLE3_UN = {"1005", "1017", "1040", "1050", "1052", "1079"}


def test_the_required_materials_are_held() -> None:
    held = {e.un for e in all_entries()}
    assert set(REQUIRED_UN) <= held


def test_chlorine_small_spill() -> None:
    # ERG 2024 Table 1, UN1017 chlorine (guide 124), small spill: isolate 60 m,
    # protect 0.3 km by day, 1.5 km by night.
    entry = erg_entry("1017")
    assert (entry.name, entry.guide, entry.edition) == ("Chlorine", "124", "ERG 2024")
    day = protective_distances(entry, spill="small", daytime=True)
    night = protective_distances(entry, spill="small", daytime=False)
    assert (day.isolate_m, day.protect_m) == (60.0, 300.0)
    assert (night.isolate_m, night.protect_m) == (60.0, 1500.0)
    assert (day.edition, day.table) == ("ERG 2024", "Table 1")


def test_ammonia_small_spill() -> None:
    # ERG 2024 Table 1, UN1005 ammonia, anhydrous (guide 125), small spill: 30 m, 0.1 / 0.2 km.
    entry = erg_entry("ammonia")
    night = protective_distances(entry, spill="small", daytime=False)
    assert (night.isolate_m, night.protect_m) == (30.0, 200.0)


def test_hydrogen_sulfide_large_spill_is_in_table_1() -> None:
    # ERG 2024 Table 1, UN1053 hydrogen sulfide (guide 117), large spill: 400 m, 2.4 / 6.3 km.
    entry = erg_entry("UN1053")
    assert entry.table3 is None
    night = protective_distances(entry, spill="large", daytime=False)
    assert night == ErgDistances(400.0, 6300.0, "ERG 2024", "Table 1", entry.verification)


def test_chlorine_large_spill_from_ton_cylinders() -> None:
    # ERG 2024 Table 3, chlorine, multiple small cylinders or single ton cylinder: isolate 150 m;
    # by day 1.3 / 0.7 / 0.5 km, by night 2.4 / 1.2 / 0.6 km for low / moderate / high wind.
    entry = erg_entry("chlorine")
    got = protective_distances(
        entry,
        spill="large",
        daytime=False,
        container="Multiple small cylinders or single ton cylinder",
        wind="low",
    )
    assert (got.isolate_m, got.protect_m, got.table) == (150.0, 2400.0, "Table 3")
    high_day = protective_distances(
        entry,
        spill="large",
        daytime=True,
        container="multiple_small_cylinders_or_single_ton_cylinder",
        wind="high",
    )
    assert high_day.protect_m == 500.0


def test_chlorine_highway_tank_truck_at_night_in_low_wind() -> None:
    # ERG 2024 Table 3, chlorine, highway tank truck or trailer, night, low wind: 600 m, 6.4 km.
    got = protective_distances(
        erg_entry("1017"),
        spill="large",
        daytime=False,
        container="highway tank truck or trailer",
        wind="low",
    )
    assert (got.isolate_m, got.protect_m) == (600.0, 6400.0)


@pytest.mark.parametrize("key", ["7782-50-5", "Chlorine", "氯", "UN 1017", "un1017"])
def test_lookup_by_name_cas_and_un(key: str) -> None:
    assert erg_entry(key).un == "1017"


def test_an_unknown_substance_is_refused() -> None:
    for key in ("xyz", "9999", "methane"):
        with pytest.raises(InvalidInput) as caught:
            erg_entry(key)
        assert caught.value.errors[0].field == "substance"
        assert f"unknown substance '{key}'" in caught.value.errors[0].reason


def test_a_large_table_3_spill_needs_container_and_wind() -> None:
    with pytest.raises(InvalidInput) as caught:
        protective_distances(erg_entry("1005"), spill="large", daytime=True)
    fields = {e.field: e.reason for e in caught.value.errors}
    assert set(fields) == {"container", "wind"}
    assert "agricultural_nurse_tank" in fields["container"]
    assert "low, moderate, high" in fields["wind"]


def test_an_unknown_container_lists_the_allowed_ones() -> None:
    with pytest.raises(InvalidInput) as caught:
        protective_distances(
            erg_entry("1017"), spill="large", daytime=True, container="barge", wind="low"
        )
    (error,) = caught.value.errors
    assert error.field == "container"
    assert "multiple_ton_cylinders" in error.reason


@pytest.mark.parametrize(
    ("un", "small", "large"),
    [
        # UN, small (isolate m, day km, night km), large (the same, or None: see Table 3)
        ("1017", (60, 0.3, 1.5), None),
        ("1005", (30, 0.1, 0.2), None),
        ("1053", (30, 0.1, 0.5), (400, 2.4, 6.3)),
        ("1079", (100, 0.6, 2.6), None),
        ("1050", (30, 0.1, 0.3), None),
        ("1051", (60, 0.2, 0.7), (200, 0.7, 1.8)),
        ("1076", (100, 0.6, 2.5), (500, 3.0, 9.5)),
        ("1040", (30, 0.1, 0.2), None),
        ("1052", (30, 0.1, 0.5), None),
        ("1016", (30, 0.1, 0.2), (200, 1.2, 3.9)),
    ],
)
def test_table_1_entries(
    un: str, small: tuple[float, float, float], large: tuple[float, float, float] | None
) -> None:
    # ERG 2024 Table 1, printed pages 290-291.
    entry = erg_entry(un)
    for spill, row in (("small", small), ("large", large)):
        if row is None:
            assert entry.table3 is not None
            continue
        day = protective_distances(entry, spill=spill, daytime=True)  # type: ignore[arg-type]
        night = protective_distances(entry, spill=spill, daytime=False)  # type: ignore[arg-type]
        assert (day.isolate_m, day.protect_m, night.protect_m) == (
            row[0],
            round(row[1] * 1000),
            round(row[2] * 1000),
        )
        assert day.table == "Table 1" and not day.at_least


def test_phosgene_and_sulfur_dioxide_guides() -> None:
    # ERG 2024 Table 1: phosgene UN1076 and sulfur dioxide UN1079 are both guide 125;
    # hydrogen cyanide is 117P.
    assert erg_entry("phosgene").guide == "125"
    assert erg_entry("UN1079").guide == "125"
    assert erg_entry("1051").guide == "117P"


TABLE_3_ROWS = [
    # ERG 2024 Table 3: UN, container, isolate m, day low/moderate/high km, night the same.
    ("1005", "rail_tank_car", 300, (1.6, 1.2, 1.0), (4.1, 2.1, 1.3)),
    ("1005", "agricultural_nurse_tank", 60, (0.5, 0.3, 0.3), (1.4, 0.3, 0.3)),
    ("1017", "rail_tank_car", 1000, (9.6, 6.3, 5.1), (11.0, 8.9, 6.5)),
    ("1017", "multiple_ton_cylinders", 300, (1.9, 1.3, 1.0), (3.5, 2.3, 1.3)),
    ("1040", "highway_tank_truck_or_trailer", 100, (0.9, 0.5, 0.4), (2.0, 0.7, 0.4)),
    ("1050", "rail_tank_car", 500, (3.7, 2.0, 1.7), (9.7, 3.3, 2.2)),
    ("1052", "highway_tank_truck_or_trailer", 200, (2.0, 1.0, 0.9), (3.6, 1.5, 0.9)),
    (
        "1079",
        "multiple_small_cylinders_or_single_ton_cylinder",
        200,
        (3.1, 1.5, 1.1),
        (5.6, 2.4, 1.5),
    ),
]


@pytest.mark.parametrize(("un", "container", "isolate", "day", "night"), TABLE_3_ROWS)
def test_table_3_rows(
    un: str,
    container: str,
    isolate: float,
    day: tuple[float, float, float],
    night: tuple[float, float, float],
) -> None:
    entry = erg_entry(un)
    for daytime, expected in ((True, day), (False, night)):
        for wind, km in zip(WINDS, expected, strict=True):
            got = protective_distances(
                entry, spill="large", daytime=daytime, container=container, wind=wind
            )
            assert (got.isolate_m, got.protect_m, got.table) == (
                isolate,
                round(km * 1000),
                "Table 3",
            )


def test_every_table_3_cell_is_held() -> None:
    # ERG 2024 Table 3 lists 22 containers for its six gases (ammonia, chlorine, hydrogen
    # chloride and sulfur dioxide 4 each; ethylene oxide and hydrogen fluoride 3): all held.
    rows = [
        row
        for entry in all_entries()
        if entry.table3 is not None
        for row in entry.table3.containers.values()
    ]
    assert len(rows) == 22
    assert all(row is not None and None not in row.day_km.values() for row in rows)
    assert all(row is not None and None not in row.night_km.values() for row in rows)


def test_distances_printed_with_a_plus_say_so() -> None:
    # ERG 2024 Table 3: chlorine rail tank car, night, low wind is "11.0+ km"; sulfur dioxide's
    # rail tank car is "11.0+" except in high wind.
    chlorine = erg_entry("1017")
    night = protective_distances(
        chlorine, spill="large", daytime=False, container="rail tank car", wind="low"
    )
    assert (night.protect_m, night.at_least) == (11_000.0, True)
    moderate = protective_distances(
        chlorine, spill="large", daytime=False, container="rail tank car", wind="moderate"
    )
    assert not moderate.at_least
    so2 = erg_entry("1079")
    flags = [
        protective_distances(
            so2, spill="large", daytime=True, container="rail tank car", wind=w
        ).at_least
        for w in ("low", "moderate", "high")
    ]
    assert flags == [True, True, False]


def test_a_figure_not_held_is_refused_not_estimated() -> None:
    entry = erg_entry("1053")
    hollow = dataclasses.replace(entry, small=SpillDistances(30, None, None))
    with pytest.raises(NotFound) as caught:
        protective_distances(hollow, spill="small", daytime=True)
    assert "not estimated" in caught.value.detail


def test_table_3_materials_refer_large_spills_to_table_3() -> None:
    for entry in all_entries():
        assert (entry.table3 is not None) == (entry.un in TABLE3_UN and entry.large is None)
    assert {e.un for e in all_entries() if e.table3 is not None} == TABLE3_UN


def test_every_record_names_edition_table_and_source() -> None:
    for entry in all_entries():
        assert entry.edition == "ERG 2024"
        assert entry.table == "Table 1"
        assert entry.source and entry.verification
        if entry.table3 is not None:
            assert entry.table3.source and entry.table3.verification


def test_stored_distances_are_positive() -> None:
    for entry in all_entries():
        for row in (entry.small, entry.large):
            if row is not None:
                for value in (row.isolate_m, row.protect_day_km, row.protect_night_km):
                    assert value is None or value > 0
        if entry.table3 is not None:
            for row3 in entry.table3.containers.values():
                if row3 is not None:
                    values = [row3.isolate_m, *row3.day_km.values(), *row3.night_km.values()]
                    assert all(v is None or v > 0 for v in values)
                    assert set(row3.day_km) == set(row3.night_km) == {"low", "moderate", "high"}
