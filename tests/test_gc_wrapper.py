"""Gradient Centralization for any optimizer: ``nasframe_gc.with_gc`` and the ``GC`` factory."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import nasframe_gc
from nasframe_gc import GC, with_gc

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parent.parent
SHAPES = [(4, 3), (4,), (4, 2, 3, 3), (4,), (3, 2, 2)]


def problem(steps: int = 3, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    params = [torch.randn(s, generator=gen, dtype=torch.float64) for s in SHAPES]
    grads = [
        [torch.randn(s, generator=gen, dtype=torch.float64) * 0.1 + 0.05 * (t + 1) for s in SHAPES]
        for t in range(steps)
    ]
    return params, grads


def run(cls, params, grads, **hp):
    ps = [torch.nn.Parameter(p.clone()) for p in params]
    opt = cls(ps, **hp)
    for gs in grads:
        for p, g in zip(ps, gs, strict=True):
            p.grad = g.clone()
        opt.step()
    return [p.detach() for p in ps], opt


def max_diff(a, b) -> float:
    return max((x - y).abs().max().item() for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize(
    "base, mode, gc_cls, hp",
    [
        (torch.optim.SGD, "all", nasframe_gc.SGD_GC, dict(lr=0.1, momentum=0.9)),
        (torch.optim.SGD, "conv", nasframe_gc.SGD_GCC, dict(lr=0.1, momentum=0.9, nesterov=True)),
        (torch.optim.Adam, "all", nasframe_gc.Adam_GC, dict(lr=1e-2)),
        (torch.optim.Adagrad, "conv", nasframe_gc.Adagrad_GCC, dict(lr=1e-1)),
        (
            nasframe_gc.SGDW,
            "all",
            nasframe_gc.SGDW_GC,
            dict(lr=0.1, momentum=0.9, weight_decay=0.1),
        ),
    ],
    ids=["sgd-all", "sgd-conv", "adam-all", "adagrad-conv", "sgdw-all"],
)
def test_wrapper_equals_gc_variant_where_they_coincide(base, mode, gc_cls, hp):
    """With no L2 decay the GC variants centralize the raw gradient, as the wrapper does."""
    params, grads = problem()
    wrapped, _ = run(with_gc(base, mode), params, grads, **hp)
    direct, _ = run(gc_cls, params, grads, **hp)
    assert max_diff(wrapped, direct) < 1e-12
    plain, _ = run(base, params, grads, **hp)
    assert max_diff(wrapped, plain) > 1e-4  # GC did something


def test_wrapper_centralizes_raw_gradient_not_l2_term():
    """Documented difference: with L2 decay SGD_GC centralizes g + wd*p, the wrapper only g."""
    params, grads = problem()
    hp = dict(lr=0.1, momentum=0.9, weight_decay=0.1)
    wrapped, _ = run(with_gc(torch.optim.SGD, "all"), params, grads, **hp)
    direct, _ = run(nasframe_gc.SGD_GC, params, grads, **hp)
    assert max_diff(wrapped, direct) > 1e-4


def test_conv_mode_leaves_linear_untouched():
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 4 * 4, 3)
    )
    ref = torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 4 * 4, 3)
    )
    ref.load_state_dict(net.state_dict())
    x = torch.randn(5, 2, 6, 6)
    for model in (net, ref):
        model(x).square().sum().backward()
    grads = {n: p.grad.clone() for n, p in net.named_parameters()}
    opt = with_gc(torch.optim.SGD, "conv")(net.parameters(), lr=0.1)
    opt.step()
    torch.optim.SGD(ref.parameters(), lr=0.1).step()
    new, old = dict(net.named_parameters()), dict(ref.named_parameters())
    for n in ("2.weight", "2.bias", "0.bias"):
        assert torch.equal(new[n], old[n]), n
    assert not torch.allclose(new["0.weight"], old["0.weight"])
    delta = new["0.weight"] - old["0.weight"]  # = lr * row mean of the conv kernel gradient
    assert torch.allclose(
        delta, 0.1 * grads["0.weight"].mean(dim=(1, 2, 3), keepdim=True).expand_as(delta), atol=1e-6
    )
    # the user's gradients are restored, unchanged
    for n, p in net.named_parameters():
        assert torch.equal(p.grad, grads[n]), n


def test_wrapper_restores_the_original_grad_tensors():
    params, grads = problem(steps=1)
    ps = [torch.nn.Parameter(p.clone()) for p in params]
    opt = with_gc(torch.optim.Adam, "all")(ps, lr=1e-2)
    mine = [g.clone() for g in grads[0]]
    for p, g in zip(ps, mine, strict=True):
        p.grad = g
    opt.step()
    for p, g, g0 in zip(ps, mine, grads[0], strict=True):
        assert p.grad is g and torch.equal(g, g0)


def test_wrapper_restores_grads_when_base_step_raises():
    class Boom(torch.optim.SGD):
        def step(self, closure=None):
            raise RuntimeError("boom")

    p = torch.nn.Parameter(torch.ones(2, 2))
    g = torch.arange(4.0).view(2, 2)
    p.grad = g
    with pytest.raises(RuntimeError, match="boom"):
        with_gc(Boom, "all")([p], lr=0.1).step()
    assert p.grad is g and torch.equal(g, torch.arange(4.0).view(2, 2))


def test_wrapper_closure_and_step_hooks_run_once():
    w = torch.nn.Parameter(torch.ones(3, 2))
    x = torch.arange(6.0).view(2, 3)
    torch.optim.SGD([w], lr=0.01)  # makes torch patch SGD.step with its hook-running layer
    assert getattr(torch.optim.SGD.step, "hooked", False)
    opt = with_gc(torch.optim.SGD, "all")([w], lr=0.01)
    calls = []
    opt.register_step_pre_hook(lambda *a: calls.append("pre"))
    opt.register_step_post_hook(lambda *a: calls.append("post"))

    def closure():
        opt.zero_grad()
        loss = (w @ x).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert loss.item() == pytest.approx(45.0)
    assert calls == ["pre", "post"]
    # every row of the gradient is x.sum(1) = [3, 12]; centralized: [-4.5, 4.5]
    assert torch.allclose(w.detach(), torch.tensor([[1.045, 0.955]]).expand(3, 2))
    assert torch.equal(w.grad, torch.tensor([[3.0, 12.0]]).expand(3, 2))


def test_wrapper_state_dict_is_the_base_optimizers():
    params, grads = problem()
    _, opt = run(with_gc(torch.optim.AdamW, "conv"), params, grads, lr=1e-2)
    sd = opt.state_dict()
    _, plain = run(torch.optim.AdamW, params, grads, lr=1e-2)
    assert sd["state"].keys() == plain.state_dict()["state"].keys()
    fresh = torch.optim.AdamW([torch.nn.Parameter(p.clone()) for p in params], lr=1.0)
    fresh.load_state_dict(sd)  # interchangeable with the unwrapped optimizer
    assert fresh.param_groups[0]["lr"] == 1e-2


def test_wrapper_class_is_cached_and_named():
    a = with_gc(torch.optim.AdamW, "conv")
    assert a is with_gc(torch.optim.AdamW, "conv")
    assert issubclass(a, torch.optim.AdamW) and a.__name__ == "AdamW_GC_conv"
    assert a.gc_mode == "conv"


def test_wrapper_rejects_bad_arguments():
    with pytest.raises(ValueError, match="mode"):
        with_gc(torch.optim.SGD, "rows")
    with pytest.raises(ValueError, match="already"):
        with_gc(nasframe_gc.Adam_GC, "all")
    with pytest.raises(ValueError, match="already"):
        with_gc(with_gc(torch.optim.SGD, "all"), "conv")
    with pytest.raises(TypeError):
        with_gc(torch.nn.Linear, "all")


def test_gc_factory_with_a_class():
    params, grads = problem()
    ps = [torch.nn.Parameter(p.clone()) for p in params]
    opt = GC(ps, base=torch.optim.SGD, mode="all", lr=0.1, momentum=0.9)
    assert isinstance(opt, torch.optim.SGD)
    for gs in grads:
        for p, g in zip(ps, gs, strict=True):
            p.grad = g.clone()
        opt.step()
    direct, _ = run(nasframe_gc.SGD_GC, params, grads, lr=0.1, momentum=0.9)
    assert max_diff([p.detach() for p in ps], direct) < 1e-12


def test_gc_factory_resolves_names_through_the_registry(monkeypatch):
    registry = pytest.importorskip("nasframe.registry")
    asked = []

    def fake_get(kind, name):
        asked.append((kind, name))
        return torch.optim.Adagrad

    monkeypatch.setattr(registry, "get", fake_get)
    opt = GC([torch.nn.Parameter(torch.zeros(2, 2))], base="my_adagrad", mode="conv", lr=0.5)
    assert asked == [("optimizer", "my_adagrad")]
    assert isinstance(opt, torch.optim.Adagrad) and opt.gc_mode == "conv"
    assert opt.param_groups[0]["lr"] == 0.5


def test_gc_factory_with_the_real_registry():
    registry = pytest.importorskip("nasframe.registry")
    if not registry.exists("optimizer", "adamw"):
        pytest.skip("no 'adamw' optimizer registered")
    opt = GC([torch.nn.Parameter(torch.zeros(2, 2))], base="adamw", mode="conv", lr=1e-3)
    assert isinstance(opt, torch.optim.AdamW) and opt.gc_mode == "conv"


def test_package_imports_without_the_core(monkeypatch):
    """``nasframe_gc`` must not import nasframe at import time (only GC() with a name does)."""
    for mod in [m for m in sys.modules if m == "nasframe_gc" or m.startswith("nasframe_gc.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "nasframe", None)  # any `import nasframe` now fails
    import nasframe_gc as fresh

    assert fresh.SGD_GC is not None and fresh.GC is not None
    with pytest.raises(ImportError):
        fresh.GC([torch.nn.Parameter(torch.zeros(2, 2))], base="adamw")


def test_declared_entry_points_exist():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = project["entry-points"]["nasframe.optimizers"]
    ours = {k: v for k, v in declared.items() if v.startswith("nasframe_gc:")}
    assert len(ours) >= 15
    for name, target in ours.items():
        obj = getattr(nasframe_gc, target.split(":")[1])
        if name == "gc":
            assert obj is GC
        else:
            assert issubclass(obj, torch.optim.Optimizer), name
            assert obj.__name__.lower() == name


@pytest.mark.parametrize(
    "option, expected",
    [
        (
            "mode: rows",
            "train.optimizer.mode: optimizer 'gc': unknown mode 'rows' of gradient "
            "centralization; expected one of ['all', 'conv']",
        ),
        (
            "base: gc",
            "train.optimizer.base: optimizer 'gc': unsupported base 'gc': not a "
            "torch.optim.Optimizer class (gc wraps one)",
        ),
        (
            "base: 3",
            "train.optimizer.base: optimizer 'gc': unsupported base 3: not a "
            "torch.optim.Optimizer class (gc wraps one)",
        ),
        (
            "base: adamm",
            "train.optimizer.base: optimizer 'gc': unsupported base 'adamm': unknown optimizer "
            "'adamm'; did you mean 'adam'? (available: adagrad_gc, ",
        ),
        (
            "base: adam_gc",
            "train.optimizer.base: optimizer 'gc': unsupported base 'adam_gc': Adam_GC already "
            "applies gradient centralization; use it directly or wrap the plain optimizer",
        ),
    ],
)
def test_the_gc_optimizer_s_bad_options_are_the_user_s_at_their_key(option, expected):
    """They were reported as "a bug in nasframe" (the plugin's words named no option)."""
    from nasframe import load_config
    from nasframe.errors import UserError
    from nasframe.optim import build_optimizer

    spaces = Path(__file__).resolve().parents[1] / "spaces"
    cfg, _ = load_config(spaces / "mlp.yaml", [f"train.optimizer={{name: gc, lr: 0.1, {option}}}"])
    with pytest.raises(UserError) as e:
        build_optimizer(
            [torch.nn.Parameter(torch.zeros(2, 2))], cfg.train.optimizer, "train.optimizer"
        )
    assert str(e.value).startswith(expected)  # the list of optimizers depends on the plugins
