"""Adam / AdamW with Gradient Centralization (reference: Yonghongwei/Gradient-Centralization).

| class | weight decay | GC acts on |
|---|---|---|
| ``Adam_GC`` / ``Adam_GCC`` | L2, added to the gradient | ``g + wd*p``, before the moments |
| ``Adam_GC2`` / ``Adam_GCC2`` | L2, added to the gradient | the final update ``m_hat/denom`` |
| ``AdamW_GC`` / ``AdamW_GCC`` | the reference's AdamW (below) | the raw ``g`` |
| ``AdamW_GC2`` / ``AdamW_GCC2`` | the reference's AdamW | the whole update, ``wd*p`` included |

The reference's AdamW is **not** ``torch.optim.AdamW``: its step is
``p -= lr * sqrt(bc2) / bc1 * (wd * p + m / (sqrt(v) + eps))`` (``bc1 = 1 - beta1**t``,
``bc2 = 1 - beta2**t``), i.e. the decay is scaled by the bias corrections and ``eps`` is added
before the bias correction of ``v``. torch's AdamW does ``p *= 1 - lr*wd`` and
``p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps)``. These classes keep the reference semantics.
"""

from __future__ import annotations

import math
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
from .centralize import applies, centralize, centralize_, centralize_list

__all__ = [
    "Adam_GC",
    "Adam_GC2",
    "Adam_GCC",
    "Adam_GCC2",
    "AdamW_GC",
    "AdamW_GC2",
    "AdamW_GCC",
    "AdamW_GCC2",
]


class _AdamFamily(Optimizer):
    """Shared implementation; subclasses choose the GC rank, where GC acts, and the decay style."""

    #: smallest rank that is centralized (None: no GC)
    gc_min_dim: int | None = None
    #: "grad": centralize the gradient before the moments; "update": centralize the final update
    gc_target: str = "grad"
    #: the reference's AdamW decay (see module docstring) instead of L2 added to the gradient
    reference_adamw: bool = False

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        amsgrad: bool = False,
        *,
        foreach: bool | None = None,
    ) -> None:
        check_non_negative(lr=lr, eps=eps, weight_decay=weight_decay)
        for i, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"Invalid beta parameter at index {i}: {beta}")
        defaults = dict(
            lr=lr,
            betas=tuple(betas),
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            foreach=foreach,
        )
        super().__init__(params, defaults)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("amsgrad", False)
            group.setdefault("foreach", None)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One optimizer step; ``closure`` (optional) re-evaluates the model and returns the loss."""
        loss = evaluate_closure(closure)
        for group in self.param_groups:
            amsgrad = group["amsgrad"]
            params, grads, exp_avgs, exp_avg_sqs, max_sqs, steps = [], [], [], [], [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                check_dense(p.grad, type(self).__name__)
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = new_step()
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                if amsgrad and "max_exp_avg_sq" not in state:
                    state["max_exp_avg_sq"] = torch.zeros_like(
                        p, memory_format=torch.preserve_format
                    )
                params.append(p)
                grads.append(p.grad)
                exp_avgs.append(state["exp_avg"])
                exp_avg_sqs.append(state["exp_avg_sq"])
                steps.append(state["step"])
                if amsgrad:
                    max_sqs.append(state["max_exp_avg_sq"])
            if not params:
                continue
            fn = (
                _multi_tensor_adam if use_foreach(group["foreach"], params) else _single_tensor_adam
            )
            beta1, beta2 = group["betas"]
            fn(
                params,
                grads,
                exp_avgs,
                exp_avg_sqs,
                max_sqs,
                steps,
                lr=group["lr"],
                beta1=beta1,
                beta2=beta2,
                eps=group["eps"],
                weight_decay=group["weight_decay"],
                amsgrad=amsgrad,
                reference_adamw=self.reference_adamw,
                gc_min_dim=self.gc_min_dim,
                gc_update=self.gc_target == "update",
            )
        return loss


def _single_tensor_adam(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    max_sqs: list[Tensor],
    steps: list[Tensor],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    amsgrad: bool,
    reference_adamw: bool,
    gc_min_dim: int | None,
    gc_update: bool,
) -> None:
    for i, p in enumerate(params):
        g = as_param_dtype(grads[i], p)
        m, v = exp_avgs[i], exp_avg_sqs[i]
        steps[i] += 1
        t = steps[i].item()
        bc1 = 1 - beta1**t
        bc2 = 1 - beta2**t
        gc = applies(p, gc_min_dim)
        if weight_decay != 0 and not reference_adamw:
            g = g.add(p, alpha=weight_decay)
        if gc and not gc_update:
            g = centralize(g)
        m.lerp_(g, 1 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        if amsgrad:
            torch.maximum(max_sqs[i], v, out=max_sqs[i])
            v = max_sqs[i]
        if reference_adamw:
            denom = v.sqrt().add_(eps)
            step_size = lr * math.sqrt(bc2) / bc1
            if gc and gc_update:
                delta = torch.div(m, denom)
                if weight_decay != 0:
                    delta.add_(p, alpha=weight_decay)
                p.sub_(centralize_(delta).mul_(step_size))
            else:
                if weight_decay != 0:
                    p.mul_(1 - step_size * weight_decay)
                p.addcdiv_(m, denom, value=-step_size)
        else:
            denom = (v.sqrt() / math.sqrt(bc2)).add_(eps)
            step_size = lr / bc1
            if gc and gc_update:
                p.sub_(centralize_(torch.div(m, denom)).mul_(step_size))
            else:
                p.addcdiv_(m, denom, value=-step_size)


def _multi_tensor_adam(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    max_sqs: list[Tensor],
    steps: list[Tensor],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    amsgrad: bool,
    reference_adamw: bool,
    gc_min_dim: int | None,
    gc_update: bool,
) -> None:
    for idx in group_by_device_dtype(params).values():
        ps = [params[i] for i in idx]
        gs = [as_param_dtype(grads[i], params[i]) for i in idx]
        ms = [exp_avgs[i] for i in idx]
        vs = [exp_avg_sqs[i] for i in idx]
        ts = [steps[i] for i in idx]
        torch._foreach_add_(ts, 1)
        bc1 = [1 - beta1 ** t.item() for t in ts]
        bc2 = [1 - beta2 ** t.item() for t in ts]

        owned = False
        if weight_decay != 0 and not reference_adamw:
            gs = torch._foreach_add(gs, ps, alpha=weight_decay)
            owned = True
        if gc_min_dim is not None and not gc_update:
            gs = centralize_list(gs, gc_min_dim, inplace=owned)
        torch._foreach_lerp_(ms, gs, 1 - beta1)
        torch._foreach_mul_(vs, beta2)
        torch._foreach_addcmul_(vs, gs, gs, 1 - beta2)
        del gs
        if amsgrad:
            vs_max = [max_sqs[i] for i in idx]
            torch._foreach_maximum_(vs_max, vs)
            vs = vs_max

        denom = torch._foreach_sqrt(vs)
        if reference_adamw:
            step_sizes = [lr * math.sqrt(b2) / b1 for b1, b2 in zip(bc1, bc2, strict=True)]
        else:
            torch._foreach_div_(denom, [math.sqrt(b2) for b2 in bc2])
            step_sizes = [lr / b1 for b1 in bc1]
        torch._foreach_add_(denom, eps)

        if gc_min_dim is not None and gc_update:
            delta = torch._foreach_div(ms, denom)
            if reference_adamw and weight_decay != 0:
                torch._foreach_add_(delta, ps, alpha=weight_decay)
            delta = centralize_list(delta, gc_min_dim, inplace=True)
            torch._foreach_mul_(delta, step_sizes)
            torch._foreach_sub_(ps, delta)
        else:
            if reference_adamw and weight_decay != 0:
                torch._foreach_mul_(ps, [1 - s * weight_decay for s in step_sizes])
            torch._foreach_addcdiv_(ps, ms, denom, [-s for s in step_sizes])


class Adam_GC(_AdamFamily):
    """Adam (L2 decay); GC on ``g + wd*p`` of tensors with dim > 1, before the moments."""

    gc_min_dim = 2


class Adam_GCC(_AdamFamily):
    """Adam (L2 decay); GC on ``g + wd*p`` of conv kernels (dim > 3), before the moments."""

    gc_min_dim = 4


class Adam_GC2(_AdamFamily):
    """Adam (L2 decay); GC on the final update step of tensors with dim > 1."""

    gc_min_dim = 2
    gc_target = "update"


class Adam_GCC2(_AdamFamily):
    """Adam (L2 decay); GC on the final update step of conv kernels (dim > 3)."""

    gc_min_dim = 4
    gc_target = "update"


class AdamW_GC(_AdamFamily):
    """The reference's AdamW (not torch's, see module doc); GC on the raw gradient, dim > 1."""

    gc_min_dim = 2
    reference_adamw = True


class AdamW_GCC(_AdamFamily):
    """The reference's AdamW (not torch's); GC on the raw gradient of conv kernels (dim > 3)."""

    gc_min_dim = 4
    reference_adamw = True


class AdamW_GC2(_AdamFamily):
    """The reference's AdamW (not torch's); GC on the whole update, decay included, dim > 1."""

    gc_min_dim = 2
    gc_target = "update"
    reference_adamw = True


class AdamW_GCC2(_AdamFamily):
    """The reference's AdamW (not torch's); GC on the whole update of conv kernels (dim > 3)."""

    gc_min_dim = 4
    gc_target = "update"
    reference_adamw = True
