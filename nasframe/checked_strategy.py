"""A strategy plugin behind nasframe's checks.

nasframe's own strategies are trusted; a plugin's are called through
:func:`nasframe.registry.call`, so that a method that cannot be called as nasframe calls it, or
that raises, is reported in one line as that plugin's bug, and what it returns is checked: its
samples (an integer array of one row per architecture, an option index for every choice), its
``theta`` (numbers, one row per choice padded to the largest number of options, when read),
``converged(fraction)`` (a bool) and ``convergence()`` (a number in 0..1).
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from . import registry

__all__ = ["CheckedStrategy", "unchecked"]

#: what nasframe calls on a strategy, as it calls it (the others are read as attributes)
_CALLS = {
    "sample": "sample(n)",
    "update": "update(samples, losses)",
    "mle": "mle()",
    "converged": "converged(fraction)",
    "convergence": "convergence()",
}


class CheckedStrategy:
    """``strategy`` (the plugin ``name``'s, for ``categories``) with each call checked; every
    attribute it has (θ, optional methods) is read through, and one it lacks stays missing."""

    def __init__(self, strategy: Any, name: str, categories: Sequence[int]) -> None:
        object.__setattr__(self, "_plugin", strategy)
        object.__setattr__(self, "_plugin_name", name)
        object.__setattr__(self, "_categories", np.asarray(categories, dtype=np.int64))
        try:  # θ is refused before a search starts, not after its first epoch
            theta = strategy.theta
        except AttributeError:  # a strategy without one fails where nasframe reads it
            return
        self._theta(theta)

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_"):  # the wrapper's own (and copy's, pickle's probes): not forwarded
            raise AttributeError(attr)
        value = getattr(self._plugin, attr)
        if attr == "theta":
            return self._theta(value)
        if attr in _CALLS and callable(value):
            return functools.partial(self._call, attr, value)
        return value

    def __setattr__(self, attr: str, value: Any) -> None:
        setattr(self._plugin, attr, value)  # θ set by a user, say: the plugin's own

    def _call(self, attr: str, method: Any, *args: Any) -> Any:
        label = _CALLS[attr].split("(")[0]
        result = registry.call(
            "strategy", self._plugin_name, method, args, label=label, calls=_CALLS[attr]
        )
        if attr == "sample":
            return self._indices(result, (int(args[0]), self._categories.size), label)
        if attr == "mle":
            return self._indices(result, (self._categories.size,), label)
        if attr == "converged":
            if not isinstance(result, bool | np.bool_):  # "yes" would end the search unseen
                raise registry.failure(
                    "strategy",
                    self._plugin_name,
                    f"returned {registry.shown(result)} from converged({args[0]!r}), not True or "
                    "False",
                )
            return bool(result)
        if attr == "convergence":
            if not (
                isinstance(result, numbers.Real)
                and not isinstance(result, bool | np.bool_)
                and math.isfinite(result)
                and 0.0 <= result <= 1.0
            ):
                raise registry.failure(
                    "strategy",
                    self._plugin_name,
                    f"returned {registry.shown(result)} from convergence(), not a number in "
                    "0..1 (the largest fraction at which converged(fraction) holds)",
                )
            return float(result)
        return result

    def _theta(self, theta: Any) -> np.ndarray:
        """The plugin's ``theta`` as an array of numbers, one row per choice and one column per
        option of the choice with the most (d, max C), as nasframe reads it (logs, plots,
        summary.json); else the plugin's failure, saying what it holds."""
        d = self._categories.size
        shape = (d, int(self._categories.max(initial=0)))
        x = self._array(theta, f"has theta {{}}, which is no array of numbers of shape {shape}")
        fits = x.shape == shape or (d == 0 and x.size == 0)
        if not (x.dtype.kind in "iuf" and fits):
            what = (
                f"theta {registry.shown(theta)}"  # None, say: set only at its first sample
                if x.dtype.kind == "O"
                else f"a theta of shape {x.shape} and type {x.dtype}"
            )
            raise registry.failure(
                "strategy",
                self._plugin_name,
                f"has {what}, not numbers of shape {shape} (one row per choice, padded to the "
                "largest number of options; read from the start of the search)",
            )
        return x

    def _array(self, value: Any, what: str) -> np.ndarray:
        """``value`` (a tensor, on the GPU say, nested lists or an array) as a NumPy array; else
        the plugin's failure, ``what`` it did with ``{}`` standing for the value."""
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu()
        try:
            return np.asarray(value)
        except (TypeError, ValueError, RuntimeError) as e:  # ragged rows, say
            what = what.format(registry.shown(value))
            raise registry.failure("strategy", self._plugin_name, f"{what} ({e})") from None

    def _indices(self, result: Any, shape: tuple[int, ...], label: str) -> np.ndarray:
        """``result`` as an int64 array of ``shape`` (architectures x choices), each an option
        index of its choice; else the plugin's failure, saying what it returned."""
        x = self._array(result, f"returned {{}} from {label}, which is no array of option indices")
        if not (np.issubdtype(x.dtype, np.integer) and x.shape == shape):
            raise registry.failure(
                "strategy",
                self._plugin_name,
                f"returned an array of shape {x.shape} and type {x.dtype} from {label}, not "
                f"integers of shape {shape} (an option index per choice)",
            )
        bad = (x < 0) | (x >= self._categories)
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            choice = where[-1]
            raise registry.failure(
                "strategy",
                self._plugin_name,
                f"returned option {int(x[where])} for choice {choice} from {label}, which has "
                f"{int(self._categories[choice])} options",
            )
        return x.astype(np.int64, copy=False)


def unchecked(strategy: Any) -> Any:
    """The strategy itself, without :class:`CheckedStrategy` (what a checkpoint saves)."""
    return strategy._plugin if isinstance(strategy, CheckedStrategy) else strategy
