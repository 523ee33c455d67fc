"""The pruner plugin (``adam_sparsity``) and the pruning report."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from .counting import count_parameters, deprecated, model_macs
from .graph import LayerEmptiedError, eval_mode, find_unit_groups, trace_leaves
from .surgery import GroupPlan, apply_plan, incoming_norms, mask_units, plan_removal
from .training import check_model, check_sparsity_setup, model_activation

__all__ = [
    "LayerReport",
    "PruneReport",
    "AdamSparsityPruner",
    "prune_units",
    "kept_widths",
]


@dataclass
class LayerReport:
    """One weight layer (Linear / full convolution) and what happened to its output units."""

    path: str
    type: str
    units_before: int
    units_after: int
    prunable: bool
    why_not: str | None = None
    removed: list[int] = field(default_factory=list)
    #: asked to be removed (below the threshold) but kept: their constant output does not fold
    #: exactly into the next layer (non-zero constant read by a zero-padded convolution)
    not_removable: list[int] = field(default_factory=list)
    #: where the constant outputs of the removed units went, per consumer path
    #: (bias, new_bias, bn:<path>, or None when the constant was 0)
    folds: dict[str, str | None] = field(default_factory=dict)


@dataclass
class PruneReport:
    """Result of a pruning: per-layer widths, parameters and MACs (multiply-accumulates per
    example, :func:`~nasframe_prune.model_macs`)."""

    method: str
    threshold: float | None
    keep_bias: bool
    layers: list[LayerReport]
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int

    @property
    def flops_before(self) -> int:
        """Deprecated: :attr:`macs_before` (the count is MACs, not FLOPs)."""
        deprecated("PruneReport.flops_before", "PruneReport.macs_before")
        return self.macs_before

    @property
    def flops_after(self) -> int:
        """Deprecated: :attr:`macs_after` (the count is MACs, not FLOPs)."""
        deprecated("PruneReport.flops_after", "PruneReport.macs_after")
        return self.macs_after

    @property
    def prunable_units(self) -> int:
        return sum(lr.units_before for lr in self.layers if lr.prunable)

    @property
    def removed_units(self) -> int:
        return sum(len(lr.removed) for lr in self.layers)

    @property
    def removed_fraction(self) -> float:
        return self.removed_units / self.prunable_units if self.prunable_units else 0.0

    @property
    def removed_by_layer(self) -> dict[str, list[int]]:
        """Layer path -> removed unit indices (what :func:`mask_units` takes)."""
        return {lr.path: list(lr.removed) for lr in self.layers if lr.removed}

    @property
    def kept_widths(self) -> dict[str, int]:
        """Layer path -> output width after pruning, for every weight layer in network order."""
        return {lr.path: lr.units_after for lr in self.layers}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(
            prunable_units=self.prunable_units,
            removed_units=self.removed_units,
            removed_fraction=self.removed_fraction,
            kept_widths=self.kept_widths,
        )
        return d

    def summary(self) -> str:
        """A short human-readable table."""
        lines = [f"{'layer':<16} {'type':<8} {'before':>7} {'after':>7}  note"]
        for lr in self.layers:
            note = "" if lr.prunable else f"not prunable: {lr.why_not}"
            if lr.not_removable:
                note = f"{len(lr.not_removable)} below threshold kept (constant does not fold)"
            lines.append(
                f"{lr.path:<16} {lr.type:<8} {lr.units_before:>7} {lr.units_after:>7}  {note}"
            )

        def pct(a: int, b: int) -> str:
            return f"{100 * (1 - b / a):.1f}% fewer" if a else "-"

        lines.append(
            f"units removed: {self.removed_units}/{self.prunable_units} prunable "
            f"({100 * self.removed_fraction:.1f}%)"
        )
        lines.append(
            f"parameters: {self.params_before} -> {self.params_after} "
            f"({pct(self.params_before, self.params_after)})"
        )
        lines.append(
            f"MACs/example: {self.macs_before} -> {self.macs_after} "
            f"({pct(self.macs_before, self.macs_after)})"
        )
        return "\n".join(lines)


def _report(
    method: str,
    threshold: float | None,
    keep_bias: bool,
    plans: Sequence[GroupPlan],
    before: nn.Module,
    after: nn.Module,
    example_input: torch.Tensor,
) -> PruneReport:
    layers = []
    for p in plans:
        g = p.group
        prod = g.producers[0]
        layers.append(
            LayerReport(
                path=prod.path,
                type=prod.type_name,
                units_before=g.width,
                units_after=g.width - len(p.removed),
                prunable=g.prunable,
                why_not=g.why_not,
                removed=list(p.removed),
                not_removable=list(p.not_removable),
                folds=dict(p.fold_targets),
            )
        )
    return PruneReport(
        method=method,
        threshold=threshold,
        keep_bias=keep_bias,
        layers=layers,
        params_before=count_parameters(before),
        params_after=count_parameters(after),
        macs_before=model_macs(before, example_input),
        macs_after=model_macs(after, example_input),
    )


def _plan(
    model: nn.Sequential,
    example_input: torch.Tensor,
    units: Mapping[str, Sequence[int]] | None,
    select: Any,
    keep_bias: bool,
):
    leaves = trace_leaves(model, example_input)
    groups = find_unit_groups(leaves)
    with eval_mode(model):
        if units is None:
            units = select(groups)
        plans = plan_removal(groups, units, keep_bias=keep_bias)
    return leaves, plans


def prune_units(
    model: nn.Sequential,
    example_input: torch.Tensor,
    units: Mapping[str, Sequence[int]],
    *,
    keep_bias: bool = False,
) -> tuple[nn.Sequential, PruneReport]:
    """Remove the given output units (layer path -> unit indices) of a plain ``nn.Sequential``.

    Returns a pruned copy (the model is not modified) whose output equals, in eval mode, that of
    ``mask_units(model, report.removed_by_layer, keep_bias=keep_bias)``. Units whose constant
    output cannot be folded exactly are kept and listed as ``not_removable`` in the report.
    """
    leaves, plans = _plan(model, example_input, units, None, keep_bias)
    pruned = apply_plan(model, leaves, plans)
    return pruned, _report("units", None, keep_bias, plans, model, pruned, example_input)


class AdamSparsityPruner:
    """Remove units whose incoming weights (bias included) have an L2 norm below ``threshold``.

    The method of Yaguchi et al. (2018), "Adam Induces Implicit Weight Sparsity in Rectifier Neural
    Networks": train with ReLU, an L2 penalty in the loss (:func:`~nasframe_prune.l2_penalty` or
    ``torch.optim.Adam(weight_decay=...)``, not AdamW) and Adam; the incoming weights of units that
    are rarely active decay to ~0, and such units are removed physically after training.

    Args:
        threshold: ξ, the norm below which a unit is removed.
        keep_bias: reference semantics of a removed unit: incoming weights zeroed and bias kept
            (True) or zeroed too (False, the default).
    """

    name = "adam_sparsity"

    def __init__(self, threshold: float = 1e-4, *, keep_bias: bool = False) -> None:
        threshold = float(threshold)
        if not math.isfinite(threshold) or threshold <= 0:
            raise ValueError(f"threshold must be a positive number, got {threshold}")
        self.threshold = threshold
        self.keep_bias = bool(keep_bias)

    def __repr__(self) -> str:
        return f"AdamSparsityPruner(threshold={self.threshold:g}, keep_bias={self.keep_bias})"

    @staticmethod
    def check_training(
        model: nn.Module, optimizer: torch.optim.Optimizer, l2_in_loss: bool
    ) -> list[str]:
        """Why this training may leave little to prune (nasframe prints these before training
        a config with a ``prune:`` section); empty when the setup is right."""
        problems = check_sparsity_setup(optimizer, l2_in_loss, model_activation(model), warn=False)
        return problems + check_model(model)

    def unit_norms(
        self, model: nn.Sequential, example_input: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Incoming-weight norm of every unit of every prunable layer, by layer path."""
        groups = find_unit_groups(trace_leaves(model, example_input))
        return {g.name: incoming_norms(g.producers[0].module) for g in groups if g.prunable}

    def _select(self, groups) -> dict[str, list[int]]:
        units: dict[str, list[int]] = {}
        for g in groups:
            if not g.prunable:
                continue
            norms = incoming_norms(g.producers[0].module)
            below = torch.nonzero(norms < self.threshold).flatten().tolist()
            if len(below) == g.width:
                largest = float(norms.max())
                raise LayerEmptiedError(
                    f"threshold {self.threshold:g} would remove all {g.width} units of layer "
                    f"'{g.name}' ({g.producers[0].type_name}; largest incoming-weight norm "
                    f"{largest:.3g}); use a smaller threshold (below {largest:.3g})"
                )
            units[g.name] = below
        return units

    def plan(self, model: nn.Sequential, example_input: torch.Tensor) -> list[GroupPlan]:
        """What :meth:`prune` would do, without doing it."""
        return _plan(model, example_input, None, self._select, self.keep_bias)[1]

    def prune(
        self, model: nn.Sequential, example_input: torch.Tensor
    ) -> tuple[nn.Sequential, PruneReport]:
        """A pruned copy of ``model`` and the report. ``example_input``: a batch of inputs (the
        first example is used to trace shapes and count MACs). Raises
        :class:`~nasframe_prune.LayerEmptiedError` (a ``ValueError``) when a layer would lose
        every unit."""
        leaves, plans = _plan(model, example_input, None, self._select, self.keep_bias)
        pruned = apply_plan(model, leaves, plans)
        return pruned, _report(
            self.name, self.threshold, self.keep_bias, plans, model, pruned, example_input
        )

    def kept_widths(self, model: nn.Sequential, example_input: torch.Tensor) -> dict[str, int]:
        """Layer path -> output width after pruning, for every weight layer in network order."""
        return {
            p.group.name: p.group.width - len(p.removed) for p in self.plan(model, example_input)
        }

    def masked(self, model: nn.Sequential, example_input: torch.Tensor) -> nn.Sequential:
        """The masked reference of :meth:`prune`: a copy with the removed units' weights zeroed."""
        plans = self.plan(model, example_input)
        units = {p.group.name: p.removed for p in plans if p.removed}
        return mask_units(model, units, keep_bias=self.keep_bias)


def kept_widths(
    model: nn.Sequential, example_input: torch.Tensor, threshold: float = 1e-4
) -> dict[str, int]:
    """Layer path -> output width after :class:`AdamSparsityPruner` pruning at ``threshold``.

    Every Linear / full convolution is listed, in network order (the final classifier too, with its
    width unchanged); nothing is modified.
    """
    return AdamSparsityPruner(threshold).kept_widths(model, example_input)
