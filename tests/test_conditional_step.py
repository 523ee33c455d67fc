"""benchmarks/conditional_step.py: one step logic for every architecture, the same numbers as eager.

On the CPU the conditional nodes are host-side ``if``s over the same code, so this checks the
prototype's autograd function (backward by recomputation), zero gradients for unused options and
the masked SGD against nasframe's eager step, bit for bit; on CUDA the captured graph too.
"""

from __future__ import annotations

import json

import pytest
import torch
from conftest import load_benchmark

conditional_step = load_benchmark("conditional_step")


def _both_ways(device: torch.device, steps: int, seed: int = 0):
    """Eager and graphed-logic chains after the same steps, and the options no step used."""
    depth, lam, c = 3, 2, 4
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(4, c, 8, 8, generator=gen).to(device)
    y = torch.randint(10, (4,), generator=gen).to(device)
    archs = torch.randint(len(conditional_step.OPTIONS), (steps, lam, depth), generator=gen)
    eager = conditional_step.Chain(depth, c, 10, device, seed)
    graphed = conditional_step.Chain(depth, c, 10, device, seed)
    start = [p.detach().clone() for p in graphed.params()]
    opt = torch.optim.SGD(
        eager.params(),
        lr=conditional_step.LR,
        momentum=conditional_step.MOMENTUM,
        weight_decay=conditional_step.WEIGHT_DECAY,
        foreach=True,
    )
    masked = conditional_step.MaskedSGD(graphed.params())
    for s in range(steps):
        eager_step_loss = conditional_step.eager_step(eager, opt, x, y, archs[s].tolist())
        graphed_loss = conditional_step.graphed_step(graphed, masked, x, y, archs[s].to(device))
        assert torch.equal(eager_step_loss, graphed_loss)
    used = {(i, int(k)) for i in range(depth) for k in archs[:, :, i].flatten()}
    return eager, graphed, start, used


def test_graphed_step_logic_matches_the_eager_step_bit_for_bit():
    torch.manual_seed(0)
    eager, graphed, start, used = _both_ways(torch.device("cpu"), steps=2)
    for a, b in zip(eager.params(), graphed.params(), strict=True):
        assert torch.equal(a, b)
    # options no architecture ran keep their initial weights (no weight decay, no momentum) ...
    flat = iter(start)
    unused_seen = used_seen = 0
    for i, slot in enumerate(graphed.slots):
        for k, option in enumerate(slot):
            for w in option:
                w0 = next(flat)
                if (i, k) in used:
                    used_seen += 1
                    assert not torch.equal(w, w0)
                else:
                    unused_seen += 1
                    assert torch.equal(w, w0)
    assert unused_seen and used_seen  # the draw exercised both kinds of weight
    assert graphed.head.grad is not None and eager.head.grad is not None


def test_masked_sgd_leaves_unused_parameters_and_their_momentum_alone():
    p = torch.nn.Parameter(torch.ones(3))
    q = torch.nn.Parameter(torch.ones(3))
    opt = conditional_step.MaskedSGD([p, q])
    p.grad, q.grad = torch.full((3,), 0.5), torch.full((3,), 0.5)
    opt.step([torch.tensor(True), torch.tensor(False)])
    assert not torch.equal(p.detach(), torch.ones(3)) and torch.equal(q.detach(), torch.ones(3))
    assert opt.has_buf[0] and not opt.has_buf[1] and torch.equal(opt.bufs[1], torch.zeros(3))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_with_conditional_nodes_matches_eager():
    result = conditional_step.run(torch.device("cuda"), (8, 8, 8, 8), depth=3, lam=2, steps=4)
    if "error" in result and "begin_capture_to_if_node" in result["error"]:
        pytest.skip(result["error"])
    assert "error" not in result, result["error"]
    assert result["max_abs_param_diff"] < 1e-5


def test_the_script_reports_both_ways_and_their_difference(tmp_path):
    out = tmp_path / "c.json"
    conditional_step.main(["--device", "cpu", "--steps", "2", "--depth", "2", "--json", str(out)])
    result = json.loads(out.read_text())
    assert result["max_abs_param_diff"] == 0.0
    assert result["eager_steps_per_s"] > 0 and result["graphed_steps_per_s"] > 0
    assert result["torch"] == torch.__version__ and result["depth"] == 2
