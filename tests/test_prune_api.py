"""Pruner API: errors, report, widths, plugin entry point, and the training helpers."""

from __future__ import annotations

import json
import warnings
from importlib.metadata import entry_points

import pytest
import torch
from torch import nn

import nasframe_prune
from nasframe_prune import (
    AdamSparsityPruner,
    LayerEmptiedError,
    PruneError,
    SparsitySetupWarning,
    UnsupportedModelError,
    check_sparsity_setup,
    kept_widths,
    l2_penalty,
    layer_macs,
    mask_units,
    model_macs,
    prune_units,
)

torch.set_num_threads(1)


def small_cnn() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv1d(2, 6, 3, padding=1),
        nn.ReLU(),
        nn.Conv1d(6, 5, 1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(5 * 7, 8),
        nn.ReLU(),
        nn.Linear(8, 3),
    ).eval()


X = torch.randn(4, 2, 7)


def test_entry_point_loads_the_pruner() -> None:
    eps = [ep for ep in entry_points(group="nasframe.pruners") if ep.name == "adam_sparsity"]
    assert len(eps) == 1
    assert eps[0].load() is AdamSparsityPruner is nasframe_prune.AdamSparsityPruner
    assert AdamSparsityPruner().threshold == 1e-4


def test_pruning_a_whole_layer_is_refused() -> None:
    model = small_cnn()
    with torch.no_grad():
        model[2].weight.mul_(1e-6)
        model[2].bias.zero_()
    with pytest.raises(LayerEmptiedError) as e:
        AdamSparsityPruner(1e-4).prune(model, X)
    assert isinstance(e.value, ValueError)
    msg = str(e.value)
    assert "'2'" in msg and "all 5 units" in msg and "smaller threshold" in msg
    # explicit requests too
    with pytest.raises(LayerEmptiedError, match="all 8 units of layer '5'"):
        prune_units(model, X, {"5": range(8)})
    # a threshold below the largest norm is fine
    largest = float(AdamSparsityPruner().unit_norms(model, X)["2"].max())
    pruned, report = AdamSparsityPruner(largest * 0.999).prune(model, X)
    assert report.kept_widths["2"] == 1 and pruned[2].out_channels == 1


def test_bad_threshold_and_models() -> None:
    for t in (0, -1, float("nan")):
        with pytest.raises(ValueError, match="threshold"):
            AdamSparsityPruner(t)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x):
            return self.fc(x)

    with pytest.raises(UnsupportedModelError, match="nn.Sequential"):
        AdamSparsityPruner().prune(Net(), torch.randn(2, 3))
    with pytest.raises(PruneError, match="not a weight layer"):
        prune_units(small_cnn(), X, {"1": [0]})
    with pytest.raises(PruneError, match="cannot be removed"):
        prune_units(small_cnn(), X, {"7": [0]})  # the classifier
    with pytest.raises(PruneError, match="out of range"):
        prune_units(small_cnn(), X, {"0": [6]})


class Scale(nn.Module):  # a module the pruner does not know
    def forward(self, x):
        return 2 * x


def test_unknown_module_blocks_only_its_layer() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(4, 6),
        nn.ReLU(),
        nn.Linear(6, 6),
        Scale(),
        nn.Linear(6, 6),
        nn.ReLU(),
        nn.Linear(6, 2),
    ).eval()
    with torch.no_grad():
        for i in (0, 2, 4):
            model[i].weight[1] = 0
            model[i].bias[1] = 0
    x = torch.randn(3, 4)
    pruned, report = AdamSparsityPruner().prune(model, x)
    by = {lr.path: lr for lr in report.layers}
    assert by["0"].removed == [1] and by["4"].removed == [1]
    assert not by["2"].prunable and "Scale" in by["2"].why_not and by["2"].removed == []
    torch.testing.assert_close(pruned(x), mask_units(model, report.removed_by_layer)(x))


def test_nested_sequential_paths() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Sequential(nn.Linear(4, 6), nn.ReLU()), nn.Sequential(nn.Linear(6, 3))
    ).eval()
    with torch.no_grad():
        model[0][0].weight[[2, 4]] = 0
        model[0][0].bias[[2, 4]] = 0
    x = torch.randn(3, 4)
    pruned, report = AdamSparsityPruner().prune(model, x)
    assert report.removed_by_layer == {"0.0": [2, 4]}
    assert pruned[0][0].out_features == 4 and pruned[1][0].in_features == 4
    torch.testing.assert_close(pruned(x), model(x))


def test_report_and_widths() -> None:
    model = small_cnn()
    with torch.no_grad():
        model[0].weight[[1, 4]] = 0
        model[0].bias[[1, 4]] = 0
        model[5].weight[3] = 1e-6
        model[5].bias[3] = 0
    pruner = AdamSparsityPruner(1e-4)
    widths = {"0": 4, "2": 5, "5": 7, "7": 3}
    assert pruner.kept_widths(model, X) == widths
    assert kept_widths(model, X, threshold=1e-4) == widths
    pruned, report = pruner.prune(model, X)
    assert report.kept_widths == widths
    assert report.removed_units == 3 and report.prunable_units == 19
    assert report.removed_fraction == pytest.approx(3 / 19)
    d = json.loads(json.dumps(report.to_dict()))
    assert d["method"] == "adam_sparsity" and d["threshold"] == 1e-4
    assert d["layers"][0]["removed"] == [1, 4] and d["kept_widths"] == widths
    # removed: 2 filters of 2*3+1, 2 input channels of the 1x1 (5 each), 1 row of 35+1, 1 column of 3
    assert d["params_before"] - d["params_after"] == 2 * 7 + 2 * 5 + 36 + 3
    # MACs: 2 channels x 7 positions x 6, 5 x 7 x 2, 1 x 35, 3
    assert d["macs_before"] - d["macs_after"] == 2 * 7 * 6 + 5 * 7 * 2 + 35 + 3
    assert "units removed: 3/19" in report.summary()
    torch.testing.assert_close(pruned(X), pruner.masked(model, X)(X), atol=1e-6, rtol=0)


def test_macs_are_counted_per_layer() -> None:
    model = small_cnn()
    # Conv1d(2, 6, 3): 6 x 7 outputs of 6 MACs; Conv1d(6, 5, 1): 5 x 7 of 6; Linear: 35, 8
    per_layer = {"0": 6 * 7 * 6, "2": 5 * 7 * 6, "5": 8 * 35, "7": 3 * 8}
    assert layer_macs(model, X) == per_layer
    assert model_macs(model, X) == sum(per_layer.values())


def test_the_flops_names_are_deprecated_aliases_of_the_macs_ones() -> None:
    model = small_cnn()
    with pytest.warns(DeprecationWarning, match=r"count_flops is deprecated: use .*model_macs"):
        assert nasframe_prune.count_flops(model, X) == model_macs(model, X)
    with pytest.warns(DeprecationWarning, match=r"layer_flops is deprecated: use .*layer_macs"):
        assert nasframe_prune.layer_flops(model, X) == layer_macs(model, X)
    with torch.no_grad():
        model[0].weight[1] = 0
        model[0].bias[1] = 0
    _, report = AdamSparsityPruner(1e-4).prune(model, X)
    assert report.macs_after < report.macs_before
    with pytest.warns(DeprecationWarning, match=r"flops_before is deprecated: use .*macs_before"):
        assert report.flops_before == report.macs_before
    with pytest.warns(DeprecationWarning, match=r"flops_after is deprecated: use .*macs_after"):
        assert report.flops_after == report.macs_after
    with pytest.raises(AttributeError):
        report.flops_after = 0  # read-only
    assert not any(k.startswith("flops") for k in report.to_dict())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new names do not warn
        model_macs(model, X), layer_macs(model, X), report.macs_before, report.summary()


def test_l2_penalty() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(2, 3, 3), nn.BatchNorm1d(3), nn.Flatten(), nn.Linear(3 * 5, 2))
    w2 = sum(float((m.weight.detach() ** 2).sum()) for m in (model[0], model[3]))
    b2 = sum(float((m.bias.detach() ** 2).sum()) for m in (model[0], model[3]))
    assert float(l2_penalty(model, 0.1, include_bias=False).detach()) == pytest.approx(
        0.05 * w2, rel=1e-6
    )
    assert float(l2_penalty(model, 0.1).detach()) == pytest.approx(0.05 * (w2 + b2), rel=1e-6)
    l2_penalty(model, 0.1, include_bias=False).backward()
    torch.testing.assert_close(model[3].weight.grad, 0.1 * model[3].weight.detach())
    assert model[1].weight.grad is None and model[3].bias.grad is None  # BN and biases excluded


def test_check_sparsity_setup() -> None:
    params = [nn.Parameter(torch.zeros(2))]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_sparsity_setup(torch.optim.Adam(params), True, nn.ReLU()) == []
        assert (
            check_sparsity_setup(torch.optim.Adam(params, weight_decay=1e-4), False, "relu") == []
        )
        assert (
            check_sparsity_setup(torch.optim.AdamW(params, weight_decay=0), True, torch.relu) == []
        )
    with pytest.warns(SparsitySetupWarning, match="decoupled"):
        problems = check_sparsity_setup(torch.optim.AdamW(params), True, nn.ReLU)
    assert len(problems) == 1
    adam_dec = torch.optim.Adam(params, weight_decay=1e-2, decoupled_weight_decay=True)
    (p,) = check_sparsity_setup(adam_dec, True, "relu", warn=False)
    assert "decoupled" in p
    (p,) = check_sparsity_setup(
        torch.optim.SGD(params, lr=0.1, momentum=0.9), True, "relu", warn=False
    )
    assert "SGD" in p
    (p,) = check_sparsity_setup(torch.optim.Adam(params), False, "relu", warn=False)
    assert "no L2" in p
    (p,) = check_sparsity_setup("adam", True, nn.GELU(), warn=False)
    assert "rectifier" in p and "gelu" in p
    assert len(check_sparsity_setup("adamw", False, "tanh", warn=False)) == 3


def test_train_l2_is_the_coupled_penalty_of_the_core() -> None:
    from nasframe import l2_penalty as core_l2

    assert l2_penalty is core_l2  # the plugin re-exports the public API's penalty
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Conv1d(4, 2, 1))
    core_l2(model, 0.3).backward()
    assert torch.allclose(model[0].weight.grad, 0.3 * model[0].weight)
    assert torch.allclose(model[3].bias.grad, 0.3 * model[3].bias)
    assert model[1].weight.grad is None  # BatchNorm is not penalised
