"""Candidate operations of a search space.

An op is a class registered in the ``op`` registry (entry-point group ``nasframe.ops``) whose
``build(in_channels, out_channels, stride, layout)`` returns a list of standard torch modules. The
same list serves twice: the frozen network is made of exactly these modules, and the supernet slices
their max-width weights to the sampled width (see :mod:`nasframe.slicing`). Sliceable ops are made of
Conv/Linear/BatchNorm/activation/pool layers in which every full (non depth-wise) weight layer maps
the current channels to the op's output channels.
"""

from __future__ import annotations

from typing import ClassVar

from torch import nn

__all__ = [
    "Op",
    "LAYOUTS",
    "layer_types",
    "Identity",
    "Conv",
    "Conv1",
    "Conv3",
    "Conv5",
    "Conv7",
    "SepConv3",
    "SepConv5",
    "MaxPool3",
    "AvgPool3",
    "LinearReLU",
    "Dense",
    "Conv3NoBN",
    "Conv5NoBN",
]

#: Layout name -> number of spatial dimensions (0: vectors).
LAYOUTS: dict[str, int] = {"linear": 0, "conv1d": 1, "conv2d": 2}


def layer_types(layout: str) -> dict[str, type[nn.Module]]:
    """Torch module classes of a layout: conv, bn, max_pool, avg_pool."""
    dims = LAYOUTS[layout]
    if dims == 0:
        return {"bn": nn.BatchNorm1d}
    return {
        "conv": (nn.Conv1d, nn.Conv2d)[dims - 1],
        "bn": (nn.BatchNorm1d, nn.BatchNorm2d)[dims - 1],
        "max_pool": (nn.MaxPool1d, nn.MaxPool2d)[dims - 1],
        "avg_pool": (nn.AvgPool1d, nn.AvgPool2d)[dims - 1],
    }


class Op:
    """Base class of an op plugin."""

    #: Layouts the op can be built for.
    layouts: ClassVar[tuple[str, ...]] = ("conv1d", "conv2d")
    #: Whether the op can only map C channels to C channels (pools, identity).
    channel_preserving: ClassVar[bool] = False

    @classmethod
    def build(
        cls, in_channels: int, out_channels: int, stride: int, layout: str
    ) -> list[nn.Module]:
        """The op's layers from ``in_channels`` to ``out_channels`` at ``stride`` for
        ``layout`` (conv1d, conv2d or linear): standard torch modules, which the supernet slices
        to sampled widths."""
        raise NotImplementedError


class Identity(Op):
    """No operation (same width); at stride s > 1 it keeps every s-th position (a parameter-free
    subsampling, as a 1-wide pooling does), so a strided stage still reduces the resolution."""

    layouts = ("linear", "conv1d", "conv2d")
    channel_preserving = True

    @classmethod
    def build(cls, in_channels, out_channels, stride, layout):
        if stride == 1:
            return []
        return [layer_types(layout)["max_pool"](1, stride=stride)]


class Conv(Op):
    """Convolution (no bias) + BatchNorm + ReLU."""

    kernel: ClassVar[int] = 3

    @classmethod
    def build(cls, in_channels, out_channels, stride, layout):
        t = layer_types(layout)
        k = cls.kernel
        return [
            t["conv"](in_channels, out_channels, k, stride=stride, padding=k // 2, bias=False),
            t["bn"](out_channels),
            nn.ReLU(),
        ]


class Conv1(Conv):
    kernel = 1


class Conv3(Conv):
    kernel = 3


class Conv5(Conv):
    kernel = 5


class Conv7(Conv):
    kernel = 7


class SepConv(Op):
    """Depth-wise convolution + point-wise convolution + BatchNorm + ReLU."""

    kernel: ClassVar[int] = 3

    @classmethod
    def build(cls, in_channels, out_channels, stride, layout):
        t = layer_types(layout)
        k = cls.kernel
        return [
            t["conv"](
                in_channels,
                in_channels,
                k,
                stride=stride,
                padding=k // 2,
                groups=in_channels,
                bias=False,
            ),
            t["conv"](in_channels, out_channels, 1, bias=False),
            t["bn"](out_channels),
            nn.ReLU(),
        ]


class SepConv3(SepConv):
    kernel = 3


class SepConv5(SepConv):
    kernel = 5


class MaxPool3(Op):
    """3-wide max pooling (same width)."""

    channel_preserving = True

    @classmethod
    def build(cls, in_channels, out_channels, stride, layout):
        return [layer_types(layout)["max_pool"](3, stride=stride, padding=1)]


class AvgPool3(Op):
    """3-wide average pooling, padding not counted (same width)."""

    channel_preserving = True

    @classmethod
    def build(cls, in_channels, out_channels, stride, layout):
        pool = layer_types(layout)["avg_pool"]
        return [pool(3, stride=stride, padding=1, count_include_pad=False)]


class LinearReLU(Op):
    """Fully connected layer (no bias) + BatchNorm + ReLU, for vector inputs."""

    layouts = ("linear",)

    @classmethod
    def build(cls, in_channels, out_channels, stride, layout):
        return [
            nn.Linear(in_channels, out_channels, bias=False),
            nn.BatchNorm1d(out_channels),
            nn.ReLU(),
        ]


class Dense(Op):
    """Fully connected layer with bias + ReLU, no BatchNorm (the layer Adam-sparsity prunes)."""

    layouts = ("linear",)

    @classmethod
    def build(cls, in_channels, out_channels, stride, layout):
        return [nn.Linear(in_channels, out_channels), nn.ReLU()]


class ConvNoBN(Op):
    """Convolution with bias + ReLU, no BatchNorm (units can switch off for pruning)."""

    kernel: ClassVar[int] = 3

    @classmethod
    def build(cls, in_channels, out_channels, stride, layout):
        k = cls.kernel
        conv = layer_types(layout)["conv"]
        return [conv(in_channels, out_channels, k, stride=stride, padding=k // 2), nn.ReLU()]


class Conv3NoBN(ConvNoBN):
    kernel = 3


class Conv5NoBN(ConvNoBN):
    kernel = 5
