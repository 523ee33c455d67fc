"""Training for sparsity: the L2 penalty and a check of the optimizer / activation setup."""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from nasframe import l2_penalty

__all__ = ["l2_penalty", "check_sparsity_setup", "check_model", "SparsitySetupWarning"]

_RECTIFIERS = {"relu", "relu6"}


class SparsitySetupWarning(UserWarning):
    """The training setup will not (or may not) make Adam induce weight sparsity."""


def _activation_name(activation: Any) -> str:
    if isinstance(activation, str):
        return activation.strip().lower().replace("-", "_")
    if isinstance(activation, type):
        return activation.__name__.lower()
    if isinstance(activation, nn.Module):
        return type(activation).__name__.lower()
    return str(getattr(activation, "__name__", type(activation).__name__)).lower()


def check_sparsity_setup(
    optimizer: torch.optim.Optimizer | type | str,
    l2_in_loss: bool,
    activation: Any,
    *,
    warn: bool = True,
) -> list[str]:
    """Human-readable problems of a training setup meant to induce Adam sparsity (empty: fine).

    Args:
        optimizer: the optimizer (instance, class, or name such as ``"adam"``).
        l2_in_loss: whether an L2 penalty (:func:`l2_penalty`) is added to the loss.
        activation: the hidden activation (module, class, function or name such as ``"relu"``).
        warn: also emit each problem as a :class:`SparsitySetupWarning`.
    """
    problems: list[str] = []
    if isinstance(optimizer, str):
        name, groups, decoupled_attr = optimizer.lower(), [], None
    else:
        cls = optimizer if isinstance(optimizer, type) else type(optimizer)
        name = cls.__name__.lower()
        groups = [] if isinstance(optimizer, type) else list(optimizer.param_groups)
        decoupled_attr = getattr(optimizer, "decoupled", None)
    coupled_wd = 0.0
    decoupled_wd = 0.0
    decoupled = (
        "adamw" in name
        or name in ("sgdw", "sgdw_gc", "sgdw_gcc")
        or decoupled_attr is True
        or any(g.get("decoupled_weight_decay", False) for g in groups)
    )
    for g in groups:
        wd = float(g.get("weight_decay", 0.0) or 0.0)
        if decoupled:
            decoupled_wd = max(decoupled_wd, wd)
        else:
            coupled_wd = max(coupled_wd, wd)

    if "adam" not in name:
        if "sgd" in name:
            problems.append(
                f"optimizer {name}: SGD does not induce the sparsity (the incoming weights of "
                "inactive units only shrink geometrically at rate lr*weight_decay); use Adam"
            )
        else:
            problems.append(
                f"optimizer {name}: the implicit sparsity is established for Adam; other "
                "optimizers may not produce it"
            )
    if decoupled and (not groups or decoupled_wd > 0.0):  # AdamW with weight_decay=0 is Adam
        problems.append(
            f"optimizer {name} uses decoupled weight decay, which shrinks every weight by the "
            "same factor instead of driving those of inactive units to 0; use Adam (not "
            "AdamW) with the L2 penalty in the loss (l2_penalty)"
        )
    if not l2_in_loss and coupled_wd == 0.0:
        problems.append(
            "no L2 regularisation: set train.l2 in the config (in your own loop: add "
            "l2_penalty(model, weight_decay) to the loss, or use Adam's weight_decay); without it "
            "inactive units keep their weights"
        )
    act = _activation_name(activation)
    if act not in _RECTIFIERS:
        problems.append(
            f"activation {act or activation!r}: the method needs a rectifier (ReLU) whose gradient "
            "is exactly 0 when a unit is inactive; with other activations inactive units still "
            "receive gradient and their weights do not decay to 0"
        )
    if warn:
        for p in problems:
            warnings.warn(p, SparsitySetupWarning, stacklevel=2)
    return problems


_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid)
_BNS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def model_activation(model: nn.Module) -> str:
    """``"relu"`` when every activation module of ``model`` is a rectifier, else the first other."""
    for m in model.modules():
        if isinstance(m, _ACTIVATIONS) and not isinstance(m, (nn.ReLU, nn.ReLU6)):
            return type(m).__name__.lower()
    return "relu"


def check_model(model: nn.Module) -> list[str]:
    """Problems of a network's layers for Adam-induced sparsity, beyond the activation."""
    if any(isinstance(m, _BNS) for m in model.modules()):
        return [
            "the network has BatchNorm: it re-normalises every unit, so units rarely switch off "
            "and few are removed; for pruning, prefer ops without BatchNorm (dense, conv3_nobn, "
            "conv5_nobn)"
        ]
    return []
