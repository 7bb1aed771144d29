"""The substance table: published values, lookups, ALOHA's level-of-concern fallback, sources."""

from __future__ import annotations

import dataclasses

import pytest

from gis.errors import InvalidInput
from gis.hazards.substances import (
    SOURCE_GROUPS,
    LevelsOfConcern,
    MissingLevel,
    Scheme,
    Substance,
    all_substances,
    default_levels_of_concern,
    get_substance,
    heavier_than_air,
    levels_of_concern,
    missing_levels,
)

REQUIRED = [
    "chlorine",
    "ammonia",
    "hydrogen-sulfide",
    "sulfur-dioxide",
    "hydrogen-chloride",
    "hydrogen-cyanide",
    "phosgene",
    "benzene",
    "toluene",
    "methanol",
    "formaldehyde",
    "ethylene-oxide",
    "acrylonitrile",
    "propane",
    "hydrogen",
    "hydrogen-fluoride",
    "carbon-monoxide",
    "methane",
    "ethylene",
    "nitrogen-dioxide",
    "styrene",
]


def test_the_table_holds_the_substances_of_a_chemical_park() -> None:
    ids = [s.id for s in all_substances()]
    assert len(ids) >= 18
    assert set(REQUIRED) <= set(ids)
    assert len(ids) == len(set(ids))


def test_chlorine_matches_the_published_values() -> None:
    chlorine = get_substance("chlorine")
    # EPA AEGL final values, chlorine, 60 min: 0.50 / 2.0 / 20 ppm.
    assert (chlorine.aegl1_60min_ppm, chlorine.aegl2_60min_ppm, chlorine.aegl3_60min_ppm) == (
        0.5,
        2.0,
        20.0,
    )
    # AIHA ERPGs for chlorine: 1 / 3 / 20 ppm; NIOSH IDLH 10 ppm (1994 revision).
    assert (chlorine.erpg1_ppm, chlorine.erpg2_ppm, chlorine.erpg3_ppm) == (1.0, 3.0, 20.0)
    assert chlorine.idlh_ppm == 10.0
    assert (chlorine.cas, chlorine.un) == ("7782-50-5", "1017")
    # Chlorine does not burn: no flammability figures.
    assert chlorine.lfl_vol_pct is None and chlorine.heat_of_combustion_kj_kg is None


def test_ammonia_and_hydrogen_sulfide_match_the_published_values() -> None:
    ammonia = get_substance("ammonia")
    # EPA AEGL final values, ammonia, 60 min: 30 / 160 / 1100 ppm; NIOSH IDLH 300 ppm;
    # NIOSH Pocket Guide LEL 15 %.
    assert (ammonia.aegl1_60min_ppm, ammonia.aegl2_60min_ppm, ammonia.aegl3_60min_ppm) == (
        30.0,
        160.0,
        1100.0,
    )
    assert ammonia.idlh_ppm == 300.0 and ammonia.lfl_vol_pct == 15.0
    h2s = get_substance("hydrogen-sulfide")
    # EPA AEGL final values, hydrogen sulfide, 60 min: 0.51 / 27 / 50 ppm.
    assert (h2s.aegl1_60min_ppm, h2s.aegl2_60min_ppm, h2s.aegl3_60min_ppm) == (0.51, 27.0, 50.0)
    # NIOSH IDLH documentation (May 1994): revised IDLH 100 ppm (the original was 300 ppm).
    # 50 ppm, which the table once held, is the AEGL-3 (60 min), not the IDLH.
    assert h2s.idlh_ppm == 100.0
    assert "NIOSH" in h2s.sources["idlh"] and "idlh_ppm" in h2s.cross_checked


def test_sulfur_dioxide_matches_the_published_values_and_names_its_gap() -> None:
    so2 = get_substance("sulfur-dioxide")
    # NRC AEGL Vol. 8 (2010), ch. 9: AEGL-1 0.20 ppm and AEGL-2 0.75 ppm at every duration from
    # 10 min to 8 h, so the 60-min figures hold for any exposure the table is used for.
    assert (so2.aegl1_60min_ppm, so2.aegl2_60min_ppm) == (0.2, 0.75)
    assert {"aegl1_60min_ppm", "aegl2_60min_ppm"} <= set(so2.cross_checked)
    # NRC Vol. 8 (2010), ch. 9: AEGL-3 27 ppm at 60 min; every level is there.
    assert so2.aegl3_60min_ppm == 27.0
    assert missing_levels(so2, "AEGL") == ()
    # NIOSH IDLH 100 ppm.
    assert so2.idlh_ppm == 100.0


def test_physical_data_match_the_nist_webbook() -> None:
    # NIST Chemistry WebBook: chlorine 70.906 g/mol; methane boils at 111.7 K = -161.5 °C.
    assert get_substance("chlorine").molecular_weight_g_mol == pytest.approx(70.906)
    assert get_substance("methane").boiling_point_c == pytest.approx(-161.5)


@pytest.mark.parametrize(
    "key",
    ["chlorine", "CHLORINE", " Chlorine ", "7782-50-5", "1017", "UN1017", "un 1017", "氯", "液氯"],
)
def test_chlorine_is_found_by_slug_cas_un_and_name(key: str) -> None:
    assert get_substance(key).id == "chlorine"


def test_other_lookups() -> None:
    assert get_substance("Anhydrous ammonia").id == "ammonia"
    assert get_substance("74-90-8").id == "hydrogen-cyanide"
    assert get_substance("UN1075").id == "lpg"
    assert get_substance("液化石油气").id == "lpg"
    assert get_substance("Hydrogen fluoride").id == "hydrogen-fluoride"


def test_an_unknown_substance_is_refused_naming_the_field() -> None:
    with pytest.raises(InvalidInput) as caught:
        get_substance("xyz")
    (error,) = caught.value.errors
    assert error.field == "substance"
    assert error.reason.startswith("unknown substance 'xyz'; known: ")
    assert "chlorine" in error.reason


def test_aegl_levels_run_from_most_to_least_severe() -> None:
    assert levels_of_concern(get_substance("chlorine")) == (
        ("AEGL-3 (60 min)", 20.0),
        ("AEGL-2 (60 min)", 2.0),
        ("AEGL-1 (60 min)", 0.5),
    )
    assert levels_of_concern(get_substance("chlorine"), "ERPG") == (
        ("ERPG-3", 20.0),
        ("ERPG-2", 3.0),
        ("ERPG-1", 1.0),
    )
    assert levels_of_concern(get_substance("chlorine"), "IDLH") == (("IDLH", 10.0),)


def test_a_level_that_is_not_recommended_is_left_out() -> None:
    phosgene = get_substance("phosgene")
    # EPA AEGL final values, phosgene, 60 min: AEGL-1 not recommended, 0.30 / 0.75 ppm.
    assert phosgene.aegl_not_recommended == ("AEGL-1",)
    assert levels_of_concern(phosgene) == (("AEGL-3 (60 min)", 0.75), ("AEGL-2 (60 min)", 0.3))


def test_default_levels_use_aegl_when_there_are_aegls() -> None:
    assert default_levels_of_concern(get_substance("ammonia")) == LevelsOfConcern(
        "AEGL",
        (("AEGL-3 (60 min)", 1100.0), ("AEGL-2 (60 min)", 160.0), ("AEGL-1 (60 min)", 30.0)),
    )


def test_default_levels_fall_back_to_erpg_without_aegls() -> None:
    # Toluene's AEGLs are not in the table; its AIHA ERPGs are 50 / 300 / 1000 ppm.
    loc = default_levels_of_concern(get_substance("toluene"))
    assert loc.scheme == "ERPG"
    assert loc.levels == (("ERPG-3", 1000.0), ("ERPG-2", 300.0), ("ERPG-1", 50.0))


def test_default_levels_fall_back_to_idlh_for_level_3_only() -> None:
    # Propane has no AEGLs here and no ERPGs; NIOSH IDLH 2100 ppm (10 % of the LEL).
    assert default_levels_of_concern(get_substance("propane")) == LevelsOfConcern(
        "IDLH", (("IDLH", 2100.0),)
    )


def test_a_substance_without_any_level_is_refused() -> None:
    with pytest.raises(InvalidInput) as caught:
        default_levels_of_concern(get_substance("hydrogen"))
    assert caught.value.errors[0].field == "substance"


def _has_figure(substance: Substance, field: str) -> bool:
    value = getattr(substance, field)
    return bool(value) if isinstance(value, tuple) else value is not None


@pytest.mark.parametrize("substance", all_substances(), ids=lambda s: s.id)
def test_no_figure_lacks_a_source(substance: Substance) -> None:
    for group, fields in SOURCE_GROUPS.items():
        if any(_has_figure(substance, field) for field in fields):
            assert substance.sources.get(group), f"{substance.id}: {group} figures have no source"


def test_every_numeric_field_belongs_to_a_source_group() -> None:
    grouped = {field for fields in SOURCE_GROUPS.values() for field in fields}
    numeric = {
        f.name
        for f in dataclasses.fields(Substance)
        if f.name.endswith(("_ppm", "_pct", "_kj_kg", "_g_mol", "_c"))
    }
    assert numeric <= grouped


def test_cross_checked_names_real_fields() -> None:
    names = {f.name for f in dataclasses.fields(Substance)}
    for substance in all_substances():
        assert set(substance.cross_checked) <= names, substance.id


def test_missing_levels_say_why() -> None:
    assert missing_levels(get_substance("chlorine"), "AEGL") == ()
    # EPA did not recommend an AEGL-1 for phosgene; HCN has no ERPG-1.
    assert missing_levels(get_substance("phosgene"), "AEGL") == (
        MissingLevel(1, "AEGL-1 (60 min)", "is not recommended by EPA (insufficient data)"),
    )
    assert [m.label for m in missing_levels(get_substance("hydrogen-cyanide"), "ERPG")] == [
        "ERPG-1"
    ]
    # The IDLH is one level, drawn as level 3.
    assert [m.level for m in missing_levels(get_substance("propane"), "IDLH")] == [2, 1]
    assert [m.level for m in missing_levels(get_substance("hydrogen"), "IDLH")] == [3, 2, 1]


@pytest.mark.parametrize("substance", all_substances(), ids=lambda s: s.id)
@pytest.mark.parametrize("scheme", ["AEGL", "ERPG", "IDLH"])
def test_every_level_is_either_given_or_named_missing(substance: Substance, scheme: Scheme) -> None:
    given = {
        3 if label == "IDLH" else int(label.split("-")[1][0])
        for label, _ in levels_of_concern(substance, scheme)
    }
    missing = [m.level for m in missing_levels(substance, scheme)]
    assert len(missing) == len(set(missing))
    assert given.isdisjoint(missing)
    assert given | set(missing) == {1, 2, 3}
    for gap in missing_levels(substance, scheme):
        assert gap.reason.startswith("is ")
        if gap.label.startswith("AEGL"):
            not_recommended = gap.label.split()[0] in substance.aegl_not_recommended
            assert ("not recommended" in gap.reason) == not_recommended


def test_heavier_than_air_by_molecular_weight() -> None:
    # Air 28.96 g/mol; chlorine 70.9, SO2 64.1, H2S 34.1 are heavier; ammonia 17.0, methane
    # 16.0, HCN 27.0 and CO 28.0 lighter; LPG has no single molecular weight.
    for heavy in ("chlorine", "sulfur-dioxide", "hydrogen-sulfide", "phosgene", "propane"):
        assert heavier_than_air(get_substance(heavy)) is True, heavy
    for light in ("ammonia", "methane", "hydrogen", "hydrogen-cyanide", "carbon-monoxide"):
        assert heavier_than_air(get_substance(light)) is False, light
    assert heavier_than_air(get_substance("lpg")) is None
