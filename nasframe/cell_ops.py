"""Candidate operations of cell spaces (the ENAS micro cell of ASNG-NAS), by name.

Cell ops are not the chain ``op`` plugins: they always map C channels to C channels, their stride is
set by the cell (2 on the inputs of a reduction cell, where ``identity`` becomes
:class:`FactorizedReduce`), and their layers follow the reference (shirakawas/ASNG-NAS,
``operations.py``): a separable convolution is (ReLU, depth-wise k×k, point-wise 1×1, BN) twice, and
the average pool counts the zero padding (``count_include_pad=True``, torch's default).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = ["CELL_OPS", "FactorizedReduce", "ReLUConvBN", "SepConv", "DilConv", "build_cell_op"]


def _bn(c: int, affine: bool, track: bool) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, affine=affine, track_running_stats=track)


class ReLUConvBN(nn.Sequential):
    """ReLU, k×k convolution (no bias), BatchNorm: the preprocessing of a cell's inputs."""

    def __init__(
        self, c_in: int, c_out: int, k: int, stride: int, affine: bool, track: bool = True
    ) -> None:
        super().__init__(
            nn.ReLU(),
            nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, bias=False),
            _bn(c_out, affine, track),
        )


class FactorizedReduce(nn.Module):
    """Halves the resolution without losing half of the pixels: two stride-2 1×1 convolutions, the
    second shifted by one pixel, concatenated (``c_out`` must be even)."""

    def __init__(self, c_in: int, c_out: int, affine: bool, track: bool = True) -> None:
        super().__init__()
        self.relu = nn.ReLU()
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.bn = _bn(c_out, affine, track)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(x[:, :, 1:, 1:])], dim=1))


class SepConv(nn.Sequential):
    """(ReLU, depth-wise k×k, point-wise 1×1, BN) twice; only the first depth-wise conv strides."""

    def __init__(self, c: int, k: int, stride: int, affine: bool, track: bool = True) -> None:
        p = k // 2
        super().__init__(
            nn.ReLU(),
            nn.Conv2d(c, c, k, stride=stride, padding=p, groups=c, bias=False),
            nn.Conv2d(c, c, 1, bias=False),
            _bn(c, affine, track),
            nn.ReLU(),
            nn.Conv2d(c, c, k, stride=1, padding=p, groups=c, bias=False),
            nn.Conv2d(c, c, 1, bias=False),
            _bn(c, affine, track),
        )


class DilConv(nn.Sequential):
    """ReLU, dilated (2) depth-wise k×k, point-wise 1×1, BN (DARTS's dil_conv; not in ENAS)."""

    def __init__(self, c: int, k: int, stride: int, affine: bool, track: bool = True) -> None:
        super().__init__(
            nn.ReLU(),
            nn.Conv2d(c, c, k, stride=stride, padding=k - 1, dilation=2, groups=c, bias=False),
            nn.Conv2d(c, c, 1, bias=False),
            _bn(c, affine, track),
        )


def _identity(c: int, stride: int, affine: bool, track: bool) -> nn.Module:
    return nn.Identity() if stride == 1 else FactorizedReduce(c, c, affine, track)


#: name -> builder(channels, stride, affine, track_running_stats). The first five are ENAS's.
CELL_OPS: dict[str, Callable[[int, int, bool, bool], nn.Module]] = {
    "identity": _identity,
    "avg_pool3": lambda c, s, a, t: nn.AvgPool2d(3, stride=s, padding=1),
    "max_pool3": lambda c, s, a, t: nn.MaxPool2d(3, stride=s, padding=1),
    "sep_conv3": lambda c, s, a, t: SepConv(c, 3, s, a, t),
    "sep_conv5": lambda c, s, a, t: SepConv(c, 5, s, a, t),
    "dil_conv3": lambda c, s, a, t: DilConv(c, 3, s, a, t),
    "dil_conv5": lambda c, s, a, t: DilConv(c, 5, s, a, t),
    "conv1": lambda c, s, a, t: ReLUConvBN(c, c, 1, s, a, t),
    "conv3": lambda c, s, a, t: ReLUConvBN(c, c, 3, s, a, t),
}


def build_cell_op(name: str, channels: int, stride: int, affine: bool, track: bool) -> nn.Module:
    """One cell op: ``channels`` -> ``channels`` at ``stride`` (1, or 2 in reduction cells)."""
    return CELL_OPS[name](channels, stride, affine, track)
