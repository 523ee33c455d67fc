"""Physical removal of units, folding of their constant outputs, and the masked reference.

Reference semantics ("masked network"): the original network with the incoming weights of the
removed units set to exactly 0 (and their bias too, unless ``keep_bias``). Such a unit outputs a
constant (``act(BN(0))``, or ``act(BN(b))`` with ``keep_bias``) whatever the input, so the consumer
sees a fixed tensor on that unit's channel(s). Its contribution to the consumer's output is computed
numerically (run through the very modules of the chain, in eval mode); where it is the same at every
position of every output channel it is folded into the consumer (its bias, else the running mean
of the BatchNorm right after it, else a new bias), exactly. Where it is not (a non-zero constant
read by a zero-padded convolution with kernel > 1 sees the padding zeros at the borders), the unit
is *not removed* and is reported as ``not_removable``. A unit whose constant output is 0 (e.g. ReLU
of a negative BN shift, or no BN and no bias) is always removable.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .graph import (
    _BNS,
    LayerEmptiedError,
    Leaf,
    PruneError,
    UnitGroup,
    _plain,
    is_depthwise,
)

__all__ = ["GroupPlan", "plan_removal", "apply_plan", "mask_units", "incoming_norms"]

#: Relative spread (over positions) below which a consumer contribution counts as constant.
FOLD_TOLERANCE = 1e-6
_CHUNK = 64


def incoming_norms(m: nn.Module) -> torch.Tensor:
    """L2 norm of each output unit's incoming weights (row / filter), bias included (float64)."""
    w = m.weight.detach().reshape(m.weight.shape[0], -1).double()
    sq = (w * w).sum(1)
    if getattr(m, "bias", None) is not None:
        sq = sq + m.bias.detach().double() ** 2
    return sq.sqrt()


@dataclass
class GroupPlan:
    """What happens to one unit group."""

    group: UnitGroup
    requested: list[int]
    removed: list[int] = field(default_factory=list)
    not_removable: list[int] = field(default_factory=list)
    #: consumer path -> constant to add to each of its (original) output channels
    folds: dict[str, torch.Tensor] = field(default_factory=dict)
    #: consumer path -> where the constant went: bias, new_bias, bn:<path> (None: it was 0)
    fold_targets: dict[str, str | None] = field(default_factory=dict)

    @property
    def kept(self) -> list[int]:
        gone = set(self.removed)
        return [u for u in range(self.group.width) if u not in gone]


def _consumer_forward(leaf: Leaf, x: torch.Tensor) -> torch.Tensor:
    m = leaf.module
    if isinstance(m, nn.Linear):
        return F.linear(x, m.weight)
    return m._conv_forward(x, m.weight, None)


def _contributions(
    group: UnitGroup, units: torch.Tensor, keep_bias: bool
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """For each unit: whether its constant output folds exactly, and its per-channel constant."""
    prod = group.producers[0]
    ref = prod.module.weight
    n = len(units)
    rows = torch.arange(n, device=ref.device)
    x = torch.zeros((n, *prod.out_shape), dtype=ref.dtype, device=ref.device)
    if keep_bias:
        for p in group.producers:
            if p.module.bias is not None:
                b = p.module.bias.detach()[units]
                x[rows, units] += b.view(n, *([1] * (x.dim() - 2)))
    for leaf in group.chain:
        x = leaf.module(x)
    foldable = torch.ones(n, dtype=torch.bool, device=ref.device)
    values: dict[str, torch.Tensor] = {}
    for cons in group.consumers:
        b = group.block[cons.path]
        own = torch.zeros(x.shape[:2], dtype=torch.bool, device=x.device)
        own[rows.repeat_interleave(b), group.feature_index(cons.path, units)] = True
        own = own.view(*own.shape, *([1] * (x.dim() - 2)))
        z = torch.where(own, x, torch.zeros((), dtype=x.dtype, device=x.device))
        y = _consumer_forward(cons, z).reshape(n, cons.out_shape[0], -1)
        spread = (y.amax(-1) - y.amin(-1)).amax(-1)
        scale = y.abs().flatten(1).amax(-1).clamp_min(1.0)
        ok = torch.isfinite(spread) & (spread <= FOLD_TOLERANCE * scale)
        foldable &= ok
        values[cons.path] = y.mean(-1)
    return foldable, values


def plan_removal(
    groups: Sequence[UnitGroup],
    units: Mapping[str, Sequence[int]],
    *,
    keep_bias: bool = False,
) -> list[GroupPlan]:
    """Check a removal request (producer path -> unit indices) and plan it, group by group.

    Call it with the model in eval mode (:func:`~nasframe_prune.graph.eval_mode`): the constant
    outputs are computed with BatchNorm running statistics.
    """
    by_name = {g.name: g for g in groups}
    for path in units:
        g = by_name.get(path)
        if g is None:
            names = ", ".join(f"'{n}'" for n, g in by_name.items() if g.prunable) or "none"
            raise PruneError(
                f"'{path}' is not a weight layer of the network (prunable layers: {names})"
            )
        if units[path] and not g.prunable:
            raise PruneError(f"units of layer '{path}' cannot be removed: {g.why_not}")
    plans = []
    with torch.no_grad():
        for g in groups:
            req = sorted({int(u) for u in units.get(g.name, ())})
            if req and (req[0] < 0 or req[-1] >= g.width):
                raise PruneError(
                    f"layer '{g.name}' has {g.width} units; got unit index out of range"
                )
            if len(req) == g.width:
                raise LayerEmptiedError(
                    f"removing all {g.width} units of layer '{g.name}' "
                    f"({g.producers[0].type_name}) would disconnect the network"
                )
            plan = GroupPlan(g, req)
            plans.append(plan)
            if not req or not g.prunable:
                continue
            removed: list[int] = []
            totals = {c.path: None for c in g.consumers}
            for start in range(0, len(req), _CHUNK):
                chunk = torch.tensor(req[start : start + _CHUNK], dtype=torch.long)
                ok, values = _contributions(
                    g, chunk.to(g.producers[0].module.weight.device), keep_bias
                )
                ok = ok.cpu()
                for u, good in zip(chunk.tolist(), ok.tolist(), strict=True):
                    (removed if good else plan.not_removable).append(u)
                for path, v in values.items():
                    s = v[ok.to(v.device)].sum(0)
                    totals[path] = s if totals[path] is None else totals[path] + s
            plan.removed = removed
            plan.folds = {p: t for p, t in totals.items() if t is not None}
    return plans


def _set(m: nn.Module, name: str, value: torch.Tensor) -> None:
    old = getattr(m, name)
    if isinstance(old, nn.Parameter):
        setattr(m, name, nn.Parameter(value.detach().clone(), requires_grad=old.requires_grad))
    else:
        setattr(m, name, value.detach().clone())


def _slice_out(m: nn.Module, keep: torch.Tensor) -> None:
    _set(m, "weight", m.weight[keep])
    if m.bias is not None:
        _set(m, "bias", m.bias[keep])
    if isinstance(m, nn.Linear):
        m.out_features = len(keep)
    else:
        m.out_channels = len(keep)


def _slice_in(m: nn.Module, idx: torch.Tensor) -> None:
    _set(m, "weight", m.weight[:, idx])
    if isinstance(m, nn.Linear):
        m.in_features = len(idx)
    else:
        m.in_channels = len(idx)


def _slice_channelwise(m: nn.Module, idx: torch.Tensor) -> None:
    if is_depthwise(m):
        _set(m, "weight", m.weight[idx])
        if m.bias is not None:
            _set(m, "bias", m.bias[idx])
        m.in_channels = m.out_channels = m.groups = len(idx)
    elif _plain(m, _BNS):
        for name in ("weight", "bias", "running_mean", "running_var"):
            if getattr(m, name, None) is not None:
                _set(m, name, getattr(m, name)[idx])
        m.num_features = len(idx)
    elif isinstance(m, nn.PReLU) and m.num_parameters > 1:
        _set(m, "weight", m.weight[idx])
        m.num_parameters = len(idx)


def _fold(model: nn.Module, leaves: Sequence[Leaf], cons: Leaf, c: torch.Tensor) -> str:
    m = model.get_submodule(cons.path)
    c = c.to(dtype=m.weight.dtype, device=m.weight.device)
    if m.bias is not None:
        m.bias.data.add_(c)
        return "bias"
    nxt = leaves[cons.index + 1].path if cons.index + 1 < len(leaves) else None
    if nxt is not None:
        bn = model.get_submodule(nxt)
        if _plain(bn, _BNS) and bn.running_mean is not None and bn.num_features == c.numel():
            bn.running_mean.sub_(c.to(bn.running_mean.dtype))
            return f"bn:{nxt}"
    m.bias = nn.Parameter(c.clone(), requires_grad=m.weight.requires_grad)
    return "new_bias"


def apply_plan(model: nn.Module, leaves: Sequence[Leaf], plans: Sequence[GroupPlan]) -> nn.Module:
    """A pruned deep copy of ``model`` (the original is not modified)."""
    new = copy.deepcopy(model)
    with torch.no_grad():
        for plan in plans:  # folds first: they index the consumers' original output channels
            if not plan.removed:
                continue
            for cons in plan.group.consumers:
                c = plan.folds.get(cons.path)
                if c is None or not bool((c != 0).any()):
                    plan.fold_targets[cons.path] = None
                    continue
                plan.fold_targets[cons.path] = _fold(new, leaves, cons, c)
        for plan in plans:
            if not plan.removed:
                continue
            g = plan.group
            keep = torch.tensor(plan.kept, dtype=torch.long)
            for p in g.producers:
                m = new.get_submodule(p.path)
                _slice_out(m, keep.to(m.weight.device))
            for leaf in g.chain:
                m = new.get_submodule(leaf.path)
                _slice_channelwise(m, g.feature_index(leaf.path, keep))
            for cons in g.consumers:
                m = new.get_submodule(cons.path)
                _slice_in(m, g.feature_index(cons.path, keep).to(m.weight.device))
    return new


def mask_units(
    model: nn.Module, units: Mapping[str, Sequence[int]], *, keep_bias: bool = False
) -> nn.Module:
    """The masked reference: a copy of ``model`` with the listed units' incoming weights zeroed.

    ``units`` maps a weight layer's path (as in ``model.get_submodule``) to unit indices; their rows
    (Linear) / filters (conv) are set to 0, and their bias entries too unless ``keep_bias``.
    """
    new = copy.deepcopy(model)
    with torch.no_grad():
        for path, idx in units.items():
            idx = list(idx)
            if not idx:
                continue
            m = new.get_submodule(path)
            m.weight[idx] = 0
            if m.bias is not None and not keep_bias:
                m.bias[idx] = 0
    return new
