"""The plan template: what a planner writes (YAML or JSON) and the command server runs.

A template covers one scenario and has exactly one lead department. It has four response levels,
L1 team (班组级), L2 workshop (车间级), L3 plant (厂级) and L4 group (集团级). Each level's response
pack holds a call tree, materials, external communication scripts and the steps that level
introduces. Activating at a level runs every pack up to it; escalating adds the next pack.

The schema only checks the shape of each field. The rules that look across fields
(dependencies, deadlines, roles, one owner per scenario) are in :mod:`plans.validation`, so a
planner gets every problem at once, each with its path.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from gis.errors import FieldError, InvalidInput
from gis.nesting import BoundedYamlLoader

Slug = Annotated[
    str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$", strip_whitespace=True)
]
Text = Annotated[str, StringConstraints(min_length=1, max_length=2000, strip_whitespace=True)]
Script = Annotated[str, StringConstraints(min_length=1, max_length=4000)]

#: Seconds; a plan step is due within a day at the latest.
Seconds = Annotated[int, Field(ge=0, le=86_400)]


class Level(StrEnum):
    L1 = "L1"  # team 班组级
    L2 = "L2"  # workshop 车间级
    L3 = "L3"  # plant 厂级
    L4 = "L4"  # group 集团级

    @property
    def rank(self) -> int:
        return int(self.value[1])

    def up_to(self) -> list[Level]:
        """This level and every level below it, lowest first."""
        return [level for level in Level if level.rank <= self.rank]


LEVEL_NAMES = {
    Level.L1: ("team", "班组级"),
    Level.L2: ("workshop", "车间级"),
    Level.L3: ("plant", "厂级"),
    Level.L4: ("group", "集团级"),
}

#: Variables a communication script may use, e.g. ``"{substance} leak at {location}"``.
SCRIPT_VARIABLES = frozenset({"substance", "location", "time", "level", "affected", "site"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Hazard(StrEnum):
    TOXIC_RELEASE = "toxic_release"
    FIRE = "fire"
    EXPLOSION = "explosion"
    FLOOD = "flood"
    EVACUATION = "evacuation"
    OTHER = "other"


class Trigger(_Strict):
    """A condition that proposes this plan, such as a gas detector's alarm for chlorine."""

    sensor_kind: Literal["gas", "wind", "temperature"]
    substance: str | None = None
    tier: Literal["warning", "alarm", "high_alarm"] = "alarm"


class DesignRelease(_Strict):
    """The credible worst case the plan was written for. An activation starts from it, so a
    commander acting on an alarm need not guess; they correct it with what is known. ``basis``
    says where the figures come from (a risk assessment, a container's valve size...)."""

    basis: Text
    rate_g_s: Annotated[float, Field(gt=0, le=1e7)] | None = None  # toxic release
    release_height_m: Annotated[float, Field(ge=0, le=300)] | None = None
    fuel: Slug | None = None  # pool fire
    diameter_m: Annotated[float, Field(gt=0, le=500)] | None = None
    mass_kg: Annotated[float, Field(gt=0, le=1e8)] | None = None  # explosion
    radii_m: (
        Annotated[tuple[Annotated[float, Field(gt=0, le=1e5)], ...], Field(min_length=1)] | None
    ) = None


#: What a design release must give for each kind of hazard.
DESIGN_NEEDS: dict[Hazard, tuple[str, ...]] = {
    Hazard.TOXIC_RELEASE: ("rate_g_s",),
    Hazard.FIRE: ("fuel", "diameter_m"),
    Hazard.EXPLOSION: ("mass_kg",),
    Hazard.FLOOD: ("radii_m",),
    Hazard.EVACUATION: ("radii_m",),
    Hazard.OTHER: ("radii_m",),
}


class Scenario(_Strict):
    """What the plan covers. ``key`` names the scenario for the one-owner rule."""

    key: Slug
    hazard: Hazard
    substances: tuple[str, ...] = ()
    triggers: tuple[Trigger, ...] = ()
    description: Text | None = None
    design_release: DesignRelease | None = None
    #: A muster point with any part inside this threat level or a higher one is not used: 2 by
    #: default (level 1 only warns); 1 is stricter.
    musters_unusable_from_level: Annotated[int, Field(ge=1, le=2)] = 2
    #: What everyone does when no muster point is usable, e.g. "shelter in the control room".
    shelter_in_place: Text | None = None


class Role(_Strict):
    """A role that steps and call trees refer to, such as ``duty_manager``."""

    id: Slug
    name: Text
    name_zh: Text | None = None


class Contact(_Strict):
    name: Text
    phone: Annotated[str, StringConstraints(max_length=40)] | None = None
    channel: Literal["phone", "sms", "radio", "app"] = "phone"


class CallTreeEntry(_Strict):
    """Whom to call for a role, in order: the first contact, then the fallbacks, each given
    ``acknowledge_within_s`` to answer."""

    role: Slug
    order: Annotated[int, Field(ge=1, le=100)]
    contacts: Annotated[tuple[Contact, ...], Field(min_length=1, max_length=10)]
    acknowledge_within_s: Seconds = 120


class Material(_Strict):
    kind: str
    quantity: Annotated[int, Field(ge=1, le=100_000)]


class CommunicationScript(_Strict):
    """A message for people outside: the public, regulators, neighbours, the media."""

    id: Slug
    audience: Literal["public", "regulator", "neighbours", "media", "group", "internal"]
    language: Literal["zh", "en"]
    text: Script


class Target(_Strict):
    """When a step is due: ``within_s`` after the plan's activation (the incident), after the
    step's own level became active (an escalation, for a level added later), or after another
    step is done."""

    after: Literal["activation", "level"] | Slug = "activation"
    within_s: Seconds


class DoneWhen(_Strict):
    """What counts as done: a confirmation, a value (such as a headcount), or a linked action."""

    kind: Literal["confirmation", "value", "action"] = "confirmation"
    #: For a value: what it is (``headcount``); for an action: which (``notify_regulator``).
    name: Slug | None = None
    unit: Annotated[str, StringConstraints(max_length=20)] | None = None


class Step(_Strict):
    id: Slug
    title: Text
    title_zh: Text | None = None
    role: Slug
    target: Target
    depends_on: tuple[Slug, ...] = ()
    done_when: DoneWhen = DoneWhen()
    optional: bool = False


class ResponsePack(_Strict):
    """What one level adds: whom to call, what to bring, what to say, what to do."""

    call_tree: tuple[CallTreeEntry, ...] = ()
    materials: tuple[Material, ...] = ()
    scripts: tuple[CommunicationScript, ...] = ()
    steps: tuple[Step, ...] = ()


class PlanTemplate(_Strict):
    """A plan template. ``lead_departments`` must name exactly one (checked by validation,
    so that zero or two are reported with the other problems)."""

    id: Slug
    title: Text
    title_zh: Text | None = None
    scenario: Scenario
    lead_departments: tuple[Text, ...]
    #: The role that commands the run: escalates, de-escalates, stands down.
    command_role: Slug
    roles: Annotated[tuple[Role, ...], Field(min_length=1)]
    levels: dict[Level, ResponsePack]

    def packs_up_to(self, level: Level) -> list[tuple[Level, ResponsePack]]:
        return [(lv, self.levels[lv]) for lv in level.up_to() if lv in self.levels]

    def steps(self) -> list[tuple[Level, Step]]:
        """Every step with the level that introduces it, lowest level first."""
        return [(lv, step) for lv in Level if lv in self.levels for step in self.levels[lv].steps]


def data_from_yaml(text: str) -> Any:
    """Parse a plan written in YAML (raises InvalidInput naming the line on bad YAML).

    No aliases (``*name``: a few bytes could stand for gigabytes of plan) and at most
    ``gis.nesting.MAX_DEPTH`` levels (deeper would exhaust Python's recursion, not the plan).
    """
    try:
        return yaml.load(text, Loader=BoundedYamlLoader)
    except yaml.YAMLError as exc:
        raise InvalidInput(
            f"not valid YAML: {exc}", errors=[FieldError("body", f"valid YAML: {exc}")]
        ) from exc


def template_from_data(data: Any) -> PlanTemplate:
    """A template from parsed YAML/JSON (raises pydantic's ValidationError on a bad shape)."""
    return PlanTemplate.model_validate(data)
