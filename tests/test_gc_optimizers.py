"""Gradient Centralization optimizers (plugin ``nasframe_gc``): reference vectors and semantics.

``tests/data/gc_vectors.json`` holds parameters and optimizer state after 5 steps of the reference
implementation (Yonghongwei/Gradient-Centralization) on a tiny model, in float64. Variants the file
does not cover are checked against ``spec_run`` below, a direct transcription of the formulas of
DESIGN.md §7 that is itself validated on the file's cases.
"""

from __future__ import annotations

import copy
import inspect
import json
import math
from pathlib import Path

import pytest
import torch

import nasframe_gc

torch.set_num_threads(1)

DATA = Path(__file__).resolve().parent / "data" / "gc_vectors.json"
VECTORS = json.loads(DATA.read_text())
NAMES = VECTORS["layout"]["param_order"]
CASES = VECTORS["cases"]
F64 = torch.float64

SGD_NAMES = ["SGD_GC", "SGD_GCC", "SGDW", "SGDW_GC", "SGDW_GCC"]
ADAM_NAMES = [
    "Adam_GC",
    "Adam_GCC",
    "Adam_GC2",
    "Adam_GCC2",
    "AdamW_GC",
    "AdamW_GCC",
    "AdamW_GC2",
    "AdamW_GCC2",
]
ADAGRAD_NAMES = ["Adagrad_GC", "Adagrad_GCC"]
ALL_NAMES = SGD_NAMES + ADAM_NAMES + ADAGRAD_NAMES

# Hyper-parameter sets exercising every option (momentum, dampening, Nesterov, amsgrad, lr_decay).
HP = {
    "sgd": [
        dict(lr=0.1, momentum=0.9, weight_decay=1e-2),
        dict(lr=0.05, momentum=0.8, dampening=0.1, weight_decay=1e-3),
        dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-2),
        dict(lr=0.1),
    ],
    "adam": [
        dict(lr=1e-2, weight_decay=1e-2),
        dict(lr=2e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=5e-2, amsgrad=True),
    ],
    "adagrad": [
        dict(lr=0.1, weight_decay=1e-2),
        dict(lr=0.1, lr_decay=0.1, weight_decay=1e-2, initial_accumulator_value=0.1, eps=1e-8),
    ],
}


def family(name: str) -> str:
    return "sgd" if name.startswith("SGD") else "adagrad" if name.startswith("Adagrad") else "adam"


def variant_cases() -> list[tuple[str, dict]]:
    return [(n, hp) for n in ALL_NAMES for hp in HP[family(n)]]


def case_id(c: tuple[str, dict]) -> str:
    return c[0] + "-" + ",".join(f"{k}={v}" for k, v in c[1].items())


# ---------------------------------------------------------------------------------------------
# the independent specification


def spec_gc(x: torch.Tensor, min_dim: int | None) -> torch.Tensor:
    if min_dim is None or x.dim() < min_dim:
        return x
    return x - x.mean(dim=tuple(range(1, x.dim())), keepdim=True)


def spec_rank(name: str) -> int | None:
    if name == "SGDW":
        return None
    return 4 if "GCC" in name else 2


def spec_run(name: str, params: list[torch.Tensor], grads: list[list[torch.Tensor]], hp: dict):
    """Parameters after each step, computed literally from DESIGN.md §7 (one tensor at a time)."""
    fam, k = family(name), spec_rank(name)
    lr, wd = hp["lr"], hp.get("weight_decay", 0.0)
    ps = [p.clone() for p in params]
    state = [dict() for _ in ps]
    out = []
    for t, gs in enumerate(grads, start=1):
        for i, (p, g) in enumerate(zip(ps, gs, strict=True)):
            s = state[i]
            if fam == "sgd":
                mom, damp = hp.get("momentum", 0.0), hp.get("dampening", 0.0)
                decoupled = name.startswith("SGDW")
                d = g if decoupled else g + wd * p
                d = spec_gc(d, k)
                if mom:
                    s["buf"] = d.clone() if "buf" not in s else mom * s["buf"] + (1 - damp) * d
                    d = d + mom * s["buf"] if hp.get("nesterov") else s["buf"]
                ps[i] = p - lr * d - (lr * wd * p if decoupled else 0)
            elif fam == "adam":
                b1, b2 = hp.get("betas", (0.9, 0.999))
                eps = hp.get("eps", 1e-8)
                adamw, on_update = name.startswith("AdamW"), name.endswith("2")
                if not adamw:
                    g = g + wd * p
                if not on_update:
                    g = spec_gc(g, k)
                s["m"] = b1 * s.get("m", 0) + (1 - b1) * g
                s["v"] = b2 * s.get("v", 0) + (1 - b2) * g * g
                v = s["v"]
                if hp.get("amsgrad"):
                    s["vmax"] = torch.maximum(s.get("vmax", torch.zeros_like(v)), v)
                    v = s["vmax"]
                bc1, bc2 = 1 - b1**t, 1 - b2**t
                if adamw:
                    u = wd * p + s["m"] / (v.sqrt() + eps)
                    step = lr * math.sqrt(bc2) / bc1
                else:
                    u = s["m"] / (v.sqrt() / math.sqrt(bc2) + eps)
                    step = lr / bc1
                if on_update:
                    u = spec_gc(u, k)
                ps[i] = p - step * u
            else:
                g = spec_gc(g + wd * p, k)
                s["sum"] = s.get("sum", hp.get("initial_accumulator_value", 0.0)) + g * g
                clr = lr / (1 + (t - 1) * hp.get("lr_decay", 0.0))
                ps[i] = p - clr * g / (s["sum"].sqrt() + hp.get("eps", 1e-10))
        out.append([p.clone() for p in ps])
    return out


# ---------------------------------------------------------------------------------------------
# helpers

SHAPES = [(3, 4), (3,), (3, 2, 3, 3), (3,), (2, 3, 2), (5,)]


def random_problem(steps: int = 4, dtype=F64, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    params = [torch.randn(s, generator=gen, dtype=F64).to(dtype) for s in SHAPES]
    # per-row offsets make the gradient means large, so GC changes the result visibly
    grads = [
        [
            (torch.randn(s, generator=gen, dtype=F64) * 0.1 + 0.05 * (t + 1) * (1 if t % 2 else -1))
            .to(dtype)
            .contiguous()
            for s in SHAPES
        ]
        for t in range(steps)
    ]
    return params, grads


def run(cls, params, grads, hp, **kw):
    """Run ``cls`` over the grads; returns (parameter tensors, optimizer, per-step snapshots)."""
    ps = [torch.nn.Parameter(p.clone()) for p in params]
    opt = cls(ps, **hp, **kw)
    snaps = []
    for gs in grads:
        for p, g in zip(ps, gs, strict=True):
            set_grad(p, g.clone())
        opt.step()
        snaps.append([p.detach().clone() for p in ps])
    return ps, opt, snaps


def set_grad(p: torch.Tensor, g: torch.Tensor) -> None:
    if g.dtype != p.dtype:
        p.grad_dtype = None  # torch >= 2.10: allow a gradient dtype different from the param's
    p.grad = g


def max_diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    diffs = [(x.double() - y.double()).abs().max().item() for x, y in zip(a, b, strict=True)]
    return max(diffs, default=0.0)


def vector_optimizer(case: dict):
    name = case["id"].split("/")[0]
    if name.startswith("torch.optim."):
        return getattr(torch.optim, name.split(".")[-1])
    return getattr(nasframe_gc, name)


def vector_params() -> list[torch.Tensor]:
    return [torch.tensor(VECTORS["initial_params"][n], dtype=F64) for n in NAMES]


def vector_grads() -> list[list[torch.Tensor]]:
    return [[torch.tensor(step[n], dtype=F64) for n in NAMES] for step in VECTORS["grads"]]


# ---------------------------------------------------------------------------------------------
# the reference vectors


def test_vector_file_matches_its_formulas():
    shapes = VECTORS["layout"]["shapes"]
    for k, n in enumerate(NAMES):
        numel = math.prod(shapes[n])
        i = torch.arange(numel, dtype=F64)
        p0 = 0.5 * torch.sin(0.37 * (i + 1) + 1.1 * (k + 1))
        assert max_diff([p0], [vector_params()[k].flatten()]) < 1e-15
        rows = i // (numel // shapes[n][0])
        for t in range(1, 6):
            sign = 1.0 if t % 2 else -0.5
            g = 0.1 * torch.cos(0.91 * (i + 1) + 1.3 * t + 0.7 * (k + 1)) + 0.02 * (rows + 1) * sign
            assert max_diff([g], [vector_grads()[t - 1][k].flatten()]) < 1e-15


@pytest.mark.parametrize("foreach", [False, True], ids=["single", "foreach"])
@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_reference_vectors(case, foreach):
    cls = vector_optimizer(case)
    ps = [torch.nn.Parameter(p) for p in vector_params()]
    opt = cls(ps, **case["hyperparams"], foreach=foreach)
    for t, (gs, expected) in enumerate(zip(vector_grads(), case["steps"], strict=True)):
        for p, g in zip(ps, gs, strict=True):
            p.grad = g
        opt.step()
        for n, p in zip(NAMES, ps, strict=True):
            want = torch.tensor(expected["params"][n], dtype=F64)
            assert (p.detach() - want).abs().max().item() < 1e-12, (case["id"], t + 1, n)
            for key, value in expected["state"][n].items():
                got = torch.as_tensor(opt.state[p][key], dtype=F64)
                err = (got - torch.tensor(value, dtype=F64)).abs().max().item()
                assert err < 1e-12, (case["id"], t + 1, n, key)


def test_spec_reproduces_reference_vectors():
    """Validates spec_run (used for the variants the vector file does not cover)."""
    done = 0
    for case in CASES:
        name = case["id"].split("/")[0]
        if name not in ALL_NAMES:
            continue
        got = spec_run(name, vector_params(), vector_grads(), case["hyperparams"])
        for t, expected in enumerate(case["steps"]):
            want = [torch.tensor(expected["params"][n], dtype=F64) for n in NAMES]
            assert max_diff(got[t], want) < 1e-12, (case["id"], t + 1)
        done += 1
    assert done == 8


@pytest.mark.parametrize("case", variant_cases(), ids=case_id)
def test_every_variant_matches_spec(case):
    name, hp = case
    params, grads = random_problem()
    want = spec_run(name, params, grads, hp)
    for foreach in (False, True):
        _, _, snaps = run(getattr(nasframe_gc, name), params, grads, hp, foreach=foreach)
        for t in range(len(grads)):
            assert max_diff(snaps[t], want[t]) < 1e-12, (name, foreach, t + 1)


def test_gc_changes_results_where_it_should():
    """GC vs no GC differ only on centralized tensors; _GC and _GCC differ on 2-D/3-D tensors."""
    params, grads = random_problem(steps=2)
    hp = dict(lr=0.1, momentum=0.9)
    _, _, gc = run(nasframe_gc.SGD_GC, params, grads, hp)
    _, _, gcc = run(nasframe_gc.SGD_GCC, params, grads, hp)
    _, _, plain = run(torch.optim.SGD, params, grads, hp)
    gc, gcc, plain = gc[-1], gcc[-1], plain[-1]
    for i, s in enumerate(SHAPES):
        assert torch.equal(gc[i], plain[i]) == (len(s) == 1), s
        assert torch.equal(gcc[i], plain[i]) == (len(s) < 4), s
        assert torch.equal(gc[i], gcc[i]) == (len(s) in (1, 4)), s


def test_update_of_centralized_tensor_has_zero_row_means():
    params, grads = random_problem(steps=1)
    ps, _, _ = run(nasframe_gc.SGD_GC, params, grads, dict(lr=1.0, weight_decay=0.1))
    for p0, p in zip(params, ps, strict=True):
        delta = p.detach() - p0
        if delta.dim() > 1:
            row_mean = delta.mean(dim=tuple(range(1, delta.dim())))
            assert row_mean.abs().max().item() < 1e-14
        else:
            assert delta.abs().mean().item() > 1e-3


# ---------------------------------------------------------------------------------------------
# torch.optim behaviour


@pytest.mark.parametrize("name", ALL_NAMES)
def test_grad_not_mutated(name):
    cls = getattr(nasframe_gc, name)
    params, grads = random_problem(steps=2)
    hp = HP[family(name)][0]
    for foreach in (False, True):
        ps = [torch.nn.Parameter(p.clone()) for p in params]
        opt = cls(ps, **hp, foreach=foreach)
        for gs in grads:
            mine = [g.clone() for g in gs]
            for p, g in zip(ps, mine, strict=True):
                p.grad = g
            opt.step()
            for p, g, g0 in zip(ps, mine, gs, strict=True):
                assert p.grad is g
                assert torch.equal(g, g0), (name, foreach)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_state_dict_round_trip_continues_identically(name):
    cls = getattr(nasframe_gc, name)
    hp = HP[family(name)][-1]
    params, grads = random_problem(steps=5)
    ps_a, opt_a, _ = run(cls, params, grads[:2], hp)
    sd = copy.deepcopy(opt_a.state_dict())
    expected_keys = {
        "sgd": {"momentum_buffer"} if hp.get("momentum") else set(),
        "adam": {"step", "exp_avg", "exp_avg_sq"}
        | ({"max_exp_avg_sq"} if hp.get("amsgrad") else set()),
        "adagrad": {"step", "sum"},
    }[family(name)]
    assert all(set(s) == expected_keys for s in sd["state"].values())
    ps_b = [torch.nn.Parameter(p.detach().clone()) for p in ps_a]
    opt_b = cls(ps_b, lr=123.0)  # wrong lr on purpose: load_state_dict must restore it
    opt_b.load_state_dict(sd)
    for gs in grads[2:]:
        for pa, pb, g in zip(ps_a, ps_b, gs, strict=True):
            pa.grad, pb.grad = g.clone(), g.clone()
        opt_a.step()
        opt_b.step()
    assert max_diff(ps_a, ps_b) == 0.0


@pytest.mark.parametrize("name", ["SGD_GC", "SGDW_GCC", "Adam_GC2", "AdamW_GC", "Adagrad_GCC"])
def test_param_groups_with_different_lr(name):
    cls = getattr(nasframe_gc, name)
    hp = dict(HP[family(name)][0])
    params, grads = random_problem(steps=3)
    lr2 = hp["lr"] * 0.1
    ps = [torch.nn.Parameter(p.clone()) for p in params]
    opt = cls([{"params": ps[:3]}, {"params": ps[3:], "lr": lr2}], **hp)
    for gs in grads:
        for p, g in zip(ps, gs, strict=True):
            p.grad = g.clone()
        opt.step()
    first, _, _ = run(cls, params[:3], [gs[:3] for gs in grads], hp)
    second, _, _ = run(cls, params[3:], [gs[3:] for gs in grads], {**hp, "lr": lr2})
    assert max_diff(ps, first + second) < 1e-15
    same_lr, _, _ = run(cls, params[3:], [gs[3:] for gs in grads], hp)
    assert max_diff(ps[3:], same_lr) > 1e-6


@pytest.mark.parametrize("grad_dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", ALL_NAMES)
def test_low_precision_grads_on_fp32_params(name, grad_dtype):
    cls = getattr(nasframe_gc, name)
    hp = HP[family(name)][0]
    params, grads = random_problem(steps=3, dtype=torch.float32)
    low = [[g.to(grad_dtype) for g in gs] for gs in grads]
    rounded = [[g.float() for g in gs] for gs in low]
    for foreach in (False, True):
        ps, opt, _ = run(cls, params, low, hp, foreach=foreach)
        assert all(p.dtype == torch.float32 for p in ps)
        assert all(
            v.dtype == torch.float32
            for s in opt.state.values()
            for k, v in s.items()
            if k != "step"
        )
        # computed in fp32: identical (up to fp32 rounding) to fp32 grads holding the same values
        exact, _, _ = run(cls, params, rounded, hp, foreach=foreach)
        assert max_diff(ps, exact) < 1e-6, foreach
        # and within low-precision tolerance of the full-precision gradients
        full, _, _ = run(cls, params, grads, hp, foreach=foreach)
        moved = max(
            (f.detach() - p0).abs().max().item() for f, p0 in zip(full, params, strict=True)
        )
        assert max_diff(ps, full) < 3e-2 * moved, foreach


@pytest.mark.parametrize("case", variant_cases(), ids=case_id)
def test_foreach_equals_single_tensor(case):
    name, hp = case
    cls = getattr(nasframe_gc, name)
    params, grads = random_problem(seed=1)
    a, opt_a, _ = run(cls, params, grads, hp, foreach=False)
    b, opt_b, _ = run(cls, params, grads, hp, foreach=True)
    assert max_diff(a, b) < 1e-12
    for pa, pb in zip(a, b, strict=True):
        sa, sb = opt_a.state[pa], opt_b.state[pb]
        assert sa.keys() == sb.keys()
        assert (
            max_diff([torch.as_tensor(sa[k]) for k in sa], [torch.as_tensor(sb[k]) for k in sa])
            < 1e-12
        )


def test_foreach_handles_mixed_dtypes_and_missing_grads():
    params, grads = random_problem(steps=2, seed=2)
    hp = dict(lr=1e-2, weight_decay=1e-2)
    mixed = [p.float() if i % 2 else p for i, p in enumerate(params)]
    for name in ("Adam_GC", "SGDW_GC", "Adagrad_GC"):
        cls = getattr(nasframe_gc, name)
        out = []
        for foreach in (False, True):
            ps = [torch.nn.Parameter(p.clone()) for p in mixed]
            opt = cls(ps, **hp, foreach=foreach)
            for gs in grads:
                for i, (p, g) in enumerate(zip(ps, gs, strict=True)):
                    p.grad = None if i == 2 else g.to(p.dtype)
                opt.step()
            assert torch.equal(ps[2].detach(), mixed[2])
            assert ps[2] not in opt.state
            out.append(ps)
        assert max_diff(*out) < 1e-6


def test_foreach_defaults_to_auto():
    p = torch.nn.Parameter(torch.zeros(2, 2))
    for name in ALL_NAMES:
        opt = getattr(nasframe_gc, name)([p], lr=0.1)
        assert opt.defaults["foreach"] is None


def test_reference_signatures_and_defaults():
    expect = {
        "sgd": dict(momentum=0, dampening=0, weight_decay=0, nesterov=False),
        "adam": dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False),
        "adagrad": dict(
            lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0, eps=1e-10
        ),
    }
    for name in ALL_NAMES:
        sig = inspect.signature(getattr(nasframe_gc, name))
        defaults = {
            k: v.default
            for k, v in sig.parameters.items()
            if v.default is not inspect.Parameter.empty and k != "foreach"
        }
        assert defaults == expect[family(name)], name
        if family(name) == "sgd":
            assert sig.parameters["lr"].default is inspect.Parameter.empty


def test_invalid_hyperparameters_rejected():
    p = [torch.nn.Parameter(torch.zeros(2, 2))]
    with pytest.raises(ValueError):
        nasframe_gc.SGD_GC(p, lr=-1.0)
    with pytest.raises(ValueError):
        nasframe_gc.SGD_GC(p, lr=0.1, nesterov=True)
    with pytest.raises(ValueError):
        nasframe_gc.Adam_GC(p, betas=(0.9, 1.0))
    with pytest.raises(ValueError):
        nasframe_gc.Adagrad_GC(p, weight_decay=-1.0)


def test_closure_is_evaluated_with_grad_enabled():
    w = torch.nn.Parameter(torch.ones(2, 3))
    opt = nasframe_gc.Adam_GC([w], lr=0.1)
    x = torch.arange(6.0).view(3, 2)

    def closure():
        opt.zero_grad()
        loss = (w @ x).pow(2).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert loss.item() > 0 and w.grad is not None
    assert not torch.equal(w.detach(), torch.ones(2, 3))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ALL_NAMES)
def test_cuda_default_path_matches_cpu(name):
    cls = getattr(nasframe_gc, name)
    hp = HP[family(name)][-1]
    params, grads = random_problem()
    cpu, _, _ = run(cls, params, grads, hp, foreach=False)
    ps = [torch.nn.Parameter(p.cuda()) for p in params]
    opt = cls(ps, **hp)  # foreach=None: the multi-tensor path on CUDA
    for gs in grads:
        for p, g in zip(ps, gs, strict=True):
            p.grad = g.cuda()
        opt.step()
    assert max_diff([p.cpu() for p in ps], cpu) < 1e-10
