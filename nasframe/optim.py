"""Building optimizers and learning-rate schedules from their config, through the registry."""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterable
from typing import Any

import torch

from . import registry
from .config import OptimizerConfig
from .errors import UserError
from .values import is_number

__all__ = ["build_optimizer", "check_optimizer", "build_schedule"]


def build_optimizer(
    params: Iterable[torch.nn.Parameter], cfg: OptimizerConfig, where: str = "optimizer"
) -> torch.optim.Optimizer:
    """The registered optimizer ``cfg.name`` with the config's keyword arguments.

    ``gc: conv|all`` wraps any optimizer with Gradient Centralization, through the ``gc`` optimizer
    plugin (``nasframe_gc``), so the core never imports a plugin. ``where`` is the config path of
    ``cfg`` (``search.optimizer``, ``train.optimizer``): errors start with it (or one of its keys).
    """
    cls = registry.get("optimizer", cfg.name)
    kwargs = _checked_kwargs(cls, cfg.kwargs(), where)
    params = list(params)
    refuse_unsupported(kwargs, params, where)
    torch_own = _from_torch(cls)

    def blame(e: Exception) -> str | None:
        """torch's own checks ("Invalid momentum value: -1") blame the user, as does a plugin's
        error that names one of the user's options; any other error is the plugin's."""
        at = _blamed(str(e), kwargs, where)
        if torch_own or at != where:
            return f"{at}: optimizer '{cfg.name}': {e}"
        return None

    returns = (
        lambda o: isinstance(o, torch.optim.Optimizer) and _takes_lr(o, cfg.lr),
        f"a torch.optim.Optimizer with the lr given ({cfg.lr:g}) in its param_groups",
    )
    options = {k: v for k, v in kwargs.items() if k != "lr"}  # the user's (lr: every optimizer's)
    if cfg.gc:

        def gc_blame(e: Exception) -> str | None:
            """An option's refusal at its key; GC's own refusals of what the config combines
            (sgd_gc with gc: conv) are the user's too, at ``gc``."""
            at = _blamed(str(e), kwargs, where)
            if at == where and isinstance(e, ValueError):
                return f"{where}.gc: {e}"
            return blame(e)

        return registry.call(
            "optimizer",
            "gc",
            registry.get("optimizer", "gc"),
            (params,),
            {"base": cfg.name, "mode": cfg.gc, **kwargs},
            options=options,
            where=where,
            blame=gc_blame,
            returns=returns,
        )
    if "foreach" not in kwargs and not kwargs.get("fused") and _foreach_on_cpu(cls, params):
        kwargs["foreach"] = True
    return registry.call(
        "optimizer",
        cfg.name,
        cls,
        (params,),
        kwargs,
        label=cfg.name,
        options=options,
        where=where,
        blame=blame,
        returns=returns,
    )


def refuse_unsupported(kwargs: dict[str, Any], params: list, where: str) -> None:
    """Refuse, at its key, what torch's optimizers take but a run cannot use: ``differentiable``
    (the run's steps are not differentiated through; torch fails in its first step) and
    ``capturable`` for parameters that are not on a CUDA device (torch asserts it there); and
    ``fused`` with ``foreach``, which torch refuses only once it has parameters."""
    if kwargs.get("fused") and kwargs.get("foreach"):
        raise UserError(
            f"{where}.fused: cannot be true together with foreach: true (a step is fused or "
            "multi-tensor, not both); remove one"
        )
    if kwargs.get("differentiable"):
        raise UserError(
            f"{where}.differentiable: not supported (nasframe does not differentiate through "
            "the optimizer's steps); remove it"
        )
    if kwargs.get("capturable") and any(p.device.type != "cuda" for p in params):
        raise UserError(
            f"{where}.capturable: needs the parameters on a CUDA device, these are on "
            f"{next(p.device for p in params if p.device.type != 'cuda')}; remove it, or set "
            "device: cuda"
        )


#: torch's refusal of an optimizer given no parameters, which it checks after their options
_NO_PARAMETERS = "optimizer got an empty parameter list"


def check_optimizer(cfg: OptimizerConfig, where: str = "optimizer") -> None:
    """Raise what :func:`build_optimizer` would raise for ``cfg``'s options, with no network to
    optimize (``nasframe validate``). torch's own optimizers check their options before their
    parameters, so they are given none: their first parameter group imports ``torch._dynamo``,
    seconds that validating need not spend. A plugin's, or one that ``gc`` wraps, is built on one
    stand-in parameter."""
    if _from_torch(registry.get("optimizer", cfg.name)) and not cfg.gc:
        try:
            build_optimizer([], cfg, where)
        except UserError as e:
            if not str(e).endswith(_NO_PARAMETERS):
                raise
        return
    build_optimizer([torch.nn.Parameter(torch.zeros(1))], cfg, where)


def _from_torch(cls: Any) -> bool:
    """Whether ``cls`` is one of torch's own optimizers (whose errors are about their options)."""
    return isinstance(cls, type) and (cls.__module__ or "").startswith("torch.optim")


def _checked_kwargs(cls: Any, kwargs: dict[str, Any], where: str) -> dict[str, Any]:
    """``kwargs`` with each value of the kind of its default in ``cls``'s signature (a number, a
    boolean, a list of numbers), or a UserError at its key. Numbers written as text, which YAML
    gives for ``1e-4``, are read as numbers, as they are for ``lr``."""
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return kwargs
    checked = dict(kwargs)
    for key, value in kwargs.items():
        p = params.get(key)
        if p is None or key == "lr":
            continue
        default = p.default
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise UserError(f"{where}.{key}: expected true or false, got {value!r}")
        elif isinstance(default, (int, float)):
            checked[key] = _number(value, f"{where}.{key}", "a number")
        elif isinstance(default, tuple) and default and all(is_number(d) for d in default):
            what = f"a list of {len(default)} numbers"
            if not isinstance(value, (list, tuple)) or len(value) != len(default):
                raise UserError(f"{where}.{key}: expected {what}, got {value!r}")
            try:
                checked[key] = tuple(_number(v, f"{where}.{key}", what) for v in value)
            except UserError:
                raise UserError(f"{where}.{key}: expected {what}, got {value!r}") from None
    return checked


def _number(value: Any, path: str, what: str) -> Any:
    """``value`` as a number (text such as '1e-4' read as one), or a UserError at ``path``."""
    if is_number(value) or isinstance(value, torch.Tensor):  # torch takes tensors too
        return value
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise UserError(f"{path}: expected {what}, got {value!r}")


_NAMED = {"learning rate": "lr", "epsilon": "eps", "beta": "betas"}  # how torch's messages say it


def _blamed(message: str, kwargs: dict[str, Any], where: str) -> str:
    """The config path of the key an optimizer's error message names first (else ``where``)."""
    words = {word: None for word in (*kwargs, *_NAMED) if _NAMED.get(word, word) in kwargs}
    word = registry.named_option(message, words)
    return where if word is None else f"{where}.{_NAMED.get(word, word)}"


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


def _takes_lr(optimizer: torch.optim.Optimizer, lr: float) -> bool:
    """Whether a parameter group of ``optimizer`` holds ``lr`` (as float32 has it, for an lr
    held as a tensor): the config's learning rate, which the schedule then moves. One that
    drops it would train at a rate of its own, silently; groups at a multiple of it (layer-wise
    rates) beside one that holds it are the plugin's design."""
    return any(
        math.isclose(float(g.get("lr", math.nan)), lr, rel_tol=1e-6) for g in optimizer.param_groups
    )


def build_schedule(
    optimizer: torch.optim.Optimizer, cfg: OptimizerConfig, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-step schedule: cosine annealing to 0 over the run, or constant."""
    if cfg.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total_steps))
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)


def fit_schedule(schedule: torch.optim.lr_scheduler.LRScheduler, total_steps: int) -> str | None:
    """Fit a cosine schedule restored from the checkpoint of a run of another length (resumed
    with more or fewer epochs) to the run's ``total_steps``: from the step it stands at, the
    learning rate is the one a run of that length has there, annealing to 0 at its end. Left
    restored, it would reach 0 at the old end and then rise again (cosine is periodic past its
    length). A note on what changed, or None when nothing did."""
    total = max(1, total_steps)
    if not isinstance(schedule, torch.optim.lr_scheduler.CosineAnnealingLR):
        return None
    if schedule.T_max == total:
        return None
    old, step, low = schedule.T_max, schedule.last_epoch, schedule.eta_min
    # CosineAnnealingLR steps from the current lr: put it on the new curve, and it stays there
    lrs = [
        low + (base - low) * (1 + math.cos(math.pi * min(step, total) / total)) / 2
        for base in schedule.base_lrs
    ]
    for group, lr in zip(schedule.optimizer.param_groups, lrs, strict=True):
        group["lr"] = lr
    schedule.T_max = total
    schedule._last_lr = lrs
    return (
        f"the cosine learning-rate schedule now anneals over {total:,} steps (it was {old:,}): "
        f"lr {lrs[0]:.4g} at step {step:,}"
    )
