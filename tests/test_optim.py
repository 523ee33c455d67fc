"""build_optimizer: torch's optimizers take their foreach step on CPU parameters (same arithmetic)."""

from __future__ import annotations

import torch

from nasframe.config import OptimizerConfig
from nasframe.optim import build_optimizer


def _params() -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(0)
    return [torch.nn.Parameter(torch.randn(s, generator=g)) for s in [(8, 3, 3, 3), (5,), (20, 7)]]


def test_torch_optimizers_step_foreach_on_cpu_bit_for_bit():
    cfg = OptimizerConfig(name="sgd", lr=0.05, momentum=0.9, weight_decay=3e-4)
    fast_params, slow_params = _params(), _params()
    fast = build_optimizer(fast_params, cfg)
    slow = torch.optim.SGD(slow_params, lr=0.05, momentum=0.9, weight_decay=3e-4, foreach=False)
    assert fast.defaults["foreach"] is True
    g = torch.Generator().manual_seed(1)
    for step in range(10):
        for k, (p, q) in enumerate(zip(fast_params, slow_params, strict=True)):
            grad = None if (step + k) % 3 == 0 else torch.randn(p.shape, generator=g)
            p.grad = q.grad = grad
        fast.step()
        slow.step()
    assert all(torch.equal(p, q) for p, q in zip(fast_params, slow_params, strict=True))


def test_an_explicit_foreach_and_other_optimizers_are_left_alone():
    params = _params()
    assert (
        build_optimizer(params, OptimizerConfig(name="sgd", lr=0.1, foreach=False)).defaults[
            "foreach"
        ]
        is False
    )
    assert build_optimizer(params, OptimizerConfig(name="adam", lr=0.1)).defaults["foreach"]
