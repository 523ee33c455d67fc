"""The retraining width of cell spaces chosen under a parameter budget (``channels: auto``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from conftest import SPACES

from nasframe import SearchSpace, build_network, load_config, validate_data
from nasframe.cell_network import (
    CellNetwork,
    count_cell_network,
    fit_channels,
    main_parameters,
    retrain_size,
)
from nasframe.cli import main
from nasframe.errors import UserError

torch.set_num_threads(1)
CIFAR = SPACES / "asng_nas_cifar10.yaml"
TINY = SPACES / "cells_digits.yaml"
IMAGE = (3, 32, 32)


def _choose(space: SearchSpace, op: str, inputs: str) -> np.ndarray:
    """Every edge ``op``; inputs "cell": input k of every node reads cell input k (all nodes are
    concatenated), "chain": every input reads the latest state (only the last node is)."""
    sample = []
    for c in space.choices:
        last = c.path.rsplit(".", 1)[1]
        if last.startswith("op"):
            sample.append(c.options.index(op))
        elif inputs == "chain":
            sample.append(c.size - 1)
        else:
            sample.append(int(last[-1]))
    return np.array(sample)


def _arch(space: SearchSpace, sample: np.ndarray, overrides: dict | None = None):
    raw = space.freeze(sample)
    raw["space"]["retrain"].update(overrides or {})
    return validate_data(raw)


@pytest.fixture(scope="module")
def cifar() -> SearchSpace:
    cfg, _ = load_config(CIFAR)
    return SearchSpace(cfg)


@pytest.fixture(scope="module")
def widths(cifar) -> dict[str, tuple]:
    """Width chosen for the heaviest, the lightest and a random architecture of the CIFAR space,
    with the parameter counts at that width and the next one."""
    samples = {
        "heaviest": _choose(cifar, "sep_conv5", "cell"),
        "lightest": _choose(cifar, "avg_pool3", "chain"),
        "random": cifar.random_sample(np.random.default_rng(0)),
    }
    out = {}
    for name, sample in samples.items():
        arch = _arch(cifar, sample)
        size = retrain_size(arch, IMAGE, 10)
        geno = SearchSpace(arch).genotype([])
        at = [
            count_cell_network(arch.space, geno, IMAGE, 10, 20, size.channels + k) for k in (0, 1)
        ]
        out[name] = (size, *at)
    return out


@pytest.mark.parametrize("name", ["heaviest", "lightest", "random"])
def test_auto_takes_the_largest_width_under_the_budget(widths, name):
    size, params, next_params = widths[name]
    budget = load_config(CIFAR)[0].space.retrain.param_budget
    assert size.auto and size.cells == 20 and size.param_budget == budget
    assert params <= budget < next_params


def test_heavier_cells_get_a_narrower_network(widths):
    c = {name: widths[name][0].channels for name in widths}
    assert c["heaviest"] <= c["random"] <= c["lightest"]
    assert c["heaviest"] < c["lightest"]


def test_retraining_builds_a_20_cell_network_under_the_budget(cifar):
    arch = _arch(cifar, cifar.random_sample(np.random.default_rng(1)))
    net = build_network(arch, IMAGE, 10)
    assert len(net.cells) == 20 and net.auxiliary is not None
    size = net.retrain_size
    assert size.parameters == main_parameters(net) <= arch.space.retrain.param_budget
    assert net.classifier.in_features == 4 * size.channels  # two reductions double C twice
    assert main_parameters(net) < sum(p.numel() for p in net.parameters())  # the head is left out


@pytest.mark.parametrize(
    "op,inputs,channels", [("sep_conv5", "cell", 6), ("identity", "chain", 7), ("", "", 10)]
)
def test_meta_count_equals_a_real_build(cifar, op, inputs, channels):
    sample = _choose(cifar, op, inputs) if op else cifar.random_sample(np.random.default_rng(2))
    arch = _arch(cifar, sample)
    geno = SearchSpace(arch).genotype([])
    torch.manual_seed(0)
    net = CellNetwork(arch.space, geno, IMAGE, 10, cells=8, channels=channels, auxiliary_weight=0.4)
    assert net.auxiliary is not None
    assert count_cell_network(arch.space, geno, IMAGE, 10, 8, channels) == main_parameters(net)


def test_auto_draws_no_random_numbers(cifar):
    """The width search allocates nothing and leaves the seeded initialisation as it was."""
    sample = cifar.random_sample(np.random.default_rng(3))
    small = {"cells": 5, "param_budget": 5.0e4}
    torch.manual_seed(0)
    a = build_network(_arch(cifar, sample, small), IMAGE, 10)
    fixed = _arch(cifar, sample, {**small, "channels": a.retrain_size.channels})
    torch.manual_seed(0)
    b = build_network(fixed, IMAGE, 10)
    assert a.retrain_size.auto and not b.retrain_size.auto
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_fit_channels_is_the_largest_fitting_width():
    for a, b in [(1, 0), (3, 5), (7, 1)]:

        def count(c, a=a, b=b):
            return a * c * c + b * c + 1

        for budget in (0, 1, a + b + 1, 50, 1000, 123_456):
            expected = max((c for c in range(1, 500) if count(c) <= budget), default=0)
            for start in (1, 2, 3, 16, 200):
                assert fit_channels(count, budget, start) == expected


def test_a_fixed_width_over_the_budget_is_refused(cifar):
    sample = _choose(cifar, "sep_conv5", "cell")
    arch = _arch(cifar, sample, {"channels": 36})
    with pytest.raises(UserError) as e:
        build_network(arch, IMAGE, 10)
    msg = str(e.value)
    geno = SearchSpace(arch).genotype([])
    params = count_cell_network(arch.space, geno, IMAGE, 10, 20, 36)
    assert msg.startswith("space.retrain.channels: ")
    assert f"{params:,} parameters" in msg and "4,000,000" in msg
    assert "channels: auto" in msg and "a smaller number" in msg


def test_a_budget_no_width_fits_is_refused(cifar):
    arch = _arch(cifar, cifar.random_sample(np.random.default_rng(0)), {"param_budget": 1000.0})
    with pytest.raises(UserError, match=r"param_budget: 1,000 parameters are too few"):
        build_network(arch, IMAGE, 10)


def test_a_fixed_width_under_the_budget_is_kept(cifar):
    arch = _arch(cifar, _choose(cifar, "max_pool3", "chain"), {"cells": 5, "channels": 10})
    size = retrain_size(arch, IMAGE, 10)
    assert (size.cells, size.channels, size.auto) == (5, 10, False)


def _line(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


@pytest.mark.parametrize(
    "retrain,what",
    [
        ("{cells: 20, channels: auto}", "'auto' picks the largest width under"),
        (
            "{cells: 20, channels: atuo, param_budget: 4.0e6}",
            "expected a number or 'auto', got the text 'atuo'; did you mean 'auto'?",
        ),
        ("{cells: 20, channels: 0, param_budget: 4.0e6}", "a positive number of channels"),
    ],
)
def test_bad_retrain_width_gets_one_line_and_exit_2(tmp_path, capsys, retrain, what):
    text = CIFAR.read_text()
    old = text[text.index("retrain: {") : text.index("}", text.index("retrain: {")) + 1]
    text = text.replace(old, f"retrain: {retrain}")
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    assert main(["validate", str(path)]) == 2
    (msg,) = capsys.readouterr().err.strip().splitlines()
    assert msg.startswith(f"{path}:{_line(text, 'retrain: {')}: space.retrain.channels: ")
    assert what in msg


def test_train_reports_the_width_it_chose(tmp_path, capsys):
    space = SearchSpace(load_config(TINY)[0])
    arch = tmp_path / "arch.yaml"
    arch.write_text(yaml.safe_dump(space.freeze(space.random_sample(np.random.default_rng(0)))))
    budget = ["--set", "space.retrain.param_budget=2.0e4", "--set", "train.epochs=1", "--quiet"]
    out = tmp_path / "auto"
    args = ["train", str(arch), "--out", str(out), "--set", "space.retrain.channels=auto"]
    assert main([*args, *budget]) == 0
    summary = json.loads((out / "summary.json").read_text())
    c = summary["retrain_channels"]
    assert summary["retrain_channels_auto"] is True and summary["retrain_cells"] == 3
    assert summary["parameters"] <= summary["param_budget"] == 2.0e4
    err = capsys.readouterr().err
    assert f"cell network: 3 cells, C={c} (the largest width under the budget)" in err
    # the fixed width of the file (8) is over this budget: refused before training, exit 2
    assert c < 8
    assert main(["train", str(arch), "--out", str(tmp_path / "fixed"), *budget]) == 2
    assert "over space.retrain.param_budget of 20,000" in capsys.readouterr().err
