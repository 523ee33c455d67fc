"""Cell spaces (ENAS micro cells of ASNG-NAS): choices, supernet, frozen network, retraining extras."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import yaml
from conftest import SPACES, frozen_round_trip
from torch import nn

from nasframe import SearchSpace, build_network, load_config, load_space, validate_data
from nasframe.cell_network import CellNetwork
from nasframe.cells import CellSupernet
from nasframe.errors import UserError
from nasframe.network import make_supernet

torch.set_num_threads(1)
TINY = SPACES / "cells_digits.yaml"


def test_cifar_space_has_the_reference_category_vector():
    space = load_space(SPACES / "asng_nas_cifar10.yaml")
    per_cell = [2, 2, 5, 5, 3, 3, 5, 5, 4, 4, 5, 5, 5, 5, 5, 5, 6, 6, 5, 5]
    assert space.categories == per_cell * 2
    assert sum(space.categories) == 180
    assert space.paths[:4] == [
        "space.normal.node0.input0",
        "space.normal.node0.input1",
        "space.normal.node0.op0",
        "space.normal.node0.op1",
    ]
    assert space.paths[20] == "space.reduction.node0.input0"
    assert space.choices[2].options == (
        "identity",
        "avg_pool3",
        "max_pool3",
        "sep_conv3",
        "sep_conv5",
    )
    assert space.config.space.reduction_cells() == [2, 5]


def _tiny():
    cfg, _ = load_config(TINY)
    return SearchSpace(cfg)


def test_arch_round_trip(tmp_path):
    space = _tiny()
    rng = np.random.default_rng(0)
    for _ in range(5):
        sample = space.random_sample(rng)
        fixed, arch = frozen_round_trip(space, sample, tmp_path)
        assert arch["space"]["normal"][0].keys() == {"inputs", "ops"}
        assert fixed.genotype([]) == space.genotype(sample)


def _copy_into(net: CellSupernet, frozen: CellNetwork) -> None:
    """Copy the supernet's weights of the frozen network's ops into it (same shapes)."""
    src = dict(net.named_parameters())
    with torch.no_grad():
        for name, p in frozen.named_parameters():
            m = re.fullmatch(r"cells\.(\d+)\.ops\.n(\d+)_s(\d+)_(\w+?)\.(.*)", name)
            key = f"cells.{m[1]}.edges.{m[2]}.{m[3]}.{m[4]}.{m[5]}" if m else name
            if re.fullmatch(r"cells\.\d+\.project\.1\.weight", name):
                k = int(name.split(".")[1])
                p.copy_(net.cells[k].project_weight(frozen.cells[k].unused))
            elif key in src:
                p.copy_(src[key])
            else:  # the supernet's BatchNorm has no affine parameters (they start at 1 and 0)
                owner = frozen.get_submodule(name.rsplit(".", 1)[0])
                assert isinstance(owner, nn.BatchNorm2d), name


def test_supernet_equals_the_frozen_network_of_the_sample():
    space = _tiny()
    torch.manual_seed(0)
    net = make_supernet(space, (1, 8, 8), 10)
    assert isinstance(net, CellSupernet)
    x = torch.randn(16, 1, 8, 8)
    rng = np.random.default_rng(1)
    for _ in range(5):
        sample = space.random_sample(rng)
        arch = validate_data(space.freeze(sample))
        frozen = CellNetwork(arch.space, SearchSpace(arch).genotype([]), (1, 8, 8), 10)
        _copy_into(net, frozen)
        frozen.train()  # batch statistics, as the supernet uses
        torch.testing.assert_close(net(x, sample), frozen(x), rtol=1e-4, atol=1e-5)


def test_only_the_sampled_ops_run_and_get_gradients():
    space = _tiny()
    net = make_supernet(space, (1, 8, 8), 10)
    calls: dict[tuple, int] = {}
    for k, cell in enumerate(net.cells):
        for i, row in enumerate(cell.edges):
            for s, ops in enumerate(row):
                for name, op in ops.items():
                    key = (k, i, s, name)
                    calls[key] = 0
                    op.register_forward_hook(
                        lambda m, a, o, key=key: calls.__setitem__(key, calls[key] + 1)
                    )
    sample = space.random_sample(np.random.default_rng(3))
    net(torch.randn(4, 1, 8, 8), sample).sum().backward()
    geno = space.genotype(sample)
    expected = {
        (k, i, s, op)
        for k, kind in enumerate(net.kinds)
        for i, (ins, ops) in enumerate(geno[kind])
        for s, op in zip(ins, ops, strict=True)
    }
    assert {key for key, n in calls.items() if n} == expected
    for k, cell in enumerate(net.cells):
        for i, row in enumerate(cell.edges):
            for s, ops in enumerate(row):
                for name, op in ops.items():
                    for p in op.parameters():
                        assert (p.grad is not None) == ((k, i, s, name) in expected)


def test_unused_nodes_are_concatenated_and_projected_by_a_sliced_conv():
    space = _tiny()
    net = make_supernet(space, (1, 8, 8), 10)
    cell = net.cells[0]
    c = cell.channels
    w = cell.project.weight
    assert w.shape[:2] == (c, 3 * c)  # built for all three nodes
    torch.testing.assert_close(cell.project_weight([0, 2]), torch.cat([w[:, :c], w[:, 2 * c :]], 1))
    assert cell.project_weight([1, 2]).data_ptr() == w[:, c:].data_ptr()  # contiguous: a view
    nodes = (
        ((0, 1), ("sep_conv3", "identity")),
        ((0, 1), ("max_pool3", "identity")),
        ((3, 0), ("identity", "avg_pool3")),  # node 2 uses node 1: nodes 0 and 2 are unused
    )
    s = torch.randn(4, cell.pre0[1].in_channels, 8, 8)
    out = cell(s, s, nodes)
    assert out.shape == (4, c, 8, 8)
    out.sum().backward()
    g = w.grad.abs().sum((0, 2, 3))
    assert g[:c].sum() > 0 and g[2 * c :].sum() > 0 and g[c : 2 * c].sum() == 0


def test_reduction_cells_halve_the_size_and_double_the_channels():
    space = _tiny()
    net = make_supernet(space, (1, 8, 8), 10)
    shapes = []
    for cell in net.cells:
        cell.register_forward_hook(lambda m, a, o: shapes.append(tuple(o.shape[1:])))
    net(torch.randn(2, 1, 8, 8), space.random_sample(np.random.default_rng(0)))
    assert net.kinds == ["normal", "reduction", "reduction"]
    c = space.config.space.channels
    assert shapes == [(c, 8, 8), (2 * c, 4, 4), (4 * c, 2, 2)]


def test_frozen_network_shares_one_op_for_a_repeated_edge_and_drops_paths():
    cfg, _ = load_config(TINY)
    fixed = [{"inputs": [1, 1], "ops": ["sep_conv3", "sep_conv3"]}] + [
        {"inputs": [0, 2 + i], "ops": ["identity", "max_pool3"]} for i in range(2)
    ]
    raw = cfg.model_dump(mode="json", exclude_none=True)
    raw["space"].update(normal=fixed, reduction=fixed)
    raw["space"]["retrain"] = {"drop_path": 0.5}
    net = build_network(validate_data(raw), (1, 8, 8), 10)
    assert list(net.cells[0].ops) == ["n0_s1_sep_conv3", "n1_s0_identity", "n1_s2_max_pool3",
                                      "n2_s0_identity", "n2_s3_max_pool3"]  # fmt: skip
    assert net.cells[0].unused == [2]
    assert isinstance(net.cells[1].ops["n1_s0_identity"], nn.Module)  # FactorizedReduce
    assert not isinstance(net.cells[1].ops["n1_s0_identity"], nn.Identity)
    net.start_epoch(0, 10)
    assert net.drop_path_prob == 0.0
    net.start_epoch(5, 10)
    assert net.drop_path_prob == pytest.approx(0.25)
    x = torch.randn(8, 1, 8, 8)
    net.eval()
    a, b = net(x), net(x)
    torch.testing.assert_close(a, b)  # no drop-path in evaluation
    net.train()
    torch.manual_seed(0)
    c = net(x)
    torch.manual_seed(1)
    assert not torch.allclose(c, net(x))


def test_auxiliary_head_adds_its_weighted_loss_in_training():
    from nasframe.train import _training_loss

    cfg, _ = load_config(TINY, ["space.retrain.auxiliary_weight=0.4"])
    space = SearchSpace(cfg)
    arch = validate_data(space.freeze(space.random_sample(np.random.default_rng(0))))
    torch.manual_seed(0)
    net = build_network(arch, (3, 32, 32), 10)  # 32 -> 16 -> 8: the head needs 8x8
    assert net.aux_at == 2 and net.auxiliary is not None
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    out, loss, aux_loss = _training_loss(net, x, y)
    _, aux = net(x, auxiliary=True)
    assert aux_loss.item() == pytest.approx(0.4 * nn.functional.cross_entropy(aux, y).item())
    (loss + aux_loss).backward()
    assert all(p.grad is not None for p in net.auxiliary.parameters())
    assert net(x).shape == (4, 10)  # plain forward: logits only
    with pytest.raises(UserError, match="at least 8x8"):
        build_network(arch, (1, 8, 8), 10)


def test_retrain_network_of_the_cifar_space_stays_under_the_reference_budget():
    """The reference's protocol: 20 cells, as wide as the budget allows, auxiliary head excluded."""
    from nasframe.cell_network import count_cell_network

    cfg, _ = load_config(SPACES / "asng_nas_cifar10.yaml")
    space = SearchSpace(cfg)
    budget = cfg.space.retrain.param_budget
    assert cfg.space.retrain.channels == "auto" and budget == 4.0e6
    # the heaviest cells: every edge sep_conv5, inputs 0 and 1 (all nodes are concatenated)
    heaviest = np.array([4 if "op" in c.path else int(c.path[-1]) for c in space.choices])
    arch = validate_data(space.freeze(heaviest))
    assert space.describe(heaviest).count("sep_conv5") == 20
    net = build_network(arch, (3, 32, 32), 10)
    assert len(net.cells) == 20 and net.auxiliary is not None
    main = sum(p.numel() for n, p in net.named_parameters() if not n.startswith("auxiliary"))
    assert main == net.retrain_size.parameters <= budget
    wider = count_cell_network(
        arch.space,
        SearchSpace(arch).genotype([]),
        (3, 32, 32),
        10,
        20,
        net.retrain_size.channels + 1,
    )
    assert wider > budget


def test_hash_ignores_retraining_options_only():
    base = _tiny().hash
    cfg, _ = load_config(TINY, ["space.retrain.channels=16", "space.retrain.drop_path=0.1"])
    assert SearchSpace(cfg).hash == base
    cfg, _ = load_config(TINY, ["space.channels=6"])
    assert SearchSpace(cfg).hash != base


def test_cell_spaces_need_images():
    with pytest.raises(UserError, match="images shaped"):
        make_supernet(_tiny(), (1, 40), 10)


def test_a_user_registered_cell_op_is_searchable_and_exported(tmp_path, plugin):
    built: list[int] = []

    def gated(c: int, stride: int, affine: bool, track: bool) -> nn.Module:
        built.append(stride)
        conv = nn.Conv2d(c, c, 3, stride=stride, padding=1, bias=False)
        return nn.Sequential(conv, nn.BatchNorm2d(c, affine=affine, track_running_stats=track))

    plugin("cell_op", "test_only_gated_conv", gated)

    text = TINY.read_text().replace("max_pool3, sep_conv3", "max_pool3, Test-Only-Gated-Conv")
    assert "test-only-gated-conv" in text.lower()
    path = tmp_path / "space.yaml"
    path.write_text(text)
    cfg, _ = load_config(path)
    assert "test_only_gated_conv" in cfg.space.ops  # names are normalised like every plugin's
    space = SearchSpace(cfg)
    net = make_supernet(space, (1, 8, 8), 10)
    assert 1 in built and 2 in built  # one instance per edge, strided on reduction inputs
    k = cfg.space.ops.index("test_only_gated_conv")
    sample = [k if p.endswith((".op0", ".op1")) else 0 for p in space.paths]
    assert net(torch.randn(4, 1, 8, 8), sample).shape == (4, 10)
    arch = validate_data(space.freeze(sample))
    assert arch.space.normal[0].ops == ["test_only_gated_conv"] * 2
    frozen = CellNetwork(arch.space, SearchSpace(arch).genotype([]), (1, 8, 8), 10)
    assert frozen(torch.randn(4, 1, 8, 8)).shape == (4, 10)


def test_a_cell_training_counts_and_exports_the_network_without_its_auxiliary_head(tmp_path):
    """`parameters` (summary, show, export) counted the training-only auxiliary head: 99% of a
    small network; export carried its weights, though the exported graph never runs it."""
    import json

    from nasframe.cli import main

    space = SearchSpace(load_config(TINY)[0])
    raw = space.freeze(space.random_sample(np.random.default_rng(0)))
    raw["data"] = {
        "name": "synthetic",
        "options": {"shape": [3, 32, 32], "n_train": 64, "n_test": 16},
    }
    arch = tmp_path / "arch.yaml"
    arch.write_text(yaml.safe_dump(raw))
    out = tmp_path / "t"
    sets = ["--set", "space.retrain.auxiliary_weight=0.4", "--set", "train.epochs=1", "--quiet"]
    assert main(["train", str(arch), "--out", str(out), *sets]) == 0
    summary = json.loads((out / "summary.json").read_text())
    weights = torch.load(out / "weights.pt", weights_only=True)
    head = sum(
        v.numel()
        for k, v in weights.items()
        if k.startswith("auxiliary.") and v.is_floating_point() and "running" not in k
    )
    assert summary["parameters_auxiliary"] == head > 0
    config, _ = load_config(out / "config.yaml")
    net = build_network(config, (3, 32, 32), 10)
    total = sum(p.numel() for p in net.parameters())
    assert summary["parameters"] == total - head
    assert main(["export", str(out)]) == 0
    program = torch.export.load(out / "model.pt2")
    assert not [k for k in program.state_dict if k.startswith("auxiliary")]
    assert (
        sum(
            v.numel()
            for k, v in program.state_dict.items()
            if "running" not in k and "num_batches" not in k
        )
        == summary["parameters"]
    )
