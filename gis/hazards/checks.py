"""Input checks shared by the hazard models: a refusal always names the field and the reason.

A boolean is refused where a number is expected (``True`` is an ``int`` to Python, never a
release rate), and so are NaN and infinities; every check returns the value as a ``float``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

from gis.errors import FieldError, InvalidInput


def refuse(field: str, reason: str) -> InvalidInput:
    return InvalidInput(f"{field}: {reason}", errors=[FieldError(field, reason)])


def finite(value: object, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise refuse(field, "must be a number")
    number = float(value)
    if not math.isfinite(number):
        raise refuse(field, f"must be finite, got {value!r}")
    return number


def positive(value: object, field: str) -> float:
    number = finite(value, field)
    if number <= 0.0:
        raise refuse(field, f"must be positive, got {value!r}")
    return number


def non_negative(value: object, field: str) -> float:
    number = finite(value, field)
    if number < 0.0:
        raise refuse(field, f"must not be negative, got {value!r}")
    return number


def within(
    value: object,
    field: str,
    *,
    low: float = 0.0,
    high: float = math.inf,
    low_inclusive: bool = False,
) -> float:
    """A finite number within ``low``-``high`` (``low`` itself allowed if ``low_inclusive``)."""
    bound = ">=" if low_inclusive else ">"
    reason = f"a number {bound} {low:g} and <= {high:g}"
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInput(
            f"{field} {value!r} is not a possible value", errors=[FieldError(field, reason)]
        )
    number = float(value)
    if not ((number >= low if low_inclusive else number > low) and number <= high):
        raise InvalidInput(
            f"{field} {value!r} is not a possible value", errors=[FieldError(field, reason)]
        )
    return number


def decreasing_thresholds(thresholds: Sequence[float], field: str) -> tuple[float, ...]:
    """Positive thresholds, strictly decreasing: the innermost (most severe) level first."""
    if isinstance(thresholds, str | bytes) or len(thresholds) == 0:
        raise refuse(field, "must be a non-empty sequence of numbers")
    values = tuple(positive(t, field) for t in thresholds)
    if any(later >= earlier for earlier, later in itertools.pairwise(values)):
        raise refuse(field, f"must be strictly decreasing (innermost first), got {values!r}")
    return values
