"""Growth invariants on random networks of every supported pair type.

Function preservation, untouched old weights and gradients, zero gradient of the new outgoing
weights, and GradMax's exactness: the incoming-weight gradient of new unit j has norm c·σ_j, and
the matrix M matches a brute-force autograd construction entry by entry.
"""

from __future__ import annotations

import copy
import zlib

import pytest
import torch
from torch import nn

from nasframe_growth import (
    Firefly,
    GradMax,
    GradMaxOpt,
    GrowthContext,
    RandomGrowth,
    ReLU0,
    find_growable_pairs,
    grow_pair_,
    resize_pair_,
)

torch.set_num_threads(1)


def build(kind: str, train: bool = True, seed: int = 0):
    """(model, input) for one pair type; the pair under test is find_growable_pairs(model)[0]."""
    with torch.random.fork_rng():
        torch.manual_seed(zlib.crc32(kind.encode()) + seed)
        return _build(kind, train, torch.Generator().manual_seed(seed))


def _build(kind, train, g):
    if kind == "linear":
        m = nn.Sequential(nn.Linear(6, 5), ReLU0(), nn.Linear(5, 3))
        x = torch.randn(16, 6, generator=g)
    elif kind == "linear_bn":
        m = nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), ReLU0(), nn.Linear(5, 3))
        x = torch.randn(16, 6, generator=g)
    elif kind == "conv1d":
        m = nn.Sequential(
            nn.Conv1d(3, 4, 3, padding=2, dilation=2),
            ReLU0(),
            nn.MaxPool1d(2),
            nn.Conv1d(4, 3, 3, stride=2),
            nn.Flatten(),
        )
        x = torch.randn(4, 3, 11, generator=g)
    elif kind == "conv2d_s2":
        m = nn.Sequential(
            nn.Conv2d(3, 4, 3, stride=2, padding=1),
            nn.BatchNorm2d(4),
            ReLU0(),
            nn.Conv2d(4, 3, 3, stride=2),
            nn.Flatten(),
        )
        x = torch.randn(4, 3, 9, 9, generator=g)
    elif kind == "conv2d_pad":
        m = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1, bias=False),
            nn.Tanh(),
            nn.Conv2d(4, 3, (2, 3), stride=(1, 2), padding=(1, 2)),
            nn.Flatten(),
        )
        x = torch.randn(3, 3, 7, 6, generator=g)
    elif kind == "conv2d_reflect":
        m = nn.Sequential(
            nn.Conv2d(3, 4, 3, stride=2, padding=1, padding_mode="reflect"),
            ReLU0(),
            nn.Conv2d(4, 3, 3, padding=1, padding_mode="circular"),
            nn.Flatten(),
        )
        x = torch.randn(3, 3, 8, 8, generator=g)
    elif kind == "depthwise":
        m = nn.Sequential(
            nn.Conv2d(3, 4, 1),
            nn.BatchNorm2d(4),
            ReLU0(),
            nn.Conv2d(4, 4, 3, stride=2, padding=1, groups=4),
            nn.BatchNorm2d(4),
            ReLU0(),
            nn.Conv2d(4, 3, 1),
            nn.Flatten(),
        )
        x = torch.randn(4, 3, 7, 7, generator=g)
    elif kind == "gap_linear":
        m = nn.Sequential(
            nn.Conv2d(3, 4, 3),
            nn.BatchNorm2d(4),
            ReLU0(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(4, 3),
        )
        x = torch.randn(4, 3, 6, 6, generator=g)
    elif kind == "flatten_linear":
        m = nn.Sequential(
            nn.Conv2d(3, 4, 3), ReLU0(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(16, 3)
        )
        x = torch.randn(4, 3, 6, 6, generator=g)
    else:
        raise KeyError(kind)
    with torch.no_grad():  # non-trivial BatchNorm statistics and affine parameters
        for mod in m.modules():
            if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
                mod.running_mean.uniform_(-0.5, 0.5, generator=g)
                mod.running_var.uniform_(0.5, 2.0, generator=g)
                mod.weight.uniform_(0.5, 1.5, generator=g)
                mod.bias.uniform_(-0.5, 0.5, generator=g)
    m.train(train)
    return m, x


KINDS = [
    "linear",
    "linear_bn",
    "conv1d",
    "conv2d_s2",
    "conv2d_pad",
    "conv2d_reflect",
    "depthwise",
    "gap_linear",
    "flatten_linear",
]
STRATEGIES = {
    "gradmax": lambda: GradMax(seed=0),
    "gradmax_opt": lambda: GradMaxOpt(seed=0, steps=3),
    "random": lambda: RandomGrowth(seed=0),
    "firefly": lambda: Firefly(seed=0, steps=3),
}


def make_loss(m, x):
    target = torch.randn(m(x).shape, generator=torch.Generator().manual_seed(1), dtype=x.dtype)

    def loss_fn():
        return (m(x) - target).pow(2).mean()

    return loss_fn


def param_grads(m, loss_fn):
    m.zero_grad(set_to_none=True)
    loss_fn().backward()
    return {n: p.grad.detach().clone() for n, p in m.named_parameters()}


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
@pytest.mark.parametrize("kind", KINDS)
def test_growth_preserves_function_and_old_gradients(kind, strategy):
    m, x = build(kind, train=kind != "conv2d_s2")
    loss_fn = make_loss(m, x)
    pair = find_growable_pairs(m)[0]
    old_width = pair.width
    out0 = m(x).detach()
    params0 = {n: p.detach().clone() for n, p in m.named_parameters()}
    grads0 = param_grads(m, loss_fn)
    buffers0 = {n: b.detach().clone() for n, b in m.named_buffers()}

    info = STRATEGIES[strategy]().grow(pair, 2, loss_fn, model=m)

    assert pair.width == old_width + 2 == info["width_after"]
    assert len(info["new_unit_grad_norms"]) == 2
    # Identity units in between: BatchNorm 1/0/0/1, depthwise centre tap 1.
    for mod in pair.between:
        if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = 2 * (pair.span if isinstance(pair.next_layer, nn.Linear) else 1)
            assert mod.num_features == old_width + 2
            for t, v in (
                (mod.weight, 1),
                (mod.bias, 0),
                (mod.running_mean, 0),
                (mod.running_var, 1),
            ):
                assert torch.equal(t[-n:].detach(), torch.full((n,), float(v)))
        elif isinstance(mod, nn.Conv2d):
            assert mod.groups == mod.in_channels == mod.out_channels == old_width + 2
            want = torch.zeros(2, 1, 3, 3)
            want[:, 0, 1, 1] = 1
            assert torch.equal(mod.weight[old_width:].detach(), want)
            assert torch.equal(mod.bias[old_width:].detach(), torch.zeros(2))
    # The loss_fn calls inside growth did not move the BatchNorm statistics.
    for n, b in m.named_buffers():
        assert torch.equal(b[tuple(slice(0, s) for s in buffers0[n].shape)], buffers0[n]), n
    out1 = m(x).detach()
    torch.testing.assert_close(out1, out0, atol=1e-6, rtol=0)
    grads1 = param_grads(m, loss_fn)
    for n, p in m.named_parameters():
        corner = tuple(slice(0, s) for s in params0[n].shape)
        assert torch.equal(p.detach()[corner], params0[n]), n
        torch.testing.assert_close(grads1[n][corner], grads0[n], atol=1e-6, rtol=1e-5)
    # New incoming weights are 0; new outgoing weights have exactly zero gradient.
    assert pair.layer.weight[old_width:].abs().max() == 0
    nxt = pair.next_layer
    span = pair.span
    new_out_grad = nxt.weight.grad[:, old_width * span :]
    assert new_out_grad.numel() > 0 and new_out_grad.abs().max() == 0
    # Every new unit's outgoing weights have norm scale × mean existing norm.
    blocks = pair.outgoing_blocks().reshape(pair.width, -1).norm(dim=1)
    torch.testing.assert_close(
        blocks[old_width:], torch.full((2,), blocks[:old_width].mean().item()), rtol=1e-5, atol=0
    )
    # Reported gradient norms are the ones autograd gives after growth.
    g_in = pair.layer.weight.grad[old_width:].reshape(2, -1).norm(dim=1)
    torch.testing.assert_close(
        g_in, torch.tensor(info["new_unit_grad_norms"]), rtol=1e-4, atol=1e-7
    )


def brute_force_matrix(pair, loss_fn):
    """Row i: autograd gradient of one new unit's incoming weights when its outgoing weights are
    the i-th basis vector, in the actually grown network."""
    old = pair.width
    n_out = torch.Size(pair.out_block_shape).numel()
    w = pair.layer.weight
    rows = []
    for i in range(n_out):
        e = w.new_zeros(n_out)
        e[i] = 1
        grow_pair_(
            pair, w.new_zeros((1, *pair.in_block_shape)), e.reshape(1, *pair.out_block_shape)
        )
        (g,) = torch.autograd.grad(loss_fn(), pair.layer.weight)
        rows.append(g[old:].reshape(-1))
        resize_pair_(pair, old)
    return torch.stack(rows)


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("kind", KINDS)
def test_gradmax_matrix_is_exact(kind, train):
    m, x = build(kind, train)
    m, x = m.double(), x.double()
    loss_fn = make_loss(m, x)
    pair = find_growable_pairs(m)[0]
    snapshot = copy.deepcopy(m.state_dict())
    ctx = GrowthContext(pair, 1, loss_fn)
    mat = ctx.matrix()
    m.load_state_dict(snapshot)
    brute = brute_force_matrix(pair, loss_fn)
    assert mat.shape == brute.shape
    assert brute.abs().max() > 0
    torch.testing.assert_close(mat, brute, rtol=1e-9, atol=1e-12 * brute.abs().max().item())


@pytest.mark.parametrize("kind", KINDS)
def test_gradmax_gradient_norm_is_c_sigma_and_beats_random(kind):
    m, x = build(kind, train=kind not in ("conv2d_s2", "gap_linear"))
    m, x = m.double(), x.double()
    m_rand = copy.deepcopy(m)
    loss_fn = make_loss(m, x)
    pair = find_growable_pairs(m)[0]
    old = pair.width
    k = 2
    info = GradMax(seed=0).grow(pair, k, loss_fn, model=m)
    c, sigma = info["target_norm"], torch.tensor(info["singular_values"], dtype=torch.float64)
    assert sigma[0] >= sigma[1] > 0
    # The gradient autograd gives the new incoming weights after growth: norm c·σ_j exactly.
    m.zero_grad(set_to_none=True)
    loss_fn().backward()
    g = pair.layer.weight.grad[old:].reshape(k, -1).norm(dim=1)
    torch.testing.assert_close(g, c * sigma, rtol=1e-5, atol=0)
    # ...the largest possible for that norm: no random unit gets more than c·σ_1, and on average
    # (over draws) random units get less than GradMax's units.
    loss_r = make_loss(m_rand, x.clone())
    pair_r = find_growable_pairs(m_rand)[0]
    rand_sq = []
    for seed in range(10):
        info_r = RandomGrowth(seed=seed).grow(pair_r, k, loss_r, model=m_rand)
        r = torch.tensor(info_r["new_unit_grad_norms"], dtype=torch.float64)
        assert r.max() <= c * sigma[0] * (1 + 1e-9)
        rand_sq.append(r.pow(2).mean())
        resize_pair_(pair_r, old)
    assert torch.stack(rand_sq).mean() < g.pow(2).mean()


def test_gradmax_opt_and_firefly_move_towards_large_gradients():
    m, x = build("conv2d_pad")
    m, x = m.double(), x.double()
    loss_fn = make_loss(m, x)
    pair = find_growable_pairs(m)[0]
    old = pair.width
    ref = GradMax(seed=0).grow(pair, 1, loss_fn, model=m)
    top = ref["target_norm"] * ref["singular_values"][0]
    resize_pair_(pair, old)
    rand = []
    for seed in range(4):
        rand += RandomGrowth(seed=seed).grow(pair, 2, loss_fn, model=m)["new_unit_grad_norms"]
        resize_pair_(pair, old)
    opt = GradMaxOpt(seed=0, steps=30).grow(pair, 2, loss_fn, model=m)["new_unit_grad_norms"]
    resize_pair_(pair, old)
    assert min(opt) > 0.85 * top and max(opt) <= top * (1 + 1e-9)
    assert min(opt) > max(rand)
    ff = Firefly(seed=0, steps=30).grow(pair, 2, loss_fn, model=m)["new_unit_grad_norms"]
    assert sum(ff) / 2 > sum(rand) / len(rand)


def test_gradmax_more_units_than_rank():
    m = nn.Sequential(nn.Linear(4, 3), ReLU0(), nn.Linear(3, 2)).double()
    x = torch.randn(8, 4, dtype=torch.float64)
    loss_fn = make_loss(m, x)
    pair = find_growable_pairs(m)[0]
    out0 = m(x)
    info = GradMax(seed=0).grow(pair, 5, loss_fn, model=m)  # M is 2 x 4: only 2 directions
    assert pair.width == 8 and len(info["singular_values"]) == 5
    torch.testing.assert_close(m(x), out0, atol=1e-12, rtol=0)


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_a_depthwise_conv_shrunk_to_one_channel_grows_as_depthwise(strategy):
    """Shrunk to one channel, a depthwise conv has groups == 1 like a full conv: growth refused
    the network as "cannot grow through Conv2d(1, 1, ...)" (a sep_conv after a 4-wide layer
    with start_fraction 0.25)."""
    m, x = build("depthwise")
    pair = find_growable_pairs(m)[0]
    resize_pair_(pair, 1)
    depthwise = m[3]
    assert depthwise.groups == depthwise.in_channels == 1
    pair.validate()
    assert [p.layer for p in find_growable_pairs(m)] == [m[0]]  # not a pair layer of its own
    out0 = m(x).detach()
    STRATEGIES[strategy]().grow(pair, 2, make_loss(m, x), model=m)
    assert depthwise.groups == depthwise.in_channels == depthwise.out_channels == 3
    torch.testing.assert_close(m(x).detach(), out0, atol=1e-6, rtol=0)
