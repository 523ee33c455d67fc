"""The network of one fixed cell architecture (an exported arch of a cell space), for retraining.

Only the ops the cells use are built; a node whose two inputs apply the same op to the same source
uses one op instance twice, as the reference's fixed network does. BatchNorm is affine with running
statistics. Retraining extras of the reference: drop-path on every edge that is not an identity,
its probability raised linearly over the epochs (``start_epoch``), and an auxiliary classifier on
the output of the last reduction cell whose loss is added with a weight in training.

The retraining width may be chosen under a parameter budget (``space.retrain.channels: auto``): the
largest C whose network has at most ``param_budget`` parameters, auxiliary head excluded (as the
reference's ``get_params`` and DARTS's ``count_parameters_in_MB`` count). Parameter counts are
taken on the meta device, so the search allocates nothing.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch
from torch import nn

from .cell_arch import Node, unused_nodes
from .cell_config import CellSpace
from .cell_ops import build_cell_op
from .cell_plan import CellPlan, cell_plan, check_sizes, image_channels, make_stem, size_after
from .config import Config
from .errors import UserError
from .parts import cell_parts, part_macs
from .space import SearchSpace

__all__ = [
    "drop_path",
    "FixedCell",
    "AuxiliaryHead",
    "CellNetwork",
    "RetrainSize",
    "main_parameters",
    "count_cell_network",
    "count_cell_macs",
    "fit_channels",
    "retrain_size",
    "check_retraining",
    "build_cell_network",
]


def drop_path(x: torch.Tensor, prob: float) -> torch.Tensor:
    """Zero whole samples with probability ``prob``, scale the others by 1/(1 − prob)."""
    keep = 1.0 - prob
    mask = torch.empty(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(keep)
    return x * mask / keep


class FixedCell(nn.Module):
    """One cell of a fixed architecture: ``forward(s0, s1, drop_prob)``."""

    def __init__(self, nodes: Sequence[Node], plan: CellPlan) -> None:
        super().__init__()
        c = plan.c
        self.pre0, self.pre1 = plan.preprocess(affine=True)
        self.ops = nn.ModuleDict()
        self.edges: list[list[tuple[int, str]]] = []  # per node: (source, key in self.ops)
        for i, (ins, ops) in enumerate(nodes):
            row = []
            for src, name in zip(ins, ops, strict=True):
                key = f"n{i}_s{src}_{name}"
                if key not in self.ops:
                    self.ops[key] = build_cell_op(name, c, plan.stride(src), True, True)
                row.append((src, key))
            self.edges.append(row)
        self.unused = unused_nodes(tuple(nodes))
        conv = nn.Conv2d(len(self.unused) * c, c, 1, bias=False)
        # Initialised as the reference's slice of a weight built for all nodes (fan-in nodes·c).
        bound = 1.0 / math.sqrt(len(nodes) * c)
        nn.init.uniform_(conv.weight, -bound, bound)
        self.project = nn.Sequential(nn.ReLU(), conv, nn.BatchNorm2d(c))

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        states = [self.pre0(s0), self.pre1(s1)]
        drop = drop_prob > 0 and self.training
        for row in self.edges:
            h = None
            for src, key in row:
                op = self.ops[key]
                y = op(states[src])
                if drop and not isinstance(op, nn.Identity):
                    y = drop_path(y, drop_prob)
                h = y if h is None else h + y
            states.append(h)
        parts = [states[2 + j] for j in self.unused]
        return self.project(torch.cat(parts, 1) if len(parts) > 1 else parts[0])


class AuxiliaryHead(nn.Sequential):
    """The reference's auxiliary classifier (feature maps of at least 8×8)."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__(
            nn.ReLU(),
            nn.AvgPool2d(5, stride=3),
            nn.Conv2d(channels, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(),
            nn.Conv2d(128, 768, 2, bias=False),
            nn.BatchNorm2d(768),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(768, num_classes),
        )


class CellNetwork(nn.Module):
    """Stem, fixed cells, global average pooling and a classifier (plus the auxiliary head).

    ``forward(x)`` returns the logits; ``forward(x, auxiliary=True)`` also the auxiliary logits
    (None without a head). ``auxiliary_weight`` and ``start_epoch`` are what the train loop uses.
    """

    def __init__(
        self,
        sp: CellSpace,
        genotype: dict[str, tuple[Node, ...]],
        sample_shape: Sequence[int],
        num_classes: int,
        *,
        cells: int | None = None,
        channels: int | None = None,
        drop_path: float = 0.0,
        auxiliary_weight: float = 0.0,
    ) -> None:
        super().__init__()
        n = cells or sp.cells
        plan = cell_plan(sp, n, channels or sp.channels)
        check_sizes(plan, sample_shape)
        self.stem = make_stem(image_channels(sample_shape), plan[0].c_p, track=True)
        self.cells = nn.ModuleList(FixedCell(genotype[p.kind], p) for p in plan)
        self.aux_at = _auxiliary_at(plan)
        self.auxiliary_weight = float(auxiliary_weight)
        self.auxiliary = None
        if auxiliary_weight > 0:
            _check_auxiliary(plan, sample_shape)
            self.auxiliary = AuxiliaryHead(plan[self.aux_at].c, num_classes)
        self.drop_path_max = float(drop_path)
        self.drop_path_prob = 0.0
        self.classifier = nn.Linear(plan[-1].c, num_classes)

    def start_epoch(self, epoch: int, epochs: int) -> None:
        """Drop-path schedule of the reference: max × epoch / epochs (epoch counted from 0)."""
        self.drop_path_prob = self.drop_path_max * epoch / max(epochs, 1)

    def forward(
        self, x: torch.Tensor, auxiliary: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor | None]:
        """The logits; with ``auxiliary``, ``(logits, auxiliary head's logits)`` for the paper's
        auxiliary loss (None when the network has no auxiliary head)."""
        s0 = s1 = self.stem(x)
        aux = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if auxiliary and i == self.aux_at and self.auxiliary is not None:
                aux = self.auxiliary(s1)
        logits = self.classifier(s1.mean((2, 3)))
        return (logits, aux) if auxiliary else logits


def main_parameters(model: nn.Module) -> int:
    """Parameters of a network without its auxiliary head: what a parameter budget bounds."""
    return sum(p.numel() for n, p in model.named_parameters() if not n.startswith("auxiliary."))


def count_cell_network(
    sp: CellSpace,
    genotype: dict[str, tuple[Node, ...]],
    sample_shape: Sequence[int],
    num_classes: int,
    cells: int,
    channels: int,
) -> int:
    """:func:`main_parameters` of ``CellNetwork(sp, genotype, ..., cells, channels)``, without
    building it: each kind of op and preprocessing is counted once, on the meta device (nothing is
    allocated, no random numbers are drawn), so that counting is cheap enough for every sample."""
    plan = cell_plan(sp, cells, channels)
    total = _stem_parameters(image_channels(sample_shape), plan[0].c_p)
    per_cell: dict[CellPlan, int] = {}
    for p in plan:
        if p not in per_cell:
            per_cell[p] = _cell_parameters(genotype[p.kind], p)
        total += per_cell[p]
    return total + plan[-1].c * num_classes + num_classes


def count_cell_macs(
    sp: CellSpace,
    genotype: dict[str, tuple[Node, ...]],
    sample_shape: Sequence[int],
    num_classes: int,
    cells: int,
    channels: int,
) -> int:
    """Multiply-accumulates (:func:`~nasframe.macs.count_macs`) of one example through
    ``CellNetwork(sp, genotype, ..., cells, channels)`` without its auxiliary head, without
    building it: the sum over its parts (:func:`~nasframe.parts.cell_parts`), each distinct part
    counted once (built on the meta device, run once on uninitialised CPU storage), so that
    counting is cheap enough for every sample."""
    parts = cell_parts(sp, genotype, sample_shape, num_classes, cells, channels)
    return sum(part_macs(p) for p in parts)


def _cell_parameters(nodes: Sequence[Node], plan: CellPlan) -> int:
    """Parameters of ``FixedCell(nodes, plan)``: its preprocessing, each distinct edge op once (an
    op on the same input twice is shared), and the projection of the unused nodes (1×1 conv, BN)."""
    edges = {
        (i, src, name)
        for i, (ins, ops) in enumerate(nodes)
        for src, name in zip(ins, ops, strict=True)
    }
    ops = sum(_op_parameters(name, plan.c, plan.stride(src)) for _, src, name in edges)
    unused = len(unused_nodes(tuple(nodes)))
    return _preprocess_parameters(plan) + ops + unused * plan.c * plan.c + 2 * plan.c


def _numel(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@functools.lru_cache(maxsize=4096)
def _op_parameters(name: str, c: int, stride: int) -> int:
    with torch.device("meta"):
        return _numel(build_cell_op(name, c, stride, True, True))


@functools.lru_cache(maxsize=1024)
def _preprocess_parameters(plan: CellPlan) -> int:
    with torch.device("meta"):
        return sum(_numel(m) for m in plan.preprocess(affine=True))


@functools.lru_cache(maxsize=64)
def _stem_parameters(c_in: int, c_out: int) -> int:
    with torch.device("meta"):
        return _numel(make_stem(c_in, c_out, track=True))


def fit_channels(count: Callable[[int], int], budget: float, start: int = 1) -> int:
    """The largest C ≥ 1 with ``count(C) ≤ budget`` (0 if none), for ``count`` increasing in C:
    bracketed by doubling (or halving) from ``start``, then a binary search."""
    lo = hi = max(start, 1)
    if count(lo) <= budget:
        hi = 2 * lo
        while count(hi) <= budget:
            lo, hi = hi, 2 * hi
    else:
        lo = hi // 2
        while lo >= 1 and count(lo) > budget:
            lo, hi = lo // 2, lo
        if lo < 1:
            return 0
    while hi - lo > 1:  # count(lo) <= budget < count(hi)
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if count(mid) <= budget else (lo, mid)
    return lo


def _count(budget: float) -> str:
    """A budget as people write counts: 4,000,000 (2.5 stays 2.5)."""
    return f"{budget:,.0f}" if budget == int(budget) else f"{budget:,g}"


@dataclass(frozen=True)
class RetrainSize:
    """The size of a retraining network and where its width came from."""

    cells: int
    channels: int
    auto: bool  #: the width was chosen under the budget (``channels: auto``)
    param_budget: float | None
    parameters: int = 0  #: without the auxiliary head

    def describe(self) -> str:
        """One line for the console."""
        text = f"cell network: {self.cells} cells, C={self.channels}"
        if self.auto:
            text += " (the largest width under the budget)"
        text += f", {self.parameters:,} parameters without the auxiliary head"
        if self.param_budget is not None:
            text += f" (budget {_count(self.param_budget)})"
        return text

    def summary(self) -> dict[str, object]:
        """The keys of a train run's ``summary.json``."""
        return {
            "retrain_cells": self.cells,
            "retrain_channels": self.channels,
            "retrain_channels_auto": self.auto,
            "param_budget": self.param_budget,
        }


def _fixed_genotype(config: Config) -> dict[str, tuple[Node, ...]]:
    space = SearchSpace(config)
    return space.genotype([0] * len(space.choices))


def retrain_size(
    config: Config,
    sample_shape: Sequence[int],
    num_classes: int,
    genotype: dict[str, tuple[Node, ...]] | None = None,
) -> RetrainSize:
    """Cells and width of the retraining network of a fixed cell architecture (``genotype``,
    default: the config's): the width is ``space.retrain.channels``, or with ``auto`` the largest
    one under ``param_budget``; a fixed width over the budget is refused. ``parameters`` is left
    at 0 (:func:`build_cell_network` fills it in)."""
    sp = config.space
    r = sp.retrain
    n = r.cells or sp.cells
    budget = r.param_budget
    check_sizes(cell_plan(sp, n, sp.channels), sample_shape)
    if r.channels != "auto" and budget is None:
        return RetrainSize(n, r.channels or sp.channels, False, None)
    geno = genotype or _fixed_genotype(config)

    def count(c: int) -> int:
        return count_cell_network(sp, geno, sample_shape, num_classes, n, c)

    if r.channels == "auto":
        channels = fit_channels(count, budget, sp.channels)
        if channels == 0:
            raise UserError(
                f"space.retrain.param_budget: {_count(budget)} parameters are too few for this "
                f"architecture: {n} cells of 1 channel already have {count(1):,} (auxiliary head "
                "excluded); raise the budget or retrain fewer cells"
            )
        return RetrainSize(n, channels, True, budget)
    channels = r.channels or sp.channels
    params = count(channels)
    if params > budget:
        fits = fit_channels(count, budget, channels)
        advice = (
            f"set channels: auto to take the largest width under the budget ({fits}), or a "
            "smaller number"
            if fits
            else "no width fits it: raise the budget or retrain fewer cells"
        )
        raise UserError(
            f"space.retrain.channels: {n} cells of {channels} channels have {params:,} parameters "
            f"(auxiliary head excluded), over space.retrain.param_budget of {_count(budget)}; "
            + advice
        )
    return RetrainSize(n, channels, False, budget)


def _auxiliary_at(plan: list[CellPlan]) -> int:
    """The cell the auxiliary head reads: the last reduction (the reference's), else 2n//3."""
    reductions = [i for i, p in enumerate(plan) if p.reduction]
    return reductions[-1] if reductions else 2 * len(plan) // 3


def _check_auxiliary(plan: list[CellPlan], sample_shape: Sequence[int]) -> None:
    at = _auxiliary_at(plan)
    size = size_after(plan, at, sample_shape)
    if min(size) < 8:
        raise UserError(
            f"space.retrain.auxiliary_weight: the auxiliary head needs feature maps of at least "
            f"8x8 after cell {at}, these images give {size[0]}x{size[1]}; set it to 0"
        )


def check_retraining(sp: CellSpace, sample_shape: Sequence[int]) -> None:
    """Refuse, before a search, the retraining network that ``nasframe train`` would refuse
    whatever the search finds: reductions that leave the images too small at its size, an
    auxiliary head without 8x8 feature maps (they depend on the data and the layout, not on
    the cells found)."""
    plan = cell_plan(sp, sp.retrain.cells or sp.cells, sp.channels)
    check_sizes(plan, sample_shape)
    if sp.retrain.auxiliary_weight > 0:
        _check_auxiliary(plan, sample_shape)


def build_cell_network(
    config: Config, sample_shape: Sequence[int], num_classes: int
) -> CellNetwork:
    """The network of a cell space whose cells are fixed, at its retraining size
    (:func:`retrain_size`), which it keeps as ``retrain_size``."""
    geno = _fixed_genotype(config)
    size = retrain_size(config, sample_shape, num_classes, geno)
    sp = config.space
    r = sp.retrain
    net = CellNetwork(
        sp,
        geno,
        sample_shape,
        num_classes,
        cells=size.cells,
        channels=size.channels,
        drop_path=r.drop_path,
        auxiliary_weight=r.auxiliary_weight,
    )
    net.retrain_size = replace(size, parameters=main_parameters(net))
    return net
