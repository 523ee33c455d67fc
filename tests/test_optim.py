"""build_optimizer: torch's optimizers take their foreach step on CPU parameters (same arithmetic)."""

from __future__ import annotations

import pytest
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


@pytest.mark.parametrize("old, new", [(50, 80), (50, 200), (80, 50)])
def test_a_fitted_cosine_schedule_follows_the_curve_of_the_new_length(old, new):
    """Resumed with another number of epochs: from its step on, the learning rate is the one a
    run of the new length has there, annealing to 0 at its end (no rise past the old end)."""
    import math

    from nasframe.optim import build_schedule, fit_schedule

    cfg = OptimizerConfig(name="sgd", lr=0.1)
    weight = torch.nn.Parameter(torch.zeros(1))
    first = torch.optim.SGD([weight], lr=0.1)
    schedule = build_schedule(first, cfg, old)
    for _ in range(30):
        first.step()
        schedule.step()
    second = torch.optim.SGD([weight], lr=0.1)
    resumed = build_schedule(second, cfg, new)
    second.load_state_dict(first.state_dict())
    resumed.load_state_dict(schedule.state_dict())  # as a checkpoint restores it
    note = fit_schedule(resumed, new)
    assert note is not None and note.startswith(
        f"the cosine learning-rate schedule now anneals over {new} steps (it was {old}): lr "
    )
    lrs = []
    for _ in range(30, new + 1):
        lrs.append(second.param_groups[0]["lr"])
        second.step()
        resumed.step()
    curve = [0.05 * (1 + math.cos(math.pi * t / new)) for t in range(30, new + 1)]
    assert lrs == pytest.approx(curve, abs=1e-9)
    assert fit_schedule(resumed, new) is None  # fitted once; a same-length resume is untouched
