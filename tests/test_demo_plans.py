"""The demo site's six emergency plan templates (fixtures/plans/*.yaml).

Each file must load with the schema (:func:`plans.model.template_from_data`). The rules that look
across fields are checked here in plain Python, on purpose without :mod:`plans.validation`, so
that the fixtures are held to them whatever that module becomes: unique step ids, declared
roles, dependencies on the same or a lower level and without cycles, no deadline before a
dependency's, materials within what the demo site holds, script variables from
:data:`plans.model.SCRIPT_VARIABLES`, zh and en scripts from L2 up, one lead department and one
plan per scenario.
"""

from __future__ import annotations

import functools
import json
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from gis.hazards.substances import get_substance
from plans.model import SCRIPT_VARIABLES, Level, PlanTemplate, Step, template_from_data

ROOT = Path(__file__).resolve().parent.parent
PLANS_DIR = ROOT / "fixtures" / "plans"
DEMO_SITE = ROOT / "fixtures" / "demo-site"

EXPECTED_FILES = {
    "chlorine-leak",
    "ammonia-leak",
    "tank-fire",
    "vapour-cloud-explosion",
    "typhoon-flood",
    "general-evacuation",
}
#: The resource kinds a plan may ask for (those the demo site's resource layer uses).
MATERIAL_KINDS = frozenset(
    {
        "hydrant",
        "fire_monitor",
        "extinguisher",
        "scba",
        "first_aid",
        "eyewash",
        "spill_kit",
        "gas_suit",
        "fire_truck",
        "foam_tender",
        "ambulance",
        "rescue_team",
    }
)
STEPS_PER_LEVEL = range(5, 13)
STEPS_PER_PLAN = range(30, 41)
BRACED = re.compile(r"\{([^{}]*)\}")

PLAN_PATHS = sorted(PLANS_DIR.glob("*.yaml"))


@functools.cache
def load_plan(path: Path) -> PlanTemplate:
    with path.open(encoding="utf-8") as stream:
        return template_from_data(yaml.safe_load(stream))


@functools.cache
def site_inventory() -> Counter[str]:
    """Available resources of the demo site: one per feature, counted by ``properties.kind``.

    Stricter than :func:`plans.store.site_inventory`, which sums each feature's ``quantity``
    (a cabinet of four SCBA sets is one feature): a plan within this count fits either way.
    """
    with (DEMO_SITE / "resources.geojson").open(encoding="utf-8") as stream:
        collection = json.load(stream)
    inventory: Counter[str] = Counter()
    for feature in collection["features"]:
        properties = feature["properties"]
        if properties.get("status", "available") == "available":
            inventory[str(properties["kind"])] += 1
    return inventory


@functools.cache
def site_sensors() -> frozenset[tuple[str, str | None]]:
    """``(kind, substance)`` of every sensor of the demo site."""
    with (DEMO_SITE / "sensors.geojson").open(encoding="utf-8") as stream:
        collection = json.load(stream)
    return frozenset(
        (str(f["properties"]["kind"]), f["properties"].get("substance"))
        for f in collection["features"]
    )


def step_levels(plan: PlanTemplate) -> dict[str, Level]:
    return {step.id: level for level, step in plan.steps()}


def absolute_deadlines(plan: PlanTemplate) -> dict[str, int]:
    """Each step's deadline in seconds after activation, following ``target.after`` chains."""
    steps = {step.id: step for _, step in plan.steps()}
    deadlines: dict[str, int] = {}

    def deadline(step: Step, seen: tuple[str, ...]) -> int:
        if step.id in deadlines:
            return deadlines[step.id]
        assert step.id not in seen, f"target.after cycle: {' -> '.join((*seen, step.id))}"
        after = step.target.after
        base = 0 if after == "activation" else deadline(steps[after], (*seen, step.id))
        deadlines[step.id] = base + step.target.within_s
        return deadlines[step.id]

    for step in steps.values():
        deadline(step, ())
    return deadlines


@pytest.fixture(params=PLAN_PATHS, ids=[path.stem for path in PLAN_PATHS])
def plan(request: pytest.FixtureRequest) -> PlanTemplate:
    path: Path = request.param
    return load_plan(path)


def test_the_six_plans_are_there() -> None:
    assert {path.stem for path in PLAN_PATHS} == EXPECTED_FILES


def test_one_plan_per_scenario() -> None:
    plans = [load_plan(path) for path in PLAN_PATHS]
    keys = Counter(p.scenario.key for p in plans)
    ids = Counter(p.id for p in plans)
    assert [k for k, n in keys.items() if n > 1] == []
    assert [i for i, n in ids.items() if n > 1] == []


def test_plan_id_is_the_file_name() -> None:
    for path in PLAN_PATHS:
        assert load_plan(path).id == path.stem


def test_every_level_and_one_lead_department(plan: PlanTemplate) -> None:
    assert set(plan.levels) == set(Level)
    assert len(plan.lead_departments) == 1


def test_bilingual_titles(plan: PlanTemplate) -> None:
    assert plan.title_zh
    assert all(role.name_zh for role in plan.roles)
    assert all(step.title_zh for _, step in plan.steps())


def test_triggers_name_a_sensor_of_the_demo_site(plan: PlanTemplate) -> None:
    sensors = site_sensors()
    for trigger in plan.scenario.triggers:
        assert (trigger.sensor_kind, trigger.substance) in sensors, trigger


def test_substances_are_in_the_substance_table(plan: PlanTemplate) -> None:
    for substance in plan.scenario.substances:
        assert get_substance(substance).id == substance


def test_step_ids_are_unique(plan: PlanTemplate) -> None:
    ids = Counter(step.id for _, step in plan.steps())
    assert [i for i, n in ids.items() if n > 1] == []


def test_step_counts(plan: PlanTemplate) -> None:
    for level, pack in plan.levels.items():
        assert len(pack.steps) in STEPS_PER_LEVEL, (level, len(pack.steps))
    assert len(plan.steps()) in STEPS_PER_PLAN


def test_roles_are_declared_and_used(plan: PlanTemplate) -> None:
    declared = Counter(role.id for role in plan.roles)
    assert [r for r, n in declared.items() if n > 1] == []
    used = {step.role for _, step in plan.steps()}
    used |= {entry.role for pack in plan.levels.values() for entry in pack.call_tree}
    assert plan.command_role in declared
    assert used - set(declared) == set()
    assert set(declared) - used - {plan.command_role} == set(), "declared but never used"


def test_dependencies_are_on_the_same_or_a_lower_level(plan: PlanTemplate) -> None:
    levels = step_levels(plan)
    for level, step in plan.steps():
        for dependency in step.depends_on:
            assert dependency != step.id, step.id
            assert dependency in levels, (step.id, dependency)
            assert levels[dependency].rank <= level.rank, (step.id, dependency)
        if step.target.after != "activation":
            assert step.target.after in levels, (step.id, step.target.after)
            assert step.target.after in step.depends_on, (step.id, step.target.after)


def test_dependencies_have_no_cycle(plan: PlanTemplate) -> None:
    graph = {step.id: step.depends_on for _, step in plan.steps()}
    done: set[str] = set()

    def visit(node: str, path: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
        if node in path:
            yield (*path, node)
            return
        if node in done:
            return
        for dependency in graph.get(node, ()):
            yield from visit(dependency, (*path, node))
        done.add(node)

    cycles = [cycle for node in graph for cycle in visit(node, ())]
    assert cycles == []


def test_no_deadline_before_a_dependency(plan: PlanTemplate) -> None:
    deadlines = absolute_deadlines(plan)
    late = [
        (step.id, deadlines[step.id], dependency, deadlines[dependency])
        for _, step in plan.steps()
        for dependency in step.depends_on
        if deadlines[step.id] < deadlines[dependency]
    ]
    assert late == []


def test_done_when_names_what_is_done(plan: PlanTemplate) -> None:
    for _, step in plan.steps():
        done = step.done_when
        if done.kind == "value":
            assert done.name and done.unit, step.id
        elif done.kind == "action":
            assert done.name and done.unit is None, step.id
        else:
            assert done.name is None and done.unit is None, step.id


def test_call_trees(plan: PlanTemplate) -> None:
    for level, pack in plan.levels.items():
        orders = sorted(entry.order for entry in pack.call_tree)
        assert orders == list(range(1, len(orders) + 1)), level
        roles = [entry.role for entry in pack.call_tree]
        assert len(roles) == len(set(roles)), level


def test_materials_are_within_the_site_inventory(plan: PlanTemplate) -> None:
    inventory = site_inventory()
    cumulative: Counter[str] = Counter()
    for level in Level:
        for material in plan.levels[level].materials:
            assert material.kind in MATERIAL_KINDS, (level, material.kind)
            cumulative[material.kind] += material.quantity
            assert cumulative[material.kind] <= inventory[material.kind], (level, material.kind)


def test_script_variables(plan: PlanTemplate) -> None:
    ids = Counter(s.id for pack in plan.levels.values() for s in pack.scripts)
    assert [i for i, n in ids.items() if n > 1] == []
    for pack in plan.levels.values():
        for script in pack.scripts:
            names = set(BRACED.findall(script.text))
            assert names <= SCRIPT_VARIABLES, (script.id, names - SCRIPT_VARIABLES)
            rest = BRACED.sub("", script.text)
            assert "{" not in rest and "}" not in rest, script.id


def test_zh_and_en_scripts_from_l2_up(plan: PlanTemplate) -> None:
    for level in Level:
        if level.rank < Level.L2.rank:
            continue
        languages = {script.language for script in plan.levels[level].scripts}
        assert languages >= {"zh", "en"}, level
