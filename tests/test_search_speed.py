"""benchmarks/search_speed.py: a smoke run with tiny settings (no timing thresholds)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import SPACES, load_benchmark

from nasframe import SearchSpace, load_config

TINY = [
    "--set",
    "space.ops=[identity, sep_conv3]",
    "--set",
    "space.nodes=2",
    "--set",
    "space.cells=3",
    "--set",
    "space.channels=4",
    "--set",
    "search.batch_size=2",
]


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("search_speed")


def test_quick_run_reports_every_figure(bench, tmp_path):
    path = tmp_path / "speed.json"
    args = ["--quick", "--device", "cpu", "--iters", "2", "--warmup", "1", *TINY]
    out = bench.main([*args, "--json", str(path)])
    assert json.loads(path.read_text()) == json.loads(json.dumps(out))
    for key in ("search_it_per_s", "subnet_it_per_s", "image_passes_per_s", "startup_s"):
        assert math.isfinite(out[key]) and out[key] > 0, key
    assert out["overhead_ratio"] == pytest.approx(out["subnet_it_per_s"] / out["search_it_per_s"])
    assert 0 <= out["asng_share"] <= 1
    assert out["median_iteration_ms"] > 0 and out["subnet_median_iteration_ms"] > 0
    assert out["quick"] and out["quick_overrides"] == bench.QUICK_OVERRIDES
    assert out["overrides"] == TINY[1::2]
    assert out["sample_shape"] == [3, 32, 32] and out["batch_size"] == 2 and out["cells"] == 3
    assert out["iterations"] == 2 and out["covering_warmup"] == 3 * 2  # 3 sources x 2 ops
    assert out["peak_gpu_mem_gib"] is None and out["device"] == "cpu" and out["threads"] >= 1
    assert out["cpu"] and set(out["versions"]) >= {"python", "torch", "numpy"}


def test_covering_samples_run_every_candidate_edge(bench):
    config, _ = load_config(SPACES / "asng_nas_cifar10.yaml")
    space = SearchSpace(config)
    sp = config.space
    samples = bench.covering_samples(space)
    assert len(samples) == (2 + sp.nodes - 1) * len(sp.ops)
    used = set()
    for sample in samples:
        assert all(0 <= v < c for v, c in zip(sample, space.categories, strict=True))
        for kind, nodes in space.genotype(sample).items():
            for i, (ins, ops) in enumerate(nodes):
                used.update((kind, i, src, op) for src, op in zip(ins, ops, strict=True))
    every = {
        (kind, i, src, op)
        for kind in ("normal", "reduction")
        for i in range(sp.nodes)
        for src in range(2 + i)
        for op in sp.ops
    }
    assert used == every


def test_plain_network_matches_the_supernet_parameters(bench):
    """The baseline network of a sample has the supernet's sampled weights, BatchNorms included
    (affine only in the stem), and normalises with batch statistics."""
    import torch

    config, _ = load_config(SPACES / "cells_digits.yaml")
    space = SearchSpace(config)
    sample = np.random.default_rng(0).integers(0, space.categories)
    net = bench.plain_network(space, sample, (1, 8, 8), 10)
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(m.running_mean is None and not m.track_running_stats for m in bns)
    assert [m.affine for m in bns].count(True) == 1 and net.stem[1].affine
    net.train()
    assert net(torch.randn(4, 1, 8, 8)).shape == (4, 10)
