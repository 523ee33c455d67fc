"""Pruning surgery: the pruned network equals the masked one, and shrinks by the right amount."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from nasframe.ops import AvgPool3, Conv3, Conv5, MaxPool3, SepConv3
from nasframe_prune import AdamSparsityPruner, count_parameters, mask_units, model_macs

torch.set_num_threads(1)

THRESHOLD = 1e-4


# Each spec: builder(widths) -> Sequential, start widths, input shape (no batch), and per prunable
# layer (producer index, consumer index, whether a non-zero constant output folds exactly).
def mlp(w):
    return nn.Sequential(
        nn.Linear(12, w[0]),
        nn.ReLU(),
        nn.Linear(w[0], w[1]),
        nn.BatchNorm1d(w[1]),
        nn.ReLU(),
        nn.Dropout(0.3),
        nn.Linear(w[1], 5),
    )


def mlp_nasframe(w):  # Linear without bias + BN + ReLU, as nasframe's LinearReLU op
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(12, w[0], bias=False),
        nn.BatchNorm1d(w[0]),
        nn.ReLU(),
        nn.Linear(w[0], w[1], bias=False),
        nn.BatchNorm1d(w[1]),
        nn.ReLU(),
        nn.Linear(w[1], 5),
    )


def mlp_sigmoid(w):  # constant outputs sigmoid(0) = 0.5 must be folded into the next bias
    return nn.Sequential(
        nn.Linear(12, w[0]),
        nn.Sigmoid(),
        nn.Linear(w[0], w[1]),
        nn.Tanh(),
        nn.Linear(w[1], 4),
    )


def conv1d_gap(w):
    return nn.Sequential(
        nn.Conv1d(3, w[0], 3, padding=1),
        nn.BatchNorm1d(w[0]),
        nn.ReLU(),
        nn.Conv1d(w[0], w[1], 5, padding=2, stride=2),
        nn.ReLU(),
        nn.AdaptiveAvgPool1d(1),
        nn.Flatten(),
        nn.Linear(w[1], 6),
    )


def conv2d_sep_flatten(w):
    return nn.Sequential(
        nn.Conv2d(3, w[0], 3, padding=1),
        nn.BatchNorm2d(w[0]),
        nn.ReLU(),
        nn.Conv2d(w[0], w[0], 3, padding=1, groups=w[0], bias=False),  # depth-wise, padded
        nn.Conv2d(w[0], w[1], 1, bias=False),
        nn.BatchNorm2d(w[1]),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(w[1] * 16, w[2]),
        nn.ReLU(),
        nn.Linear(w[2], 4),
    )


def conv2d_nopad(w):
    return nn.Sequential(
        nn.Conv2d(3, w[0], 3, stride=2),
        nn.BatchNorm2d(w[0]),
        nn.ReLU(),
        nn.Conv2d(w[0], w[1], 3),  # no padding: a constant input map gives a constant output
        nn.BatchNorm2d(w[1]),
        nn.ReLU(),
        nn.AvgPool2d(2, padding=1, count_include_pad=True),  # borders differ: 1x1 does not fold
        nn.Conv2d(w[1], w[2], 1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(w[2], 3),
    )


def conv1d_flatten_bn(w):  # BatchNorm over the flattened features: blocks of 8 per channel
    return nn.Sequential(
        nn.Conv1d(2, w[0], 3),
        nn.ReLU(),
        nn.Flatten(),
        nn.BatchNorm1d(w[0] * 8),
        nn.Linear(w[0] * 8, w[1]),
        nn.ReLU(),
        nn.Linear(w[1], 3),
    )


def nasframe_ops(w):  # the modules nasframe's ops build, as build_network chains them
    mods = [
        *Conv3.build(3, w[0], 1, "conv2d"),
        *SepConv3.build(w[0], w[1], 1, "conv2d"),
        *MaxPool3.build(w[1], w[1], 2, "conv2d"),
        *Conv5.build(w[1], w[2], 2, "conv2d"),
        *AvgPool3.build(w[2], w[2], 1, "conv2d"),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(w[2], 5),
    ]
    return nn.Sequential(*mods)


SPECS = {
    "mlp": (mlp, [16, 14], (12,), [(0, 2, True), (2, 6, True)]),
    "mlp_nasframe": (mlp_nasframe, [16, 14], (3, 4), [(1, 4, True), (4, 7, True)]),
    "mlp_sigmoid": (mlp_sigmoid, [10, 9], (12,), [(0, 2, True), (2, 4, True)]),
    "conv1d_gap": (conv1d_gap, [9, 8], (3, 11), [(0, 3, False), (3, 7, True)]),
    "conv2d_sep_flatten": (
        conv2d_sep_flatten,
        [9, 8, 10],
        (3, 8, 8),
        [(0, 4, False), (4, 9, True), (9, 11, True)],
    ),
    "conv2d_nopad": (
        conv2d_nopad,
        [9, 8, 7],
        (3, 13, 13),
        [(0, 3, True), (3, 7, False), (7, 11, True)],
    ),
    "conv1d_flatten_bn": (conv1d_flatten_bn, [6, 9], (2, 10), [(0, 4, True), (4, 6, True)]),
    "nasframe_ops": (
        nasframe_ops,
        [8, 10, 9],
        (3, 8, 8),
        [(0, 4, False), (4, 8, False), (8, 14, True)],
    ),
}


def randomize_bn(model: nn.Module, gen: torch.Generator) -> None:
    """Non-trivial running statistics and affine parameters."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen))
                m.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.5)
                m.weight.copy_(torch.randn(n, generator=gen))
                m.bias.copy_(torch.randn(n, generator=gen))


def make_sparse(name: str, seed: int = 0):
    """The spec's network with chosen units killed; returns (model, x, chosen, expected_removed)."""
    builder, widths, in_shape, layers = SPECS[name]
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = builder(widths)
    randomize_bn(model, gen)
    chosen: dict[str, list[int]] = {}
    with torch.no_grad():
        for p_idx, _c_idx, _exact in layers:
            prod = model[p_idx]
            width = prod.weight.shape[0]
            units = sorted(torch.randperm(width, generator=gen)[: max(3, width // 3)].tolist())
            chosen[str(p_idx)] = units
            for k, u in enumerate(units):
                if k % 2:  # tiny, non-zero weights and bias
                    prod.weight[u] = torch.randn(prod.weight[u].shape, generator=gen) * 1e-7
                    if prod.bias is not None:
                        prod.bias[u] = 3e-8
                else:  # exactly zero
                    prod.weight[u] = 0
                    if prod.bias is not None:
                        prod.bias[u] = 0
                nxt = model[p_idx + 1]
                if isinstance(nxt, nn.modules.batchnorm._BatchNorm) and nxt.num_features == width:
                    # BN(0) = beta - gamma * mean / sqrt(var + eps): make it -1 (ReLU: 0) or +0.7
                    shift = -1.0 if k % 3 != 1 else 0.7
                    scale = nxt.weight[u] / torch.sqrt(nxt.running_var[u] + nxt.eps)
                    nxt.bias[u] = scale * nxt.running_mean[u] + shift
    model.eval()
    expected: dict[str, list[int]] = {}
    with torch.no_grad():
        masked = mask_units(model, chosen)
        h = torch.zeros(1, *in_shape)
        for i, m in enumerate(masked):
            h = m(h)
            for p_idx, c_idx, exact in layers:
                if i == c_idx - 1:  # h: what the consumer reads when the input is all zeros ...
                    units = chosen[str(p_idx)]
                    if exact:
                        expected[str(p_idx)] = units
                    else:  # ... only units whose constant is 0 everywhere can go
                        blocks = h.reshape(1, prod_width(model, p_idx), -1)
                        expected[str(p_idx)] = [u for u in units if bool((blocks[0, u] == 0).all())]
    x = torch.randn(16, *in_shape, generator=gen)
    return model, x, chosen, expected


def prod_width(model: nn.Sequential, idx: int) -> int:
    return model[idx].weight.shape[0]


@pytest.mark.parametrize("name", sorted(SPECS))
def test_pruned_equals_masked(name: str) -> None:
    builder, widths, _in_shape, layers = SPECS[name]
    model, x, chosen, expected = make_sparse(name)
    before = copy.deepcopy(model.state_dict())
    pruned, report = AdamSparsityPruner(THRESHOLD).prune(model, x)

    # the chosen units (and only those) are the candidates; the foldable ones are removed
    removed = {lr.path: lr.removed for lr in report.layers if lr.removed}
    assert removed == {k: v for k, v in expected.items() if v}
    for lr in report.layers:
        if lr.path in chosen:
            assert sorted(lr.removed + lr.not_removable) == chosen[lr.path]
    if any(not exact for *_, exact in layers):
        assert any(lr.not_removable for lr in report.layers), "spec should exercise refusals"

    # output equals the masked network (removed units' incoming weights and bias zeroed)
    masked = mask_units(model, report.removed_by_layer)
    with torch.no_grad():
        out_p, out_m, out_o = pruned(x), masked(x), model(x)
    assert out_p.shape == out_o.shape
    torch.testing.assert_close(out_p, out_m, atol=1e-5, rtol=1e-5)

    # same structure as a network built with the kept widths: shapes, parameters, MACs
    kept = list(widths)
    for i, (p_idx, _c, _e) in enumerate(layers):
        kept[i] -= len(expected[str(p_idx)])
    fresh = builder(kept)
    assert {k: v.shape for k, v in pruned.state_dict().items()} == {
        k: v.shape for k, v in fresh.state_dict().items()
    }
    assert report.params_before == count_parameters(model)
    assert report.params_after == count_parameters(fresh) < report.params_before
    assert report.macs_before == model_macs(model, x)
    assert report.macs_after == model_macs(fresh, x[:1]) < report.macs_before
    assert report.kept_widths == {
        str(p): k for (p, _c, _e), k in zip(layers, kept, strict=True)
    } | {lr.path: lr.units_before for lr in report.layers if not lr.prunable}

    # the input model is untouched, the pruned one keeps its mode
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert pruned.training == model.training


@pytest.mark.parametrize("name", ["mlp_nasframe", "conv2d_sep_flatten", "nasframe_ops"])
def test_nothing_to_prune_is_exact_noop(name: str) -> None:
    builder, widths, in_shape, _layers = SPECS[name]
    torch.manual_seed(1)
    model = builder(widths)
    randomize_bn(model, torch.Generator().manual_seed(1))
    model.eval()
    x = torch.randn(4, *in_shape)
    pruned, report = AdamSparsityPruner(THRESHOLD).prune(model, x)
    assert report.removed_units == 0 and report.removed_fraction == 0.0
    assert report.params_after == report.params_before
    assert report.macs_after == report.macs_before
    sd, sd_p = model.state_dict(), pruned.state_dict()
    assert list(sd) == list(sd_p)
    assert all(torch.equal(sd[k], sd_p[k]) for k in sd)
    with torch.no_grad():
        assert torch.equal(model(x), pruned(x))


def test_train_mode_model_is_pruned_with_eval_semantics() -> None:
    model, x, _chosen, expected = make_sparse("conv2d_sep_flatten", seed=3)
    model.train()
    pruned, report = AdamSparsityPruner(THRESHOLD).prune(model, x)
    assert pruned.training and model.training
    assert report.removed_by_layer == {k: v for k, v in expected.items() if v}
    masked = mask_units(model, report.removed_by_layer)
    pruned.eval()
    masked.eval()
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), masked(x), atol=1e-5, rtol=1e-5)


def test_keep_bias_reference() -> None:
    """keep_bias: removed units output act(BN(b)); pruned equals the bias-keeping masked net."""
    torch.manual_seed(0)
    model = mlp_sigmoid([8, 6]).eval()
    with torch.no_grad():
        model[0].weight[[1, 5]] = 0
        model[0].bias[[1, 5]] = torch.tensor([5e-5, -5e-5])
    x = torch.randn(8, 12)
    pruner = AdamSparsityPruner(THRESHOLD, keep_bias=True)
    pruned, report = pruner.prune(model, x)
    assert report.removed_by_layer == {"0": [1, 5]}
    with torch.no_grad():
        keep = mask_units(model, {"0": [1, 5]}, keep_bias=True)(x)
        zero = mask_units(model, {"0": [1, 5]})(x)
        torch.testing.assert_close(pruned(x), keep, atol=1e-6, rtol=0)
        torch.testing.assert_close(pruner.masked(model, x)(x), keep, atol=0, rtol=0)
        assert (keep - zero).abs().max() > 1e-7  # the two references do differ


def test_fold_creates_bias_when_consumer_has_none() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(6, 8, bias=False), nn.Sigmoid(), nn.Linear(8, 3, bias=False)
    ).eval()
    with torch.no_grad():
        model[0].weight[[0, 3]] = 0
    x = torch.randn(5, 6)
    pruned, report = AdamSparsityPruner(THRESHOLD).prune(model, x)
    assert report.layers[0].folds == {"2": "new_bias"}
    assert pruned[2].bias is not None and pruned[2].weight.shape == (3, 6)
    # 2 rows of 6 and 2 columns of 3 removed, 3 bias entries added
    assert report.params_after == report.params_before - 12 - 6 + 3
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), model(x), atol=1e-6, rtol=0)  # exact zeros


def test_fold_into_batchnorm_running_mean() -> None:
    model, x, _chosen, _expected = make_sparse("mlp_nasframe", seed=2)
    pruned, report = AdamSparsityPruner(THRESHOLD).prune(model, x)
    assert report.layers[0].folds == {"4": "bn:5"}  # Linear(bias=False) -> BatchNorm1d
    assert pruned[4].bias is None
    assert not torch.equal(pruned[5].running_mean, model[5].running_mean[: pruned[5].num_features])


def test_final_classifier_never_pruned() -> None:
    torch.manual_seed(0)
    model = mlp([8, 8]).eval()
    with torch.no_grad():
        model[6].weight[[0, 2]] = 0
        model[6].bias[[0, 2]] = 0
    x = torch.randn(4, 12)
    pruned, report = AdamSparsityPruner(THRESHOLD).prune(model, x)
    assert pruned[6].out_features == 5
    last = report.layers[-1]
    assert not last.prunable and last.removed == [] and "outputs" in last.why_not
    assert report.prunable_units == 16


def test_model_macs_by_hand() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),  # 8 x 8x8 outputs, 27 MACs each
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8),  # 8 x 8x8, 9 each
        nn.Conv2d(8, 4, 1, stride=2),  # 4 x 4x4, 8 each
        nn.Flatten(),
        nn.Linear(64, 10),  # 640
    )
    x = torch.randn(7, 3, 8, 8)
    assert model_macs(model, x) == 8 * 64 * 27 + 8 * 64 * 9 + 4 * 16 * 8 + 640
    conv1d = nn.Sequential(nn.Conv1d(2, 5, 4, stride=2))  # length 10 -> 4 outputs, 8 MACs each
    assert model_macs(conv1d, torch.randn(3, 2, 10)) == 5 * 4 * 8
    assert count_parameters(model) == (3 * 9 * 8 + 8) + (9 * 8 + 8) + (8 * 4 + 4) + (640 + 10)
