"""The cost of a sampled architecture, and the search's penalty on it (DESIGN §4)."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from conftest import SPACES

from nasframe import CellNetwork, build_network, count_macs, load_space, validate_data
from nasframe.cell_network import main_parameters
from nasframe.cli import main
from nasframe.cost import ArchitectureCost


@pytest.mark.parametrize(
    "spec, shape", [("mnist1d.yaml", (1, 40)), ("mlp.yaml", (1, 8, 8)), ("digits.yaml", (1, 8, 8))]
)
def test_chain_cost_is_the_frozen_networks_parameter_count(spec, shape):
    space = load_space(SPACES / spec)
    cost = ArchitectureCost(space, shape, 10)
    rng = np.random.default_rng(0)
    for _ in range(5):
        sample = space.random_sample(rng)
        net = build_network(validate_data(space.freeze(sample)), shape, 10)
        assert cost(sample) * 1e6 == pytest.approx(sum(p.numel() for p in net.parameters()))


@pytest.mark.parametrize(
    "spec, shape", [("cells_digits.yaml", (1, 8, 8)), ("asng_nas_cifar10.yaml", (3, 32, 32))]
)
def test_cell_cost_counts_the_cells_at_search_size(spec, shape):
    space = load_space(SPACES / spec)
    sp = space.config.space
    cost = ArchitectureCost(space, shape, 10)
    rng = np.random.default_rng(1)
    for _ in range(3):
        sample = space.random_sample(rng)
        net = CellNetwork(
            sp, space.genotype(sample), shape, 10, cells=sp.cells, channels=sp.channels
        )
        assert cost(sample) * 1e6 == pytest.approx(main_parameters(net))


def _search(tmp_path, name, *overrides):
    out = tmp_path / name
    args = ["--set", "search.epochs=10", "--quiet", *overrides]
    assert main(["search", str(SPACES / "mlp.yaml"), "--out", str(out), *args]) == 0
    return json.loads((out / "summary.json").read_text())


def test_a_large_cost_penalty_finds_the_smallest_architecture(tmp_path):
    space = load_space(SPACES / "mlp.yaml")
    cost = ArchitectureCost(space, (1, 8, 8), 10)
    every = [cost(s) for s in itertools.product(*(range(c) for c in space.categories))]
    smallest = round(min(every) * 1e6)
    plain = _search(tmp_path, "plain")
    penalised = _search(tmp_path, "penalised", "--set", "search.cost_penalty=1000")
    assert plain["most_likely_parameters"] > smallest  # accuracy alone prefers a larger network
    assert penalised["most_likely_parameters"] == smallest
    # The penalty only ranks: the logged valid losses stay cross-entropies.
    assert penalised["final"]["valid/loss"] < 10


@pytest.mark.parametrize(
    "spec, shape", [("mnist1d.yaml", (1, 40)), ("mlp.yaml", (1, 8, 8)), ("digits.yaml", (1, 8, 8))]
)
def test_chain_macs_agree_with_the_pruners_layer_by_layer_count(spec, shape):
    import torch

    from nasframe_prune import model_macs

    space = load_space(SPACES / spec)
    cost = ArchitectureCost(space, shape, 10, "macs")
    rng = np.random.default_rng(2)
    for _ in range(5):
        sample = space.random_sample(rng)
        net = build_network(validate_data(space.freeze(sample)), shape, 10)
        macs = model_macs(net, torch.zeros(2, *shape))  # forward hooks on a real network
        assert cost.count(sample, "macs") == macs > 0 and cost(sample) == macs / 1e6


@pytest.mark.parametrize(
    "spec, shape", [("cells_digits.yaml", (1, 8, 8)), ("asng_nas_cifar10.yaml", (3, 32, 32))]
)
def test_cell_macs_counted_per_op_equal_the_whole_networks(spec, shape):
    import torch

    from nasframe_prune import model_macs

    space = load_space(SPACES / spec)
    sp = space.config.space
    cost = ArchitectureCost(space, shape, 10, "macs")
    rng = np.random.default_rng(3)
    for k in range(3):
        sample = space.random_sample(rng)
        geno = space.genotype(sample)
        net = CellNetwork(sp, geno, shape, 10, cells=sp.cells, channels=sp.channels)
        if k == 0:  # forward hooks on the real network (slow for the CIFAR space: once)
            assert cost.count(sample, "macs") == model_macs(net, torch.zeros(2, *shape))
        assert cost.count(sample, "macs") == count_macs(net.to("meta"), shape)


def test_a_large_macs_penalty_finds_the_architecture_with_the_fewest_macs(tmp_path):
    space = load_space(SPACES / "mlp.yaml")
    cost = ArchitectureCost(space, (1, 8, 8), 10, "macs")
    every = [
        cost.count(s, "macs") for s in itertools.product(*(range(c) for c in space.categories))
    ]
    penalised = _search(
        tmp_path, "macs", "--set", "search.cost=macs", "--set", "search.cost_penalty=1000"
    )
    assert penalised["most_likely_macs"] == min(every) < max(every)
