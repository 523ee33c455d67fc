"""Growable layer pairs: finding them, and resizing their modules and optimizer state.

A *pair* is a weight layer ``l`` (``nn.Linear`` or a non-grouped ``nn.Conv{1,2,3}d``), the
modules between it and the next weight layer, and that next layer ``l+1``. Growing the pair by
``k`` units appends ``k`` output units to ``l``, ``k`` identity units to each channel-wise module
in between (BatchNorm: weight 1, bias 0, running mean 0, running var 1; depthwise conv: centre tap
1, other taps and bias 0), and ``k`` input units to ``l+1``.

Parameters are resized **in place**: the same ``nn.Parameter`` objects get a larger ``.data``
(new entries appended at the end of the grown dimension), so optimizers, parameter hooks and
anything else holding the parameters keep working. Optimizer state tensors of the same shape as
the parameter (momentum buffers, Adam moments, ...) are padded with zeros; scalar state (step
counters) is left unchanged. ``.grad`` is padded with zeros too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from .activations import GrowthError

CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
#: Parameter-free modules whose value and gradient are determined per channel (or per feature).
STRUCTURAL_TYPES = (
    nn.Identity,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
)


#: set on a depthwise conv shrunk to one channel, which ``groups == 1`` no longer tells apart
#: from a full conv
_SHRUNK_DEPTHWISE = "_nasframe_growth_depthwise"


def is_weight_layer(m: nn.Module) -> bool:
    """A layer that can be either side of a pair: ``nn.Linear`` or a conv with ``groups == 1``."""
    return type(m) is nn.Linear or (
        isinstance(m, CONV_TYPES) and m.groups == 1 and not getattr(m, _SHRUNK_DEPTHWISE, False)
    )


def is_depthwise(m: nn.Module) -> bool:
    """A depthwise conv (``groups == in_channels == out_channels > 1``, or 1 for one shrunk to
    a single channel)."""
    return (
        isinstance(m, CONV_TYPES)
        and (m.groups > 1 or getattr(m, _SHRUNK_DEPTHWISE, False))
        and m.groups == m.in_channels == m.out_channels
    )


def is_passthrough(m: nn.Module) -> bool:
    """A module without parameters or buffers (activation, pool, flatten, dropout, identity), or a
    ``PReLU`` with one shared parameter."""
    if isinstance(m, nn.PReLU):
        return m.num_parameters == 1
    return next(m.parameters(), None) is None and next(m.buffers(), None) is None


def _is_full_flatten(m: nn.Module) -> bool:
    return isinstance(m, nn.Flatten) and m.start_dim == 1 and m.end_dim == -1


def width_of(layer: nn.Module) -> int:
    """Number of output units of a weight layer."""
    return layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels


@dataclass(eq=False)
class GrowthPair:
    """``layer`` → ``between`` modules → ``next_layer``; growth adds output units to ``layer``.

    ``name`` is only used for logging (``find_growable_pairs`` uses ``"<i>-><j>"`` with the
    module names in the Sequential).
    """

    layer: nn.Module
    next_layer: nn.Module
    between: tuple[nn.Module, ...] = field(default_factory=tuple)
    name: str = ""

    def __post_init__(self):
        self.between = tuple(self.between)
        if not self.name:
            self.name = f"{type(self.layer).__name__}->{type(self.next_layer).__name__}"

    @property
    def width(self) -> int:
        """Current number of units (outputs of ``layer``)."""
        return width_of(self.layer)

    @property
    def span(self) -> int:
        """Inputs of ``next_layer`` fed by one unit: 1, or the positions per channel that a
        ``Flatten`` turns into features (conv → flatten → linear)."""
        if isinstance(self.next_layer, nn.Linear):
            return self.next_layer.in_features // max(self.width, 1)
        return 1

    @property
    def in_block_shape(self) -> tuple[int, ...]:
        """Shape of one unit's incoming weights (``layer.weight[i]``)."""
        return tuple(self.layer.weight.shape[1:])

    @property
    def out_block_shape(self) -> tuple[int, ...]:
        """Shape of one unit's outgoing weights: ``(out, *kernel)`` for a conv ``next_layer``,
        ``(out, span)`` for a linear one."""
        w = self.next_layer.weight
        if isinstance(self.next_layer, nn.Linear):
            return (w.shape[0], self.span)
        return (w.shape[0], *w.shape[2:])

    def outgoing_blocks(self) -> torch.Tensor:
        """The existing units' outgoing weights, shape ``(width, *out_block_shape)``."""
        w = self.next_layer.weight.detach()
        if isinstance(self.next_layer, nn.Linear):
            return w.reshape(w.shape[0], self.width, self.span).transpose(0, 1)
        return w.transpose(0, 1)

    def validate(self) -> None:
        """Raise ``GrowthError`` naming the problem if the pair cannot be grown."""
        layer, nxt = self.layer, self.next_layer
        for role, m in (("layer", layer), ("next_layer", nxt)):
            if not is_weight_layer(m):
                raise GrowthError(
                    f"pair {self.name}: {role} {m!r} must be nn.Linear or nn.Conv1d/2d/3d with "
                    "groups=1"
                )
        width = self.width
        flattened = False
        for m in self.between:
            if isinstance(m, BN_TYPES):
                want = width * (self.span if flattened else 1)
                if m.num_features != want:
                    raise GrowthError(
                        f"pair {self.name}: {m!r} has {m.num_features} features, expected {want}"
                    )
            elif is_depthwise(m):
                if flattened or isinstance(layer, nn.Linear):
                    raise GrowthError(f"pair {self.name}: depthwise {m!r} must follow a conv")
                if m.in_channels != width:
                    raise GrowthError(
                        f"pair {self.name}: depthwise {m!r} has {m.in_channels} channels, "
                        f"expected {width}"
                    )
            elif isinstance(m, nn.Flatten):
                if not _is_full_flatten(m) or flattened:
                    raise GrowthError(
                        f"pair {self.name}: only one nn.Flatten(start_dim=1, end_dim=-1) is "
                        f"supported between the layers, got {m!r}"
                    )
                flattened = True
            elif not is_passthrough(m):
                raise GrowthError(
                    f"pair {self.name}: cannot grow through {m!r} (only BatchNorm, depthwise "
                    "convs, Flatten and parameter-free modules may sit between the layers)"
                )
        if isinstance(nxt, nn.Linear):
            if isinstance(layer, CONV_TYPES) and not flattened:
                raise GrowthError(f"pair {self.name}: conv → linear needs an nn.Flatten between")
            if nxt.in_features % width != 0:
                raise GrowthError(
                    f"pair {self.name}: next layer has {nxt.in_features} inputs, not a multiple "
                    f"of the {width} units of {layer!r}"
                )
            if isinstance(layer, nn.Linear) and nxt.in_features != width:
                raise GrowthError(
                    f"pair {self.name}: next layer has {nxt.in_features} inputs, expected {width}"
                )
        else:
            if isinstance(layer, nn.Linear) or flattened:
                raise GrowthError(f"pair {self.name}: a conv next layer needs a conv layer")
            if type(layer) is not type(nxt):
                raise GrowthError(f"pair {self.name}: {layer!r} and {nxt!r} differ in dimension")
            if nxt.in_channels != width:
                raise GrowthError(
                    f"pair {self.name}: next layer has {nxt.in_channels} input channels, "
                    f"expected {width}"
                )


def _leaf_modules(seq: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    out = []
    for name, m in seq.named_children():
        full = f"{prefix}.{name}" if prefix else name
        if type(m) is nn.Sequential:
            out.extend(_leaf_modules(m, full))
        else:
            out.append((full, m))
    return out


def find_growable_pairs(seq: nn.Module) -> list[GrowthPair]:
    """All growable pairs of an ``nn.Sequential`` (nested ``nn.Sequential`` are flattened), in
    order. Each weight layer is paired with the next weight layer when everything between them is
    supported (BatchNorm, depthwise conv, a Flatten for conv → linear, parameter-free modules)."""
    mods = _leaf_modules(seq)
    pairs = []
    for i, (name_i, m) in enumerate(mods):
        if not is_weight_layer(m):
            continue
        between = []
        for name_j, n in mods[i + 1 :]:
            if is_weight_layer(n):
                pair = GrowthPair(m, n, tuple(between), name=f"{name_i}->{name_j}")
                try:
                    pair.validate()
                except GrowthError:
                    pass
                else:
                    pairs.append(pair)
                break
            if isinstance(n, BN_TYPES) or is_depthwise(n) or is_passthrough(n):
                between.append(n)
            else:
                break
    return pairs


# --------------------------------------------------------------------------- resizing


def _fit(t: torch.Tensor, shape: tuple[int, ...], fill: torch.Tensor | None = None) -> torch.Tensor:
    """A tensor of ``shape`` holding ``t`` in its leading corner and zeros (or nothing) elsewhere."""
    new = t.new_zeros(shape)
    corner = tuple(slice(0, min(a, b)) for a, b in zip(t.shape, shape, strict=True))
    new[corner] = t[corner]
    return new


def set_param_data(
    p: nn.Parameter, data: torch.Tensor, optimizers: Iterable[torch.optim.Optimizer] = ()
) -> None:
    """Give ``p`` new data of a (possibly) different shape, keeping the Parameter object.

    The old values must sit in the leading corner of ``data``. ``.grad`` and every optimizer
    state tensor shaped like the old parameter are cut or zero-padded to the new shape the same
    way; other state (``step``) is left alone.
    """
    old_shape = tuple(p.shape)
    new_shape = tuple(data.shape)
    if new_shape != old_shape:
        # Autograd caches a parameter's gradient accumulator (with the old shape) while any graph
        # that used it is alive, e.g. the last step's loss; reusing it would make the next
        # backward fail. Setting data of another dtype first makes autograd drop that cache.
        p.data = data.to(torch.float64 if data.dtype != torch.float64 else torch.float32)
    p.data = data
    if p.grad is not None and tuple(p.grad.shape) == old_shape:
        p.grad = _fit(p.grad, new_shape)
    for opt in optimizers:
        state = opt.state.get(p)
        if not state:
            continue
        for key, value in list(state.items()):
            if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape == old_shape:
                state[key] = _fit(value, new_shape)


def _opts(optimizer) -> tuple:
    if optimizer is None:
        return ()
    if isinstance(optimizer, torch.optim.Optimizer):
        return (optimizer,)
    return tuple(optimizer)


def identity_depthwise_weight(m: nn.Module, n: int) -> torch.Tensor:
    """``n`` depthwise filters shaped like ``m.weight[:1]`` with centre tap 1, others 0."""
    w = m.weight
    ks = tuple(w.shape[2:])
    new = w.new_zeros((n, 1, *ks))
    new[(slice(None), 0, *(k // 2 for k in ks))] = 1
    return new


@torch.no_grad()
def grow_pair_(
    pair: GrowthPair,
    w_in: torch.Tensor,
    w_out: torch.Tensor,
    optimizer=None,
    b_in: torch.Tensor | None = None,
) -> None:
    """Append ``k = len(w_in)`` units to ``pair`` in place.

    ``w_in``: ``(k, *pair.in_block_shape)`` new incoming weights (zeros keep the function).
    ``w_out``: ``(k, *pair.out_block_shape)`` new outgoing weights. ``b_in``: new biases of
    ``layer`` (default 0). ``optimizer``: one optimizer or several whose state is padded.
    """
    pair.validate()
    opts = _opts(optimizer)
    k = w_in.shape[0]
    if k == 0:
        return
    if tuple(w_in.shape[1:]) != pair.in_block_shape:
        raise GrowthError(
            f"w_in has shape {tuple(w_in.shape)}, expected (k, *{pair.in_block_shape})"
        )
    if tuple(w_out.shape) != (k, *pair.out_block_shape):
        raise GrowthError(
            f"w_out has shape {tuple(w_out.shape)}, expected ({k}, *{pair.out_block_shape})"
        )
    layer, nxt, span = pair.layer, pair.next_layer, pair.span
    w = layer.weight
    set_param_data(w, torch.cat([w.detach(), w_in.to(w)], 0), opts)
    if layer.bias is not None:
        b = layer.bias
        new_b = b.new_zeros(k) if b_in is None else b_in.to(b)
        set_param_data(b, torch.cat([b.detach(), new_b], 0), opts)
    if isinstance(layer, nn.Linear):
        layer.out_features += k
    else:
        layer.out_channels += k

    flattened = False
    for m in pair.between:
        if isinstance(m, BN_TYPES):
            n = k * (span if flattened else 1)
            if m.weight is not None:
                set_param_data(m.weight, torch.cat([m.weight.detach(), m.weight.new_ones(n)]), opts)
                set_param_data(m.bias, torch.cat([m.bias.detach(), m.bias.new_zeros(n)]), opts)
            if m.running_mean is not None:
                m.running_mean = torch.cat([m.running_mean, m.running_mean.new_zeros(n)])
                m.running_var = torch.cat([m.running_var, m.running_var.new_ones(n)])
            m.num_features += n
        elif is_depthwise(m):
            set_param_data(
                m.weight, torch.cat([m.weight.detach(), identity_depthwise_weight(m, k)]), opts
            )
            if m.bias is not None:
                set_param_data(m.bias, torch.cat([m.bias.detach(), m.bias.new_zeros(k)]), opts)
            m.in_channels += k
            m.out_channels += k
            m.groups += k
        elif isinstance(m, nn.Flatten):
            flattened = True

    v = nxt.weight
    w_out = w_out.to(v)
    if isinstance(nxt, nn.Linear):
        cols = w_out.reshape(k, v.shape[0], span).permute(1, 0, 2).reshape(v.shape[0], k * span)
        set_param_data(v, torch.cat([v.detach(), cols], 1), opts)
        nxt.in_features += k * span
    else:
        set_param_data(v, torch.cat([v.detach(), w_out.transpose(0, 1)], 1), opts)
        nxt.in_channels += k


@torch.no_grad()
def resize_pair_(pair: GrowthPair, width: int, optimizer=None) -> None:
    """Set the number of units of ``pair`` to ``width``: keep the first ``width`` units when
    shrinking; when widening, add units with all-zero incoming *and* outgoing weights (a
    placeholder, e.g. before loading a checkpoint of a grown model)."""
    pair.validate()
    cur, span = pair.width, pair.span
    if width == cur:
        return
    if width < 1:
        raise GrowthError(f"pair {pair.name}: width must be >= 1, got {width}")
    if width > cur:
        k = width - cur
        w = pair.layer.weight
        grow_pair_(
            pair,
            w.new_zeros((k, *pair.in_block_shape)),
            w.new_zeros((k, *pair.out_block_shape)),
            optimizer,
        )
        return
    opts = _opts(optimizer)
    layer, nxt = pair.layer, pair.next_layer
    for p in (layer.weight, layer.bias):
        if p is not None:
            set_param_data(p, p.detach()[:width].clone(), opts)
    if isinstance(layer, nn.Linear):
        layer.out_features = width
    else:
        layer.out_channels = width
    flattened = False
    for m in pair.between:
        if isinstance(m, BN_TYPES):
            n = width * (span if flattened else 1)
            for p in (m.weight, m.bias):
                if p is not None:
                    set_param_data(p, p.detach()[:n].clone(), opts)
            if m.running_mean is not None:
                m.running_mean = m.running_mean[:n].clone()
                m.running_var = m.running_var[:n].clone()
            m.num_features = n
        elif is_depthwise(m):
            for p in (m.weight, m.bias):
                if p is not None:
                    set_param_data(p, p.detach()[:width].clone(), opts)
            m.in_channels = m.out_channels = m.groups = width
            setattr(m, _SHRUNK_DEPTHWISE, True)
        elif isinstance(m, nn.Flatten):
            flattened = True
    v = nxt.weight
    if isinstance(nxt, nn.Linear):
        set_param_data(v, v.detach()[:, : width * span].clone(), opts)
        nxt.in_features = width * span
    else:
        set_param_data(v, v.detach()[:, :width].clone(), opts)
        nxt.in_channels = width
