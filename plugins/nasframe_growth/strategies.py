"""Growth strategies: how the new units' outgoing weights are chosen.

Every strategy adds units with **zero incoming weights** (and zero biases), so the network output
is unchanged, and picks their outgoing weights with a per-unit norm of
``scale × mean norm of the existing units' outgoing weights``:

- ``GradMax``: the top-k left singular vectors of ``M = Σ_n g_n h_nᵀ`` (exact for convolutions,
  over kernel patches), which maximise the gradient norm of the new incoming weights.
- ``GradMaxOpt``: projected gradient ascent on the same objective, starting from random.
- ``RandomGrowth``: random directions.
- ``Firefly``: random candidates refined by a few loss-reducing steps on the new weights only
  (incoming weights temporarily ε-small), renormalised; incoming weights are then reset to 0.

The gradient of unit j's incoming weights at the growth event is ``M_ᵀ w_j`` (a linear map of its
outgoing weights). ``GrowthContext`` computes it, and ``M`` itself, *exactly* by running the new
units alone through copies of ``layer``, the channel-wise modules between and ``next_layer``
(``probe`` units), against the inputs ``h`` of ``layer`` and the gradient ``G`` at the output of
``next_layer`` recorded in one forward/backward pass of the caller's loss. Stride, padding,
dilation, padding modes, borders, BatchNorm in train or eval mode, depthwise convs, pools and
activations are all accounted for because the same operations are applied.
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
import math
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .activations import GrowthError, check_zero_response
from .pairs import (
    BN_TYPES,
    CONV_TYPES,
    STRUCTURAL_TYPES,
    GrowthPair,
    grow_pair_,
    identity_depthwise_weight,
    is_depthwise,
    resize_pair_,
)

LossFn = Callable[[], torch.Tensor]


class OptionError(GrowthError):
    """A strategy option that is unknown or has an unusable value: ``key: what``. ``key`` and
    ``what`` are kept apart so that ``nasframe`` can point at ``train.growth.options.<key>``."""

    def __init__(self, key: str, what: str) -> None:
        super().__init__(f"{key}: {what}")
        self.key, self.what = key, what


_CONV_FN = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def _conv(m: nn.Module, x: torch.Tensor, weight: torch.Tensor, groups: int) -> torch.Tensor:
    """``m``'s convolution (stride, padding, dilation, padding mode) with another weight."""
    fn = _CONV_FN[x.dim() - 2]
    if m.padding_mode != "zeros":
        x = F.pad(x, m._reversed_padding_repeated_twice, mode=m.padding_mode)
        return fn(x, weight, None, m.stride, 0, m.dilation, groups)
    return fn(x, weight, None, m.stride, m.padding, m.dilation, groups)


def _unit_norms(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1).norm(dim=1)


def _normalise(x: torch.Tensor, norms: torch.Tensor | float) -> torch.Tensor:
    """Rescale each unit (row) of ``x`` to the given norm."""
    n = _unit_norms(x).clamp_min(torch.finfo(x.dtype).tiny)
    norms = torch.as_tensor(norms, dtype=x.dtype, device=x.device)
    return x * (norms / n).reshape(-1, *([1] * (x.dim() - 1)))


@contextlib.contextmanager
def preserved_buffers(model: nn.Module | None):
    """Restore every buffer of ``model`` (BatchNorm running statistics, counters) on exit.

    Buffers are looked up by module and name on exit, so a buffer that was replaced by a grown
    one gets its leading corner restored (grown entries are kept).
    """
    if model is None:
        yield
        return
    saved = [
        (mod, name, buf.detach().clone())
        for mod in model.modules()
        for name, buf in mod.named_buffers(recurse=False)
    ]
    try:
        yield
    finally:
        with torch.no_grad():
            for mod, name, old in saved:
                cur = getattr(mod, name, None)
                if isinstance(cur, torch.Tensor) and cur.dim() == old.dim():
                    corner = tuple(
                        slice(0, min(a, b)) for a, b in zip(cur.shape, old.shape, strict=True)
                    )
                    cur[corner] = old[corner]


class GrowthContext:
    """Everything a strategy needs to choose ``k`` new units for one pair at one growth event.

    Attributes: ``pair``, ``k``, ``loss_fn`` (may be None), ``target_norm`` (per-unit outgoing norm c), ``in_target_norm`` (mean norm of the existing
    units' incoming weights), ``generator``, ``extra`` (a dict a strategy may fill; it is copied
    into the info dict).
    """

    def __init__(
        self,
        pair: GrowthPair,
        k: int,
        loss_fn: LossFn | None,
        *,
        scale: float = 1.0,
        generator: torch.Generator | None = None,
        max_probe_elements: int = 2**25,
        check_activations: bool = True,
    ):
        self.pair = pair
        self.k = int(k)
        self.loss_fn = loss_fn
        self.generator = generator
        self.max_probe_elements = int(max_probe_elements)
        self.check_activations = check_activations
        self.extra: dict = {}
        w = pair.layer.weight
        self.device, self.dtype = w.device, w.dtype
        self.in_block_shape = pair.in_block_shape
        self.out_block_shape = pair.out_block_shape
        self.span = pair.span
        mean_out = _unit_norms(pair.outgoing_blocks()).mean().item()
        self.target_norm = float(scale) * (mean_out if mean_out > 0 else 1.0)
        mean_in = _unit_norms(w.detach()).mean().item()
        self.in_target_norm = mean_in if mean_in > 0 else 1.0
        self._h: torch.Tensor | None = None
        self._g: torch.Tensor | None = None
        self.loss_value: float | None = None
        self._checked = False

    # ------------------------------------------------------------------ helpers for strategies

    def call_loss(self) -> torch.Tensor:
        """Call ``loss_fn`` and check that it returned a scalar tensor."""
        if self.loss_fn is None:
            raise GrowthError("this growth strategy needs a loss_fn")
        loss = self.loss_fn()
        if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
            raise GrowthError("loss_fn must return a scalar tensor")
        return loss

    def randn(self, *shape: int) -> torch.Tensor:
        """Standard normal numbers from the context's generator, on the pair's device/dtype."""
        return torch.randn(shape, generator=self.generator, dtype=torch.float64).to(
            self.device, self.dtype
        )

    def random_outgoing(self, k: int | None = None) -> torch.Tensor:
        """``k`` random outgoing blocks, each with norm ``target_norm``."""
        k = self.k if k is None else k
        return _normalise(self.randn(k, *self.out_block_shape), self.target_norm)

    def capture(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(h, G)``: the input of ``layer`` and ∂loss/∂(output of ``next_layer``), from one call
        of ``loss_fn`` (cached). No hooks, graphs or ``.grad`` are left behind."""
        if self._h is not None:
            return self._h, self._g
        store: dict = {}

        def on_layer(mod, args, out):
            if "h" in store:
                raise GrowthError(f"pair {self.pair.name}: layer called more than once")
            store["h"] = args[0].detach()

        def on_next(mod, args, out):
            if "z" in store:
                raise GrowthError(f"pair {self.pair.name}: next layer called more than once")
            store["z"] = out

        handles = [
            self.pair.layer.register_forward_hook(on_layer),
            self.pair.next_layer.register_forward_hook(on_next),
        ]
        try:
            loss = self.call_loss()
            if "h" not in store or "z" not in store:
                raise GrowthError(f"pair {self.pair.name}: loss_fn did not run the pair's layers")
            z = store.pop("z")
            if not z.requires_grad:
                raise GrowthError("loss_fn must build an autograd graph (no torch.no_grad())")
            (g,) = torch.autograd.grad(loss, z, allow_unused=True)
            if g is None:
                g = torch.zeros_like(z)
            self._h, self._g = store.pop("h"), g.detach()
            self.loss_value = float(loss.detach())
        finally:
            for hd in handles:
                hd.remove()
            store.clear()
        return self._h, self._g

    # ------------------------------------------------------------------ probes

    def _between(self, x: torch.Tensor, n: int) -> torch.Tensor:
        """Run ``n`` new units (channels of ``x``) through the modules between the layers, as
        they will be after growth (identity BatchNorm and depthwise units)."""
        mult = 1
        for m in self.pair.between:
            if isinstance(m, BN_TYPES):
                f = n * mult
                batch_stats = m.training or not m.track_running_stats
                x = F.batch_norm(
                    x,
                    None if batch_stats else x.new_zeros(f),
                    None if batch_stats else x.new_ones(f),
                    x.new_ones(f) if m.affine else None,
                    x.new_zeros(f) if m.affine else None,
                    batch_stats,
                    0.0,
                    m.eps,
                )
            elif is_depthwise(m):
                x = _conv(m, x, identity_depthwise_weight(m, n).to(x), n)
            elif isinstance(m, nn.Flatten):
                x = m(x)
                mult = self.span
            else:
                if (
                    self.check_activations
                    and not self._checked
                    and not isinstance(m, (*STRUCTURAL_TYPES, nn.Flatten))
                ):
                    check_zero_response(m, x.detach(), f" between {self.pair.name}")
                x = m(x)
        self._checked = True
        return x

    def _probe(
        self, n: int, next_fn: Callable[[torch.Tensor], torch.Tensor], g: torch.Tensor, create_graph
    ) -> torch.Tensor:
        """Gradient of ⟨G, next_fn(between(layer_n(h)))⟩ w.r.t. ``n`` zero incoming weights."""
        h = self._h
        w = torch.zeros((n, *self.in_block_shape), device=self.device, dtype=self.dtype)
        w.requires_grad_(True)
        layer = self.pair.layer
        with torch.enable_grad():
            z = F.linear(h, w) if isinstance(layer, nn.Linear) else _conv(layer, h, w, 1)
            y = next_fn(self._between(z, n))
            (grad,) = torch.autograd.grad((y * g).sum(), w, create_graph=create_graph)
        return grad

    def incoming_grad(self, w_out: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
        """Exact gradient of the loss w.r.t. the incoming weights of new units with outgoing
        weights ``w_out`` (shape ``(k, *out_block_shape)``) and zero incoming weights:
        shape ``(k, *in_block_shape)``. Differentiable in ``w_out`` with ``create_graph``."""
        self.capture()
        nxt, k = self.pair.next_layer, w_out.shape[0]
        if isinstance(nxt, nn.Linear):
            weight = w_out.permute(1, 0, 2).reshape(w_out.shape[1], k * self.span)

            def next_fn(a):
                return F.linear(a, weight)
        else:
            weight = w_out.transpose(0, 1)

            def next_fn(a):
                return _conv(nxt, a, weight, 1)

        return self._probe(k, next_fn, self._g, create_graph)

    def matrix(self) -> torch.Tensor:
        """``M`` with ``incoming_grad(w)[j] == (Mᵀ w[j].flatten()).reshape(in_block_shape)``:
        shape ``(prod(out_block_shape), prod(in_block_shape))``, built exactly from one probe unit
        per outgoing-weight entry (in chunks of output channels)."""
        h, g = self.capture()
        nxt = self.pair.next_layer
        out = self.out_block_shape[0]
        per = math.prod(self.out_block_shape[1:])  # probe units per output channel
        is_linear = isinstance(nxt, nn.Linear)
        # Probe activation size per output channel, to bound memory.
        ch = h.shape[-1] if isinstance(self.pair.layer, nn.Linear) else h.shape[1]
        elems = per * max(h.numel() // max(ch, 1), 1)
        chunk = max(1, min(out, self.max_probe_elements // max(elems, 1)))
        rows = []
        for o0 in range(0, out, chunk):
            c = min(chunk, out - o0)
            n = c * per
            if is_linear:
                s = self.span
                basis = torch.zeros((c, n * s), device=self.device, dtype=self.dtype)
                oo = torch.arange(c, device=self.device).repeat_interleave(s)
                ss = torch.arange(s, device=self.device).repeat(c)
                basis[oo, (oo * s + ss) * s + ss] = 1

                def next_fn(a, basis=basis):
                    return F.linear(a, basis)

                gc = g[..., o0 : o0 + c]
            else:
                ks = self.out_block_shape[1:]
                basis = torch.eye(per, device=self.device, dtype=self.dtype)
                basis = basis.reshape(1, per, *ks).expand(c, per, *ks).contiguous()

                def next_fn(a, basis=basis, c=c):
                    return _conv(nxt, a, basis, c)

                gc = g[:, o0 : o0 + c]
            rows.append(self._probe(n, next_fn, gc, False).reshape(n, -1))
        return torch.cat(rows, 0)


class GrowthStrategy:
    """Base class of growth strategies (the ``nasframe.growth`` plugin interface).

    Subclasses implement ``outgoing(ctx) -> Tensor`` of shape ``(ctx.k, *ctx.out_block_shape)``;
    ``grow`` does the rest (validation, activation checks, resizing modules and optimizer state,
    the info dict). Set ``needs_loss = True`` if ``outgoing`` uses ``ctx.capture()``,
    ``ctx.matrix()``, ``ctx.incoming_grad()`` or ``ctx.call_loss()``.

    ``seed=None`` draws the strategy's seed from torch's global RNG once, at construction
    (reproducible under ``torch.manual_seed``); random numbers come from the strategy's own
    generator afterwards.
    """

    name = "base"
    needs_loss = False

    def __init__(
        self,
        scale: float = 1.0,
        *,
        seed: int | None = None,
        check_activations: bool = True,
        max_probe_elements: int = 2**25,
    ):
        if scale < 0:
            raise OptionError("scale", f"must be >= 0, got {scale}")
        self.scale = float(scale)
        self.check_activations = check_activations
        self.max_probe_elements = max_probe_elements
        self.generator = torch.Generator()
        if seed is None:
            seed = int(torch.randint(0, 2**62, (1,)).item())
        self.generator.manual_seed(seed)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(scale={self.scale})"

    @classmethod
    def option_defaults(cls) -> dict[str, Any]:
        """The keyword options ``cls(**options)`` takes, with their defaults: the parameters of
        each ``__init__`` up the class hierarchy, as long as it passes ``**kwargs`` on."""
        found: dict[str, Any] = {}
        for klass in cls.__mro__:
            init = klass.__dict__.get("__init__")
            if init is None:
                continue
            params = list(inspect.signature(init).parameters.values())[1:]  # without self
            for p in params:
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                    found.setdefault(p.name, p.default)
            if klass is GrowthStrategy or not any(p.kind is p.VAR_KEYWORD for p in params):
                break
        return found

    @classmethod
    def checked_options(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """``options`` checked against :meth:`option_defaults`: each must be one ``cls`` takes,
        of the kind of its default (true/false, a whole number, a number; numbers written as
        text, as YAML reads ``1e-3``, are read as numbers). Raises :class:`OptionError`."""
        accepted = cls.option_defaults()
        checked = dict(options)
        for key, value in options.items():
            if key not in accepted:
                close = difflib.get_close_matches(str(key), list(accepted), n=1, cutoff=0.6)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                takes = ", ".join(sorted(accepted)) or "none"
                raise OptionError(
                    key, f"strategy '{cls.name}' takes no option '{key}' (it takes {takes}){hint}"
                )
            default = accepted[key]
            checked[key] = _option_value(key, value, _option_kind(cls, key, default), default)
        return checked

    @classmethod
    def controller(
        cls,
        model: nn.Module,
        *,
        every: int,
        steps: int,
        start_fraction: float,
        layers: Sequence[str] | None = None,
        options: Mapping[str, Any] | None = None,
    ):
        """What ``nasframe train`` calls for a ``train.growth`` section: swap ReLUs for
        :class:`ReLU0`, shrink ``model`` (built at its target widths) to the starting widths and
        return the :class:`GrowthController` that grows it back on schedule.

        ``layers`` names the pairs to grow (``"<i>-><j>"``, module indices of the Sequential);
        default: every growable pair. ``options`` are the strategy's own (``train.growth.options``),
        kept apart from the schedule's ``every`` and ``steps`` (GradMaxOpt has its own ``steps``).
        """
        from .activations import replace_relu
        from .pairs import find_growable_pairs
        from .schedule import GrowthController, GrowthSchedule

        replace_relu(model)
        pairs = find_growable_pairs(model)
        if layers is not None:
            known = {p.name for p in pairs}
            unknown = [name for name in layers if name not in known]
            if unknown:
                raise GrowthError(
                    f"no growable pair named {unknown}; this network's pairs: {sorted(known)}"
                )
            pairs = [p for p in pairs if p.name in set(layers)]
        schedule = GrowthSchedule(every=every, steps=steps, start_fraction=start_fraction)
        strategy = cls(**cls.checked_options(options or {}))
        return GrowthController(model, strategy, schedule=schedule, pairs=pairs)

    def outgoing(self, ctx: GrowthContext) -> torch.Tensor:
        raise NotImplementedError

    def grow(
        self,
        pair: GrowthPair,
        k: int,
        loss_fn: LossFn | None = None,
        *,
        optimizer=None,
        model: nn.Module | None = None,
    ) -> dict:
        """Add ``k`` units to ``pair`` in place and return an info dict.

        ``loss_fn()`` must compute the (mean) training loss of one batch through the network that
        contains the pair, with autograd on; it is called once (more for Firefly). ``optimizer``
        (one or a list): state padded with zeros. ``model``: if given, its buffers (BatchNorm
        running statistics) are restored when growth returns, undoing the internal ``loss_fn``
        calls (grown buffers keep their identity entries).

        Info keys: ``pair``, ``strategy``, ``k``, ``width_before``, ``width_after``,
        ``target_norm``, ``loss`` (None without loss_fn), ``new_unit_grad_norms`` (list; empty
        without loss_fn) plus strategy extras (GradMax: ``singular_values``).
        """
        pair.validate()
        k = int(k)
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        if self.check_activations:
            _static_activation_check(pair)
        if self.needs_loss and loss_fn is None:
            raise GrowthError(f"{type(self).__name__} needs a loss_fn")
        width = pair.width
        ctx = GrowthContext(
            pair,
            k,
            loss_fn,
            scale=self.scale,
            generator=self.generator,
            max_probe_elements=self.max_probe_elements,
            check_activations=self.check_activations,
        )
        info = {
            "pair": pair.name,
            "strategy": self.name,
            "k": k,
            "width_before": width,
            "width_after": width,
            "target_norm": ctx.target_norm,
            "loss": None,
            "new_unit_grad_norms": [],
        }
        if k == 0:
            return info
        with preserved_buffers(model):
            if loss_fn is not None:
                ctx.capture()
            w_out = self.outgoing(ctx).detach()
            if tuple(w_out.shape) != (k, *ctx.out_block_shape):
                raise GrowthError(
                    f"{type(self).__name__}.outgoing returned shape {tuple(w_out.shape)}, "
                    f"expected {(k, *ctx.out_block_shape)}"
                )
            w_in = torch.zeros((k, *ctx.in_block_shape), device=ctx.device, dtype=ctx.dtype)
            if loss_fn is not None:
                info["new_unit_grad_norms"] = _unit_norms(ctx.incoming_grad(w_out)).tolist()
                info["loss"] = ctx.loss_value
            grow_pair_(pair, w_in, w_out, optimizer)
        info["width_after"] = pair.width
        info.update(ctx.extra)
        return info


def _static_activation_check(pair: GrowthPair) -> None:
    """Check f(0)=0, f'(0)≠0 for the activation-like modules between the layers on small zero
    inputs (shape-dependent modules that fail on them are checked later, during probing)."""
    for m in pair.between:
        if isinstance(m, (*BN_TYPES, *CONV_TYPES, *STRUCTURAL_TYPES, nn.Flatten)):
            continue
        w = pair.layer.weight
        for shape in ((2, 4), (2, 4, 5), (2, 4, 5, 5)):
            x = torch.zeros(shape, device=w.device, dtype=w.dtype)
            try:
                with torch.no_grad():
                    m(x.clone())
            except Exception:
                continue
            check_zero_response(m, x, f" between {pair.name}")
            break


def _option_kind(cls: type, key: str, default: Any) -> type | None:
    """``bool``, ``int`` or ``float``: what option ``key`` of ``cls`` holds, from the annotation
    of the ``__init__`` that declares it (else from its default); None: not checked."""
    hint = None
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is not None and key in inspect.signature(init).parameters:
            try:
                hint = typing.get_type_hints(init).get(key)
            except Exception:  # an annotation that does not resolve: go by the default
                hint = None
            break
    kinds = [t for t in (typing.get_args(hint) or (hint,)) if t is not type(None)]
    if len(kinds) == 1 and kinds[0] in (bool, int, float):
        return kinds[0]
    return type(default) if type(default) in (bool, int, float) else None


def _option_value(key: str, value: Any, kind: type | None, default: Any) -> Any:
    """``value`` as an option of ``kind`` (text such as '1e-3' read as a number), or an
    :class:`OptionError` naming what was expected; ``None`` is taken where it is the default."""
    if kind is None or (value is None and default is None):
        return value
    if kind is bool:
        if not isinstance(value, bool):
            raise OptionError(key, f"expected true or false, got {value!r}")
        return value
    what = "a whole number" if kind is int else "a number"
    number = value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            pass
    if (
        isinstance(number, bool)
        or not isinstance(number, int | float)
        or not math.isfinite(number)
        or (kind is int and number != int(number))
    ):
        raise OptionError(key, f"expected {what}, got {value!r}")
    return int(number) if kind is int else float(number)


def _check_steps_lr(steps: int, lr: float) -> None:
    """The refinement of GradMaxOpt and Firefly: ``steps >= 0`` steps of relative size ``lr > 0``."""
    if steps < 0:
        raise OptionError("steps", f"must be >= 0, got {steps}")
    if not lr > 0:
        raise OptionError("lr", f"must be > 0, got {lr}")


class RandomGrowth(GrowthStrategy):
    """Random outgoing weights with the per-unit norm ``scale × mean existing norm``."""

    name = "random"

    def outgoing(self, ctx: GrowthContext) -> torch.Tensor:
        return ctx.random_outgoing()


class GradMax(GrowthStrategy):
    """GradMax (Evci et al., ICLR 2022): outgoing weights = ``c ×`` the top-k left singular
    vectors of ``M``; new unit j then gets an incoming-weight gradient of norm ``c·σ_j``, the
    largest possible for that norm. If ``k`` exceeds the rank bound, the remaining units get
    random directions. Adds ``singular_values`` (top-k σ) to the info dict."""

    name = "gradmax"
    needs_loss = True

    def outgoing(self, ctx: GrowthContext) -> torch.Tensor:
        m = ctx.matrix()
        u, s, _ = torch.linalg.svd(m, full_matrices=False)
        r = min(ctx.k, u.shape[1])
        w = (u[:, :r].T * ctx.target_norm).reshape(r, *ctx.out_block_shape)
        sv = s[:r].tolist()
        if r < ctx.k:
            w = torch.cat([w, ctx.random_outgoing(ctx.k - r)])
            sv += [float("nan")] * (ctx.k - r)
        ctx.extra["singular_values"] = sv
        return w


class GradMaxOpt(GrowthStrategy):
    """GradMax by optimisation (growneuron's ``AddGradmaxOptim``): start from random outgoing
    weights and take ``steps`` projected, per-unit normalised gradient-ascent steps (relative step
    size ``lr``) on ``Σ_j ‖∂L/∂w_in_j‖²``, keeping each unit's norm at ``c``. Never forms ``M``.
    Units are optimised independently, so with many steps they all approach the top singular
    vector (unlike ``GradMax``)."""

    name = "gradmax_opt"
    needs_loss = True

    def __init__(self, scale: float = 1.0, *, steps: int = 20, lr: float = 0.5, **kwargs):
        super().__init__(scale, **kwargs)
        self.steps, self.lr = int(steps), float(lr)
        _check_steps_lr(self.steps, self.lr)

    def outgoing(self, ctx: GrowthContext) -> torch.Tensor:
        c = ctx.target_norm
        w = ctx.random_outgoing()
        for _ in range(self.steps):
            w = w.detach().requires_grad_(True)
            with torch.enable_grad():
                obj = ctx.incoming_grad(w, create_graph=True).pow(2).sum()
                (g,) = torch.autograd.grad(obj, w)
            w = _normalise(w.detach() + self.lr * _normalise(g, c), c)
        ctx.extra["objective"] = float(ctx.incoming_grad(w).pow(2).sum())
        return w.detach()


class Firefly(GrowthStrategy):
    """Firefly-style growth (growneuron's ``AddFirefly``, Wu et al. 2020 eq. 4 without candidate
    pools or splitting): random outgoing weights (norm ``c``) and ε-small random incoming weights
    (norm ``epsilon ×`` mean existing incoming norm) are trained for ``steps`` per-unit normalised
    gradient steps (relative size ``lr``) to reduce the loss, only the new weights moving, each
    renormalised to its initial norm after every step. The incoming weights are then reset to 0 so
    the function is preserved; the refined outgoing weights are kept."""

    name = "firefly"
    needs_loss = True

    def __init__(
        self, scale: float = 1.0, *, steps: int = 20, lr: float = 0.2, epsilon: float = 0.1, **kw
    ):
        super().__init__(scale, **kw)
        self.steps, self.lr, self.epsilon = int(steps), float(lr), float(epsilon)
        _check_steps_lr(self.steps, self.lr)
        if not self.epsilon >= 0:
            raise OptionError("epsilon", f"must be >= 0, got {epsilon}")

    def outgoing(self, ctx: GrowthContext) -> torch.Tensor:
        pair, k = ctx.pair, ctx.k
        c_out, c_in = ctx.target_norm, self.epsilon * ctx.in_target_norm
        w_out = ctx.random_outgoing()
        w_in = _normalise(ctx.randn(k, *ctx.in_block_shape), c_in)
        old = pair.width
        span = pair.span
        grow_pair_(pair, w_in, w_out)  # temporary, no optimizer involved
        layer_w, next_w = pair.layer.weight, pair.next_layer.weight
        try:
            for _ in range(self.steps):
                loss = ctx.call_loss()
                g_l, g_n = torch.autograd.grad(loss, [layer_w, next_w], allow_unused=True)
                with torch.no_grad():
                    if g_l is not None:
                        gi = g_l[old:]
                        w_in = _normalise(w_in - self.lr * _normalise(gi, c_in), c_in)
                    if g_n is not None:
                        go = self._out_blocks(pair, g_n, old, k, span)
                        w_out = _normalise(w_out - self.lr * _normalise(go, c_out), c_out)
                    layer_w[old:] = w_in
                    self._set_out_blocks(pair, next_w, w_out, old, k, span)
                del loss, g_l, g_n
        finally:
            resize_pair_(pair, old)
        return w_out

    @staticmethod
    def _out_blocks(pair, t, old, k, span):
        if isinstance(pair.next_layer, nn.Linear):
            return t[:, old * span :].reshape(t.shape[0], k, span).transpose(0, 1)
        return t[:, old:].transpose(0, 1)

    @staticmethod
    def _set_out_blocks(pair, weight, w_out, old, k, span):
        if isinstance(pair.next_layer, nn.Linear):
            weight[:, old * span :] = w_out.transpose(0, 1).reshape(weight.shape[0], k * span)
        else:
            weight[:, old:] = w_out.transpose(0, 1)
