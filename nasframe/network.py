"""Networks of a chain space: the weight-sharing supernet and the frozen network of one architecture.

Both are built from the same list of slots (stem, per stage a transition and its layers, head). The
supernet holds every candidate op at its largest width and, for a sampled architecture, runs only the
chosen candidate with weights sliced to the chosen width. The frozen network is a plain
``nn.Sequential`` of standard torch modules (what growth and pruning plugins operate on).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from . import registry
from .config import Choice, Config, options
from .errors import UserError, counted
from .ops import LAYOUTS
from .slicing import SlicedOp
from .space import STEM_CHANNELS, SearchSpace, StagePaths

__all__ = [
    "Slot",
    "slots",
    "executed_slots",
    "reaching_sources",
    "Supernet",
    "make_supernet",
    "PlacedSlot",
    "build_network",
    "build_network_layout",
    "build_op",
    "trial_output",
    "check_cell_op",
    "check_ops",
    "with_widths",
    "count_parameters",
]


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


def _input_channels(layout: str, sample_shape: Sequence[int]) -> int:
    dims = LAYOUTS[layout]
    if dims == 0:
        n = 1
        for s in sample_shape:
            n *= int(s)
        return n
    if len(sample_shape) != dims + 1:
        kind = {1: "(channels, length)", 2: "(channels, height, width)"}[dims]
        raise UserError(
            f"space.layout: '{layout}' needs inputs shaped {kind}, but the data's samples are "
            f"shaped {tuple(sample_shape)}; use layout "
            + (
                "'conv1d'"
                if len(sample_shape) == 2
                else "'conv2d'"
                if len(sample_shape) == 3
                else "'linear'"
            )
        )
    return int(sample_shape[0])


def op_class(name: str, layout: str, where: str) -> Any:
    """The registered op class ``name`` for ``layout``; an op without that layout is a UserError
    located at ``where``, a plugin that is not an Op class a
    :class:`~nasframe.registry.PluginFailure` naming where it comes from."""
    cls = registry.get("op", name)
    if not callable(getattr(cls, "build", None)):  # a plugin's bug, not the config's
        raise registry.failure("op", name, f"is {registry.shown(cls)}, not {registry.WHAT['op']}")
    layouts = getattr(cls, "layouts", None)
    if not isinstance(layouts, (tuple, list)) or not all(isinstance(x, str) for x in layouts):
        raise registry.failure(
            "op", name, f"has layouts = {registry.shown(layouts)}, not a tuple of layout names"
        )
    if layout not in layouts:
        fits = _ops_for(layout)
        raise UserError(
            f"{where}: op '{name}' does not support layout '{layout}' (it supports "
            f"{', '.join(layouts)})" + (f"; ops for '{layout}': {', '.join(fits)}" if fits else "")
        )
    return cls


def _is_module_list(modules: Any) -> bool:
    return isinstance(modules, (list, tuple, nn.Sequential, nn.ModuleList)) and all(
        isinstance(m, nn.Module) for m in modules
    )


def build_op(
    cls: Any, name: str, in_channels: int, out_channels: int, stride: int, layout: str
) -> list[nn.Module]:
    """The modules of op ``name`` (its class ``cls``): ``cls.build(in_channels, out_channels,
    stride, layout)``. A build that raises, returns something other than a list of torch
    modules, or modules whose output does not have ``out_channels`` channels (checked once per
    set of arguments, on one small input), is the plugin's bug: a
    :class:`~nasframe.registry.PluginFailure` naming it."""
    modules = list(
        registry.call(
            "op",
            name,
            cls.build,
            (in_channels, out_channels, stride, layout),
            label="build",
            returns=(_is_module_list, "a list of torch modules"),
        )
    )
    net = nn.Sequential(*modules)
    problem = _checked_once(  # once per signature: networks repeat the same ops
        _OUTPUT_CHECKED,
        (cls, in_channels, out_channels, stride, layout),
        net,
        lambda: _output_problem(net, in_channels, out_channels, stride, layout),
    )
    if problem is not None:
        call = f"build({in_channels}, {out_channels}, {stride}, {layout!r})"
        raise registry.failure("op", name, f"returned from {call} modules {problem}")
    return modules


#: (op class, in_channels, out_channels, stride, layout) -> what is wrong with the output of the
#: modules its build returns (None: nothing, or they could not be run on a small input)
_OUTPUT_CHECKED: dict[tuple[Any, ...], str | None] = {}


def _on_meta(module: nn.Module) -> bool:
    return any(t.device.type == "meta" for t in [*module.parameters(), *module.buffers()])


def _checked_once(
    cache: dict[tuple[Any, ...], str | None],
    key: tuple[Any, ...],
    module: nn.Module,
    problem: Callable[[], str | None],
) -> str | None:
    """``problem()`` for ``module``, found once per ``key`` and kept in ``cache`` (bounded); None
    without running it for a module on the meta device (how cost tables build: nothing to run,
    left to a real build)."""
    if key not in cache:
        if _on_meta(module):
            return None
        if len(cache) >= 4096:
            cache.clear()
        cache[key] = problem()
    return cache[key]


def _not_a_tensor(y: Any) -> str | None:
    return (
        None
        if isinstance(y, torch.Tensor)
        else f"whose output is {registry.shown(y)}, not a tensor"
    )


def trial_output(module: nn.Module, shape: Sequence[int]) -> Any:
    """What ``module`` returns for zeros of ``shape`` (batch dimension included), to check a
    plugin's modules before a run relies on them; None when it cannot run on them (it raises,
    holds lazy layers, or lives on the meta device), so that such a module is left unchecked.

    It runs once where its weights are, in eval mode (every submodule's mode restored after) and
    without gradients: nothing of it changes and no random number is drawn. On the small shapes
    of a check this costs a small fraction of building the module."""
    tensors = [*module.parameters(), *module.buffers()]
    if _on_meta(module) or any(
        isinstance(m, nn.modules.lazy.LazyModuleMixin) for m in module.modules()
    ):
        return None  # nothing to run, or running would initialise it (drawing random numbers)
    floats = [t.dtype for t in tensors if t.is_floating_point()]
    device = tensors[0].device if tensors else torch.device("cpu")
    x = torch.zeros(tuple(shape), device=device, dtype=floats[0] if floats else None)
    modes = [(m, m.training) for m in module.modules()]
    try:
        module.eval()
        with torch.no_grad():
            return module(x)
    except Exception:  # a module that cannot take this input: not checked here
        return None
    finally:
        for m, training in modes:
            m.training = training


def _output_problem(
    net: nn.Module, in_channels: int, out_channels: int, stride: int, layout: str
) -> str | None:
    """What is wrong with the output of ``net`` (an op's modules, built for these arguments) on
    one input: not a tensor shaped like the input (N, C[, L[, W]]), not ``out_channels``
    channels, or not reduced at a ``stride`` above 1; None when it is right or cannot be run
    (:func:`trial_output`). The input's side is ``2 * stride`` (cheap at any width), else, for
    ops that cannot take so few pixels (a convolution without padding), ``16 * stride``."""
    dims = LAYOUTS[layout]
    for side in (2, 16) if dims else (1,):
        shape = (1, in_channels, *(side * stride,) * dims)
        y = trial_output(net, shape)
        if y is not None:
            break
    else:
        return None
    if (wrong := _not_a_tensor(y)) is not None:
        return wrong
    if y.dim() != dims + 2 or y.shape[0] != 1:
        want = "(N, C)" if dims == 0 else "(N, C, L)" if dims == 1 else "(N, C, H, W)"
        return f"that turn an input shaped {shape} into {tuple(y.shape)}, not {want}"
    if y.shape[1] != out_channels:
        return f"whose output has {counted(y.shape[1], 'channel')}, not {out_channels}"
    if stride > 1 and any(n >= side * stride for n in y.shape[2:]):
        return (
            f"that ignore stride {stride}: an input shaped {shape} comes out as "
            f"{tuple(y.shape)}, no smaller"
        )
    return None


#: (cell op plugin, module class, channels, stride) -> what is wrong with the module's output
_CELL_OP_CHECKED: dict[tuple[Any, ...], str | None] = {}


def check_cell_op(name: str, module: nn.Module, channels: int, stride: int) -> None:
    """Refuse a ``cell_op`` plugin's module that does not keep the contract, mapping
    (N, C, H, W) to (N, C, H / stride, W / stride), with a
    :class:`~nasframe.registry.PluginFailure` naming the plugin (rather than a shape error
    deep in a cell's forward pass). Run once per (op, module class, channels, stride) on an 8×8
    input of zeros, as :func:`trial_output` runs it; a module that cannot run there is not
    checked."""

    def find() -> str | None:
        shape = (1, channels, 8, 8)
        want = (1, channels, -(-8 // stride), -(-8 // stride))
        y = trial_output(module, shape)
        if y is None:
            return None
        if (wrong := _not_a_tensor(y)) is not None:
            return wrong
        if tuple(y.shape) != want:
            return f"that turns an input shaped {shape} into {tuple(y.shape)}, not {want}"
        return None

    # keyed by the plugin, not its name: one registered again under it is checked again
    key = (registry.get("cell_op", name), type(module), channels, stride)
    problem = _checked_once(_CELL_OP_CHECKED, key, module, find)
    if problem is not None:
        call = f"{name}({channels}, {stride}, ...)"
        raise registry.failure("cell_op", name, f"returned from {call} a module {problem}")


def _ops_for(layout: str) -> list[str]:
    """The registered ops that support ``layout`` (plugins that fail to load left out)."""
    fits = []
    for name in registry.names("op"):
        try:
            if layout in getattr(registry.get("op", name), "layouts", ()):
                fits.append(name)
        except Exception:  # a broken plugin is reported where it is used, not here
            continue
    return fits


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


def _checked_op(
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


def _values(widths: Sequence[ReachingWidth]) -> list[int]:
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
                _checked_op(slot, name, config.space.layout, reaching, out, stem_known)
            except UserError as e:
                problems.append(str(e))
    if problems:
        raise UserError("\n".join(dict.fromkeys(problems)))


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
            for name in options(slot.op):
                cls = _checked_op(slot, name, self.layout, reaching, out)  # checked above
                modules = build_op(
                    cls, name, max(_values(reaching)), max(out.values), slot.stride, self.layout
                )
                ops[name] = SlicedOp(modules)
            self.candidates.append(ops)
        self.max_width = max(_values(head))
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


def build_network_layout(
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
        cls = _checked_op(
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
    return build_network_layout(config, sample_shape, num_classes)[0]


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
