"""The Gradient Centralization operator and the rule saying which tensors it acts on.

``GC(x) = x - x.mean(dim=all but 0, keepdim=True)``: one mean per output row / channel. ``_GC``
variants act on tensors with ``dim > 1`` (conv kernels and linear weights), ``_GCC`` variants on
``dim > 3`` only (conv kernels). Biases and normalisation parameters are 1-D and never centralized.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

__all__ = ["MODES", "applies", "centralize", "centralize_", "centralize_list", "min_dim_for"]

#: mode name -> smallest tensor rank that is centralized.
MODES: dict[str, int] = {"all": 2, "conv": 4}


def min_dim_for(mode: str) -> int:
    """The smallest rank centralized by ``mode`` (``"all"``: dim > 1, ``"conv"``: dim > 3)."""
    try:
        return MODES[str(mode).lower()]
    except KeyError:
        raise ValueError(
            f"unknown mode {mode!r} of gradient centralization; expected one of {sorted(MODES)}"
        ) from None


def applies(t: Tensor, min_dim: int | None) -> bool:
    """Whether GC acts on ``t`` (``min_dim`` None: GC disabled)."""
    return min_dim is not None and t.dim() >= min_dim


def _row_mean(t: Tensor) -> Tensor:
    return t.mean(dim=tuple(range(1, t.dim())), keepdim=True)


def centralize(t: Tensor) -> Tensor:
    """``t`` minus its per-row mean, as a new tensor (``t`` is left untouched)."""
    return t - _row_mean(t)


def centralize_(t: Tensor) -> Tensor:
    """Centralize ``t`` in place and return it. Only for tensors the caller owns."""
    return t.sub_(_row_mean(t))


def centralize_list(
    tensors: Sequence[Tensor], min_dim: int | None, *, inplace: bool = False
) -> list[Tensor]:
    """Centralize the tensors of a list that GC applies to; the others are passed through.

    ``inplace=True`` only when every tensor of the list is a temporary owned by the caller.
    """
    out = list(tensors)
    if min_dim is None:
        return out
    op = centralize_ if inplace else centralize
    for i, t in enumerate(out):
        if t.dim() >= min_dim:
            out[i] = op(t)
    return out
