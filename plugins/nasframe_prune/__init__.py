"""Post-training pruning for nasframe: Adam-induced sparsity (Yaguchi et al., 2018).

Train with ReLU, an L2 penalty in the loss and Adam; the incoming weights of rarely active units
decay to ~0. :class:`AdamSparsityPruner` then removes every unit whose incoming-weight norm (bias
included) is below ``threshold`` — physically: smaller tensors, fewer MACs. See ``docs/pruning.md``.

Quick use::

    from nasframe_prune import AdamSparsityPruner, l2_penalty, check_sparsity_setup

    check_sparsity_setup(optimizer, l2_in_loss=True, activation="relu")
    loss = criterion(model(x), y) + l2_penalty(model, 5e-4)          # while training
    pruned, report = AdamSparsityPruner(threshold=1e-3).prune(model, x[:1])
    print(report.summary())
"""

from .counting import count_flops, count_parameters, layer_flops, layer_macs, model_macs
from .graph import (
    LayerEmptiedError,
    Leaf,
    PruneError,
    UnitGroup,
    UnsupportedModelError,
    find_unit_groups,
    trace_leaves,
)
from .pruner import AdamSparsityPruner, LayerReport, PruneReport, kept_widths, prune_units
from .surgery import GroupPlan, incoming_norms, mask_units
from .training import (
    SparsitySetupWarning,
    check_model,
    check_sparsity_setup,
    l2_penalty,
    model_activation,
)

__all__ = [
    "AdamSparsityPruner",
    "GroupPlan",
    "LayerEmptiedError",
    "LayerReport",
    "Leaf",
    "PruneError",
    "PruneReport",
    "SparsitySetupWarning",
    "UnitGroup",
    "UnsupportedModelError",
    "check_model",
    "check_sparsity_setup",
    "count_parameters",
    "find_unit_groups",
    "incoming_norms",
    "kept_widths",
    "l2_penalty",
    "layer_macs",
    "mask_units",
    "model_activation",
    "model_macs",
    "prune_units",
    "trace_leaves",
    # deprecated aliases of model_macs and layer_macs (they warn)
    "count_flops",
    "layer_flops",
]
