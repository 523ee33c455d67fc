"""What the built-in strategies share: the check of their arguments, and their numpy generator's
state in the plain types that ``torch.load(weights_only=True)`` takes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .values import is_finite_number, is_integer

__all__ = [
    "DamagedState",
    "checked_categories",
    "numpy_rng_state",
    "set_numpy_rng_state",
]

_MT_KEYS = 624  # words in a Mersenne-Twister state; its position runs from 0 to this


class DamagedState(ValueError):
    """A saved state that no run writes (NaN, out of range, inconsistent): damaged or tampered.

    :class:`nasframe.runstate.RunState` reports it as a damaged checkpoint; a plain ValueError
    from ``load_state_dict`` means a state that does not fit (another space, another version).
    """


def checked_categories(categories: Sequence[int], lam: int) -> np.ndarray:
    """``categories`` as an int64 array, after checking it and λ (ValueError when wrong)."""
    cats = np.asarray(list(categories), dtype=np.int64)
    if cats.ndim != 1 or cats.size == 0 or (cats < 1).any():
        raise ValueError(f"categories must be a non-empty list of integers >= 1, got {categories}")
    if lam < 2:
        raise ValueError(f"lam must be >= 2, got {lam}")
    return cats


def numpy_rng_state(rng: np.random.RandomState) -> dict[str, Any]:
    """``rng``'s Mersenne-Twister state as lists and numbers."""
    _, keys, pos, has_gauss, cached = rng.get_state()
    return {
        "keys": keys.tolist(),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached": float(cached),
    }


def set_numpy_rng_state(rng: np.random.RandomState, state: dict[str, Any]) -> None:
    """Put ``rng`` back to a state written by :func:`numpy_rng_state`.

    The state is checked first (DamagedState when wrong): numpy takes any position, and one out
    of range makes the next draw read outside the generator's memory.
    """
    raw, pos, has_gauss = state["keys"], state["pos"], state["has_gauss"]
    if not (isinstance(raw, list | tuple) and len(raw) == _MT_KEYS):
        raise DamagedState(f"rng keys are not a list of {_MT_KEYS} numbers")
    if not all(is_integer(k) and 0 <= k < 2**32 for k in raw):
        raise DamagedState("rng keys are not all 32-bit unsigned integers")
    if not (is_integer(pos) and 0 <= pos <= _MT_KEYS):
        raise DamagedState(f"rng position {pos!r} is not a whole number in 0..{_MT_KEYS}")
    if has_gauss not in (0, 1) or not is_finite_number(state["cached"]):
        raise DamagedState("rng has_gauss is not 0 or 1, or its cached value is not a number")
    keys = np.array(raw, dtype=np.uint32)
    rng.set_state(("MT19937", keys, pos, has_gauss, state["cached"]))
