"""The widths that can reach each slot of a chain space, by the choice that decides them, and the
check that a channel-preserving op (a pool, identity) sits only where its input and output widths
are equal in every architecture: what the supernet and the frozen network would refuse."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from .chain import Slot, op_option_location, slots
from .config import Config, options
from .errors import UserError
from .op_checks import op_class

__all__ = ["ReachingWidth", "reaching_sources", "check_ops", "checked_op", "width_values"]


class ReachingWidth(NamedTuple):
    """A width that can reach a slot: the choice (or config) path that decides it (None: the
    data's, or a frozen network's) and its possible values. Two widths with the same path are
    always equal; otherwise they are chosen apart."""

    path: str | None
    values: tuple[int, ...]
    written: str = ""  #: where the config writes it, where that is not ``path``

    @classmethod
    def out_of(cls, slot: Slot) -> ReachingWidth:
        """The width ``slot`` outputs."""
        return cls(slot.out_path, tuple(options(slot.out)), slot.out_location)


def checked_op(
    slot: Slot,
    name: str,
    layout: str,
    ins: Sequence[ReachingWidth],
    out: ReachingWidth,
    check_preserving: bool = True,
) -> Any:
    """The op class ``name`` at ``slot``, refused at its config path when it does not support
    ``layout`` or (with ``check_preserving``) keeps its width while an input width in ``ins`` and
    ``out`` can differ in some architecture."""
    where = op_option_location(slot, name)
    cls = op_class(name, layout, where)
    if check_preserving and getattr(cls, "channel_preserving", False):
        for width in ins:
            if not _always_equal(width, out):
                fixed = len(set(width.values)) == len(set(out.values)) == 1
                raise UserError(
                    f"{where}: op '{name}' keeps the number of channels, but its input width "
                    f"({_shown_width(width)}) and its output width ({_shown_width(out)}) "
                    f"{'differ' if fixed else 'can differ'}; use an op that changes the width "
                    f"here ({_changes_width(layout)})"
                )
    return cls


def _always_equal(a: ReachingWidth, b: ReachingWidth) -> bool:
    """Whether widths ``a`` and ``b`` are equal in every architecture: decided by one choice, or
    each fixed at the same value."""
    if a.path is not None and a.path == b.path:
        return True
    return len(set(a.values)) == 1 and set(a.values) == set(b.values)


def _shown_width(width: ReachingWidth) -> str:
    values = " or ".join(str(v) for v in sorted(set(width.values)))
    return values if width.path is None else f"{width.written or width.path}: {values}"


def _changes_width(layout: str) -> str:
    """A few built-in ops of ``layout`` that change the width, for the advice."""
    return "linear or dense" if layout == "linear" else "e.g. conv3"


def width_values(widths: Sequence[ReachingWidth]) -> list[int]:
    return sorted(set().union(*(w.values for w in widths)))


def reaching_sources(
    chain: Sequence[Slot], in_channels: int
) -> tuple[list[list[ReachingWidth]], list[ReachingWidth]]:
    """The widths (:class:`ReachingWidth`) that can reach each slot, and the head, over every depth
    choice.

    Inside a stage a layer's input is the previous layer's output (depth skips trailing layers),
    but what leaves a stage is the output of whichever layer the sampled depth makes the last.
    """
    ins: list[list[ReachingWidth]] = []
    exits = [ReachingWidth(None, (in_channels,))]
    block: list[ReachingWidth] = []  # outputs of the current block: its first slot, then its layers
    depths: list[int] | None = None
    for slot in chain:
        out = ReachingWidth.out_of(slot)
        if slot.layer is None:  # the stem or a transition starts a block
            if block:
                exits = _block_exits(block, depths)
            ins.append(exits)
            block, depths = [out], None
        else:
            ins.append([block[-1]])
            block.append(out)
            depths = options(slot.depth_field)
    return ins, _block_exits(block, depths) if block else exits


def _block_exits(block: list[ReachingWidth], depths: list[int] | None) -> list[ReachingWidth]:
    if depths is None:
        return [block[-1]]
    return list(dict.fromkeys(block[d] for d in depths if d < len(block)))


def check_ops(config: Config, in_channels: int | None = None) -> None:
    """Refuse, at its config path, an op of a chain space that does not support the space's
    layout, or a channel-preserving op whose input and output widths can differ: what building
    the network would refuse. ``in_channels=None`` (no data loaded) leaves out the stem's input
    width, which the data set."""
    if config.space.type != "chain":
        return
    chain = slots(config)
    ins, _ = reaching_sources(chain, in_channels or 0)
    problems = []  # every op's, one line each: a space is mended in one go
    for k, (slot, reaching) in enumerate(zip(chain, ins, strict=True)):
        out = ReachingWidth.out_of(slot)
        for name in options(slot.op):
            stem_known = k > 0 or in_channels is not None
            try:
                checked_op(slot, name, config.space.layout, reaching, out, stem_known)
            except UserError as e:
                problems.append(str(e))
    if problems:
        raise UserError("\n".join(dict.fromkeys(problems)))
