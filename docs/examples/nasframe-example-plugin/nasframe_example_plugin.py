"""An example nasframe plugin: it imports only nasframe's public API (and torch)."""

from __future__ import annotations

import torch
from torch import nn

from nasframe import Dataset, Op, layer_types, registry


class DilatedConv3(Op):
    """A 3-wide convolution with dilation 2 (receptive field 5) + BatchNorm + ReLU."""

    layouts = ("conv1d", "conv2d")

    @classmethod
    def build(cls, in_channels, out_channels, stride, layout):
        t = layer_types(layout)
        return [
            t["conv"](
                in_channels, out_channels, 3, stride=stride, padding=2, dilation=2, bias=False
            ),
            t["bn"](out_channels),
            nn.ReLU(),
        ]


def noisy_digits(root: str | None = None, noise: float = 0.1, seed: int = 0) -> Dataset:
    """scikit-learn's digits with Gaussian noise added (a dataset plugin built on another one)."""
    base = registry.get("dataset", "digits")()
    g = torch.Generator().manual_seed(seed)

    def noisy(x: torch.Tensor) -> torch.Tensor:
        return x + noise * torch.randn(x.shape, generator=g)

    return Dataset(
        "noisy_digits",
        noisy(base.x_train),
        base.y_train,
        noisy(base.x_test),
        base.y_test,
        base.num_classes,
    )
