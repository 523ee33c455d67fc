"""What kind of value a config, checkpoint or plugin option holds. Python counts ``True`` as the
number 1; a number here never is a boolean."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["is_number", "is_finite_number", "is_integer"]


def is_number(value: Any) -> bool:
    """Whether ``value`` is an int or float, finite or not (bools excluded)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_finite_number(value: Any) -> bool:
    """Whether ``value`` is a finite int or float (bools excluded)."""
    return is_number(value) and math.isfinite(value)


def is_integer(value: Any) -> bool:
    """Whether ``value`` is a Python int (bools excluded)."""
    return isinstance(value, int) and not isinstance(value, bool)
