"""Building optimizers and learning-rate schedules from their config, through the registry."""

from __future__ import annotations

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
    try:
        if cfg.gc:
            wrapper = registry.get("optimizer", "gc")
            return wrapper(params, base=cfg.name, mode=cfg.gc, **kwargs)
        return registry.get("optimizer", cfg.name)(params, **kwargs)
    except TypeError as e:
        raise UserError(f"optimizer '{cfg.name}': {e}") from None


def build_schedule(
    optimizer: torch.optim.Optimizer, cfg: OptimizerConfig, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-step schedule: cosine annealing to 0 over the run, or constant."""
    if cfg.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total_steps))
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
