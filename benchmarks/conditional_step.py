"""One CUDA graph for a search train step, whatever the sampled architectures: a prototype to measure.

The search iteration is bound by the host: ~4,000 kernel launches for ~35 ms of GPU work
(RESULTS.md). A CUDA graph removes the launches but replays fixed work; a conditional (IF) node per
option lets one capture choose on the device which option of each choice slot runs, so a newly
sampled architecture needs no new capture. This builds a chain of ``--depth`` choice slots, each
one of the ASNG-NAS cell ops (identity, avg-pool 3×3, max-pool 3×3, sep-conv 3×3, sep-conv 5×5),
with a linear head, and the train half of the search protocol on it (λ architectures forward and
backward the same batch, gradient clipping, SGD with momentum and weight decay), two ways:

- ``eager``: what nasframe does today: only the sampled options run; options no architecture used
  get no gradient, so clipping and SGD leave them (and their momentum) alone;
- ``graphed``: the same step captured once. Each slot is one autograd function whose options sit
  behind conditional nodes keyed by the architecture's device tensor; its backward recomputes the
  chosen option's forward, so a slot keeps only its input and memory stays that of the sampled
  networks, not of every option; every weight has a gradient (zero when unused), and SGD is masked
  so that the options no architecture used keep their weights and momentum, as in eager.

It reports steps/s of both, capture time, peak memory, and the largest difference between the two
ways' parameters after the same steps with the same architectures. The learning rate is fixed (a
schedule would need it as a device tensor). Without CUDA the conditional nodes are host-side
``if``s over the same code, so the step's logic is tested on the CPU; the speed exists only on CUDA,
and capture needs a torch with ``CUDAGraph.begin_capture_to_if_node`` (the JSON says if it lacks it).

    python benchmarks/conditional_step.py --device cuda --json conditional_step_cuda.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F

LR, MOMENTUM, WEIGHT_DECAY, CLIP = 0.025, 0.9, 3e-4, 5.0


def sep_conv(x: torch.Tensor, dw1, pw1, dw2, pw2) -> torch.Tensor:
    """SepConv (stride 1, affine-free batch-statistics BatchNorm) with its weights as arguments."""
    c, p = x.shape[1], dw1.shape[-1] // 2
    y = F.conv2d(F.conv2d(F.relu(x), dw1, padding=p, groups=c), pw1)
    y = F.batch_norm(y, None, None, None, None, True, 0.0, 1e-5)
    y = F.conv2d(F.conv2d(F.relu(y), dw2, padding=p, groups=c), pw2)
    return F.batch_norm(y, None, None, None, None, True, 0.0, 1e-5)


# (name, function of (x, *weights), weight shapes for c channels)
OPTIONS: list[tuple[str, Callable[..., torch.Tensor], Callable[[int], list[tuple[int, ...]]]]] = [
    ("identity", lambda x: x, lambda c: []),
    ("avg_pool_3x3", lambda x: F.avg_pool2d(x, 3, 1, 1), lambda c: []),  # zero padding counts
    ("max_pool_3x3", lambda x: F.max_pool2d(x, 3, 1, 1), lambda c: []),
    ("sep_conv_3x3", sep_conv, lambda c: [(c, 1, 3, 3), (c, c, 1, 1)] * 2),
    ("sep_conv_5x5", sep_conv, lambda c: [(c, 1, 5, 5), (c, c, 1, 1)] * 2),
]

_capturing: torch.cuda.CUDAGraph | None = None  # the graph being captured, if any


def run_if(pred: torch.Tensor, body: Callable[[], None]) -> None:
    """Run ``body`` when ``pred`` holds: as a conditional node of the graph being captured, else
    as a host-side ``if``."""
    if _capturing is not None:
        _capturing.begin_capture_to_if_node(pred)
        try:
            body()
        finally:
            _capturing.end_capture_to_conditional_node()
    elif bool(pred):
        body()


@contextmanager
def capturing(graph: torch.cuda.CUDAGraph) -> Iterator[None]:
    global _capturing
    _capturing = graph
    try:
        with torch.cuda.graph(graph):
            yield
    finally:
        _capturing = None


class Slot(torch.autograd.Function):
    """One choice slot: the option ``choice`` names runs on ``x``; backward recomputes it."""

    @staticmethod
    def forward(ctx, choice: torch.Tensor, x: torch.Tensor, *weights: torch.Tensor):
        ctx.save_for_backward(choice, x, *weights)
        out = torch.empty_like(x)
        for k, (fn, ws) in enumerate(_per_option(weights, x.shape[1])):
            run_if(choice == k, lambda fn=fn, ws=ws: out.copy_(fn(x, *ws)))
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        choice, x, *weights = ctx.saved_tensors
        grad_x = torch.zeros_like(x)
        grad_w = [torch.empty_like(w) for w in weights]
        if grad_w:
            torch._foreach_zero_(grad_w)  # one launch: unused options get zero gradients
        start = 0
        for k, (fn, ws) in enumerate(_per_option(weights, x.shape[1])):
            bufs = grad_w[start : start + len(ws)]
            start += len(ws)

            def body(fn=fn, ws=ws, bufs=bufs) -> None:
                with torch.enable_grad():
                    inputs = [
                        x.detach().requires_grad_(),
                        *(w.detach().requires_grad_() for w in ws),
                    ]
                    grads = torch.autograd.grad(fn(*inputs), inputs, grad)
                grad_x.copy_(grads[0])
                for buf, g in zip(bufs, grads[1:], strict=True):
                    buf.copy_(g)

            run_if(choice == k, body)
        return None, grad_x, *grad_w


def _per_option(weights, c: int):
    """(function, its weights) of each option, from the slot's flat weight list."""
    start = 0
    for _, fn, shapes in OPTIONS:
        n = len(shapes(c))
        yield fn, weights[start : start + n]
        start += n


class Chain:
    """``depth`` choice slots and a linear head; the weights of every option of every slot."""

    def __init__(self, depth: int, c: int, classes: int, device: torch.device, seed: int) -> None:
        gen = torch.Generator(device="cpu").manual_seed(seed)
        self.slots = [
            [
                [(torch.randn(*s, generator=gen) * 0.3).to(device).requires_grad_() for s in ss(c)]
                for _, _, ss in OPTIONS
            ]
            for _ in range(depth)
        ]
        self.head = (torch.randn(classes, c, generator=gen) * 0.1).to(device).requires_grad_()

    def params(self) -> list[torch.Tensor]:
        return [w for slot in self.slots for option in slot for w in option] + [self.head]

    def eager(self, x: torch.Tensor, arch: list[int]) -> torch.Tensor:
        for slot, k in zip(self.slots, arch, strict=True):
            x = OPTIONS[k][1](x, *slot[k])
        return x.mean((2, 3)) @ self.head.t()

    def graphed(self, x: torch.Tensor, arch: torch.Tensor) -> torch.Tensor:
        for i, slot in enumerate(self.slots):
            x = Slot.apply(arch[i], x, *(w for option in slot for w in option))
        return x.mean((2, 3)) @ self.head.t()

    def used(self, archs: torch.Tensor) -> list[torch.Tensor]:
        """Per parameter, whether any architecture ran it (a device bool), in ``params`` order."""
        flags = []
        for i, slot in enumerate(self.slots):
            for k, option in enumerate(slot):
                flags += [(archs[:, i] == k).any()] * len(option)
        return flags + [torch.ones((), dtype=torch.bool, device=archs.device)]


def eager_step(chain: Chain, opt: torch.optim.SGD, x, y, archs: list[list[int]]) -> torch.Tensor:
    """The train half as nasframe runs it: grads only where an option ran."""
    opt.zero_grad(set_to_none=True)
    total = torch.zeros((), device=x.device)
    for arch in archs:
        loss = F.cross_entropy(chain.eager(x, arch), y)
        (loss / len(archs)).backward()
        total += loss.detach()
    torch.nn.utils.clip_grad_norm_([p for p in chain.params() if p.grad is not None], CLIP)
    opt.step()
    return total / len(archs)


class MaskedSGD:
    """``torch.optim.SGD`` (momentum, weight decay, foreach) whose step leaves a parameter, and
    its momentum, alone where its flag is false: what SGD does to a parameter without a grad."""

    def __init__(self, params: list[torch.Tensor]) -> None:
        self.params = params
        self.bufs = [torch.zeros_like(p) for p in params]
        self.has_buf = [torch.zeros((), dtype=torch.bool, device=p.device) for p in params]

    @torch.no_grad()
    def step(self, used: list[torch.Tensor]) -> None:
        grads = torch._foreach_add([p.grad for p in self.params], self.params, alpha=WEIGHT_DECAY)
        moved = torch._foreach_mul(self.bufs, MOMENTUM)
        torch._foreach_add_(moved, grads)
        new_bufs = [
            torch.where(h, m, g) for h, m, g in zip(self.has_buf, moved, grads, strict=True)
        ]
        new_params = torch._foreach_add(self.params, new_bufs, alpha=-LR)
        for p, buf, h, nb, np_, u in zip(
            self.params, self.bufs, self.has_buf, new_bufs, new_params, used, strict=True
        ):
            p.copy_(torch.where(u, np_, p))
            buf.copy_(torch.where(u, nb, buf))
            h.logical_or_(u)


def graphed_step(chain: Chain, opt: MaskedSGD, x, y, archs: torch.Tensor) -> torch.Tensor:
    """The same step with every weight given a gradient (zero where unused) and SGD masked."""
    for p in chain.params():
        p.grad = None
    total = torch.zeros((), device=x.device)
    for a in range(archs.shape[0]):
        loss = F.cross_entropy(chain.graphed(x, archs[a]), y)
        (loss / archs.shape[0]).backward()
        total += loss.detach()
    torch.nn.utils.clip_grad_norm_(chain.params(), CLIP)
    opt.step(chain.used(archs))
    return total / archs.shape[0]


def warm_up(chain: Chain, x: torch.Tensor, y: torch.Tensor) -> None:
    """The graphed step eagerly, off the capture, once with every option in every slot (cuDNN
    plans, cuBLAS and allocator set-up), on a throwaway copy of the chain's shapes."""
    depth, c = len(chain.slots), x.shape[1]
    spare = Chain(depth, c, chain.head.shape[0], x.device, seed=12345)
    opt = MaskedSGD(spare.params())
    stream = torch.cuda.Stream(x.device)
    stream.wait_stream(torch.cuda.current_stream(x.device))
    with torch.cuda.stream(stream):
        for k in range(len(OPTIONS)):
            archs = torch.full((1, depth), k, dtype=torch.long, device=x.device)
            graphed_step(spare, opt, x, y, archs)
    torch.cuda.current_stream(x.device).wait_stream(stream)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(
    device: torch.device,
    shape: tuple[int, int, int, int],
    depth: int,
    lam: int,
    steps: int,
    seed: int = 0,
) -> dict:
    """Both ways from the same start on the same data and architectures; figures and difference."""
    n, c, h, w = shape
    gen = torch.Generator(device="cpu").manual_seed(seed + 1)
    x = torch.randn(n, c, h, w, generator=gen).to(device)
    y = torch.randint(10, (n,), generator=gen).to(device)
    archs = torch.randint(len(OPTIONS), (steps, lam, depth), generator=gen)
    result: dict = {"shape": list(shape), "depth": depth, "lam": lam, "steps": steps}

    def sgd(chain: Chain) -> torch.optim.SGD:
        return torch.optim.SGD(
            chain.params(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY, foreach=True
        )

    spare = Chain(depth, c, 10, device, seed + 2)  # warm-up: every option once, untimed
    spare_opt = sgd(spare)
    for k in range(len(OPTIONS)):
        eager_step(spare, spare_opt, x, y, [[k] * depth])
    eager = Chain(depth, c, 10, device, seed)
    opt = sgd(eager)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    _sync(device)
    start = time.perf_counter()
    for s in range(steps):
        eager_step(eager, opt, x, y, archs[s].tolist())
    _sync(device)
    result["eager_steps_per_s"] = steps / (time.perf_counter() - start)
    if device.type == "cuda":
        result["eager_peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30

    graphed = Chain(depth, c, 10, device, seed)
    masked = MaskedSGD(graphed.params())
    static_archs = archs[0].to(device)
    if device.type == "cuda":
        if not hasattr(torch.cuda.CUDAGraph, "begin_capture_to_if_node"):
            result["error"] = "this torch has no CUDAGraph.begin_capture_to_if_node"
            return result
        torch.cuda.reset_peak_memory_stats(device)
        warm_up(graphed, x, y)
        graph = torch.cuda.CUDAGraph()
        start = time.perf_counter()
        try:
            with capturing(graph):
                graphed_step(graphed, masked, x, y, static_archs)
            _sync(device)
        except Exception as error:  # a prototype: why this torch cannot, recorded, not fatal
            result["error"] = f"{type(error).__name__}: {error}"[:500]
            return result
        result["capture_s"] = time.perf_counter() - start

        def step(s: int) -> None:
            static_archs.copy_(archs[s], non_blocking=True)
            graph.replay()

        # capture only records: the parameters are still the initial ones
    else:

        def step(s: int) -> None:
            static_archs.copy_(archs[s])
            graphed_step(graphed, masked, x, y, static_archs)

    _sync(device)
    start = time.perf_counter()
    for s in range(steps):
        step(s)
    _sync(device)
    result["graphed_steps_per_s"] = steps / (time.perf_counter() - start)
    if device.type == "cuda":
        result["graphed_peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    with torch.no_grad():
        result["max_abs_param_diff"] = max(
            float((a - b).abs().max())
            for a, b in zip(eager.params(), graphed.params(), strict=True)
        )
    result["speedup"] = result["graphed_steps_per_s"] / result["eager_steps_per_s"]
    return result


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument(
        "--shape", type=int, nargs=4, default=None, help="N C H W (default: 64 16 32 32)"
    )
    p.add_argument("--depth", type=int, default=8, help="choice slots in the chain")
    p.add_argument("--lam", type=int, default=2, help="architectures per step (λ)")
    p.add_argument("--steps", type=int, default=None, help="default: 50 on CUDA, 3 on CPU")
    p.add_argument("--json", required=True)
    args = p.parse_args(argv)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    shape = tuple(args.shape or ((64, 16, 32, 32) if cuda else (4, 4, 8, 8)))
    result = {
        "device": torch.cuda.get_device_name(device) if cuda else platform.processor(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": sys.version.split()[0],
        **run(device, shape, args.depth, args.lam, args.steps or (50 if cuda else 3)),
    }
    with open(args.json, "w") as f:
        json.dump(result, f, indent=2)
    print(result)
    return result


if __name__ == "__main__":
    main()
