"""Random search with weight sharing: the baseline every one-shot NAS method should beat.

Li & Talwalkar ("Random Search and Reproducibility for Neural Architecture Search", UAI 2019)
train the supernet on architectures drawn uniformly at random and then keep the candidate that
does best with the shared weights on validation data. :class:`RandomSearch` is the first half: a
strategy that samples every choice uniformly and learns nothing from the losses it is told. It
has no most likely architecture, so the search ends with ``search.select`` (see
:mod:`nasframe.selection`), which draws and ranks the candidates.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .strategy_common import (
    DamagedState,
    checked_categories,
    numpy_rng_state,
    set_numpy_rng_state,
)
from .values import is_integer

__all__ = ["RandomSearch"]


class RandomSearch:
    """Every choice uniform over its options, for the whole search.

    Args:
        categories: number of options C_i of each choice.
        lam: architectures per step, as for any strategy.
        seed: seed of this instance's own ``numpy.random.RandomState``.
        ordinal: rows of choices declared ``ordinal: true``; accepted and sampled uniformly like
            the others (random search has no notion of nearby options).
    """

    def __init__(
        self,
        categories: Sequence[int],
        *,
        lam: int = 2,
        seed: int | None = None,
        ordinal: Sequence[int] = (),
    ) -> None:
        cats = checked_categories(categories, lam)
        self.categories = cats
        self.d = int(cats.size)
        self.lam = int(lam)
        valid = np.arange(int(cats.max()))[None, :] < cats[:, None]
        self._theta = np.where(valid, 1.0 / cats[:, None], 0.0)
        self.rng = np.random.RandomState(seed)
        self.updates = 0

    @property
    def theta(self) -> np.ndarray:
        """The sampling distribution (d, max C): uniform, and it stays so."""
        return self._theta.copy()

    def sample(self, n: int | None = None) -> np.ndarray:
        """Draw ``n`` (default λ) architectures as option indices, shape (n, d): one uniform per
        choice and architecture, option ``floor(u · C_i)``."""
        n = self.lam if n is None else int(n)
        u = self.rng.rand(n, self.d)
        return np.minimum((u * self.categories).astype(np.int64), self.categories - 1)

    def update(self, samples: np.ndarray, losses: Sequence[float]) -> None:
        """Random search learns nothing from the ranking; only the count of updates moves."""
        self.updates += 1

    def state_dict(self) -> dict:
        """The generator's state and the update count, in types ``torch.load(weights_only=True)``
        takes."""
        return {
            "categories": self.categories.tolist(),
            "updates": self.updates,
            "rng": numpy_rng_state(self.rng),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a state written by :meth:`state_dict` (the categories must match: ValueError;
        a count or generator state no run writes: :class:`DamagedState`)."""
        if list(state["categories"]) != self.categories.tolist():
            raise ValueError(
                f"random search state is for categories {state['categories']}, not "
                f"{self.categories.tolist()}"
            )
        updates = state["updates"]
        if not (is_integer(updates) and updates >= 0):
            raise DamagedState(f"random search state: updates is {updates!r}, not a count")
        set_numpy_rng_state(self.rng, state["rng"])  # checks its state before setting it
        self.updates = updates
