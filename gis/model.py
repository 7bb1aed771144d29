"""The site's layers: what each feature holds, and the rules its attributes obey.

A layer is a set of GeoJSON features of one geometry type. Attribute names are ten characters
or fewer so that a layer survives a round trip through a Shapefile in QGIS unchanged.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

FEATURE_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class ZoneKind(StrEnum):
    PROCESS_UNIT = "process_unit"
    TANK_FARM = "tank_farm"
    STORAGE = "storage"
    WAREHOUSE = "warehouse"
    OFFICE = "office"
    CONTROL_ROOM = "control_room"
    LABORATORY = "laboratory"
    WORKSHOP = "workshop"
    CANTEEN = "canteen"
    UTILITY = "utility"
    FIRE_STATION = "fire_station"
    GATE = "gate"
    ROAD = "road"
    PARKING = "parking"
    LOADING_BAY = "loading_bay"
    RAIL_SIDING = "rail_siding"
    WASTEWATER = "wastewater"
    RESTRICTED_AREA = "restricted_area"
    MUSTER_POINT = "muster_point"


class RiskGrade(StrEnum):
    """The four-colour grading of Chinese practice."""

    RED = "red"  # major (重大)
    ORANGE = "orange"  # large (较大)
    YELLOW = "yellow"  # general (一般)
    BLUE = "blue"  # low (低)


class ResourceKind(StrEnum):
    HYDRANT = "hydrant"
    FIRE_MONITOR = "fire_monitor"
    EXTINGUISHER = "extinguisher"
    SCBA = "scba"
    FIRST_AID = "first_aid"
    EYEWASH = "eyewash"
    SPILL_KIT = "spill_kit"
    GAS_SUIT = "gas_suit"
    FIRE_TRUCK = "fire_truck"
    FOAM_TENDER = "foam_tender"
    AMBULANCE = "ambulance"
    RESCUE_TEAM = "rescue_team"


#: Resources that drive on the road graph; every other kind is carried or reached on foot.
VEHICLE_RESOURCE_KINDS = frozenset(
    {ResourceKind.FIRE_TRUCK, ResourceKind.FOAM_TENDER, ResourceKind.AMBULANCE}
)


class ResourceStatus(StrEnum):
    AVAILABLE = "available"
    ASSIGNED = "assigned"
    OUT_OF_SERVICE = "out_of_service"


class SensorKind(StrEnum):
    GAS = "gas"
    WIND = "wind"
    TEMPERATURE = "temperature"


class Employment(StrEnum):
    STAFF = "staff"
    CONTRACTOR = "contractor"


#: Largest whole number a count may hold (the columns are 32-bit integers).
MAX_COUNT = 2**31 - 1


class _Properties(BaseModel):
    # NaN and infinities are not JSON and mean nothing as a threshold or a capacity.
    model_config = ConfigDict(extra="forbid", use_enum_values=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_silent_coercion(cls, value: Any, info: ValidationInfo) -> Any:
        """Refuse true/false where a number or text is meant, and NUL characters in text."""
        if isinstance(value, bool):  # the field looked up only then: it costs more than the test
            annotation = cls.model_fields[str(info.field_name)].annotation
            if annotation not in (bool, bool | None):
                raise ValueError(f"expected a {_kind(annotation)}, not {str(value).lower()}")
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("text must not contain NUL characters")
        return value


class ZoneProperties(_Properties):
    name: Name
    kind: ZoneKind
    risk_grade: RiskGrade | None = None
    capacity: int | None = Field(
        default=None, ge=0, le=MAX_COUNT, description="Occupancy capacity (people)."
    )

    @model_validator(mode="after")
    def _muster_points_have_capacity(self) -> ZoneProperties:
        if self.kind == ZoneKind.MUSTER_POINT and self.capacity is None:
            raise ValueError("a muster point needs a capacity (people it can hold)")
        return self


class ResourceProperties(_Properties):
    name: Name | None = None
    kind: ResourceKind
    quantity: int = Field(default=1, ge=0, le=MAX_COUNT)
    status: ResourceStatus = ResourceStatus.AVAILABLE


class SensorProperties(_Properties):
    name: Name | None = None
    kind: SensorKind
    substance: ShortText | None = Field(default=None, description="e.g. Cl2, NH3, H2S, LEL")
    unit: ShortText | None = Field(default=None, description="e.g. ppm, %LEL, m/s, degC")
    warning: float | None = Field(default=None, description="First-tier threshold: check.")
    alarm: float | None = Field(default=None, description="Second tier: confirmed alarm.")
    high_alarm: float | None = Field(default=None, description="Third tier.")

    @model_validator(mode="after")
    def _gas_detectors_are_complete(self) -> SensorProperties:
        if self.kind == SensorKind.GAS:
            missing = [n for n in ("substance", "unit", "alarm") if getattr(self, n) is None]
            if missing:
                raise ValueError(f"a gas detector needs {', '.join(missing)}")
        tiers = [t for t in (self.warning, self.alarm, self.high_alarm) if t is not None]
        if any(b <= a for a, b in itertools.pairwise(tiers)):
            raise ValueError("thresholds must rise: warning < alarm < high_alarm")
        return self


class PersonProperties(_Properties):
    name: Name
    role: ShortText
    team: ShortText | None = None
    shift: ShortText | None = None
    employer: Name
    employment: Employment = Employment.STAFF
    seen_at: AwareDatetime | None = Field(
        default=None, description="When the last known position was recorded (UTC)."
    )

    @field_validator("seen_at", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("seen_at")
    @classmethod
    def _in_utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        try:
            return value.astimezone(UTC)
        except OverflowError:
            raise ValueError("the time lies outside the representable range") from None


class NetworkEdgeProperties(_Properties):
    name: Name | None = None
    foot: bool = True
    vehicle: bool = False
    oneway: bool = Field(default=False, description="Vehicles may only drive from start to end.")
    width_m: float | None = Field(default=None, gt=0, le=200)
    capacity: float | None = Field(
        default=None, gt=0, description="Flow capacity in people per minute."
    )
    door: bool = False
    stairs: bool = False

    @model_validator(mode="after")
    def _someone_can_use_it(self) -> NetworkEdgeProperties:
        if not (self.foot or self.vehicle):
            raise ValueError("an edge must allow foot or vehicle traffic (or both)")
        return self


class BasemapKind(StrEnum):
    """What a basemap feature draws: the site's surroundings, never routed on."""

    ROAD = "road"
    RAILWAY = "railway"
    BUILDING = "building"
    WATER = "water"
    LANDUSE = "landuse"
    PLACE = "place"  # a named point: a village, a hamlet, a locality


class ReceptorKind(StrEnum):
    """Sensitive receptors: places whose people cannot simply walk out of a plume."""

    SCHOOL = "school"
    KINDERGARTEN = "kindergarten"
    HOSPITAL = "hospital"
    CLINIC = "clinic"
    CARE_HOME = "care_home"
    RESIDENTIAL = "residential"


class BasemapProperties(_Properties):
    kind: BasemapKind
    name: Name | None = None
    subtype: ShortText | None = Field(
        default=None, description="The OSM value, e.g. motorway, river, forest, village."
    )


class ReceptorProperties(_Properties):
    name: Name | None = None
    kind: ReceptorKind
    population: int | None = Field(
        default=None, ge=0, le=MAX_COUNT, description="People there, counted or estimated."
    )
    estimate: ShortText | None = Field(
        default=None, description="How the population was found, e.g. 'capacity tag'."
    )


@dataclass(frozen=True)
class Layer:
    """A layer's name (as in URLs), geometry type and attribute schema."""

    name: str
    geometry_type: str
    properties: type[_Properties]
    geometry_required: bool = True
    #: The most vertices one feature's geometry may have: the work every routing and hazard
    #: computation does per feature is bounded by it (a walkway of a million vertices once
    #: stalled command for minutes). An edge is a piece of path between junctions.
    max_vertices: int = 1
    #: Whether every feature lies inside the site boundary (the surroundings lie outside it).
    inside_site: bool = True

    @property
    def fields(self) -> list[str]:
        return list(self.properties.model_fields)


#: A zone outline of more vertices than this is refused (a detailed tank farm has hundreds).
MAX_ZONE_VERTICES = 5_000
#: The geometry type of a layer that takes points, lines and polygons alike.
ANY_GEOMETRY = "Geometry"
#: A network edge of more vertices than this is refused: split the path at junctions.
MAX_EDGE_VERTICES = 1_000

LAYERS: dict[str, Layer] = {
    layer.name: layer
    for layer in (
        Layer("zones", "Polygon", ZoneProperties, max_vertices=MAX_ZONE_VERTICES),
        Layer("resources", "Point", ResourceProperties),
        Layer("sensors", "Point", SensorProperties),
        Layer("people", "Point", PersonProperties, geometry_required=False),
        Layer("network", "LineString", NetworkEdgeProperties, max_vertices=MAX_EDGE_VERTICES),
        # Any geometry type: roads are lines, buildings polygons, place names points.
        Layer(
            "basemap",
            ANY_GEOMETRY,
            BasemapProperties,
            max_vertices=MAX_ZONE_VERTICES,
            inside_site=False,
        ),
        Layer(
            "receptors",
            ANY_GEOMETRY,
            ReceptorProperties,
            max_vertices=MAX_ZONE_VERTICES,
            inside_site=False,
        ),
    )
}


def _kind(annotation: Any) -> str:
    text = str(getattr(annotation, "__name__", annotation))
    return "number" if any(t in text for t in ("int", "float")) else "value"
