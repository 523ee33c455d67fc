"""The network of one fixed cell architecture (an exported arch of a cell space), for retraining.

Only the ops the cells use are built; a node whose two inputs apply the same op to the same source
uses one op instance twice, as the reference's fixed network does. BatchNorm is affine with running
statistics. Retraining extras of the reference: drop-path on every edge that is not an identity,
its probability raised linearly over the epochs (``start_epoch``), and an auxiliary classifier on
the output of the last reduction cell whose loss is added with a weight in training.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from .cell_arch import Node, unused_nodes
from .cell_config import CellSpace
from .cell_ops import FactorizedReduce, ReLUConvBN, build_cell_op
from .cells import CellPlan, cell_plan, check_sizes, image_channels, make_stem, size_after
from .config import Config
from .errors import UserError
from .space import SearchSpace

__all__ = ["drop_path", "FixedCell", "AuxiliaryHead", "CellNetwork", "build_cell_network"]


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
        self.pre0 = (
            FactorizedReduce(plan.c_pp, c, True)
            if plan.after_reduction
            else ReLUConvBN(plan.c_pp, c, 1, 1, True)
        )
        self.pre1 = ReLUConvBN(plan.c_p, c, 1, 1, True)
        self.ops = nn.ModuleDict()
        self.edges: list[list[tuple[int, str]]] = []  # per node: (source, key in self.ops)
        for i, (ins, ops) in enumerate(nodes):
            row = []
            for src, name in zip(ins, ops, strict=True):
                key = f"n{i}_s{src}_{name}"
                if key not in self.ops:
                    stride = 2 if plan.reduction and src < 2 else 1
                    self.ops[key] = build_cell_op(name, c, stride, True, True)
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
        reductions = [i for i, p in enumerate(plan) if p.reduction]
        self.stem = make_stem(image_channels(sample_shape), plan[0].c_p, track=True)
        self.cells = nn.ModuleList(
            FixedCell(genotype["reduction" if p.reduction else "normal"], p) for p in plan
        )
        self.aux_at = reductions[-1] if reductions else 2 * n // 3
        self.auxiliary_weight = float(auxiliary_weight)
        self.auxiliary = None
        if auxiliary_weight > 0:
            size = size_after(plan, self.aux_at, sample_shape)
            if min(size) < 8:
                raise UserError(
                    f"space.retrain.auxiliary_weight: the auxiliary head needs feature maps of at "
                    f"least 8x8 after cell {self.aux_at}, these images give {size[0]}x{size[1]}; "
                    "set it to 0"
                )
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
        s0 = s1 = self.stem(x)
        aux = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if auxiliary and i == self.aux_at and self.auxiliary is not None:
                aux = self.auxiliary(s1)
        logits = self.classifier(s1.mean((2, 3)))
        return (logits, aux) if auxiliary else logits


def build_cell_network(
    config: Config, sample_shape: Sequence[int], num_classes: int
) -> CellNetwork:
    """The network of a cell space whose cells are fixed, at its retraining size."""
    space = SearchSpace(config)
    sp = config.space
    r = sp.retrain
    return CellNetwork(
        sp,
        space.genotype([0] * len(space.choices)),
        sample_shape,
        num_classes,
        cells=r.cells,
        channels=r.channels,
        drop_path=r.drop_path,
        auxiliary_weight=r.auxiliary_weight,
    )
