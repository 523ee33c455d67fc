"""SGD with Gradient Centralization (reference: Yonghongwei/Gradient-Centralization, SGD.py).

| class | weight decay | GC acts on |
|---|---|---|
| ``SGD_GC`` / ``SGD_GCC`` | L2, added to the gradient | ``g + wd*p``, before momentum |
| ``SGDW`` | decoupled: ``p -= lr*wd*p_old`` | (no GC) |
| ``SGDW_GC`` / ``SGDW_GCC`` | decoupled | the raw ``g``, before momentum |

``_GC``: tensors with dim > 1; ``_GCC``: dim > 3. Momentum, dampening and Nesterov follow
``torch.optim.SGD`` (the buffer starts as a copy of the first update direction).
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
    use_foreach,
)
from .centralize import applies, centralize, centralize_list

__all__ = ["SGDW", "SGDW_GC", "SGDW_GCC", "SGD_GC", "SGD_GCC"]


class _SGDFamily(Optimizer):
    """Shared implementation; subclasses only choose the GC rank and the weight-decay style."""

    #: smallest rank that is centralized (None: no GC)
    gc_min_dim: int | None = None
    #: decoupled weight decay (``p -= lr*wd*p``) instead of L2 added to the gradient
    decoupled: bool = False

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float = 0,
        nesterov: bool = False,
        *,
        foreach: bool | None = None,
    ) -> None:
        check_non_negative(lr=lr, momentum=momentum, weight_decay=weight_decay)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
            foreach=foreach,
        )
        super().__init__(params, defaults)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("nesterov", False)
            group.setdefault("foreach", None)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One optimizer step; ``closure`` (optional) re-evaluates the model and returns the loss."""
        loss = evaluate_closure(closure)
        for group in self.param_groups:
            params: list[Tensor] = []
            grads: list[Tensor] = []
            bufs: list[Tensor | None] = []
            momentum = group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                check_dense(p.grad, type(self).__name__)
                params.append(p)
                grads.append(p.grad)
                if momentum != 0:
                    bufs.append(self.state[p].get("momentum_buffer"))
            if not params:
                continue
            fn = _multi_tensor_sgd if use_foreach(group["foreach"], params) else _single_tensor_sgd
            fn(
                params,
                grads,
                bufs,
                lr=group["lr"],
                momentum=momentum,
                dampening=group["dampening"],
                weight_decay=group["weight_decay"],
                nesterov=group["nesterov"],
                decoupled=self.decoupled,
                gc_min_dim=self.gc_min_dim,
            )
            if momentum != 0:
                for p, buf in zip(params, bufs, strict=True):
                    self.state[p]["momentum_buffer"] = buf
        return loss


def _single_tensor_sgd(
    params: list[Tensor],
    grads: list[Tensor],
    bufs: list[Tensor | None],
    *,
    lr: float,
    momentum: float,
    dampening: float,
    weight_decay: float,
    nesterov: bool,
    decoupled: bool,
    gc_min_dim: int | None,
) -> None:
    for i, p in enumerate(params):
        d = as_param_dtype(grads[i], p)
        if weight_decay != 0 and not decoupled:
            d = d.add(p, alpha=weight_decay)
        if applies(d, gc_min_dim):
            d = centralize(d)
        if momentum != 0:
            buf = bufs[i]
            if buf is None:
                buf = torch.clone(d).detach()
                bufs[i] = buf
            else:
                buf.mul_(momentum).add_(d, alpha=1 - dampening)
            d = d.add(buf, alpha=momentum) if nesterov else buf
        if weight_decay != 0 and decoupled:
            p.mul_(1 - lr * weight_decay)
        p.add_(d, alpha=-lr)


def _multi_tensor_sgd(
    params: list[Tensor],
    grads: list[Tensor],
    bufs: list[Tensor | None],
    *,
    lr: float,
    momentum: float,
    dampening: float,
    weight_decay: float,
    nesterov: bool,
    decoupled: bool,
    gc_min_dim: int | None,
) -> None:
    for idx in group_by_device_dtype(params).values():
        ps = [params[i] for i in idx]
        ds = [as_param_dtype(grads[i], params[i]) for i in idx]
        owned = False  # whether every tensor of ``ds`` is a temporary we may modify
        if weight_decay != 0 and not decoupled:
            ds = torch._foreach_add(ds, ps, alpha=weight_decay)
            owned = True
        if gc_min_dim is not None:
            ds = centralize_list(ds, gc_min_dim, inplace=owned)
        if momentum != 0:
            bs = [bufs[i] for i in idx]
            if all(b is not None for b in bs):
                torch._foreach_mul_(bs, momentum)
                torch._foreach_add_(bs, ds, alpha=1 - dampening)
            else:
                for j, b in enumerate(bs):
                    if b is None:
                        bs[j] = torch.clone(ds[j]).detach()
                    else:
                        b.mul_(momentum).add_(ds[j], alpha=1 - dampening)
            for j, i in enumerate(idx):
                bufs[i] = bs[j]
            ds = torch._foreach_add(ds, bs, alpha=momentum) if nesterov else bs
        if weight_decay != 0 and decoupled:
            torch._foreach_mul_(ps, 1 - lr * weight_decay)
        torch._foreach_add_(ps, ds, alpha=-lr)


class SGD_GC(_SGDFamily):
    """SGD (L2 weight decay) with GC on ``g + wd*p`` of every tensor with dim > 1."""

    gc_min_dim = 2


class SGD_GCC(_SGDFamily):
    """SGD (L2 weight decay) with GC on ``g + wd*p`` of conv kernels only (dim > 3)."""

    gc_min_dim = 4


class SGDW(_SGDFamily):
    """SGD with decoupled weight decay, ``p -= lr*(d + wd*p_old)``; no GC."""

    decoupled = True


class SGDW_GC(_SGDFamily):
    """SGD with decoupled weight decay; GC on the raw gradient of tensors with dim > 1."""

    gc_min_dim = 2
    decoupled = True


class SGDW_GCC(_SGDFamily):
    """SGD with decoupled weight decay; GC on the raw gradient of conv kernels (dim > 3)."""

    gc_min_dim = 4
    decoupled = True
