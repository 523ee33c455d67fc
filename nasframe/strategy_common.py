"""What the built-in strategies share: the check of their arguments, and their numpy generator's
state in the plain types that ``torch.load(weights_only=True)`` takes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["checked_categories", "numpy_rng_state", "set_numpy_rng_state"]


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
    """Put ``rng`` back to a state written by :func:`numpy_rng_state`."""
    keys = np.array(state["keys"], dtype=np.uint32)
    rng.set_state(("MT19937", keys, state["pos"], state["has_gauss"], state["cached"]))
