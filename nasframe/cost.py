"""The cost of a sampled architecture: the parameters, or the multiply-accumulates, of its own
network at search size.

The search can add ``search.cost_penalty`` × this cost (in millions) to the valid losses it ranks
(DESIGN §4: a cost penalty on sampled architectures), and logs both measures of the most likely
architecture. Networks are built on the meta device (no weights initialised, no random numbers
drawn; MACs run them once on uninitialised CPU storage) and each architecture is counted once.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Literal

import torch

from .cell_network import count_cell_macs, count_cell_network
from .config import validate_data
from .macs import count_macs
from .network import build_network
from .space import SearchSpace

__all__ = ["ArchitectureCost"]

Measure = Literal["parameters", "macs"]


class ArchitectureCost:
    """``cost(sample)``: the ``measure`` of the architecture ``sample`` picks, in millions.

    ``parameters`` counts weights; ``macs`` the multiply-accumulates of one example's forward pass
    (:mod:`nasframe.macs`). Chains measure the frozen network :func:`~nasframe.build_network` makes
    of the sample; cell spaces the cells at search size (``space.cells`` × ``space.channels``, no
    auxiliary head), since at retraining size their width is chosen to fill a parameter budget.
    """

    def __init__(
        self,
        space: SearchSpace,
        sample_shape: Sequence[int],
        num_classes: int,
        measure: Measure = "parameters",
        cache_size: int = 65536,
    ) -> None:
        self.space, self.sample_shape, self.num_classes = space, tuple(sample_shape), num_classes
        self.measure = measure
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[str, tuple[int, ...]], int] = OrderedDict()

    def __call__(self, sample: Sequence[int]) -> float:
        return self.count(sample, self.measure) / 1e6

    def count(self, sample: Sequence[int], measure: Measure) -> int:
        """The exact count of ``measure`` (cached per architecture)."""
        key = (measure, tuple(int(v) for v in sample))
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        value = self.uncached(key[1], measure)
        self._cache[key] = value
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return value

    def uncached(self, sample: Sequence[int], measure: Measure) -> int:
        """The count of ``measure`` itself, without the cache."""
        space = self.space
        if space.is_cells:
            sp = space.config.space
            counter = count_cell_network if measure == "parameters" else count_cell_macs
            geno = space.genotype(sample)
            return counter(sp, geno, self.sample_shape, self.num_classes, sp.cells, sp.channels)
        frozen = validate_data(space.freeze(sample))
        with torch.device("meta"):
            net = build_network(frozen, self.sample_shape, self.num_classes)
        if measure == "parameters":
            return sum(p.numel() for p in net.parameters())
        return count_macs(net, self.sample_shape)
