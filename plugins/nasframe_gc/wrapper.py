"""Gradient Centralization for any ``torch.optim.Optimizer``.

``with_gc(torch.optim.AdamW, "conv")`` returns a subclass whose ``step()`` hands the base
optimizer centralized gradients: for the duration of the step each eligible ``p.grad`` is
replaced by a centralized copy, and the user's original gradient tensor (never modified) is put
back afterwards. ``GC(params, base="adamw", mode="conv", **kwargs)`` is the registry-style
factory used by ``optimizer: {name: adamw, gc: conv}`` in a nasframe config.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim import Optimizer

from .centralize import centralize, min_dim_for

__all__ = ["GC", "with_gc"]


@functools.cache
def with_gc(base: type[Optimizer], mode: str = "all") -> type[Optimizer]:
    """A subclass of ``base`` applying GC to the gradients it sees.

    ``mode="all"``: tensors with dim > 1 (like the ``_GC`` variants); ``"conv"``: dim > 3 (like
    ``_GCC``). GC acts on the raw gradient, before whatever the base optimizer does with it (for
    ``torch.optim.SGD`` with L2 weight decay that is *before* ``wd*p`` is added, unlike
    ``SGD_GC``, which centralizes ``g + wd*p``).
    """
    if not (isinstance(base, type) and issubclass(base, Optimizer)):
        raise TypeError(f"with_gc needs a torch.optim.Optimizer subclass, got {base!r}")
    if _applies_gc(base):
        raise ValueError(
            f"{base.__name__} already applies gradient centralization; "
            "use it directly or wrap the plain optimizer"
        )
    min_dim = min_dim_for(mode)
    mode = str(mode).lower()

    def step(self: Optimizer, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        swapped: list[tuple[torch.Tensor, torch.Tensor]] = []
        try:
            with torch.no_grad():
                for group in self.param_groups:
                    for p in group["params"]:
                        g = p.grad
                        if g is None or g.is_sparse or g.dim() < min_dim:
                            continue
                        swapped.append((p, g))
                        p.grad = centralize(g)
            base_loss = _unhooked(base.step)(self)
        finally:
            for p, g in swapped:
                p.grad = g
        return loss if closure is not None else base_loss

    name = f"{base.__name__}_GC_{mode}"
    return type(
        name,
        (base,),
        {
            "__module__": __name__,
            "__qualname__": name,
            "__doc__": f"{base.__name__} with Gradient Centralization (mode {mode!r}).",
            "step": step,
            "gc_mode": mode,
            "_gc_wrapped": True,
        },
    )


def _unhooked(step: Callable[..., Any]) -> Callable[..., Any]:
    """``step`` without torch's hook-running layer (``Optimizer._patch_step_function`` adds it
    once to each class); the subclass's own step already runs the step hooks once."""
    return step.__wrapped__ if getattr(step, "hooked", False) else step


def GC(
    params: Iterable[Any], base: str | type[Optimizer] = "adamw", mode: str = "all", **kwargs: Any
) -> Optimizer:
    """``with_gc(base, mode)(params, **kwargs)``; ``base`` is an optimizer class or a name
    registered in nasframe's optimizer registry (``"sgd"``, ``"adam"``, ``"adamw"``, ...)."""
    if isinstance(base, str):
        from nasframe import UserError, registry  # lazily: importable without the core

        try:
            base_cls = registry.get("optimizer", base)
        except UserError as e:  # worded, as below, so that nasframe blames the option (base)
            raise ValueError(f"unsupported base {base!r}: {e}") from None
    else:
        base_cls = base
    if not (isinstance(base_cls, type) and issubclass(base_cls, Optimizer)):
        raise ValueError(
            f"unsupported base {base!r}: not a torch.optim.Optimizer class (gc wraps one)"
        )
    if _applies_gc(base_cls):
        raise ValueError(
            f"unsupported base {base!r}: {base_cls.__name__} already applies gradient "
            "centralization; use it directly or wrap the plain optimizer"
        )
    return with_gc(base_cls, mode)(params, **kwargs)


def _applies_gc(cls: Any) -> bool:
    return getattr(cls, "gc_min_dim", None) is not None or getattr(cls, "_gc_wrapped", False)
