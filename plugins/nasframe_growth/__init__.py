"""Network growth for nasframe: GradMax, GradMax-opt, random and Firefly growth.

Growth adds ``k`` units between a layer ``l`` and the next weight layer ``l+1`` of a network while
training, without changing its function (new incoming weights are zero). See ``docs/growth.md``.

Quick use::

    from nasframe_growth import GradMax, find_growable_pairs, replace_relu

    replace_relu(model)                      # ReLU -> ReLU0 (derivative 1 at 0)
    pair = find_growable_pairs(model)[0]
    info = GradMax().grow(pair, k=4, loss_fn=lambda: crit(model(x), y), optimizer=opt, model=model)
"""

from .activations import DeadActivationError, GrowthError, ReLU0, check_zero_response, replace_relu
from .pairs import (
    GrowthPair,
    find_growable_pairs,
    grow_pair_,
    is_depthwise,
    is_weight_layer,
    resize_pair_,
    set_param_data,
)
from .schedule import (
    STRATEGIES,
    GrowthController,
    GrowthSchedule,
    growth_plan,
    make_strategy,
    start_widths,
)
from .strategies import (
    Firefly,
    GradMax,
    GradMaxOpt,
    GrowthContext,
    GrowthStrategy,
    OptionError,
    RandomGrowth,
    preserved_buffers,
)

__all__ = [
    "STRATEGIES",
    "DeadActivationError",
    "Firefly",
    "GradMax",
    "GradMaxOpt",
    "GrowthContext",
    "GrowthController",
    "GrowthError",
    "GrowthPair",
    "GrowthSchedule",
    "GrowthStrategy",
    "OptionError",
    "RandomGrowth",
    "ReLU0",
    "check_zero_response",
    "find_growable_pairs",
    "grow_pair_",
    "growth_plan",
    "is_depthwise",
    "is_weight_layer",
    "make_strategy",
    "preserved_buffers",
    "replace_relu",
    "resize_pair_",
    "set_param_data",
    "start_widths",
]
