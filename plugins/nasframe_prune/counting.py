"""Parameter and MAC counts (multiply-accumulates of Linear and convolution layers).

One MAC is one multiply-add (a FLOP counter counts it as 2 FLOPs); the totals equal what
``nasframe.count_macs`` (``search.cost: macs``) counts, here with forward hooks on the
model as given.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import nn

from .graph import eval_mode

__all__ = ["count_parameters", "model_macs", "layer_macs", "count_flops", "layer_flops"]

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (buffers such as BatchNorm running statistics not included)."""
    return sum(p.numel() for p in model.parameters())


def layer_macs(model: nn.Module, example_input: torch.Tensor) -> dict[str, int]:
    """Multiply-accumulates per example of every Linear and convolution, by module path.

    Linear: ``out_elements * in_features``; convolution: ``out_elements * in_channels / groups *
    prod(kernel_size)`` (biases, normalisation, activations and pools are not counted). The model
    is run once, in eval mode, on the first example of ``example_input``.
    """
    macs: dict[str, int] = {}
    handles = []

    def hook(path: str):
        def fn(m: nn.Module, inputs, out: torch.Tensor) -> None:
            per_example = out.numel() // max(out.shape[0], 1) if out.dim() > 1 else out.numel()
            if isinstance(m, nn.Linear):
                k = m.in_features
            else:
                k = m.in_channels // m.groups * math.prod(m.kernel_size)
            macs[path] = macs.get(path, 0) + per_example * k

        return fn

    for path, m in model.named_modules():
        if isinstance(m, (nn.Linear, *_CONVS)):
            handles.append(m.register_forward_hook(hook(path)))
    try:
        with torch.no_grad(), eval_mode(model):
            model(example_input[:1])
    finally:
        for h in handles:
            h.remove()
    return macs


def model_macs(model: nn.Module, example_input: torch.Tensor) -> int:
    """Total multiply-accumulates per example of the Linear and convolution layers (the sum of
    :func:`layer_macs`)."""
    return sum(layer_macs(model, example_input).values())


def deprecated(old: str, new: str) -> None:
    """Warn the caller's caller that ``old`` (a FLOP name for a MAC count) is now ``new``."""
    warnings.warn(
        f"{old} is deprecated: use {new} (the same count; it is multiply-accumulates, not FLOPs)",
        DeprecationWarning,
        stacklevel=3,
    )


def count_flops(model: nn.Module, example_input: torch.Tensor) -> int:
    """Deprecated alias of :func:`model_macs` (which it calls): the count is MACs, not FLOPs."""
    deprecated("nasframe_prune.count_flops", "nasframe_prune.model_macs")
    return model_macs(model, example_input)


def layer_flops(model: nn.Module, example_input: torch.Tensor) -> dict[str, int]:
    """Deprecated alias of :func:`layer_macs` (which it calls): the counts are MACs, not FLOPs."""
    deprecated("nasframe_prune.layer_flops", "nasframe_prune.layer_macs")
    return layer_macs(model, example_input)
