"""The contract of a search strategy: what nasframe calls on it and reads from it.

A strategy (ASNG, random search, or a ``strategy`` plugin) is built as
``Strategy(categories, *, lam, seed, **search.strategy_options)`` (plus ``ordinal=[rows]`` when
the space has ordinal choices) and must have the members of :class:`Strategy`. It may also have,
and nasframe looks for them by name (:data:`OPTIONAL`):

- ``mle() -> int array (d,)``: the most likely architecture; without it a search ends with a
  final selection among architectures it samples;
- ``converged(fraction) -> bool`` and ``convergence() -> float``: for
  ``search.stop_when_converged``, and the threshold a converged run's resume message names;
- ``ordinal_mean``, ``ordinal_std``: the Gaussians of ordinal choices, logged to TensorBoard;
- ``delta``, ``Delta``, ``snr``: ASNG's step sizes and signal-to-noise ratio, logged too.

A plugin's strategy runs behind :class:`~nasframe.checked_strategy.CheckedStrategy`, which names
the plugin when one of these calls fails or returns what the contract does not allow.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["Strategy", "OPTIONAL"]

#: Members a strategy may have, looked for by name.
OPTIONAL = (
    "mle",
    "converged",
    "convergence",
    "ordinal_mean",
    "ordinal_std",
    "delta",
    "Delta",
    "snr",
)


@runtime_checkable
class Strategy(Protocol):
    """The members every strategy has (see the module's docstring for the optional ones)."""

    #: The distribution, one row per choice, padded to the largest number of options (d, max C).
    theta: np.ndarray

    def sample(self, n: int) -> np.ndarray:
        """``n`` architectures, one row of option indices each: an int array (n, d)."""
        ...

    def update(self, samples: np.ndarray, losses: Sequence[float]) -> None:
        """Move the distribution given the losses of ``samples`` (the very array
        :meth:`sample` returned)."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint holds, in types ``torch.load(weights_only=True)`` reads."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`'s ``state``."""
        ...
