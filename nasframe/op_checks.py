"""An op plugin kept to its contract: the op class for a layout, its ``build`` returning torch
modules whose output has the asked width and stride (tried once per signature on a small input),
and a cell op's module mapping (N, C, H, W) to its stride. A plugin that breaks the contract is
named in a :class:`~nasframe.registry.PluginFailure`, before a run relies on it."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn

from . import registry
from .errors import UserError, counted
from .ops import LAYOUTS
from .slicing import SlicedOp

__all__ = ["op_class", "build_op", "sliced_op", "trial_output", "check_cell_op"]


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
    call = f"build({in_channels}, {out_channels}, {stride}, {layout!r})"
    odd = sorted(
        {str(t.dtype).removeprefix("torch.") for m in modules for t in _floats(m)} - {"float32"}
    )
    if odd:  # e.g. a .double() conv: float32 batches would meet float64 weights in the forward
        raise registry.failure(
            "op",
            name,
            f"returned from {call} modules with {' and '.join(odd)} weights; nasframe keeps "
            "weights in float32 (bf16 runs under autocast)",
        )
    net = nn.Sequential(*modules)
    problem = _checked_once(  # once per signature: networks repeat the same ops
        _OUTPUT_CHECKED,
        (cls, in_channels, out_channels, stride, layout),
        net,
        lambda: _output_problem(net, in_channels, out_channels, stride, layout),
    )
    if problem is not None:
        raise registry.failure("op", name, f"returned from {call} modules {problem}")
    return modules


def _floats(module: nn.Module) -> list[torch.Tensor]:
    return [t for t in (*module.parameters(), *module.buffers()) if t.is_floating_point()]


def sliced_op(
    name: str,
    modules: list[nn.Module],
    widest: tuple[int, int],
    narrowest: tuple[int, int],
    stride: int,
    layout: str,
    where: str,
) -> SlicedOp:
    """The supernet's candidate of op ``name``: its ``modules``, built at the ``widest`` (input,
    output) widths, run at any narrower ones by slicing their weights. Refused at ``where`` (the
    op's config path) when the supernet cannot run them so: a module it cannot slice (a grouped
    convolution), or one with per-channel weights of its own (GroupNorm, LayerNorm) that fails at
    the ``narrowest`` widths though it runs at the widest (tried once per signature, as
    :func:`build_op` tries the full width)."""
    by = f"op '{name}' ({registry.provider('op', name)})"
    advice = (
        "the supernet shares weights across widths by slicing Conv (groups 1 or depth-wise), "
        "Linear and BatchNorm weights and runs other modules unchanged: fix this op's widths "
        "(one value), or build it from those"
    )
    try:
        op = SlicedOp(modules)
    except UserError as e:
        raise UserError(f"{where}: {by} cannot run at a sampled width: {e}; {advice}") from None
    if narrowest == widest:
        return op
    key = (tuple(type(m) for m in modules), widest, narrowest, stride, layout, name)
    problem = _checked_once(
        _SLICED_CHECKED, key, op, lambda: _sliced_problem(op, widest, narrowest, stride, layout)
    )
    if problem is not None:
        (c_in, c_out), (n_in, n_out) = widest, narrowest
        raise UserError(
            f"{where}: {by}, built for {c_in} -> {c_out} channels, {problem} at {n_in} -> "
            f"{n_out}, a width the space can sample; {advice}"
        )
    return op


#: (module types, widest, narrowest, stride, layout, op name) -> what fails at the narrowest
_SLICED_CHECKED: dict[tuple[Any, ...], str | None] = {}


def _sliced_problem(
    op: SlicedOp, widest: tuple[int, int], narrowest: tuple[int, int], stride: int, layout: str
) -> str | None:
    """What goes wrong when ``op`` runs at the ``narrowest`` widths on zeros that it takes at
    the ``widest`` ones (a batch of two: BatchNorm uses the batch's statistics); None when
    nothing does, or when it cannot run at the widest either (left to the full-width check)."""
    dims = LAYOUTS[layout]
    floats = _floats(op)
    device = floats[0].device if floats else torch.device("cpu")
    with _at_rest(op):
        for side in (2, 16) if dims else (1,):
            spatial = (side * stride,) * dims
            try:
                op(torch.zeros(2, widest[0], *spatial, device=device), widest[1])
            except Exception:
                continue  # too small an input for this op: try a larger one
            try:
                y = op(torch.zeros(2, narrowest[0], *spatial, device=device), narrowest[1])
            except Exception as e:
                return f"fails ({registry.error_line(e)})"
            if not isinstance(y, torch.Tensor) or y.dim() < 2 or y.shape[1] != narrowest[1]:
                got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
                return f"gives an output shaped {got}, not {narrowest[1]} channels,"
            return None
    return None


@contextlib.contextmanager
def _at_rest(module: nn.Module) -> Iterator[None]:
    """``module`` in eval mode and without gradients, each submodule's mode restored after:
    a trial run on it changes nothing of it."""
    modes = [(m, m.training) for m in module.modules()]
    try:
        module.eval()
        with torch.no_grad():
            yield
    finally:
        for m, training in modes:
            m.training = training


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
    with _at_rest(module):
        try:
            return module(x)
        except Exception:  # a module that cannot take this input: not checked here
            return None


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
