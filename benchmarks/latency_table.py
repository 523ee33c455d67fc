"""How well the latency table predicts whole networks (``search.cost: latency``).

``search.cost: latency`` prices an architecture as the sum of its parts' times, each part timed
alone once (FBNet's lookup table, :mod:`nasframe.latency`). This script draws random
architectures of a space and compares, for each, that sum (``predicted_ms``) with the time of one
forward pass of the whole frozen network (``measured_ms``; chains as ``build_network`` makes them,
cell spaces as ``CellNetwork`` at search size), both at the same batch on the same device, with
the same constant weights. A whole network's time is the median of ``--rounds`` medians taken in
turn over all networks, so that a slow spell of the machine does not hit one network alone.

What the search needs is the order: ``pairs_in_order`` is the fraction of pairs of architectures
whose measured times the table puts in the same order (1.0: the penalty ranks as true latencies
would). Also reported: Pearson's r, Spearman's ρ, the median ratio measured / predicted (> 1: what
the parts leave out, such as the additions of cell nodes and the calls between modules), how many
parts the table timed and how long that took, and ``pairs_in_order_by_part_statistic``: the same
fraction when each part stands in the table by another statistic of its very same timed passes
(median, as nasframe stores, minimum, mean, 25th percentile).

    python benchmarks/latency_table.py --config spaces/mnist1d.yaml --json latency_mnist1d.json
    python benchmarks/latency_table.py --config spaces/asng_nas_cifar10.yaml --device cuda \
        --json latency_cifar_cuda.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from nasframe import build_network, load_space, validate_data
from nasframe.cell_network import CellNetwork
from nasframe.cost import ArchitectureCost
from nasframe.environment import environment
from nasframe.latency import LatencyTable, measure_ms, measure_times, on_device_with_constants

SHAPES = {"mnist1d": (1, 40), "digits": (1, 8, 8), "cifar10": (3, 32, 32)}


def whole_network(space, sample, shape, classes):
    """The frozen network of ``sample``, as the latency table prices it (at search size)."""
    with torch.device("meta"):
        if space.is_cells:
            sp = space.config.space
            geno = space.genotype(sample)
            return CellNetwork(sp, geno, shape, classes, cells=sp.cells, channels=sp.channels)
        return build_network(validate_data(space.freeze(sample)), shape, classes)


def ranks(values: list[float]) -> np.ndarray:
    return np.argsort(np.argsort(values)).astype(float)


#: Statistics of a part's timed passes that could stand for it in the table (nasframe: median).
PART_STATISTICS = {
    "median": statistics.median,
    "min": min,
    "mean": statistics.fmean,
    "p25": lambda times: float(np.percentile(times, 25)),
}


class RecordingTable(LatencyTable):
    """A latency table that keeps every part's timed passes, so that other statistics of the very
    same passes can be compared with the median the table stores."""

    def __init__(self, device: torch.device, batch_size: int) -> None:
        super().__init__(device, batch_size, measure=self._measure)
        self.passes: dict[str, list[float]] = {}
        self._last: list[float] = []

    def _measure(self, module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> float:
        self._last = measure_times(module, inputs)
        return statistics.median(self._last)

    def _time(self, part) -> float:
        value = super()._time(part)
        self.passes[part.key] = self._last
        return value


def pairs_in_order(predicted: list[float], measured: list[float]) -> float:
    """The fraction of pairs of architectures that ``predicted`` puts in the measured order."""
    pairs = list(itertools.combinations(range(len(measured)), 2))
    same = sum((predicted[i] - predicted[j]) * (measured[i] - measured[j]) > 0 for i, j in pairs)
    return same / len(pairs)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="spaces/mnist1d.yaml")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--archs", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3, help="timings of each whole network, in turn")
    p.add_argument("--json", required=True)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    space = load_space(args.config)
    shape = SHAPES.get(space.config.data.name, (3, 32, 32))
    classes = 10
    table = RecordingTable(device, args.batch)
    cost = ArchitectureCost(space, shape, classes, "latency", latency=table)
    rng = np.random.default_rng(args.seed)
    samples = [space.random_sample(rng) for _ in range(args.archs)]
    start = time.perf_counter()
    predicted = [cost(s) for s in samples]
    table_s = time.perf_counter() - start
    nets = [
        on_device_with_constants(whole_network(space, s, shape, classes), device) for s in samples
    ]
    x = torch.full((args.batch, *shape), 0.5, device=device)
    rounds = [[measure_ms(net, (x,)) for net in nets] for _ in range(args.rounds)]
    measured = [statistics.median(times) for times in zip(*rounds, strict=True)]
    by_statistic = {}
    for name, stat in PART_STATISTICS.items():
        entries = {key: float(stat(times)) for key, times in table.passes.items()}
        other = ArchitectureCost(
            space,
            shape,
            classes,
            "latency",
            latency=LatencyTable(device, args.batch, None, entries),
        )
        by_statistic[name] = pairs_in_order([other(s) for s in samples], measured)
    result = {
        "config": args.config,
        "batch": args.batch,
        "archs": args.archs,
        "seed": args.seed,
        "rounds": args.rounds,
        "parts_timed": table.timed,
        "table_seconds": table_s,
        "pairs_in_order": pairs_in_order(predicted, measured),
        "pairs_in_order_by_part_statistic": by_statistic,
        "pearson_r": float(np.corrcoef(predicted, measured)[0, 1]),
        "spearman_rho": float(np.corrcoef(ranks(predicted), ranks(measured))[0, 1]),
        "median_measured_over_predicted": statistics.median(
            m / q for m, q in zip(measured, predicted, strict=True)
        ),
        "predicted_ms": predicted,
        "measured_ms": measured,
        "environment": environment(device),
    }
    Path(args.json).write_text(json.dumps(result, indent=2))
    keys = ("parts_timed", "table_seconds", "pairs_in_order", "pairs_in_order_by_part_statistic")
    keys = (*keys, "pearson_r", "spearman_rho")
    print(json.dumps({k: result[k] for k in (*keys, "median_measured_over_predicted")}))


if __name__ == "__main__":
    main()
