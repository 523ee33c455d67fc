"""The cost of a sampled architecture: the parameters of its own network at search size.

The search can add ``search.cost_penalty`` × this cost (in millions) to the valid losses it ranks
(DESIGN §4: a cost penalty on sampled architectures), and logs the cost of the most likely one.
Networks are built on the meta device (nothing allocated, no random numbers drawn) and each
architecture is counted once.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch

from .cell_network import count_cell_network
from .config import validate_data
from .network import build_network
from .space import SearchSpace

__all__ = ["ParameterCost"]


class ParameterCost:
    """``cost(sample)``: parameters of the architecture ``sample`` picks, in millions.

    Chains count the frozen network :func:`~nasframe.build_network` makes of it; cell spaces count
    the cells at search size (``space.cells`` × ``space.channels``, no auxiliary head), since at
    retraining size their width is chosen to fill a parameter budget.
    """

    def __init__(
        self,
        space: SearchSpace,
        sample_shape: Sequence[int],
        num_classes: int,
        cache_size: int = 65536,
    ) -> None:
        self.space, self.sample_shape, self.num_classes = space, tuple(sample_shape), num_classes
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[int, ...], float] = OrderedDict()

    def __call__(self, sample: Sequence[int]) -> float:
        key = tuple(int(v) for v in sample)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        value = self.parameters(key) / 1e6
        self._cache[key] = value
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return value

    def parameters(self, sample: Sequence[int]) -> int:
        """The number of parameters itself (uncached)."""
        space = self.space
        if space.is_cells:
            sp = space.config.space
            return count_cell_network(
                sp,
                space.genotype(sample),
                self.sample_shape,
                self.num_classes,
                sp.cells,
                sp.channels,
            )
        frozen = validate_data(space.freeze(sample))
        with torch.device("meta"):
            net = build_network(frozen, self.sample_shape, self.num_classes)
        return sum(p.numel() for p in net.parameters())
