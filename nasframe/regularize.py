"""The L2 penalty added to the loss (``train.l2``): coupled L2, as Adam-sparsity pruning needs."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["l2_penalty"]

_WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def l2_penalty(model: nn.Module, coefficient: float, *, include_bias: bool = True) -> torch.Tensor:
    """``coefficient / 2 * sum ||W||^2`` over the weights of every Linear and convolution.

    Added to the loss, its gradient is ``coefficient * W``: the coupled L2 of
    ``torch.optim.Adam(weight_decay=...)`` restricted to these layers, not AdamW's decoupled decay.
    ``include_bias`` (default) adds their biases: the bias of a unit that never fires gets no
    gradient from the data, so only the penalty makes it decay. BatchNorm parameters are left out.
    """
    squares = [
        p.pow(2).sum()
        for m in model.modules()
        if isinstance(m, _WEIGHT_LAYERS)
        for p in ([m.weight] + ([m.bias] if include_bias and m.bias is not None else []))
    ]
    if not squares:
        return torch.zeros(())
    return 0.5 * coefficient * torch.stack(squares).sum()
