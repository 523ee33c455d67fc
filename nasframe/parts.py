"""A network as the list of its parts (stem, each op, heads), whose costs add up.

A part is what a cost table keys on: the builder of one piece of a network and the shapes of one
example's inputs to it. Two places of a network with the same part (the same op at the same width
and resolution) cost the same, so a table of part costs, measured once per part, gives the cost of
any architecture as a sum (the additive model of FBNet's latency lookup table). Chains are split
into their slots' ops and the head; cells into the stem, each cell's preprocessing, each edge's op
and projection, and the classifier. Additions of node inputs and pure reshapes are left out.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .cell_arch import Node, unused_nodes
from .cell_config import CellSpace
from .cell_ops import build_cell_op
from .cell_plan import CellPlan, cell_plan, image_channels, make_stem, size_after
from .macs import count_macs
from .ops import LAYOUTS
from .space import SearchSpace

__all__ = ["Part", "chain_parts", "cell_parts", "output_shape", "part_macs", "part_parameters"]

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Part:
    """One piece of a network: ``kind`` and ``args`` say how to build it, ``inputs`` the shape of
    each of its inputs for one example (no batch dimension)."""

    kind: str
    args: tuple[Any, ...]
    inputs: tuple[Shape, ...]

    @property
    def key(self) -> str:
        """The part as one line of text (the key of a cost table's JSON file)."""
        return json.dumps([self.kind, list(self.args), [list(s) for s in self.inputs]])

    def build(self) -> nn.Module:
        """The part's modules, built where torch builds by default (e.g. under a device context)."""
        return _BUILDERS[self.kind](*self.args)


def chain_parts(
    space: SearchSpace, sample: Sequence[int], sample_shape: Sequence[int], num_classes: int
) -> list[Part]:
    """The parts of the network ``sample`` picks in the chain ``space``: each slot it runs, with
    its input shape, then the head (as :func:`~nasframe.build_network` would build it)."""
    from .chain import executed_slots, slots

    config = space.config
    layout = config.space.layout
    shape = (math.prod(sample_shape),) if LAYOUTS[layout] == 0 else tuple(sample_shape)
    parts = []
    for slot, name, out in executed_slots(space, slots(config), sample):
        part = Part("chain_op", (name, shape[0], out, slot.stride, layout), (shape,))
        parts.append(part)
        shape = output_shape(part)
    head = (config.space.head.pool, layout, shape[0], num_classes)
    return [*parts, Part("chain_head", head, (shape,))]


@functools.lru_cache(maxsize=4096)
def output_shape(part: Part) -> Shape:
    """The shape of one example's output of a part (run once on uninitialised CPU storage)."""
    with torch.device("meta"):
        module = part.build()
    module = module.to_empty(device="cpu").eval()
    with torch.no_grad():
        y = module(*(torch.zeros(1, *s) for s in part.inputs))
    return tuple(y.shape[1:])


@functools.lru_cache(maxsize=4096)
def part_macs(part: Part) -> int:
    """Multiply-accumulates of one example through a part (:func:`~nasframe.macs.count_macs`)."""
    with torch.device("meta"):
        module = part.build()
    return count_macs(module, *part.inputs)


@functools.lru_cache(maxsize=4096)
def part_parameters(part: Part) -> int:
    """Weights of a part."""
    with torch.device("meta"):
        return sum(p.numel() for p in part.build().parameters())


def cell_parts(
    sp: CellSpace,
    genotype: dict[str, tuple[Node, ...]],
    sample_shape: Sequence[int],
    num_classes: int,
    cells: int,
    channels: int,
) -> list[Part]:
    """The parts of ``CellNetwork(sp, genotype, ..., cells, channels)`` without its auxiliary
    head, in execution order; an op used twice by a node is listed twice (it runs twice)."""
    plan = cell_plan(sp, cells, channels)
    c_in = image_channels(sample_shape)
    sizes = [size_after(plan, i, sample_shape) for i in range(-1, len(plan))]
    parts = [Part("cell_stem", (c_in, plan[0].c_p), ((c_in, *sizes[0]),))]
    for i, p in enumerate(plan):
        s0, s1, out = sizes[max(i - 1, 0)], sizes[i], sizes[i + 1]
        pre = (p.c_pp, p.c_p, p.c, p.after_reduction)
        parts.append(Part("cell_preprocess", pre, ((p.c_pp, *s0), (p.c_p, *s1))))
        nodes = genotype[p.kind]
        for ins, ops in nodes:
            for src, name in zip(ins, ops, strict=True):
                size = s1 if src < 2 else out
                parts.append(Part("cell_op", (name, p.c, p.stride(src)), ((p.c, *size),)))
        unused = len(unused_nodes(tuple(nodes)))
        parts.append(Part("cell_project", (unused, p.c), ((p.c, *out),) * unused))
    return [*parts, Part("cell_head", (plan[-1].c, num_classes), ((plan[-1].c, *sizes[-1]),))]


class _Preprocess(nn.Module):
    """A cell's two preprocessing branches, as one part."""

    def __init__(self, c_pp: int, c_p: int, c: int, after_reduction: bool) -> None:
        super().__init__()
        plan = CellPlan(c_pp, c_p, c, False, after_reduction)
        self.pre0, self.pre1 = plan.preprocess(affine=True)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.pre0(s0), self.pre1(s1)


class _Project(nn.Module):
    """A cell's output: its unused nodes concatenated, ReLU, 1×1 convolution and BatchNorm."""

    def __init__(self, unused: int, c: int) -> None:
        super().__init__()
        self.project = nn.Sequential(
            nn.ReLU(), nn.Conv2d(unused * c, c, 1, bias=False), nn.BatchNorm2d(c)
        )

    def forward(self, *nodes: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat(nodes, 1) if len(nodes) > 1 else nodes[0])


class _CellHead(nn.Module):
    """Global average pooling and the classifier."""

    def __init__(self, c: int, num_classes: int) -> None:
        super().__init__()
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(x.mean((2, 3)))


class _ChainHead(nn.Module):
    """Global pooling (signals and images) and the classifier."""

    def __init__(self, pool: str, layout: str, c: int, num_classes: int) -> None:
        super().__init__()
        self.pool = pool if LAYOUTS[layout] else None
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool == "max":
            x = x.flatten(2).amax(2)
        elif self.pool == "avg":
            x = x.flatten(2).mean(2)
        return self.classifier(x)


def _chain_op(name: str, c_in: int, c_out: int, stride: int, layout: str) -> nn.Module:
    from .op_checks import build_op, op_class

    return nn.Sequential(*build_op(op_class(name, layout, name), name, c_in, c_out, stride, layout))


_BUILDERS = {
    "chain_op": _chain_op,
    "chain_head": _ChainHead,
    "cell_stem": lambda c_in, c_out: make_stem(c_in, c_out, track=True),
    "cell_preprocess": _Preprocess,
    "cell_op": lambda name, c, stride: build_cell_op(name, c, stride, True, True),
    "cell_project": _Project,
    "cell_head": _CellHead,
}
