"""Numeric precision of forward passes: float32, or bfloat16 autocast as an option for speed.

bf16 autocast runs convolutions and matrix products in bfloat16 (tensor cores on recent GPUs)
while weights, gradients, optimizer state and losses stay float32; bfloat16 has float32's range,
so no loss scaling is needed. Results are not bit-identical to float32: it is an opt-in.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Literal

import torch

__all__ = ["Precision", "autocast"]

#: Values of the ``precision`` fields of ``search`` and ``train``.
Precision = Literal["fp32", "bf16"]


def autocast(device: torch.device | str, precision: str) -> AbstractContextManager:
    """The context in which forward passes (and their losses) run at ``precision``."""
    if precision == "fp32":
        return nullcontext()
    device_type = torch.device(device).type
    return torch.autocast(device_type, dtype=torch.bfloat16)
