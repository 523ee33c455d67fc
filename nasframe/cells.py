"""The weight-sharing supernet of a cell space (the ENAS micro cell of ASNG-NAS).

Every cell holds one op instance per (node, input source, op) — weights are not shared between
different sources, as in the reference — and, for a sampled architecture, runs only the sampled
ops: unsampled candidates do no work and get no gradient. The outputs of the nodes no later node
uses are concatenated and projected back to the cell's channels by a 1×1 convolution whose weight
(built for all nodes) is sliced to those nodes. BatchNorm has no affine parameters during the search
and always normalises with the batch's statistics (as :mod:`nasframe.slicing` does for chains).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .cell_arch import Genotype, Node, unused_nodes
from .cell_config import CellSpace
from .cell_ops import build_cell_op
from .cell_plan import CellPlan, cell_plan, check_sizes, image_channels, make_stem
from .space import SearchSpace

__all__ = ["SuperCell", "CellSupernet"]


class SuperCell(nn.Module):
    """All candidate edges of one cell; ``forward(s0, s1, nodes)`` runs only ``nodes``' edges."""

    def __init__(self, sp: CellSpace, plan: CellPlan) -> None:
        super().__init__()
        c, affine = plan.c, False
        self.channels = c
        self.pre0, self.pre1 = plan.preprocess(affine, track=False)
        # edges[i][src][op]: node i, input source src (0, 1: previous cells, 2+j: node j).
        self.edges = nn.ModuleList(
            nn.ModuleList(
                nn.ModuleDict(
                    {
                        name: build_cell_op(name, c, plan.stride(src), affine, False)
                        for name in sp.ops
                    }
                )
                for src in range(2 + i)
            )
            for i in range(sp.nodes)
        )
        # The same modules in plain lists and dicts: indexing nn.ModuleList/ModuleDict costs a
        # Python call each, and the forward of a sampled cell does it for every edge.
        self._ops: list[list[dict[str, nn.Module]]] = [
            [dict(candidates.items()) for candidates in row] for row in self.edges
        ]
        self.project = nn.Conv2d(sp.nodes * c, c, 1, bias=False)  # sliced to the unused nodes
        self.bn = nn.BatchNorm2d(c, affine=affine, track_running_stats=False)
        self._index: dict[tuple[tuple[int, ...], torch.device], torch.Tensor] = {}

    def project_weight(self, unused: Sequence[int]) -> torch.Tensor:
        """The 1×1 weight's input channels of the ``unused`` nodes (a view when contiguous)."""
        c, w = self.channels, self.project.weight
        first, last = unused[0], unused[-1]
        if last - first + 1 == len(unused):
            return w[:, first * c : (last + 1) * c]
        key = (tuple(unused), w.device)
        idx = self._index.get(key)
        if idx is None:
            idx = torch.tensor([j * c + k for j in unused for k in range(c)], device=w.device)
            self._index[key] = idx
        return w.index_select(1, idx)

    def forward(
        self,
        s0: torch.Tensor,
        s1: torch.Tensor,
        nodes: Sequence[Node],
        unused: Sequence[int] | None = None,
    ) -> torch.Tensor:
        """The cell's output for the sampled ``nodes`` (``unused``: their unused nodes, if known)."""
        states = [self.pre0(s0), self.pre1(s1)]
        for row, (ins, ops) in zip(self._ops, nodes, strict=True):
            h = None
            for src, op in zip(ins, ops, strict=True):
                y = row[src][op](states[src])
                h = y if h is None else h + y
            states.append(h)
        if unused is None:
            unused = unused_nodes(tuple(nodes))
        parts = [states[2 + j] for j in unused]
        x = torch.cat(parts, 1) if len(parts) > 1 else parts[0]
        return self.bn(F.conv2d(F.relu(x), self.project_weight(unused)))


class CellSupernet(nn.Module):
    """All candidates of a cell space; ``forward(x, sample)`` runs only the sampled sub-network."""

    def __init__(self, space: SearchSpace, sample_shape: Sequence[int], num_classes: int) -> None:
        super().__init__()
        sp = space.config.space
        self.space = space
        plan = cell_plan(sp, sp.cells, sp.channels)
        check_sizes(plan, sample_shape)
        self.kinds = [p.kind for p in plan]
        self.stem = make_stem(image_channels(sample_shape), plan[0].c_p, track=False)
        self.cells = nn.ModuleList(SuperCell(sp, p) for p in plan)
        self.classifier = nn.Linear(plan[-1].c, num_classes)
        self._decoded: dict[bytes, dict[str, tuple[tuple[Node, ...], list[int]]]] = {}

    def decoded(
        self, sample: Sequence[int] | None
    ) -> dict[str, tuple[tuple[Node, ...], list[int]]]:
        """Per cell kind, the nodes of ``sample`` and their unused nodes (decoded once per
        distinct sample, then cached: decoding is Python work repeated every forward)."""
        key = b"" if sample is None else np.asarray(sample, dtype=np.int64).tobytes()
        out = self._decoded.get(key)
        if out is None:
            if len(self._decoded) > 4096:
                self._decoded.clear()
            geno: Genotype = self.space.genotype(sample)
            out = {kind: (nodes, unused_nodes(nodes)) for kind, nodes in geno.items()}
            self._decoded[key] = out
        return out

    def forward(self, x: torch.Tensor, sample: Sequence[int] | None = None) -> torch.Tensor:
        """Logits of the architecture ``sample`` (category indices; None: every first option)."""
        arch = self.decoded(sample)
        s0 = s1 = self.stem(x)
        for cell, kind in zip(self.cells, self.kinds, strict=True):
            s0, s1 = s1, cell(s0, s1, *arch[kind])
        return self.classifier(s1.mean((2, 3)))
