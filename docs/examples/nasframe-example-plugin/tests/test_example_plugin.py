"""The plugin's own tests, as a plugin package keeps them: run `pytest tests` after installing
it. They use nasframe's public API only."""

from __future__ import annotations

import pytest
import torch
from nasframe_example_plugin import DilatedConv3, noisy_digits
from torch import nn

from nasframe import Dataset, registry


def test_the_entry_points_name_the_plugins():
    assert registry.get("op", "dil_conv3") is DilatedConv3
    assert registry.get("dataset", "noisy_digits") is noisy_digits


@pytest.mark.parametrize("layout, side", [("conv1d", (12,)), ("conv2d", (12, 12))])
@pytest.mark.parametrize("stride", [1, 2])
def test_dil_conv3_keeps_the_op_contract(layout, side, stride):
    """nasframe's op contract: out_channels channels out, each side divided by the stride."""
    net = nn.Sequential(*DilatedConv3.build(3, 5, stride, layout))
    y = net(torch.zeros(2, 3, *side))
    assert tuple(y.shape) == (2, 5, *(s // stride for s in side))


def test_noisy_digits_is_digits_with_noise_of_the_asked_size():
    base = registry.get("dataset", "digits")()
    data = noisy_digits(noise=0.5, seed=1)
    assert isinstance(data, Dataset) and data.num_classes == base.num_classes
    assert torch.equal(data.y_train, base.y_train) and torch.equal(data.y_test, base.y_test)
    assert (data.x_train - base.x_train).std().item() == pytest.approx(0.5, rel=0.05)
    assert torch.equal(noisy_digits(noise=0.5, seed=1).x_train, data.x_train)  # seeded
