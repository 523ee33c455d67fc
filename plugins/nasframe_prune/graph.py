"""Which units of a network can be removed, and which modules every removal touches.

A *unit group* is a set of channels (units) produced by one or more weight layers (Linear or a full,
``groups=1`` convolution), carried through channel-wise modules (BatchNorm, activations, pools,
dropout, depth-wise convolutions, Flatten) and read by one or more weight layers. Removing unit ``u``
of a group removes row/filter ``u`` of every producer, entry ``u`` of every channel-wise module with
per-channel state, and the input column(s)/channel ``u`` of every consumer.

For an ``nn.Sequential`` every group has one producer and one consumer. The structure (lists of
producers and consumers) is what residual additions and concatenations would need later: an
addition joins the groups of its operands, a concatenation offsets the unit indices of each operand.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = [
    "Leaf",
    "UnitGroup",
    "PruneError",
    "LayerEmptiedError",
    "UnsupportedModelError",
    "trace_leaves",
    "find_unit_groups",
    "is_weight_layer",
    "is_depthwise",
    "eval_mode",
]


class PruneError(ValueError):
    """A pruning request that cannot be carried out."""


class LayerEmptiedError(PruneError):
    """Pruning would remove every unit of a layer."""


class UnsupportedModelError(PruneError, TypeError):
    """The model is not a network the pruner understands (not a plain ``nn.Sequential``)."""


_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BNS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_ELEMENTWISE = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.CELU,
    nn.SELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardtanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Softplus,
    nn.Softsign,
    nn.Tanhshrink,
    nn.Identity,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
)
_POOLS = (
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
    nn.LPPool1d,
    nn.LPPool2d,
)


def _plain(m: nn.Module, classes: tuple[type, ...]) -> bool:
    """``m`` is one of ``classes`` and does not override its ``forward``."""
    for cls in classes:
        if isinstance(m, cls):
            return type(m).forward is cls.forward
    return False


def is_weight_layer(m: nn.Module) -> bool:
    """A Linear or a full (``groups=1``) convolution: a layer whose outputs are prunable units."""
    if _plain(m, (nn.Linear,)):
        return True
    return _plain(m, _CONVS) and m.groups == 1


def is_depthwise(m: nn.Module) -> bool:
    """A depth-wise convolution (one filter per channel): channel-wise, removed with its channel."""
    return (
        _plain(m, _CONVS)
        and m.groups > 1
        and m.groups == m.in_channels == m.out_channels
        and m.padding_mode == "zeros"
    )


def _kind(m: nn.Module) -> tuple[str, str | None]:
    """(kind, why-not) of a leaf module: weight, channelwise, flatten or barrier."""
    if is_weight_layer(m):
        return "weight", None
    if is_depthwise(m):
        return "channelwise", None
    if _plain(m, _BNS):
        if m.running_mean is None or m.running_var is None:
            return "barrier", "BatchNorm without running statistics"
        return "channelwise", None
    if _plain(m, (nn.PReLU,)):
        return "channelwise", None
    if _plain(m, _ELEMENTWISE) or _plain(m, _POOLS):
        return "channelwise", None
    if _plain(m, (nn.Flatten,)):
        if m.start_dim == 1 and m.end_dim == -1:
            return "flatten", None
        return "barrier", f"Flatten({m.start_dim}, {m.end_dim}) (only Flatten(1, -1) is supported)"
    if _plain(m, _CONVS):
        return "barrier", f"grouped convolution (groups={m.groups})"
    return "barrier", f"unsupported module {type(m).__name__}"


@dataclass
class Leaf:
    """One module of the flattened Sequential, with its per-example input and output shapes."""

    index: int
    path: str
    module: nn.Module
    kind: str  # weight | channelwise | flatten | barrier
    why_not: str | None
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]

    @property
    def type_name(self) -> str:
        return type(self.module).__name__


@dataclass
class UnitGroup:
    """Units produced by ``producers``, carried through ``chain``, read by ``consumers``.

    ``block[path]`` is how many consecutive features of dimension 1 one unit occupies at the input
    of a chain module or consumer (1 before a Flatten; ``prod(spatial)`` after it).
    """

    producers: list[Leaf]
    chain: list[Leaf] = field(default_factory=list)
    consumers: list[Leaf] = field(default_factory=list)
    block: dict[str, int] = field(default_factory=dict)
    prunable: bool = True
    why_not: str | None = None

    @property
    def width(self) -> int:
        return int(self.producers[0].out_shape[0])

    @property
    def name(self) -> str:
        return self.producers[0].path

    def feature_index(self, path: str, units: torch.Tensor) -> torch.Tensor:
        """Indices along dimension 1, at the input of ``path``, of the features of ``units``."""
        b = self.block[path]
        if b == 1:
            return units
        return (units[:, None] * b + torch.arange(b, device=units.device)[None, :]).reshape(-1)


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Temporarily put ``model`` (every submodule) into eval mode."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, t in modes:
            m.training = t


def _walk(module: nn.Module, prefix: str) -> Iterator[tuple[str, nn.Module]]:
    for name, child in module.named_children():
        path = f"{prefix}.{name}" if prefix else name
        if type(child).forward is nn.Sequential.forward and isinstance(child, nn.Sequential):
            yield from _walk(child, path)
        else:
            yield path, child


def trace_leaves(model: nn.Module, example_input: torch.Tensor) -> list[Leaf]:
    """The modules of a (possibly nested) ``nn.Sequential`` in order, with shapes, in eval mode."""
    if not isinstance(model, nn.Sequential) or type(model).forward is not nn.Sequential.forward:
        raise UnsupportedModelError(
            f"pruning needs a plain nn.Sequential (got {type(model).__name__}); networks that "
            "nasframe builds for a fixed architecture are one"
        )
    if not isinstance(example_input, torch.Tensor) or example_input.dim() < 2:
        raise PruneError("example_input must be a batched tensor (batch dimension first)")
    x = example_input[:1]
    leaves: list[Leaf] = []
    with torch.no_grad(), eval_mode(model):
        for i, (path, m) in enumerate(_walk(model, "")):
            kind, why = _kind(m)
            in_shape = tuple(x.shape[1:])
            x = m(x)
            if not isinstance(x, torch.Tensor):
                raise UnsupportedModelError(
                    f"module '{path}' ({type(m).__name__}) does not return a tensor"
                )
            leaves.append(Leaf(i, path, m, kind, why, in_shape, tuple(x.shape[1:])))
    return leaves


def find_unit_groups(leaves: list[Leaf]) -> list[UnitGroup]:
    """Unit groups of a traced Sequential: one per weight layer, prunable or with a reason why not."""
    groups: list[UnitGroup] = []
    open_group: UnitGroup | None = None
    block = 1

    def close(reason: str | None) -> None:
        nonlocal open_group
        if open_group is not None:
            if reason is not None:
                open_group.prunable = False
                open_group.why_not = reason
            open_group = None

    for leaf in leaves:
        if leaf.kind == "weight":
            if open_group is not None:
                if isinstance(leaf.module, nn.Linear) and len(leaf.in_shape) != 1:
                    close(f"consumer '{leaf.path}' is a Linear applied to a {leaf.in_shape} input")
                else:
                    open_group.consumers.append(leaf)
                    open_group.block[leaf.path] = block
                    close(None)
            open_group = UnitGroup(producers=[leaf])
            groups.append(open_group)
            block = 1
            if isinstance(leaf.module, nn.Linear) and len(leaf.out_shape) != 1:
                close(
                    f"Linear '{leaf.path}' applied to a {leaf.in_shape} input (units not on dim 1)"
                )
        elif open_group is None:
            continue
        elif leaf.kind == "barrier":
            close(f"its units feed '{leaf.path}': {leaf.why_not}")
        elif leaf.kind == "channelwise" and (
            len(leaf.in_shape) != len(leaf.out_shape)
            or leaf.in_shape[0] != leaf.out_shape[0]
            or (_plain(leaf.module, _POOLS) and len(leaf.in_shape) < 2)
        ):
            close(f"its units feed '{leaf.path}' ({leaf.type_name}), which changes dimension 1")
        else:
            open_group.chain.append(leaf)
            open_group.block[leaf.path] = block
            if leaf.kind == "flatten":
                block *= math.prod(leaf.in_shape[1:])
    close("the network's outputs (no later weight layer reads them)")
    return groups
