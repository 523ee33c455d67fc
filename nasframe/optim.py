"""Building optimizers and learning-rate schedules from their config, through the registry."""

from __future__ import annotations

import inspect
from collections.abc import Iterable

import torch

from . import registry
from .config import OptimizerConfig
from .errors import UserError

__all__ = ["build_optimizer", "build_schedule"]


def build_optimizer(
    params: Iterable[torch.nn.Parameter], cfg: OptimizerConfig
) -> torch.optim.Optimizer:
    """The registered optimizer ``cfg.name`` with the config's keyword arguments.

    ``gc: conv|all`` wraps any optimizer with Gradient Centralization, through the ``gc`` optimizer
    plugin (``nasframe_gc``), so the core never imports a plugin.
    """
    kwargs = cfg.kwargs()
    params = list(params)
    try:
        if cfg.gc:
            wrapper = registry.get("optimizer", "gc")
            return wrapper(params, base=cfg.name, mode=cfg.gc, **kwargs)
        cls = registry.get("optimizer", cfg.name)
        if "foreach" not in kwargs and _foreach_on_cpu(cls, params):
            kwargs["foreach"] = True
        return cls(params, **kwargs)
    except (TypeError, ValueError) as e:  # torch's own checks: "Invalid momentum value: -1"
        raise UserError(f"optimizer '{cfg.name}': {e}") from None


def _foreach_on_cpu(cls: type, params: list) -> bool:
    """Whether to ask one of torch's own optimizers for its multi-tensor (foreach) step on CPU
    parameters: torch uses it by default on CUDA only, but it does the same arithmetic (bit for bit)
    with one call per step instead of several per parameter, which on a supernet's hundreds of
    parameter tensors is most of the optimizer's time."""
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        return False
    if not cls.__module__.startswith("torch.optim."):
        return False
    try:
        accepts = "foreach" in inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return False
    tensors = [p for p in params if isinstance(p, torch.Tensor)]
    return (
        accepts
        and bool(tensors)
        and len(tensors) == len(params)
        and all(p.device.type == "cpu" for p in tensors)
    )


def build_schedule(
    optimizer: torch.optim.Optimizer, cfg: OptimizerConfig, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-step schedule: cosine annealing to 0 over the run, or constant."""
    if cfg.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total_steps))
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
