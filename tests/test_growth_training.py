"""Growth in a training loop: optimizer state, schedulers, schedules, the controller, the ReLU
check, finding pairs, and no hooks or graphs left behind."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nasframe_growth as ng
from nasframe_growth import (
    DeadActivationError,
    GradMax,
    GrowthController,
    GrowthError,
    GrowthPair,
    GrowthSchedule,
    RandomGrowth,
    ReLU0,
    find_growable_pairs,
    growth_plan,
    replace_relu,
    start_widths,
)

torch.set_num_threads(1)


def mlp(*widths, act=ReLU0):
    layers = []
    for a, b in zip(widths[:-1], widths[1:], strict=False):
        layers += [nn.Linear(a, b), act()]
    return nn.Sequential(*layers[:-1])


def data(n=32, d=6, o=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randn(n, o, generator=g)


def test_entry_point_names_are_exported():
    for name in ("GradMax", "GradMaxOpt", "RandomGrowth", "Firefly"):
        cls = getattr(ng, name)
        assert issubclass(cls, ng.GrowthStrategy)
        assert callable(cls().grow)
    assert {c.name for c in ng.STRATEGIES.values()} == set(ng.STRATEGIES)


@pytest.mark.parametrize(
    "make_opt",
    [
        lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9),
        lambda ps: torch.optim.Adam(ps, lr=0.01, amsgrad=True),
        lambda ps: torch.optim.AdamW(ps, lr=0.01, foreach=False),
    ],
    ids=["sgd_momentum", "adam_amsgrad", "adamw"],
)
def test_optimizer_state_grows_with_the_weights(make_opt):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), ReLU0(), nn.Linear(5, 3))
    x, y = data()
    opt = make_opt(m.parameters())
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)

    def loss_fn():
        return F.mse_loss(m(x), y)

    for _ in range(3):
        opt.zero_grad()
        loss_fn().backward()
        opt.step()
        sched.step()
    params = list(m.parameters())
    ids = [id(p) for p in params]
    before = {
        id(p): {k: v.clone() if torch.is_tensor(v) else v for k, v in opt.state[p].items()}
        for p in params
    }
    shapes = {id(p): tuple(p.shape) for p in params}
    pair = find_growable_pairs(m)[0]
    GradMax(seed=0).grow(pair, 2, loss_fn, optimizer=opt, model=m)

    # Same Parameter objects, still the ones the optimizer steps.
    assert [id(p) for p in m.parameters()] == ids
    assert [id(p) for p in opt.param_groups[0]["params"]] == ids
    grown = 0
    for p in params:
        old_shape = shapes[id(p)]
        grown += tuple(p.shape) != old_shape
        corner = tuple(slice(0, s) for s in old_shape)
        for key, old in before[id(p)].items():
            new = opt.state[p][key]
            if key == "step":
                assert torch.equal(torch.as_tensor(new), torch.as_tensor(old))
                continue
            assert new.shape == p.shape, key
            assert torch.equal(new[corner], old), key
            mask = torch.ones_like(new, dtype=torch.bool)
            mask[corner] = False
            assert new[mask].abs().sum() == 0, key
        assert p.grad is None or p.grad.shape == p.shape
    assert grown == 5  # weight and bias of layer 0, BN weight and bias, weight of layer 3
    lr = opt.param_groups[0]["lr"]
    opt.zero_grad()
    loss_fn().backward()
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(lr * 0.5)
    assert pair.layer.weight[5:].abs().sum() > 0  # new units learn


def test_grad_is_padded_and_output_kept_across_many_events():
    torch.manual_seed(1)
    m = mlp(6, 8, 8, 3)
    x, y = data()
    opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)

    def loss_fn():
        return F.mse_loss(m(x), y)

    ctrl = GrowthController(
        m, "gradmax", schedule=GrowthSchedule(every=3, steps=4, start_fraction=0.5), seed=0
    )
    assert ctrl.widths == {"0->2": 4, "2->4": 4}
    opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)
    events = []
    for step in range(1, 16):
        opt.zero_grad()
        loss_fn().backward()
        opt.step()
        out0 = m(x).detach()
        info = ctrl.maybe_grow(step, loss_fn, opt)
        if info is not None:
            events.append(step)
            torch.testing.assert_close(m(x).detach(), out0, atol=1e-6, rtol=0)
            assert set(info["scalars"]) >= {"growth/0->2/width", "growth/0->2/new_grad_norm"}
            assert info["widths"] == ctrl.widths
            for p in m.parameters():
                assert p.grad.shape == p.shape
                assert opt.state[p]["momentum_buffer"].shape == p.shape
    assert events == [3, 6, 9, 12]
    assert ctrl.widths == {"0->2": 8, "2->4": 8}
    state = ctrl.state_dict()
    assert state["events_done"] == 4 and state["widths"] == {"0->2": 8, "2->4": 8}
    assert torch.equal(state["generator"], ctrl.strategy.generator.get_state())


def test_training_continues_while_an_old_graph_is_alive():
    torch.manual_seed(4)
    m = mlp(6, 5, 3)
    x, y = data()
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    loss = F.mse_loss(m(x), y)
    loss.backward()
    opt.step()
    # `loss` (and its graph, holding the parameters' gradient accumulators) is still alive.
    GradMax(seed=0).grow(find_growable_pairs(m)[0], 2, lambda: F.mse_loss(m(x), y), optimizer=opt)
    opt.zero_grad()
    loss = F.mse_loss(m(x), y)
    loss.backward()
    opt.step()
    assert m[0].weight.grad.shape == (7, 6) and m[2].weight.grad.shape == (3, 7)


def test_controller_state_dict_round_trip():
    torch.manual_seed(2)
    m = mlp(6, 8, 3)
    ctrl = GrowthController(m, "random", schedule=GrowthSchedule(every=1, steps=2), seed=0)
    x, y = data()
    ctrl.grow(0, lambda: F.mse_loss(m(x), y))
    sd, state = m.state_dict(), ctrl.state_dict()
    m2 = mlp(6, 8, 3)
    ctrl2 = GrowthController(m2, "random", schedule=GrowthSchedule(every=1, steps=2))
    ctrl2.load_state_dict(state)
    m2.load_state_dict(sd)
    assert ctrl2.events_done == 1 and ctrl2.widths == {"0->2": 6}
    torch.testing.assert_close(m2(x), m(x))


@pytest.mark.parametrize("strategy", ["gradmax", "random"])
def test_new_units_batchnorm_statistics_are_measured_on_the_growth_batch(strategy):
    """Grown BatchNorm entries take the growth batch's statistics (not mean 0, variance 1, which
    left a short run's eval mode at chance: the running variance needs ~100 steps to come down
    to a new unit's); the old units keep theirs."""
    torch.manual_seed(0)
    m = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), ReLU0(), nn.Conv2d(8, 4, 3, padding=1)
    )
    ctrl = GrowthController(m, strategy, schedule=GrowthSchedule(every=1, steps=1), seed=0)
    x = torch.randn(16, 3, 6, 6) * 2 + 1
    for _ in range(3):  # old units' running statistics move away from (0, 1)
        m(x + torch.randn_like(x))
    bn = m[1]
    old_mean, old_var, old_count = (t.clone() for t in bn.buffers())
    assert bn.num_features == 4
    ctrl.grow(0, lambda: m(x).square().mean())
    assert bn.num_features == 8
    torch.testing.assert_close(bn.running_mean[:4], old_mean)
    torch.testing.assert_close(bn.running_var[:4], old_var)
    assert int(bn.num_batches_tracked) == int(old_count)
    with torch.no_grad():
        h = m[0](x)
    torch.testing.assert_close(bn.running_mean[4:], h.mean((0, 2, 3))[4:])
    torch.testing.assert_close(bn.running_var[4:], h.var((0, 2, 3))[4:])
    # zero incoming weights (every built-in strategy): the new units are exactly 0 so far
    assert not bn.running_var[4:].any() and not bn.running_mean[4:].any()


def test_growth_plan_and_schedule():
    assert growth_plan(10, 0.5, 5) == (5, [1, 1, 1, 1, 1])
    assert growth_plan(10, 0.3, 4) == (3, [2, 2, 2, 1])
    assert growth_plan(7, 0.5, 3) == (4, [1, 1, 1])
    assert growth_plan(4, 0.1, 2) == (1, [2, 1])
    assert growth_plan(5, 1.0, 3) == (5, [0, 0, 0])
    assert start_widths({"a": 10, "b": 3}, 0.5) == {"a": 5, "b": 2}
    assert start_widths([64, 128], 0.25) == [16, 32]
    s = GrowthSchedule(every=10, steps=3)
    assert [s.event_at(t) for t in (0, 5, 10, 15, 20, 30, 40)] == [None, None, 0, None, 1, 2, None]
    assert s.growth_steps() == [10, 20, 30] and s.last_step == 30
    s = GrowthSchedule(every=10, steps=2, first=1)
    assert s.growth_steps() == [1, 11]
    with pytest.raises(ValueError):
        GrowthSchedule(every=0, steps=2)
    with pytest.raises(ValueError):
        growth_plan(10, 0.0, 2)


def test_relu_is_detected_and_relu0_fixes_it():
    x, y = data()
    m = mlp(6, 5, 3, act=nn.ReLU)

    def loss_fn():
        return F.mse_loss(m(x), y)

    pair = find_growable_pairs(m)[0]
    for strategy in (GradMax(), RandomGrowth()):
        with pytest.raises(DeadActivationError, match="ReLU0"):
            strategy.grow(pair, 1, loss_fn)
    assert pair.width == 5
    assert not m[0]._forward_hooks and not m[2]._forward_hooks

    class FunctionalRelu(nn.Module):
        def forward(self, t):
            return F.relu(t)

    m[1] = FunctionalRelu()
    with pytest.raises(DeadActivationError):
        GradMax().grow(find_growable_pairs(m)[0], 1, loss_fn)

    class ShapeFussyRelu(nn.Module):  # fails on the static check's inputs: caught while probing
        def forward(self, t):
            assert t.shape[0] == 32
            return F.relu(t)

    m[1] = ShapeFussyRelu()
    with pytest.raises(DeadActivationError):
        GradMax().grow(find_growable_pairs(m)[0], 1, loss_fn)
    assert m[0].out_features == 5
    m[1] = nn.Sigmoid()  # f(0) != 0: growth would change the output
    with pytest.raises(GrowthError, match="non-zero"):
        RandomGrowth().grow(find_growable_pairs(m)[0], 1)
    m[1] = nn.ReLU()
    RandomGrowth(check_activations=False).grow(pair, 1)  # explicitly allowed
    assert pair.width == 6
    assert replace_relu(m) == 1 and isinstance(m[1], ReLU0)
    info = GradMax(seed=0).grow(find_growable_pairs(m)[0], 1, loss_fn)
    assert min(info["new_unit_grad_norms"]) > 0

    t = torch.tensor([-1.0, 0.0, 2.0], requires_grad=True)
    out = ReLU0()(t)
    assert torch.equal(out, torch.relu(t))
    out.sum().backward()
    assert t.grad.tolist() == [0.0, 1.0, 1.0]
    nested = nn.Sequential(nn.Sequential(nn.Linear(2, 2), nn.ReLU(inplace=True)), nn.ReLU())
    assert replace_relu(nested) == 2 and nested[0][1].inplace


def test_no_hooks_graphs_or_tensors_left_behind():
    torch.manual_seed(3)
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), ReLU0(), nn.Conv2d(4, 5, 3))
    refs = []

    def loss_fn():
        x = torch.randn(2, 3, 8, 8)
        loss = m(x).pow(2).mean()
        refs.extend([weakref.ref(x), weakref.ref(loss)])
        return loss

    pair = find_growable_pairs(m)[0]
    for strategy in (GradMax(seed=0), ng.GradMaxOpt(seed=0, steps=2), ng.Firefly(seed=0, steps=2)):
        strategy.grow(pair, 1, loss_fn, model=m)
    gc.collect()
    assert refs and all(r() is None for r in refs)
    for mod in m.modules():
        assert not mod._forward_hooks and not mod._forward_pre_hooks and not mod._backward_hooks
    assert all(p.grad is None for p in m.parameters())  # growth never writes .grad

    def failing():
        m(torch.randn(2, 3, 8, 8))
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        GradMax().grow(pair, 1, failing)
    assert not pair.layer._forward_hooks and not pair.next_layer._forward_hooks
    assert pair.width == 7


def test_find_growable_pairs():
    seq = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),  # 0
        nn.BatchNorm2d(8),
        ReLU0(),
        nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.BatchNorm2d(8), ReLU0()),  # 3
        nn.Conv2d(8, 16, 1),  # 4
        ReLU0(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 16, 3, groups=2),  # 7: grouped, not growable
        nn.GroupNorm(2, 16),  # 8
        nn.Conv2d(16, 16, 1),  # 9
        ReLU0(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(0.1),
        nn.Linear(16, 10),  # 14
        ReLU0(),
        nn.Linear(10, 4),  # 16
    )
    pairs = find_growable_pairs(seq)
    assert [p.name for p in pairs] == ["0->4", "9->14", "14->16"]
    assert [len(p.between) for p in pairs] == [5, 4, 1]
    assert pairs[0].out_block_shape == (16, 1, 1) and pairs[1].out_block_shape == (10, 1)
    x = torch.randn(2, 3, 8, 8)
    seq.eval()
    out0 = seq(x)
    for p in pairs:
        RandomGrowth(seed=0).grow(p, 3)
    torch.testing.assert_close(seq(x), out0, atol=1e-6, rtol=0)
    assert seq[3][0].groups == 11 and seq[14].in_features == 19

    # conv -> flatten -> linear with several positions per channel
    seq = nn.Sequential(nn.Conv2d(3, 4, 3), ReLU0(), nn.Flatten(), nn.Linear(4 * 9, 2))
    (p,) = find_growable_pairs(seq)
    assert p.span == 9 and p.out_block_shape == (2, 9)
    # conv -> linear without flatten, or an unsupported module in between: no pair
    assert (
        find_growable_pairs(nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2))) == []
    )
    with pytest.raises(GrowthError, match="Flatten"):
        GrowthPair(nn.Conv2d(3, 4, 3), nn.Linear(4, 2), (nn.AdaptiveAvgPool2d(1),)).validate()
    with pytest.raises(GrowthError, match="LayerNorm"):
        GrowthPair(nn.Linear(3, 4), nn.Linear(4, 2), (nn.LayerNorm(4),)).validate()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_growth_on_cuda():
    torch.manual_seed(0)
    m = nn.Sequential(
        nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4), ReLU0(), nn.Conv2d(4, 5, 3)
    ).cuda()
    x = torch.randn(4, 3, 9, 9, device="cuda")
    opt = torch.optim.Adam(m.parameters())
    m(x).sum().backward()
    opt.step()
    out0 = m(x).detach()
    pair = find_growable_pairs(m)[0]
    for strategy in (GradMax(seed=0), RandomGrowth(seed=0), ng.Firefly(seed=0, steps=2)):
        strategy.grow(pair, 2, lambda: m(x).pow(2).mean(), optimizer=opt, model=m)
    torch.testing.assert_close(m(x), out0, atol=1e-5, rtol=0)
    assert all(p.is_cuda for p in m.parameters())
    assert all(v.is_cuda for s in opt.state.values() for k, v in s.items() if k != "step")


def _live_tensor_bytes() -> int:
    """Bytes of every distinct storage that some Python-visible tensor still holds."""
    gc.collect()
    storages = {}
    for obj in gc.get_objects():
        if issubclass(type(obj), torch.Tensor) and obj.device.type != "meta":
            st = obj.untyped_storage()
            try:
                ptr = st.data_ptr()
            except RuntimeError:  # a fake tensor some tracing left behind (torch.export): no memory
                continue
            storages[(obj.device, ptr)] = st.nbytes()
    return sum(storages.values())


def _grow_and_measure(device: str, strategy, events: int = 4):
    """Per growth event (then one Adam step): the increase in live tensor bytes and in CUDA
    allocated bytes, against what the new weights, their gradients and Adam's two moments need."""
    torch.manual_seed(0)
    m = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), ReLU0(), nn.Conv2d(8, 5, 3)
    ).to(device)
    x = torch.randn(8, 3, 12, 12, device=device)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)

    def train_step():
        opt.zero_grad(set_to_none=False)
        m(x).pow(2).mean().backward()
        opt.step()

    def numel():  # (parameters, buffers): BatchNorm's running statistics grow too
        return sum(p.numel() for p in m.parameters()), sum(b.numel() for b in m.buffers())

    def cuda_bytes():
        return torch.cuda.memory_allocated(device) if device == "cuda" else 0

    pair = find_growable_pairs(m)[0]
    train_step()
    rows = []
    for _ in range(events):
        before = (_live_tensor_bytes(), cuda_bytes(), numel())
        strategy.grow(pair, 2, lambda: m(x).pow(2).mean(), optimizer=opt, model=m)
        train_step()
        after = (_live_tensor_bytes(), cuda_bytes(), numel())
        # weights, gradients, exp_avg, exp_avg_sq: four float32 copies of every new weight
        expected = 4 * 4 * (after[2][0] - before[2][0]) + 4 * (after[2][1] - before[2][1])
        rows.append((after[0] - before[0], after[1] - before[1], expected))
    return rows


def _growth_strategies():
    return [GradMax(seed=0), RandomGrowth(seed=0), ng.Firefly(seed=0, steps=2)]


@pytest.mark.parametrize("strategy", _growth_strategies(), ids=lambda s: type(s).__name__)
def test_growth_events_do_not_leak_memory(strategy):
    for live, _, expected in _grow_and_measure("cpu", strategy):
        assert expected > 0
        assert live == expected  # nothing but the new weights and their optimizer state


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("strategy", _growth_strategies(), ids=lambda s: type(s).__name__)
def test_growth_events_do_not_leak_cuda_memory(strategy):
    for live, allocated, expected in _grow_and_measure("cuda", strategy):
        assert live == expected
        # the caching allocator rounds every block to 512 bytes: 5 grown parameters (4 copies
        # each) and 2 grown running statistics may each be off by one block
        assert abs(allocated - expected) <= 22 * 512
