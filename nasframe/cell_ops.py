"""Candidate operations of cell spaces (the ENAS micro cell of ASNG-NAS): the ``cell_op`` plugins.

Cell ops are not the chain ``op`` plugins: they always map C channels to C channels, their stride is
set by the cell (2 on the inputs of a reduction cell, where ``identity`` becomes
:class:`FactorizedReduce`), and their layers follow the reference (shirakawas/ASNG-NAS,
``operations.py``): a separable convolution is (ReLU, depth-wise k×k, point-wise 1×1, BN) twice, and
the average pool counts the zero padding (``count_include_pad=True``, torch's default).
"""

from __future__ import annotations

import torch
from torch import nn

from . import registry

__all__ = ["FactorizedReduce", "ReLUConvBN", "SepConv", "DilConv", "build_cell_op"]


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
        """Half the height and width: two stride-2 1×1 convolutions, the second shifted by one
        pixel, concatenated (so no pixel is skipped)."""
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


# The built-in cell ops, registered as ``cell_op`` plugins by this distribution's entry points.
# A cell op is a callable (channels, stride, affine, track_running_stats) -> nn.Module that maps
# (N, C, H, W) to (N, C, H / stride, W / stride); stride is 2 on a reduction cell's inputs.


def identity(c: int, stride: int, affine: bool, track: bool) -> nn.Module:
    """The input itself (a :class:`FactorizedReduce` where the cell reduces)."""
    return nn.Identity() if stride == 1 else FactorizedReduce(c, c, affine, track)


def avg_pool3(c: int, stride: int, affine: bool, track: bool) -> nn.Module:
    """3×3 average pool (the zero padding counts, as in the reference)."""
    return nn.AvgPool2d(3, stride=stride, padding=1)


def max_pool3(c: int, stride: int, affine: bool, track: bool) -> nn.Module:
    """3×3 max pool."""
    return nn.MaxPool2d(3, stride=stride, padding=1)


def sep_conv3(c: int, stride: int, affine: bool, track: bool) -> nn.Module:
    """3×3 separable convolution, twice."""
    return SepConv(c, 3, stride, affine, track)


def sep_conv5(c: int, stride: int, affine: bool, track: bool) -> nn.Module:
    """5×5 separable convolution, twice."""
    return SepConv(c, 5, stride, affine, track)


def dil_conv3(c: int, stride: int, affine: bool, track: bool) -> nn.Module:
    """3×3 dilated separable convolution."""
    return DilConv(c, 3, stride, affine, track)


def dil_conv5(c: int, stride: int, affine: bool, track: bool) -> nn.Module:
    """5×5 dilated separable convolution."""
    return DilConv(c, 5, stride, affine, track)


def conv1(c: int, stride: int, affine: bool, track: bool) -> nn.Module:
    """ReLU, 1×1 convolution, BatchNorm."""
    return ReLUConvBN(c, c, 1, stride, affine, track)


def conv3(c: int, stride: int, affine: bool, track: bool) -> nn.Module:
    """ReLU, 3×3 convolution, BatchNorm."""
    return ReLUConvBN(c, c, 3, stride, affine, track)


def build_cell_op(name: str, channels: int, stride: int, affine: bool, track: bool) -> nn.Module:
    """One registered cell op: ``channels`` -> ``channels`` at ``stride`` (1, or 2 in reduction
    cells). A cell op that raises, or returns something other than a module, is the plugin's bug:
    a :class:`~nasframe.registry.PluginFailure` naming it, as is a module whose output does not
    have ``channels`` channels (:func:`~nasframe.op_checks.check_cell_op`)."""
    from .op_checks import check_cell_op

    module = registry.call(
        "cell_op",
        name,
        registry.get("cell_op", name),
        (channels, stride, affine, track),
        returns=(lambda m: isinstance(m, nn.Module), "an nn.Module"),
    )
    check_cell_op(name, module, channels, stride)
    return module
