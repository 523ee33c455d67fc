"""Schema of cell search spaces (``space: {type: cells}``): the ENAS micro cell of ASNG-NAS.

A network is a stem, ``cells`` cells and a pooling classifier. Every cell has ``nodes`` nodes; node i
sums ``node_inputs`` inputs, each taken from the two previous cells' outputs (0: the one before the
previous, 1: the previous) or an earlier node (2 + j: node j) and passed through its own op.
Normal and reduction cells have separate choices; each is open (searched) unless the config fixes
it with a list of nodes (``normal: [{inputs: [0, 1], ops: [sep_conv3, identity]}, ...]``), which is
how exported architectures are written. Op names are ``cell_op`` plugins (:mod:`nasframe.cell_ops`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from .config_base import Strict, error_at, plugin_name

__all__ = ["CellSpace", "CellNode", "CellRetrain", "ENAS_OPS", "CELL_KINDS"]

#: The five candidate ops of ENAS's micro space, in the reference's order.
ENAS_OPS = ["identity", "avg_pool3", "max_pool3", "sep_conv3", "sep_conv5"]
#: The two kinds of cells, in the order of their choices.
CELL_KINDS = ("normal", "reduction")


CellOpName = Annotated[str, plugin_name("cell_op")]


def _width(value: Any, handler: ValidatorFunctionWrapHandler) -> int | str:
    """A positive number of channels or ``auto``, with one message for anything else."""
    try:
        return handler(value)
    except ValidationError:
        raise PydanticCustomError(
            "retrain_channels",
            "expected a positive number of channels or 'auto' (the largest width under "
            "param_budget), got {value}",
            {"value": repr(value)},
        ) from None


#: ``space.retrain.channels``: a number of channels, or ``auto`` (chosen under the budget).
RetrainWidth = Annotated[PositiveInt | Literal["auto"], WrapValidator(_width)]


class CellNode(Strict):
    """One node of a fixed cell: where its inputs come from and the op applied to each."""

    inputs: list[NonNegativeInt] = Field(
        min_length=1,
        description="input of each edge: 0 (cell before the previous), 1 (previous), 2+j (node j)",
    )
    ops: list[CellOpName] = Field(min_length=1, description="op of each edge, in the same order")


class CellRetrain(Strict):
    """How `nasframe train` builds and trains the found cells (reference: 20 cells, under 4.0M).

    The reference retrains 20 cells as wide as 4.0M parameters allow (``channels: auto``,
    ``param_budget: 4.0e6``), with drop-path 0.3 and an auxiliary head of weight 0.4.
    """

    cells: PositiveInt | None = Field(None, description="number of cells (default: as searched)")
    channels: RetrainWidth | None = Field(
        None,
        description="channels of the first cells (default: as searched); `auto`: the largest "
        "width whose network has at most param_budget parameters",
    )
    param_budget: PositiveFloat | None = Field(
        None,
        description="most parameters of the network, auxiliary head excluded (e.g. 4.0e6); "
        "`nasframe train` refuses a network above it",
    )
    drop_path: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="drop-path probability of node edges, raised linearly from 0 over the epochs",
    )
    auxiliary_weight: NonNegativeFloat = Field(
        0.0, description="weight of the auxiliary head's loss (0: no auxiliary head)"
    )

    @model_validator(mode="after")
    def _budget(self) -> CellRetrain:
        if self.channels == "auto" and self.param_budget is None:
            raise error_at(
                "retrain_channels",
                "'auto' picks the largest width under space.retrain.param_budget, which is not "
                "set; set param_budget (e.g. 4.0e6) or give a number of channels",
                ("channels",),
            )
        return self


class CellSpace(Strict):
    """Cells of nodes with chosen inputs and ops (the ENAS micro space of ASNG-NAS)."""

    misplaced = {
        "stages": "stages belong to a chain space (no type: cells); a cell space has cells, "
        "nodes and ops",
        "layout": "a cell space takes images (N, C, H, W) only",
        "stem": "a cell space's stem is a fixed 3x3 convolution: set stem_multiplier",
        "head": "a cell space's head is fixed (global average pooling, a linear classifier)",
    }

    type: Literal["cells"] = Field(description="kind of space: `cells`")
    nodes: PositiveInt = Field(5, le=32, description="nodes per cell (at most 32)")
    node_inputs: PositiveInt = Field(
        2, le=8, description="inputs each node sums, each through its own chosen op (at most 8)"
    )
    ops: list[CellOpName] = Field(
        default_factory=lambda: list(ENAS_OPS),
        min_length=1,
        description="candidate ops of every edge (choice order)",
    )
    cells: PositiveInt = Field(8, le=1000, description="number of cells during the search")
    channels: PositiveInt = Field(
        16, le=1 << 16, description="channels of the first cells (doubled by each reduction)"
    )
    stem_multiplier: PositiveInt = Field(
        3, le=64, description="the stem's 3x3 convolution outputs stem_multiplier x channels"
    )
    reductions: list[NonNegativeInt] | None = Field(
        None, description="indices of the reduction cells (default: n//3 and 2n//3 of n cells)"
    )
    classes: PositiveInt | None = Field(
        None, le=1 << 20, description="outputs (default: the data's classes)"
    )
    normal: list[CellNode] | None = Field(
        None, description="a fixed normal cell, one entry per node (default: searched)"
    )
    reduction: list[CellNode] | None = Field(
        None,
        description="a fixed reduction cell, one entry per node (default: searched; with "
        "`reductions: []` no network has one, and it has no choices)",
    )
    retrain: CellRetrain = Field(
        default_factory=CellRetrain, description="network and regularisation of `nasframe train`"
    )

    @model_validator(mode="after")
    def _consistent(self) -> CellSpace:
        for k, name in enumerate(self.ops):
            if name in self.ops[:k]:
                raise error_at("cell_ops", "op '{n}' is listed twice", ("ops", k), n=name)
        # Any number of channels works, odd too: the factorized reductions that split channels
        # in two halves only ever get those of reduction cells, which doubled them.
        counts = {self.cells, self.retrain.cells or self.cells}
        for k, r in enumerate(self.reductions or []):
            if r in self.reductions[:k]:
                raise error_at(
                    "reductions",
                    "cell {r} is listed twice; keep one (a cell reduces once)",
                    ("reductions", k),
                    r=r,
                )
            if r >= min(counts):
                retraining = (self.retrain.cells or self.cells) < self.cells
                raise error_at(
                    "reductions",
                    "cell {r} does not exist{net}: cells are numbered 0..{m}{hint}",
                    ("reductions", k),
                    r=r,
                    m=min(counts) - 1,
                    net=f" in the {min(counts)}-cell retraining network (space.retrain.cells)"
                    if retraining
                    else "",
                    hint="; explicit reductions place those of both networks: remove them for "
                    "each size's default (n//3, 2n//3)"
                    if retraining
                    else "",
                )
        reduced = self.reduction_cells(self.cells)
        if self.normal is None and len(reduced) == self.cells:  # its choices open, unused
            where = "reductions" if self.reductions is not None else "cells"
            raise error_at(
                "no_normal_cell",
                "every cell of the {n}-cell search network is a reduction cell (at {r}): the "
                "normal cell's choices would be searched with no network using them; use more "
                "cells or fewer reductions, or fix the normal cell (normal: ...)",
                (where,),
                n=self.cells,
                r=reduced,
            )
        for kind in CELL_KINDS:
            fixed = getattr(self, kind)
            if fixed is not None:
                self._check_cell(kind, fixed)
        return self

    def cell_kinds(self) -> tuple[str, ...]:
        """The kinds of cell its networks have, in choice order: normal and reduction, or normal
        alone with ``reductions: []`` (a reduction cell's choices could change no network: left
        open, they would be sampled and updated for nothing, widen ASNG's distribution, whose
        step size depends on the number of choices, and keep it from ever converging)."""
        return ("normal",) if self.reductions == [] else CELL_KINDS

    def _check_cell(self, kind: str, fixed: list[CellNode]) -> None:
        if len(fixed) != self.nodes:
            raise error_at(
                "cell_nodes",
                "lists {n} nodes, the cell has {m}",
                (kind,),
                n=len(fixed),
                m=self.nodes,
            )
        for i, node in enumerate(fixed):
            for key in ("inputs", "ops"):
                if len(getattr(node, key)) != self.node_inputs:
                    raise error_at(
                        "cell_node",
                        "node {i} lists {n} {key}, nodes have {m} (node_inputs)",
                        (kind, i, key),
                        i=i,
                        n=len(getattr(node, key)),
                        key=key,
                        m=self.node_inputs,
                    )
            for k, op in enumerate(node.ops):
                if op not in self.ops:
                    raise error_at(
                        "cell_op",
                        "op '{op}' is not one of space.ops ({ops}); add it to ops or use one of "
                        "them",
                        (kind, i, "ops", k),
                        op=op,
                        ops=", ".join(self.ops),
                    )
            for k, src in enumerate(node.inputs):
                if src >= 2 + i:
                    raise error_at(
                        "cell_input",
                        "input {s} out of range: node {i} takes 0..{m} (0, 1: the two previous "
                        "cells, 2+j: node j < {i})",
                        (kind, i, "inputs", k),
                        s=src,
                        i=i,
                        m=1 + i,
                    )

    def reduction_cells(self, cells: int | None = None) -> list[int]:
        """Indices of the reduction cells of a network of ``cells`` cells (default: searched)."""
        n = self.cells if cells is None else cells
        if self.reductions is not None:
            return sorted(set(self.reductions))
        return sorted({n // 3, 2 * n // 3})
