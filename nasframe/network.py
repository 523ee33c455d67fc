"""Networks of a chain space: the weight-sharing supernet and the frozen network of one architecture.

Both are built from the same list of slots (:mod:`nasframe.chain`: stem, per stage a transition and
its layers, head). The supernet holds every candidate op at its largest width and, for a sampled
architecture, runs only the chosen candidate with weights sliced to the chosen width. The frozen
network is a plain ``nn.Sequential`` of standard torch modules (what growth and pruning plugins
operate on).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .chain import executed_slots, op_option_location, slots
from .chain_widths import ReachingWidth, check_ops, checked_op, reaching_sources, width_values
from .config import Config, options
from .errors import UserError, counted
from .op_checks import build_op, sliced_op
from .ops import LAYOUTS
from .space import SearchSpace

__all__ = [
    "Supernet",
    "make_supernet",
    "PlacedSlot",
    "build_network",
    "build_placed_network",
    "refuse_open_choices",
    "with_widths",
    "num_classes_of",
    "count_parameters",
]


def _input_channels(layout: str, sample_shape: Sequence[int]) -> int:
    dims = LAYOUTS[layout]
    if dims == 0:
        n = 1
        for s in sample_shape:
            n *= int(s)
        return n
    if len(sample_shape) != dims + 1:
        kind = {1: "(channels, length)", 2: "(channels, height, width)"}[dims]
        fits = {2: "'conv1d'", 3: "'conv2d'"}.get(len(sample_shape), "'linear'")
        missing = ""
        if len(sample_shape) == dims:  # one short: e.g. (8, 8) images without their channel
            what = "images" if dims == 2 else "signals"
            shape = ", ".join(str(int(s)) for s in sample_shape)
            missing = f", or, if these are {what} of one channel, a dataset that gives (1, {shape})"
        raise UserError(
            f"space.layout: '{layout}' needs inputs shaped {kind}, but the data's samples are "
            f"shaped {tuple(sample_shape)}; use layout {fits}{missing}"
        )
    return int(sample_shape[0])


class Supernet(nn.Module):
    """All candidates of a space; ``forward(x, sample)`` runs only the sampled sub-network."""

    def __init__(self, space: SearchSpace, sample_shape: Sequence[int], num_classes: int) -> None:
        super().__init__()
        cfg = space.config
        self.space = space
        self.layout = cfg.space.layout
        self.slots = slots(cfg)
        in_channels = _input_channels(self.layout, sample_shape)
        check_ops(cfg, in_channels)
        ins, head = reaching_sources(self.slots, in_channels)
        self.candidates = nn.ModuleList()
        for slot, reaching in zip(self.slots, ins, strict=True):
            ops = nn.ModuleDict()
            out = ReachingWidth.out_of(slot)
            widest = (max(width_values(reaching)), max(out.values))
            narrowest = (min(width_values(reaching)), min(out.values))
            for name in options(slot.op):
                cls = checked_op(slot, name, self.layout, reaching, out)  # checked above
                modules = build_op(cls, name, *widest, slot.stride, self.layout)
                where = op_option_location(slot, name)
                ops[name] = sliced_op(
                    name, modules, widest, narrowest, slot.stride, self.layout, where
                )
            self.candidates.append(ops)
        self.max_width = max(width_values(head))
        self.classifier = nn.Linear(self.max_width, num_classes)
        self.pool = cfg.space.head.pool

    def forward(self, x: torch.Tensor, sample: Sequence[int] | None = None) -> torch.Tensor:
        """Logits of the architecture ``sample`` (category indices; None: every first option)."""
        # The loop of executed_slots, inlined: this runs every forward pass.
        sp = self.space
        if self.layout == "linear":
            x = x.flatten(1)
        for slot, ops in zip(self.slots, self.candidates, strict=True):
            if slot.layer is not None and slot.layer >= sp.value(
                slot.depth_path, slot.depth_field, sample
            ):
                continue
            name = sp.value(slot.op_path, slot.op, sample) if slot.op_path else slot.op
            x = ops[name](x, sp.value(slot.out_path, slot.out, sample))
        x = _global_pool(x, self.pool)
        c = x.shape[1]
        return F.linear(x, self.classifier.weight[:, :c], self.classifier.bias)


def make_supernet(space: SearchSpace, sample_shape: Sequence[int], num_classes: int) -> nn.Module:
    """The weight-sharing network of a search space (chain or cells), called as ``net(x, sample)``."""
    if space.is_cells:
        from .cells import CellSupernet

        return CellSupernet(space, sample_shape, num_classes)
    return Supernet(space, sample_shape, num_classes)


def _global_pool(x: torch.Tensor, pool: str) -> torch.Tensor:
    if x.dim() == 2:
        return x
    return x.flatten(2).amax(2) if pool == "max" else x.flatten(2).mean(2)


@dataclass
class PlacedSlot:
    """Where a slot's modules lie in a frozen network: ``net[start:end]``."""

    where: str
    op: str
    start: int
    end: int
    stage: str | None
    layer: int | None


def build_placed_network(
    config: Config, sample_shape: Sequence[int], num_classes: int
) -> tuple[nn.Sequential, list[PlacedSlot]]:
    """:func:`build_network`, plus where each slot's modules lie (for pruning and growth)."""
    if config.space.type == "cells":
        raise UserError("space: pruning and growth work on chain spaces only, not on cell spaces")
    space = SearchSpace(config)
    refuse_open_choices(space)
    layout = config.space.layout
    dims = LAYOUTS[layout]
    in_ch = _input_channels(layout, sample_shape)
    sample = [0] * len(space.choices)
    modules: list[nn.Module] = [nn.Flatten()] if dims == 0 and len(sample_shape) > 1 else []
    placed: list[PlacedSlot] = []
    prev: Any = in_ch
    for slot, name, out in executed_slots(space, slots(config), sample):
        cls = checked_op(
            slot, name, layout, [ReachingWidth(None, (prev,))], ReachingWidth(None, (out,))
        )
        start = len(modules)
        modules.extend(build_op(cls, name, prev, out, slot.stride, layout))
        placed.append(PlacedSlot(slot.where, name, start, len(modules), slot.stage, slot.layer))
        prev = out
    if dims > 0:
        pool = config.space.head.pool
        modules.append(
            (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)[dims - 1](1)
            if pool == "avg"
            else (nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d)[dims - 1](1)
        )
        modules.append(nn.Flatten())
    modules.append(nn.Linear(prev, num_classes))
    return nn.Sequential(*modules), placed


def refuse_open_choices(space: SearchSpace) -> None:
    """A UserError when ``space`` still has choices: a search space, not an architecture."""
    paths = space.open_paths
    if paths:
        raise UserError(  # starting with the first open choice: the CLI gives its line
            f"{paths[0]}: the config still has {counted(len(paths), 'open choice')} "
            f"({', '.join(paths[:3])}{', ...' if len(paths) > 3 else ''}); train an exported "
            "arch.yaml from `nasframe search`, or fix every choice"
        )


def build_network(config: Config, sample_shape: Sequence[int], num_classes: int) -> nn.Module:
    """The frozen network of a config whose choices all have one option (an exported arch).

    Chains: a plain ``nn.Sequential`` of standard torch modules. Cells: a
    :class:`~nasframe.cell_network.CellNetwork` at the space's retraining size. No search code.
    """
    if config.space.type == "cells":
        from .cell_network import build_cell_network

        refuse_open_choices(SearchSpace(config))
        return build_cell_network(config, sample_shape, num_classes)
    return build_placed_network(config, sample_shape, num_classes)[0]


def with_widths(config: Config, net: nn.Sequential, placed: list[PlacedSlot]) -> dict[str, Any]:
    """The arch (raw config) of ``config`` with the widths ``net``'s layers now have.

    For architectures whose layers were pruned or grown: each slot's width is the output width of
    its last full (non depth-wise) weight layer; channel-preserving slots keep their input width.
    """
    raw = config.model_dump(mode="json", exclude_none=True, warnings=False)
    sp = raw["space"]
    stages = {st["name"]: st for st in sp["stages"]}
    for st, st_cfg in zip(sp["stages"], config.space.stages, strict=True):
        depth = (
            int(st_cfg.depth) if not hasattr(st_cfg.depth, "choices") else st_cfg.depth.choices[0]
        )
        st.pop("layer", None)
        st["layers"] = [
            {"op": (lc.op if isinstance(lc.op, str) else lc.op.choices[0])}
            for lc in st_cfg.layer_configs()[:depth]
        ]
    prev = None
    for p in placed:
        width = prev
        for m in net[p.start : p.end]:
            if isinstance(m, nn.Linear):
                width = m.out_features
            elif isinstance(m, nn.modules.conv._ConvNd) and m.groups == 1:
                width = m.out_channels
        if p.where == "stem":
            sp["stem"]["channels"] = width
        elif p.layer is None:
            stages[p.stage]["width"] = width
        else:
            stages[p.stage]["layers"][p.layer]["width"] = width
        prev = width
    return raw


def num_classes_of(config: Config, data_classes: int) -> int:
    """Classes of the head: the config's, checked against the data's."""
    sp = config.space
    classes = sp.classes if sp.type == "cells" else sp.head.classes
    if classes is None:
        return data_classes
    if classes < data_classes:
        where = "space.classes" if sp.type == "cells" else "space.head.classes"
        raise UserError(f"{where}: {classes} classes, but the data has {data_classes} labels")
    return classes


def count_parameters(model: nn.Module) -> int:
    """How many numbers ``model``'s parameters hold."""
    return sum(p.numel() for p in model.parameters())
