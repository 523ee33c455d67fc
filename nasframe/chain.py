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
    """One place of the chain: which op(s), from which width to which width, and when it runs."""

    where: str  # "stem", "<stage>.transition", "<stage>.layer<i>"
    op: Any  # constant op name or Choice of names
    op_path: str | None  # the op choice's path in the space (θ's row), None for a constant
    out: Any  # constant width or Choice
    out_path: str  # the width's choice path (or its config path, for a constant)
    stride: int
    stage: str | None = None
    layer: int | None = None  # index within the stage (None: not depth-controlled)
    depth_field: Any = None
    depth_path: str | None = None
    op_location: str = ""  # where the op is written: space.stem.op, space.stages.s1.layer.op, ...
    out_location: str = ""  # where the width is written, where not at out_path: ...layers.0.width


def slots(config: Config) -> list[Slot]:
    """The chain's slots in execution order."""
    sp = config.space
    out = [
        Slot(
            "stem",
            sp.stem.op,
            None,
            sp.stem.channels,
            STEM_CHANNELS,
            1,
            op_location="space.stem.op",
        )
    ]
    for st in sp.stages:
        paths = StagePaths(st.name)
        base = paths.base
        out.append(
            Slot(
                f"{st.name}.transition",
                st.transition,
                None,
                st.width,
                paths.width,
                st.stride,
                st.name,
                op_location=f"{base}.transition",
            )
        )
        for i, layer in enumerate(st.layer_configs()):
            op_location = f"{base}.layer.op" if st.layers is None else f"{base}.layers.{i}.op"
            out_location = f"{base}.layers.{i}.width" if st.layers is not None else ""
            width, width_path = (
                (layer.width, paths.layer_width(i))
                if layer.width is not None
                else (st.width, paths.width)
            )
            out.append(
                Slot(
                    f"{st.name}.layer{i}",
                    layer.op,
                    paths.op(i),
                    width,
                    width_path,
                    1,
                    st.name,
                    i,
                    st.depth,
                    paths.depth,
                    op_location,
                    out_location if layer.width is not None else "",
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
