"""The layout of a cell network: each cell's channels and kind, the stem, the feature-map sizes.

The reference's layout (ENAS / ASNG-NAS): a 3×3 stem, then cells whose channels double at each
reduction cell, each cell taking the outputs of the two cells before it. Shared by the search's
supernet (:mod:`nasframe.cells`) and the retraining network (:mod:`nasframe.cell_network`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

from .cell_config import CellSpace
from .cell_ops import FactorizedReduce, ReLUConvBN
from .errors import UserError

__all__ = ["CellPlan", "cell_plan", "image_channels", "make_stem", "size_after", "check_sizes"]


@dataclass(frozen=True)
class CellPlan:
    """Channels and kind of one cell: inputs ``c_pp`` (cell before the previous), ``c_p``."""

    c_pp: int
    c_p: int
    c: int
    reduction: bool
    after_reduction: bool

    @property
    def kind(self) -> str:
        """Which of the space's cells this one is: ``normal`` or ``reduction``."""
        return "reduction" if self.reduction else "normal"

    def stride(self, src: int) -> int:
        """Stride of an edge from input ``src``: 2 from the previous cells into a reduction cell."""
        return 2 if self.reduction and src < 2 else 1

    def preprocess(self, affine: bool, track: bool = True) -> tuple[nn.Module, nn.Module]:
        """The modules bringing the two previous cells' outputs to ``c`` channels (and to this
        cell's resolution after a reduction): ``pre0`` for ``c_pp``, ``pre1`` for ``c_p``."""
        pre0 = (
            FactorizedReduce(self.c_pp, self.c, affine, track=track)
            if self.after_reduction
            else ReLUConvBN(self.c_pp, self.c, 1, 1, affine, track=track)
        )
        return pre0, ReLUConvBN(self.c_p, self.c, 1, 1, affine, track=track)


def cell_plan(sp: CellSpace, cells: int, channels: int) -> list[CellPlan]:
    """The reference's layout: channels double at each reduction cell."""
    reductions = set(sp.reduction_cells(cells))
    c_pp = c_p = channels * sp.stem_multiplier
    c, after = channels, False
    plan = []
    for i in range(cells):
        red = i in reductions
        c = c * 2 if red else c
        plan.append(CellPlan(c_pp, c_p, c, red, after))
        c_pp, c_p, after = c_p, c, red
    return plan


def image_channels(sample_shape: Sequence[int]) -> int:
    """Input channels of image samples; cell spaces need (channels, height, width)."""
    if len(sample_shape) != 3:
        raise UserError(
            f"space: cell spaces need images shaped (channels, height, width), but the data's "
            f"samples are shaped {tuple(sample_shape)}; use a chain space"
        )
    return int(sample_shape[0])


def make_stem(in_channels: int, out_channels: int, track: bool) -> nn.Sequential:
    """3×3 convolution + BatchNorm (affine, as the reference's stem also is during the search)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels, track_running_stats=track),
    )


def size_after(plan: list[CellPlan], last: int, sample_shape: Sequence[int]) -> tuple[int, int]:
    """Height and width of the feature maps after cell ``last`` (-1: the input's)."""
    h, w = int(sample_shape[-2]), int(sample_shape[-1])
    for p in plan[: last + 1]:
        if p.reduction:
            h, w = math.ceil(h / 2), math.ceil(w / 2)
    return h, w


def check_sizes(plan: list[CellPlan], sample_shape: Sequence[int]) -> None:
    """Reductions halve even sizes only (FactorizedReduce pairs shifted pixels)."""
    image_channels(sample_shape)
    for i, p in enumerate(plan):
        if p.reduction:
            h, w = size_after(plan, i - 1, sample_shape)
            if h % 2 or w % 2:
                raise UserError(
                    f"space.reductions: reduction cell {i} gets {h}x{w} feature maps; reductions "
                    "need even sizes (crop or pad the images, or reduce fewer times)"
                )
