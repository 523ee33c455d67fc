"""Running standard torch layers at a smaller width by slicing their max-width weights.

This is how the supernet shares weights across widths: a candidate op is built once at its largest
input and output width, and a sampled width uses the leading channels of every weight. BatchNorm
always normalises with the batch's statistics in the supernet: running statistics shared by many
sub-networks of different widths would describe none of them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .errors import UserError

__all__ = ["SlicedOp"]

_CONV_FN = {nn.Conv1d: F.conv1d, nn.Conv2d: F.conv2d, nn.Conv3d: F.conv3d}
_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


class SlicedOp(nn.Module):
    """A sequence of layers that can run at any width up to the one it was built with."""

    def __init__(self, modules: Sequence[nn.Module]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(modules)
        for m in self.layers:
            if isinstance(m, nn.modules.conv._ConvNd):
                if type(m) not in _CONV_FN or m.padding_mode != "zeros":
                    raise UserError(
                        f"cannot slice {m}: only zero-padded Conv1d/2d/3d are supported"
                    )
                if m.groups not in (1, m.in_channels) or m.transposed:
                    raise UserError(f"cannot slice {m}: groups must be 1 or depth-wise")

    def forward(self, x: torch.Tensor, out_width: int) -> torch.Tensor:
        for m in self.layers:
            c = x.shape[1]
            if isinstance(m, nn.modules.conv._ConvNd):
                if m.groups == 1:
                    w = m.weight[:out_width, :c]
                    b = m.bias[:out_width] if m.bias is not None else None
                    groups = 1
                else:  # depth-wise
                    w = m.weight[:c]
                    b = m.bias[:c] if m.bias is not None else None
                    groups = c
                x = _CONV_FN[type(m)](x, w, b, m.stride, m.padding, m.dilation, groups)
            elif isinstance(m, nn.Linear):
                b = m.bias[:out_width] if m.bias is not None else None
                x = F.linear(x, m.weight[:out_width, :c], b)
            elif isinstance(m, _BN):
                w = m.weight[:c] if m.weight is not None else None
                b = m.bias[:c] if m.bias is not None else None
                x = F.batch_norm(x, None, None, w, b, True, 0.0, m.eps)
            else:
                x = m(x)
        return x
