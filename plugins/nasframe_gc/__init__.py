"""Gradient Centralization optimizers for nasframe (plugin ``nasframe_gc``).

Reimplements every optimizer of Yonghongwei/Gradient-Centralization in the style of
``torch.optim`` (param groups, ``state_dict``, multi-tensor path, mixed-precision gradients, no
in-place modification of ``p.grad``), plus ``with_gc`` / ``GC`` to add GC to any optimizer.
See ``docs/gc.md``.
"""

from .adagrad import Adagrad_GC, Adagrad_GCC
from .adam import (
    Adam_GC,
    Adam_GC2,
    Adam_GCC,
    Adam_GCC2,
    AdamW_GC,
    AdamW_GC2,
    AdamW_GCC,
    AdamW_GCC2,
)
from .centralize import MODES, centralize
from .sgd import SGD_GC, SGD_GCC, SGDW, SGDW_GC, SGDW_GCC
from .wrapper import GC, with_gc

__all__ = [
    "GC",
    "MODES",
    "SGDW",
    "SGDW_GC",
    "SGDW_GCC",
    "SGD_GC",
    "SGD_GCC",
    "Adagrad_GC",
    "Adagrad_GCC",
    "Adam_GC",
    "Adam_GC2",
    "Adam_GCC",
    "Adam_GCC2",
    "AdamW_GC",
    "AdamW_GC2",
    "AdamW_GCC",
    "AdamW_GCC2",
    "centralize",
    "with_gc",
]
