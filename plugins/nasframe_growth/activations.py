"""Activations for growable networks, and the check that new units can learn.

A new unit starts with zero incoming weights, so its pre-activation is exactly 0. For the network
output to stay unchanged the activation must satisfy ``f(0) = 0``; for the unit to receive any
gradient it must also satisfy ``f'(0) != 0``. ``torch.relu`` (and ``nn.ReLU``, ``F.relu``,
``nn.ReLU6``) define the derivative at 0 as 0, so new units behind them never learn. ``ReLU0``
computes the same values with ``clamp(min=0)``, whose derivative at 0 is 1.
"""

from __future__ import annotations

import torch
from torch import nn


class GrowthError(ValueError):
    """A pair cannot be grown (unsupported module, inconsistent shapes, bad activation)."""


class DeadActivationError(GrowthError):
    """An activation between the pair has derivative 0 at 0: new units would never learn."""


class ReLU0(nn.Module):
    """ReLU with derivative 1 at 0 (``x.clamp(min=0)``); same values as ``nn.ReLU``."""

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp_(min=0) if self.inplace else x.clamp(min=0)

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


def replace_relu(module: nn.Module) -> int:
    """Replace every ``nn.ReLU`` inside ``module`` (recursively, in place) by ``ReLU0``.

    Returns the number of modules replaced. ``module`` itself cannot be replaced (call
    ``ReLU0()`` yourself if the root is a ReLU).
    """
    count = 0
    for name, child in list(module.named_children()):
        if type(child) is nn.ReLU:
            setattr(module, name, ReLU0(inplace=child.inplace))
            count += 1
        else:
            count += replace_relu(child)
    return count


_HINT = (
    "torch.relu / nn.ReLU / F.relu have derivative 0 at 0, so units grown with zero incoming "
    "weights never receive a gradient. Use nasframe_growth.ReLU0 (clamp(min=0)) instead, e.g. "
    "nasframe_growth.replace_relu(model) before growing, or pass check_activations=False to "
    "grow anyway."
)


def check_zero_response(module: nn.Module, x0: torch.Tensor, where: str = "") -> None:
    """Check ``f(0) = 0`` and ``f'(0) != 0`` for ``module`` on the all-zero tensor ``x0``.

    Raises ``GrowthError`` when ``f(0) != 0`` (growth would change the output) and
    ``DeadActivationError`` when the derivative at 0 is zero everywhere.
    """
    leaf = torch.zeros_like(x0).requires_grad_(True)
    with torch.enable_grad():
        y0 = module(leaf.clone())  # a non-leaf copy, so in-place activations work
        if not isinstance(y0, torch.Tensor):
            return
        if y0.detach().abs().max().item() != 0.0:
            raise GrowthError(
                f"{module!r}{where} maps 0 to a non-zero value: units grown with zero incoming "
                "weights would change the network output (need f(0) = 0)."
            )
        if not y0.requires_grad:
            raise DeadActivationError(f"{module!r}{where} does not propagate gradients. " + _HINT)
        (g,) = torch.autograd.grad(y0.sum(), leaf, allow_unused=True)
    if g is None or g.abs().max().item() == 0.0:
        raise DeadActivationError(f"{module!r}{where} has derivative 0 at 0. " + _HINT)
