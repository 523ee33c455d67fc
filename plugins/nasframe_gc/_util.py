"""Helpers shared by the optimizers: foreach default, dtype handling, grouping, step counters."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "as_param_dtype",
    "check_dense",
    "check_non_negative",
    "evaluate_closure",
    "group_by_device_dtype",
    "new_step",
    "use_foreach",
]


def _foreach_devices() -> list[str]:
    try:
        from torch.utils._foreach_utils import _get_foreach_kernels_supported_devices

        return list(_get_foreach_kernels_supported_devices())
    except Exception:  # pragma: no cover - older/newer torch without the private helper
        return ["cuda"]


def use_foreach(foreach: bool | None, params: Sequence[Tensor]) -> bool:
    """``foreach`` if given, else (like torch.optim) True when every param lives on a device with
    multi-tensor kernels (CUDA), False otherwise (e.g. CPU)."""
    if foreach is not None:
        return bool(foreach)
    if torch.jit.is_scripting():  # pragma: no cover
        return False
    devices = _foreach_devices()
    return all(p.device.type in devices for p in params)


def as_param_dtype(grad: Tensor, param: Tensor) -> Tensor:
    """The gradient in the parameter's dtype (a new tensor only when a cast is needed), so that
    bf16/fp16 gradients of fp32 parameters are handled in fp32."""
    return grad if grad.dtype == param.dtype else grad.to(param.dtype)


def check_dense(grad: Tensor, name: str) -> None:
    if grad.is_sparse:
        raise RuntimeError(f"{name} does not support sparse gradients")


def new_step() -> Tensor:
    """A fresh step counter, a CPU scalar tensor like torch.optim's ``state['step']``."""
    dtype = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
    return torch.zeros((), dtype=dtype)


def group_by_device_dtype(params: Sequence[Tensor]) -> dict[tuple[Any, Any], list[int]]:
    """Indices of ``params`` grouped by (device, dtype), for the multi-tensor kernels."""
    groups: dict[tuple[Any, Any], list[int]] = defaultdict(list)
    for i, p in enumerate(params):
        groups[(p.device, p.dtype)].append(i)
    return groups


def evaluate_closure(closure: Callable[[], Any] | None) -> Any:
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


def check_non_negative(**values: float) -> None:
    for name, v in values.items():
        if not 0.0 <= v:
            raise ValueError(f"Invalid {name} value: {v}")
