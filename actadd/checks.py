"""Input checks shared by the whole package: a bad argument is a ValueError that names it.

Integers are ``numbers.Integral`` (so ``numpy.int64`` passes) and reals ``numbers.Real``;
``bool`` is neither here, because ``True`` as a layer or a count is always a mistake.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

__all__ = ["integer", "is_int", "is_real", "real", "strings"]


def is_int(value: Any) -> bool:
    """An integer that is not a bool (numpy integers included)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    """A finite real number that is not a bool (numpy floats and integers included)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def integer(value: Any, name: str, *, minimum: int | None = None) -> int:
    """``value`` as an int, refusing non-integers and values below ``minimum``."""
    if not is_int(value) or (minimum is not None and value < minimum):
        bound = f" >= {minimum}" if minimum is not None else ""
        raise ValueError(f"{name} must be an int{bound}, got {value!r}")
    return int(value)


def real(
    value: Any, name: str, *, minimum: float | None = None, maximum: float | None = None, open_minimum: bool = False
) -> float:
    """``value`` as a finite float within ``[minimum, maximum]`` (``(minimum, ...`` with ``open_minimum``)."""
    ok = is_real(value)
    if ok and minimum is not None:
        ok = value > minimum if open_minimum else value >= minimum
    if ok and maximum is not None:
        ok = value <= maximum
    if not ok:
        span = ""
        if minimum is not None or maximum is not None:
            low = "-inf" if minimum is None else f"{minimum:g}"
            high = "inf" if maximum is None else f"{maximum:g}"
            span = (
                f" in {'(' if open_minimum or minimum is None else '['}{low}, {high}{')' if maximum is None else ']'}"
            )
        raise ValueError(f"{name} must be a finite number{span}, got {value!r}")
    return float(value)


def strings(values: str | Sequence[str] | None, name: str) -> list[str]:
    """One string or a non-empty sequence of strings, as a list."""
    if isinstance(values, str):
        return [values]
    if values is None or not isinstance(values, Sequence):
        raise ValueError(f"{name} must be a string or a list of strings, got {values!r}")
    values = list(values)
    if not values:
        raise ValueError(f"{name} is empty: give at least one string")
    bad = [v for v in values if not isinstance(v, str)]
    if bad:
        raise ValueError(f"{name} must be strings, got {bad[0]!r}")
    return values
