"""The choices of a cell space and the cell architectures (genotypes) they encode.

Choice order, per cell kind (normal, then reduction) and node i: the ``node_inputs`` input choices
(``2 + i`` options each), then the ``node_inputs`` op choices (one option per op). With ENAS's 5
nodes, 2 inputs and 5 ops this is the reference's category vector
``[2,2,5,5, 3,3,5,5, 4,4,5,5, 5,5,5,5, 6,6,5,5]`` for each kind.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .cell_config import CellSpace

__all__ = [
    "Node",
    "Genotype",
    "node_path",
    "cell_fields",
    "genotype",
    "unused_nodes",
    "describe_cell",
]

#: One node of a cell: its inputs and the op of each input.
Node = tuple[tuple[int, ...], tuple[str, ...]]
#: A cell architecture per kind: {"normal": (node, ...), "reduction": (node, ...)} (no
#: "reduction" for a space without reductions).
Genotype = dict[str, tuple[Node, ...]]


def node_path(kind: str, node: int) -> str:
    """The path below which node ``node`` of the ``kind`` cell has its choices (``.input0``,
    ``.op0``, ...): θ's rows, so every module that names them takes them from here."""
    return f"space.{kind}.node{node}"


def cell_fields(sp: CellSpace) -> list[tuple[str, Any]]:
    """(path, field) of every variable of a cell space, in choice order; a field is a constant
    (fixed cells) or a :class:`~nasframe.config.Choice`. A kind of cell its networks lack (the
    reduction cell, with ``reductions: []``) has none."""
    from .config import Choice

    out: list[tuple[str, Any]] = []
    for kind in sp.cell_kinds():
        fixed = getattr(sp, kind)
        for i in range(sp.nodes):
            base = node_path(kind, i)
            for k in range(sp.node_inputs):
                value = fixed[i].inputs[k] if fixed else Choice(choices=list(range(2 + i)))
                out.append((f"{base}.input{k}", value))
            for k in range(sp.node_inputs):
                value = fixed[i].ops[k] if fixed else Choice(choices=list(sp.ops))
                out.append((f"{base}.op{k}", value))
    return out


def genotype(sp: CellSpace, value: Callable[[str, Any], Any]) -> Genotype:
    """The cells of one architecture (of the kinds its networks have); ``value(path, field)``
    gives each variable's value."""
    fields = dict(cell_fields(sp))
    geno: Genotype = {}
    for kind in sp.cell_kinds():
        nodes = []
        for i in range(sp.nodes):
            base = node_path(kind, i)
            ins = tuple(
                int(value(f"{base}.input{k}", fields[f"{base}.input{k}"]))
                for k in range(sp.node_inputs)
            )
            ops = tuple(
                str(value(f"{base}.op{k}", fields[f"{base}.op{k}"])) for k in range(sp.node_inputs)
            )
            nodes.append((ins, ops))
        geno[kind] = tuple(nodes)
    return geno


def unused_nodes(nodes: tuple[Node, ...]) -> list[int]:
    """Nodes no later node takes as input: their outputs are concatenated into the cell's output."""
    used = {src - 2 for ins, _ in nodes for src in ins if src >= 2}
    return [i for i in range(len(nodes)) if i not in used]


def describe_cell(nodes: tuple[Node, ...]) -> str:
    """``n0 = sep_conv3(c-2) + identity(c-1); n1 = ...; out = cat(n1, n2)``."""
    names = {0: "c-2", 1: "c-1"}
    parts = []
    for i, (ins, ops) in enumerate(nodes):
        terms = " + ".join(
            f"{op}({names.get(s, f'n{s - 2}')})" for s, op in zip(ins, ops, strict=True)
        )
        parts.append(f"n{i} = {terms}")
    out = ", ".join(f"n{i}" for i in unused_nodes(nodes))
    return "; ".join(parts) + f"; out = cat({out})"
