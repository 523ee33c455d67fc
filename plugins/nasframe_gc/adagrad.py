"""Adagrad with Gradient Centralization (reference: Yonghongwei/Gradient-Centralization).

``Adagrad_GC`` / ``Adagrad_GCC``: L2 weight decay added to the gradient, then GC of ``g + wd*p``
(dim > 1, resp. dim > 3), then the Adagrad update
``sum += g*g; p -= lr / (1 + (t-1)*lr_decay) * g / (sqrt(sum) + eps)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from ._util import (
    as_param_dtype,
    check_dense,
    check_non_negative,
    evaluate_closure,
    group_by_device_dtype,
    new_step,
    use_foreach,
)
from .centralize import applies, centralize, centralize_list

__all__ = ["Adagrad_GC", "Adagrad_GCC"]


class _AdagradFamily(Optimizer):
    """Shared implementation; subclasses only choose the GC rank."""

    #: smallest rank that is centralized (None: no GC)
    gc_min_dim: int | None = None

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-2,
        lr_decay: float = 0,
        weight_decay: float = 0,
        initial_accumulator_value: float = 0,
        eps: float = 1e-10,
        *,
        foreach: bool | None = None,
    ) -> None:
        check_non_negative(
            lr=lr,
            lr_decay=lr_decay,
            weight_decay=weight_decay,
            initial_accumulator_value=initial_accumulator_value,
            eps=eps,
        )
        defaults = dict(
            lr=lr,
            lr_decay=lr_decay,
            weight_decay=weight_decay,
            initial_accumulator_value=initial_accumulator_value,
            eps=eps,
            foreach=foreach,
        )
        super().__init__(params, defaults)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("foreach", None)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One optimizer step; ``closure`` (optional) re-evaluates the model and returns the loss."""
        loss = evaluate_closure(closure)
        for group in self.param_groups:
            params, grads, sums, steps = [], [], [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                check_dense(p.grad, type(self).__name__)
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = new_step()
                    state["sum"] = torch.full_like(
                        p, group["initial_accumulator_value"], memory_format=torch.preserve_format
                    )
                params.append(p)
                grads.append(p.grad)
                sums.append(state["sum"])
                steps.append(state["step"])
            if not params:
                continue
            fn = (
                _multi_tensor_adagrad
                if use_foreach(group["foreach"], params)
                else _single_tensor_adagrad
            )
            fn(
                params,
                grads,
                sums,
                steps,
                lr=group["lr"],
                lr_decay=group["lr_decay"],
                weight_decay=group["weight_decay"],
                eps=group["eps"],
                gc_min_dim=self.gc_min_dim,
            )
        return loss


def _single_tensor_adagrad(
    params: list[Tensor],
    grads: list[Tensor],
    sums: list[Tensor],
    steps: list[Tensor],
    *,
    lr: float,
    lr_decay: float,
    weight_decay: float,
    eps: float,
    gc_min_dim: int | None,
) -> None:
    for i, p in enumerate(params):
        g = as_param_dtype(grads[i], p)
        steps[i] += 1
        t = steps[i].item()
        if weight_decay != 0:
            g = g.add(p, alpha=weight_decay)
        if applies(g, gc_min_dim):
            g = centralize(g)
        clr = lr / (1 + (t - 1) * lr_decay)
        sums[i].addcmul_(g, g, value=1)
        std = sums[i].sqrt().add_(eps)
        p.addcdiv_(g, std, value=-clr)


def _multi_tensor_adagrad(
    params: list[Tensor],
    grads: list[Tensor],
    sums: list[Tensor],
    steps: list[Tensor],
    *,
    lr: float,
    lr_decay: float,
    weight_decay: float,
    eps: float,
    gc_min_dim: int | None,
) -> None:
    for idx in group_by_device_dtype(params).values():
        ps = [params[i] for i in idx]
        gs = [as_param_dtype(grads[i], params[i]) for i in idx]
        ss = [sums[i] for i in idx]
        ts = [steps[i] for i in idx]
        torch._foreach_add_(ts, 1)
        owned = False
        if weight_decay != 0:
            gs = torch._foreach_add(gs, ps, alpha=weight_decay)
            owned = True
        if gc_min_dim is not None:
            gs = centralize_list(gs, gc_min_dim, inplace=owned)
        torch._foreach_addcmul_(ss, gs, gs, value=1)
        std = torch._foreach_sqrt(ss)
        torch._foreach_add_(std, eps)
        clrs = [-lr / (1 + (t.item() - 1) * lr_decay) for t in ts]
        torch._foreach_addcdiv_(ps, gs, std, clrs)


class Adagrad_GC(_AdagradFamily):
    """Adagrad (L2 decay); GC on ``g + wd*p`` of tensors with dim > 1."""

    gc_min_dim = 2


class Adagrad_GCC(_AdagradFamily):
    """Adagrad (L2 decay); GC on ``g + wd*p`` of conv kernels (dim > 3)."""

    gc_min_dim = 4
