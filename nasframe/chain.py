"""A chain space's slots: the stem, then per stage its transition and its layers, each with its
op(s), the width it outputs and the config paths that decide them. The supernet, the frozen
network and the width check all walk this one list."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .config import Choice, Config
from .space import STEM_CHANNELS, SearchSpace, StagePaths

__all__ = ["Slot", "slots", "op_option_location", "executed_slots"]


@dataclass
class Slot:
    """One place of the chain: which op(s), from which width to which width, and when it runs.

    Three kinds of name: ``where`` is the slot's own (for messages and the frozen network's
    parts), the ``*_path`` fields are choice paths (θ's rows, ``arch.yaml``'s keys), and the
    ``*_location`` fields are config paths where the user wrote the value (for a message's line).
    """

    where: str  #: the slot's name: "stem", "<stage>.transition", "<stage>.layer<i>"
    op: Any  #: a constant op name, or a Choice of names
    op_path: str | None  #: the op choice's path (θ's row); None for a constant op
    out: Any  #: a constant width, or a Choice
    out_path: str  #: the width choice's path (a constant's config path)
    stride: int
    stage: str | None = None  #: the stage's name (None: the stem)
    layer: int | None = None  #: index within the stage (None: not depth-controlled)
    depth_field: Any = None  #: the stage's depth (constant or Choice), for a layer
    depth_path: str | None = None  #: the depth choice's path, for a layer
    op_location: str = ""  #: where the op is written: space.stem.op, space.stages.s1.layer.op
    out_location: str = ""  #: where the width is written, when not at out_path: layers.0.width


def slots(config: Config) -> list[Slot]:
    """The chain's slots in execution order: the stem, then per stage its transition and its
    layers (a ``layer:`` template gives one per possible depth)."""
    sp = config.space
    out = [
        Slot(
            where="stem",
            op=sp.stem.op,
            op_path=None,
            out=sp.stem.channels,
            out_path=STEM_CHANNELS,
            stride=1,
            op_location="space.stem.op",
        )
    ]
    for st in sp.stages:
        paths = StagePaths(st.name)
        base = paths.base
        out.append(
            Slot(
                where=f"{st.name}.transition",
                op=st.transition,
                op_path=None,
                out=st.width,
                out_path=paths.width,
                stride=st.stride,
                stage=st.name,
                op_location=f"{base}.transition",
            )
        )
        for i, layer in enumerate(st.layer_configs()):
            own_width = layer.width is not None
            out.append(
                Slot(
                    where=f"{st.name}.layer{i}",
                    op=layer.op,
                    op_path=paths.op(i),
                    out=layer.width if own_width else st.width,
                    out_path=paths.layer_width(i) if own_width else paths.width,
                    stride=1,
                    stage=st.name,
                    layer=i,
                    depth_field=st.depth,
                    depth_path=paths.depth,
                    op_location=f"{base}.layer.op"
                    if st.layers is None
                    else f"{base}.layers.{i}.op",
                    out_location=f"{base}.layers.{i}.width" if st.layers and own_width else "",
                )
            )
    return out


def op_option_location(slot: Slot, name: str) -> str:
    """The config path of op ``name`` at ``slot`` (errors start with it, so that the CLI gives
    its line): the op field, or the option of the field's choice that names ``name``."""
    if isinstance(slot.op, Choice):
        return f"{slot.op_location}.choices.{slot.op.choices.index(name)}"
    return slot.op_location


def executed_slots(
    space: SearchSpace, chain: Sequence[Slot], sample: Sequence[int] | None
) -> Iterator[tuple[Slot, str, int]]:
    """The slots the architecture ``sample`` runs (depth skips a stage's trailing layers), in
    order, each with the op and the output width ``sample`` picks."""
    for slot in chain:
        if slot.layer is not None and slot.layer >= space.value(
            slot.depth_path, slot.depth_field, sample
        ):
            continue
        name = space.value(slot.op_path, slot.op, sample) if slot.op_path else slot.op
        yield slot, name, space.value(slot.out_path, slot.out, sample)
