"""Multiply-accumulates of one example's forward pass.

What ``search.cost: macs`` measures: the multiply-accumulates of the matrix products and
convolutions (Linear and conv layers, depth-wise ones included), as PyTorch's FLOP counter sees
the aten operations; normalisation, activations, pools, additions and biases are not counted.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["count_macs"]


def count_macs(model: nn.Module, *input_shapes: Sequence[int]) -> int:
    """MACs of ``model`` (in eval mode) on one example of each input shape (without the batch
    dimension).

    The model runs once on zeros on the CPU. A model on the meta device (how the search builds
    the networks it counts) is first given uninitialised CPU storage: nothing is initialised and
    no random number is drawn, and running tiny tensors on the CPU is faster than the meta
    device's shape functions. Any other model is counted on a copy.
    """
    params = [*model.parameters(), *model.buffers()]
    if params and params[0].device.type == "meta":
        model = model.to_empty(device="cpu")
    elif params and params[0].device.type != "cpu":
        model = copy.deepcopy(model).cpu()
    inputs = [torch.zeros((1, *shape), device="cpu") for shape in input_shapes]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(*inputs)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2
