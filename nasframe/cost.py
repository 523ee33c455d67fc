"""The cost of a sampled architecture: the parameters, the multiply-accumulates or the latency
of its own network at search size.

The search can add ``search.cost_penalty`` × this cost (in millions; latency in milliseconds) to
the valid losses it ranks (DESIGN §4: a cost penalty on sampled architectures), and logs the
measures of the most likely architecture. A network is counted as the sum of its parts
(:mod:`nasframe.parts`), each distinct part counted once: built on the meta device (no weights
initialised, no random numbers drawn; MACs run it once on uninitialised CPU storage) or, for
latency, timed once (:mod:`nasframe.latency`). Each architecture is counted once.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Literal

from .cell_network import count_cell_macs, count_cell_network
from .latency import LatencyTable
from .parts import Part, cell_parts, chain_parts, part_macs, part_parameters
from .space import SearchSpace

__all__ = ["ArchitectureCost"]

Measure = Literal["parameters", "macs", "latency"]


class ArchitectureCost:
    """``cost(sample)``: the ``measure`` of the architecture ``sample`` picks, in millions
    (latency: in milliseconds).

    ``parameters`` counts weights; ``macs`` the multiply-accumulates of one example's forward pass
    (:mod:`nasframe.macs`); ``latency`` sums the times of the network's parts in ``latency`` (a
    :class:`~nasframe.latency.LatencyTable`). Chains measure the frozen network
    :func:`~nasframe.build_network` would make of the sample; cell spaces the cells at search size
    (``space.cells`` × ``space.channels``, no auxiliary head), since at retraining size their
    width is chosen to fill a parameter budget.
    """

    def __init__(
        self,
        space: SearchSpace,
        sample_shape: Sequence[int],
        num_classes: int,
        measure: Measure = "parameters",
        cache_size: int = 65536,
        latency: LatencyTable | None = None,
    ) -> None:
        self.space, self.sample_shape, self.num_classes = space, tuple(sample_shape), num_classes
        self.measure = measure
        self.cache_size = cache_size
        self.latency = latency
        self._cache: OrderedDict[tuple[str, tuple[int, ...]], float] = OrderedDict()
        if measure == "latency" and latency is None:
            raise ValueError("the latency measure needs a LatencyTable")

    def __call__(self, sample: Sequence[int]) -> float:
        value = self.count(sample, self.measure)
        return value if self.measure == "latency" else value / 1e6

    def count(self, sample: Sequence[int], measure: Measure) -> float:
        """The exact count of ``measure`` (latency: the table's milliseconds), cached per
        architecture."""
        key = (measure, tuple(int(v) for v in sample))
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        value = self.uncached(key[1], measure)
        self._cache[key] = value
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return value

    def uncached(self, sample: Sequence[int], measure: Measure) -> float:
        """The count of ``measure`` itself, without the cache."""
        if measure == "latency":
            if self.latency is None:
                raise ValueError("no LatencyTable to measure latency with")
            return self.latency.total(self.parts(sample))
        space = self.space
        if space.is_cells:
            sp = space.config.space
            counter = count_cell_network if measure == "parameters" else count_cell_macs
            geno = space.genotype(sample)
            return counter(sp, geno, self.sample_shape, self.num_classes, sp.cells, sp.channels)
        count = part_parameters if measure == "parameters" else part_macs
        return sum(count(p) for p in self.parts(sample))

    def parts(self, sample: Sequence[int]) -> list[Part]:
        """The parts (:mod:`nasframe.parts`) of the network ``sample`` picks, at search size."""
        space = self.space
        if space.is_cells:
            sp = space.config.space
            geno = space.genotype(sample)
            return cell_parts(sp, geno, self.sample_shape, self.num_classes, sp.cells, sp.channels)
        return chain_parts(space, sample, self.sample_shape, self.num_classes)
