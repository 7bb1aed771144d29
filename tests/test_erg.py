"""ERG Table 1 and Table 3 lookups: stored figures, the Table 3 rules, refusals, provenance.

The expected figures are those of the public ERG 2024 transcriptions the data file cites; the
guidebook itself was not available when they were compiled (see gis/hazards/data/erg2024.json).
"""

from __future__ import annotations

import pytest

from gis.errors import InvalidInput, NotFound
from gis.hazards.erg import ErgDistances, all_entries, erg_entry, protective_distances

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


def test_a_figure_that_could_not_be_sourced_is_refused_not_estimated() -> None:
    # Sulfur dioxide's small-spill distances and chlorine's rail-car row are not held.
    with pytest.raises(NotFound):
        protective_distances(erg_entry("1079"), spill="small", daytime=True)
    with pytest.raises(NotFound):
        protective_distances(
            erg_entry("1017"), spill="large", daytime=True, container="rail tank car", wind="low"
        )


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
