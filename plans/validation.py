"""Validation a planner can act on: every problem at once, each with the path of its field.

Paths read like ``levels.L2.steps[3].depends_on[0]``. Beyond the schema's shapes the rules are:
- step ids, role ids and script ids are unique;
- every role named by a step, a call tree or ``command_role`` is declared;
- dependencies name existing steps of the same or a lower level (a step cannot wait for one that
  a lower activation never runs) and form no cycle;
- a target counts from activation, from its level's activation, or from a step that the step
  also depends on (``activation`` and ``level`` are no step ids), and no step is
  due before one of its dependencies;
- materials name known resource kinds, and the site holds enough of each, counting every level
  up to the one that asks;
- scripts use only the known incident variables;
- exactly one lead department;
- one owner per scenario: no other plan claims the same scenario.

A plan can only be activated when it validates (:func:`check_plan`).
"""

from __future__ import annotations

import string
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import networkx as nx
from pydantic import ValidationError

from gis.errors import FieldError, InvalidInput
from gis.hazards.fire import FUELS
from gis.hazards.substances import get_substance
from gis.model import ResourceKind
from plans.model import DESIGN_NEEDS, SCRIPT_VARIABLES, Level, PlanTemplate, template_from_data


def field_path(loc: Sequence[str | int]) -> str:
    """``("levels", "L2", "steps", 3, "id")`` -> ``levels.L2.steps[3].id``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def schema_problems(error: ValidationError) -> list[FieldError]:
    return [
        FieldError(field_path(e["loc"]) or "plan", e["msg"])
        for e in error.errors(include_url=False)
    ]


def plan_problems(
    template: PlanTemplate,
    *,
    site_inventory: Mapping[str, int] | None = None,
    others: Sequence[PlanTemplate] = (),
) -> list[FieldError]:
    """Every rule broken by ``template`` (empty when it validates)."""
    problems: list[FieldError] = []
    add = problems.append

    if len(template.lead_departments) != 1:
        add(
            FieldError(
                "lead_departments",
                f"exactly one lead department, not {len(template.lead_departments)}",
            )
        )
    known_roles: set[str] = set()
    for i, role in enumerate(template.roles):
        if role.id in known_roles:
            add(FieldError(f"roles[{i}].id", f"duplicate role id '{role.id}'"))
        known_roles.add(role.id)
    if template.command_role not in known_roles:
        add(FieldError("command_role", f"unknown role '{template.command_role}'"))
    for level in Level:
        if level not in template.levels:
            add(FieldError(f"levels.{level}", "every level L1-L4 needs a response pack"))

    # Where each step is, and at which level.
    where: dict[str, tuple[Level, int]] = {}
    for level, pack in template.levels.items():
        for i, step in enumerate(pack.steps):
            path = f"levels.{level}.steps[{i}]"
            if step.id in where:
                first_level, first_i = where[step.id]
                add(
                    FieldError(
                        f"{path}.id",
                        f"duplicate step id '{step.id}' (first at levels.{first_level}.steps"
                        f"[{first_i}])",
                    )
                )
            else:
                where[step.id] = (level, i)
            if step.role not in known_roles:
                add(FieldError(f"{path}.role", f"unknown role '{step.role}'"))

    graph: nx.DiGraph[str] = nx.DiGraph()
    graph.add_nodes_from(where)
    for level, pack in template.levels.items():
        for i, step in enumerate(pack.steps):
            path = f"levels.{level}.steps[{i}]"
            for j, dep in enumerate(step.depends_on):
                if dep not in where:
                    add(FieldError(f"{path}.depends_on[{j}]", f"unknown step '{dep}'"))
                    continue
                dep_level = where[dep][0]
                if dep_level.rank > level.rank:
                    add(
                        FieldError(
                            f"{path}.depends_on[{j}]",
                            f"'{dep}' is introduced at {dep_level}, above this step's {level}",
                        )
                    )
                graph.add_edge(dep, step.id)
            after = step.target.after
            if step.id in ("activation", "level"):
                add(FieldError(f"{path}.id", f"'{step.id}' is reserved for targets"))
            if after not in ("activation", "level"):
                if after not in where:
                    add(FieldError(f"{path}.target.after", f"unknown step '{after}'"))
                elif after not in step.depends_on:
                    add(
                        FieldError(
                            f"{path}.target.after",
                            f"counts from '{after}', so it must also depend on it",
                        )
                    )
    try:
        cycle = nx.find_cycle(graph)
    except nx.NetworkXNoCycle:
        cycle = []
    if cycle:
        first = cycle[0][0]
        level, i = where[first]
        loop = " -> ".join([u for u, _ in cycle] + [first])
        add(FieldError(f"levels.{level}.steps[{i}].depends_on", f"dependency cycle: {loop}"))
    else:
        problems.extend(_deadline_problems(template, where))

    problems.extend(_pack_problems(template, known_roles, site_inventory))
    problems.extend(_design_problems(template))

    for other in others:
        if other.id != template.id and other.scenario.key == template.scenario.key:
            add(
                FieldError(
                    "scenario.key",
                    f"plan '{other.id}' already owns scenario '{template.scenario.key}'",
                )
            )
    return problems


def due_offsets(template: PlanTemplate) -> dict[str, int]:
    """Each step's latest due time in seconds after activation, were every step done on time.

    A step counting from another is due that step's due time plus its own ``within_s``. The
    template must be free of unknown steps and cycles.
    """
    steps = {step.id: step for _, step in template.steps()}
    due: dict[str, int] = {}

    def resolve(step_id: str) -> int:
        if step_id not in due:
            target = steps[step_id].target
            # A level's own activation is at the plan's activation at the earliest.
            base = 0 if target.after in ("activation", "level") else resolve(target.after)
            due[step_id] = base + target.within_s
        return due[step_id]

    for step_id in steps:
        resolve(step_id)
    return due


def _deadline_problems(
    template: PlanTemplate, where: Mapping[str, tuple[Level, int]]
) -> list[FieldError]:
    if any(
        s.target.after not in ("activation", "level", *where) for _, s in template.steps()
    ):  # already reported as unknown
        return []
    due = due_offsets(template)
    problems = []
    for level, pack in template.levels.items():
        for i, step in enumerate(pack.steps):
            for j, dep in enumerate(step.depends_on):
                if dep in due and due[step.id] < due[dep]:
                    problems.append(
                        FieldError(
                            f"levels.{level}.steps[{i}].target",
                            f"due at {due[step.id]} s, before its dependency "
                            f"depends_on[{j}] '{dep}' (due at {due[dep]} s)",
                        )
                    )
    return problems


def _design_problems(template: PlanTemplate) -> list[FieldError]:
    """A design release gives what its hazard's model needs, and names a known fuel."""
    design = template.scenario.design_release
    if design is None:
        return []
    hazard = template.scenario.hazard
    out = [
        FieldError(f"scenario.design_release.{name}", f"a {hazard.value} design release needs it")
        for name in DESIGN_NEEDS[hazard]
        if getattr(design, name) is None
    ]
    if hazard.value in ("toxic_release", "explosion"):
        # The release is of the plan's first substance: it must be one the models know.
        first = template.scenario.substances[0] if template.scenario.substances else None
        if first is None:
            out.append(
                FieldError("scenario.substances", f"a {hazard.value} design release needs one")
            )
        else:
            try:
                get_substance(first)
            except InvalidInput:
                out.append(FieldError("scenario.substances[0]", f"unknown substance '{first}'"))
    if design.fuel is not None and design.fuel not in FUELS:
        out.append(
            FieldError(
                "scenario.design_release.fuel",
                f"unknown fuel '{design.fuel}'; known: {', '.join(sorted(FUELS))}",
            )
        )
    return out


def _pack_problems(
    template: PlanTemplate,
    known_roles: set[str],
    site_inventory: Mapping[str, int] | None,
) -> list[FieldError]:
    problems: list[FieldError] = []
    kinds = {k.value for k in ResourceKind}
    cumulative: Counter[str] = Counter()
    scripts_seen: dict[str, str] = {}
    for level in Level:
        pack = template.levels.get(level)
        if pack is None:
            continue
        base = f"levels.{level}"
        for i, entry in enumerate(pack.call_tree):
            if entry.role not in known_roles:
                problems.append(
                    FieldError(f"{base}.call_tree[{i}].role", f"unknown role '{entry.role}'")
                )
        for i, material in enumerate(pack.materials):
            path = f"{base}.materials[{i}]"
            if material.kind not in kinds:
                problems.append(
                    FieldError(f"{path}.kind", f"unknown resource kind '{material.kind}'")
                )
                continue
            cumulative[material.kind] += material.quantity
            if site_inventory is not None and cumulative[material.kind] > site_inventory.get(
                material.kind, 0
            ):
                problems.append(
                    FieldError(
                        f"{path}.quantity",
                        f"{cumulative[material.kind]} {material.kind} needed up to {level}, "
                        f"the site has {site_inventory.get(material.kind, 0)} available",
                    )
                )
        for i, script in enumerate(pack.scripts):
            path = f"{base}.scripts[{i}]"
            if script.id in scripts_seen:
                problems.append(FieldError(f"{path}.id", f"duplicate script id '{script.id}'"))
            scripts_seen[script.id] = path
            problems.extend(_script_problems(script.text, f"{path}.text"))
    return problems


def _script_problems(text: str, path: str) -> list[FieldError]:
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]
    except ValueError as exc:
        return [FieldError(path, f"not a valid template: {exc}")]
    unknown = sorted({n for n in names if n not in SCRIPT_VARIABLES})
    if unknown:
        known = ", ".join(sorted(SCRIPT_VARIABLES))
        return [FieldError(path, f"unknown variables {unknown}; known: {known}")]
    return []


def check_plan(
    data: Any,
    *,
    site_inventory: Mapping[str, int] | None = None,
    others: Sequence[PlanTemplate] = (),
) -> PlanTemplate:
    """The template in ``data`` if it validates; else InvalidInput listing every problem."""
    try:
        template = data if isinstance(data, PlanTemplate) else template_from_data(data)
    except ValidationError as exc:
        errors = schema_problems(exc)
        raise InvalidInput(
            f"the plan does not match the schema ({len(errors)} problems)", errors=errors
        ) from exc
    problems = plan_problems(template, site_inventory=site_inventory, others=others)
    if problems:
        raise InvalidInput(
            f"plan '{template.id}' does not validate ({len(problems)} problems)",
            errors=problems,
        )
    return template
