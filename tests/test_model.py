from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from gis.model import (
    LAYERS,
    NetworkEdgeProperties,
    SensorProperties,
    ZoneProperties,
)


def test_attribute_names_survive_a_shapefile() -> None:
    """dBase field names hold ten characters; longer ones would be cut in a QGIS round trip."""
    for layer in LAYERS.values():
        for name in [*layer.fields, "version", "created_at", "created_by", "updated_at"]:
            assert len(name) <= 10, (layer.name, name)


@pytest.mark.parametrize(
    ("model", "data", "message"),
    [
        (ZoneProperties, {"name": "M", "kind": "muster_point"}, "needs a capacity"),
        (ZoneProperties, {"name": "A", "kind": "lagoon"}, "Input should be"),
        (ZoneProperties, {"name": "A", "kind": "office", "risk_grade": "purple"}, "'red'"),
        (SensorProperties, {"kind": "gas", "unit": "ppm", "alarm": 1}, "needs substance"),
        (
            SensorProperties,
            {"kind": "gas", "substance": "Cl2", "unit": "ppm", "warning": 2, "alarm": 1},
            "thresholds must rise",
        ),
        (NetworkEdgeProperties, {"foot": False, "vehicle": False}, "foot or vehicle"),
        (NetworkEdgeProperties, {"width_m": -1}, "greater than 0"),
        (ZoneProperties, {"name": "A", "kind": "office", "colour": "x"}, "Extra inputs"),
    ],
)
def test_attribute_rules(model: Any, data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as exc:
        model.model_validate(data)
    assert message in str(exc.value)
