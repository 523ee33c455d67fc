"""What would make the CIFAR-10 search iteration's own kernels cheaper: measurements to decide on.

The search cells' BatchNorm is affine-free, which keeps PyTorch on its native kernels (cuDNN needs a
weight and a bias); on an H200 they were 44% of the iteration's GPU time. This times, per call and
on the shapes of ``spaces/asng_nas_cifar10.yaml`` at batch 64:

- ``bn``: training-mode BatchNorm forward + backward, ``native`` (no affine, as now), ``unit_affine``
  (constant ones/zeros weight and bias without gradients: the same function, cuDNN eligible),
  ``channels_last`` (native, NHWC) and ``composite`` (``torch.var_mean`` and elementwise ops under
  autograd: more launches, but reductions spread over the whole GPU instead of one block per
  channel);
- ``sep_conv``: one SepConv (the costliest candidate) forward + backward, eager against a CUDA-graphed
  copy (``torch.cuda.make_graphed_callables``; CUDA only): the per-op gain a graphed candidate
  would bring; and ``shared_graphed``: the same op as a function of (input, its four weights),
  graphed once per shape, so that one graph would serve every candidate of that shape in the
  supernet (it pays five input copies per call, and autograd accumulates the weights' gradients).
  The supernet has ~40 sep-conv instances per cell: one private graph each would hold the whole
  supernet's activations, which is why the shared form is the one that could fit the memory goal.

- ``sep_conv`` ``compiled``: the functional SepConv under ``torch.compile(dynamic=False)`` (fused
  BatchNorm/ReLU kernels; one compiled function per shape, shared by every instance because the
  weights are arguments), with its compile time: the "compiled candidate ops" option of the issue;
- ``conditional``: a chain of ``--chain`` choice slots, each choosing one of five SepConvs by a
  device tensor, captured once as one CUDA graph with a conditional (IF) node per option, so that
  a new architecture needs no new capture, against the same chain run eagerly (forward without
  gradients, as in the search's valid half). It reports whether this torch has conditional nodes
  (``CUDAGraph.begin_capture_to_if_node``) and, if capture fails, why; CUDA only.

It also checks that ``unit_affine`` and ``composite`` compute what ``native`` does (max abs
difference), ``functional`` and ``compiled`` SepConv what the module does, and the conditional
graph what the eager chain does for every tried architecture. On the CPU it runs (small repeat
counts, no compile unless ``--compile``) so that it stays tested; only the CUDA figures matter.

    python benchmarks/search_kernels.py --device cuda --json search_kernels_cuda.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from nasframe.cell_ops import SepConv

SHAPES = [(64, 16, 32, 32), (64, 32, 16, 16), (64, 64, 8, 8)]  # the search's three resolutions


def timed(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 3) -> float:
    """Median seconds of ``fn`` over ``repeats`` calls (device synchronised around each)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bn_variants(shape: tuple[int, ...], device: torch.device, repeats: int) -> dict:
    c = shape[1]
    x = torch.randn(*shape, device=device, requires_grad=True)
    xl = x.detach().to(memory_format=torch.channels_last).requires_grad_()
    ones, zeros = torch.ones(c, device=device), torch.zeros(c, device=device)
    grad = torch.randn(*shape, device=device)

    def run(inp: torch.Tensor, w: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor:
        y = F.batch_norm(inp, None, None, w, b, True, 0.0, 1e-5)
        y.backward(grad)
        return y

    def composite() -> torch.Tensor:
        y = composite_batch_norm(x)
        y.backward(grad)
        return y

    out: dict = {"shape": list(shape)}
    for name, fn in [
        ("native", lambda: run(x, None, None)),
        ("unit_affine", lambda: run(x, ones, zeros)),
        ("channels_last", lambda: run(xl, None, None)),
        ("composite", composite),
    ]:
        out[f"{name}_us"] = timed(fn, device, repeats) * 1e6
    with torch.no_grad():
        a = F.batch_norm(x, None, None, None, None, True, 0.0, 1e-5)
        b = F.batch_norm(x, None, None, ones, zeros, True, 0.0, 1e-5)
        c = composite_batch_norm(x)
    out["unit_affine_max_abs_diff"] = float((a - b).abs().max())
    out["composite_max_abs_diff"] = float((a - c).abs().max())
    return out


def composite_batch_norm(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Training-mode BatchNorm without affine parameters, from ``var_mean`` (biased variance)."""
    var, mean = torch.var_mean(x, dim=(0, 2, 3), correction=0, keepdim=True)
    return (x - mean) * torch.rsqrt(var + eps)


def functional_sep_conv(
    x: torch.Tensor, dw1: torch.Tensor, pw1: torch.Tensor, dw2: torch.Tensor, pw2: torch.Tensor
) -> torch.Tensor:
    """:class:`SepConv` (stride 1, affine-free batch-statistics BatchNorm) with its weights as
    arguments, so that one graph can serve every instance of a shape."""
    c, p = x.shape[1], dw1.shape[-1] // 2
    y = F.conv2d(F.conv2d(F.relu(x), dw1, padding=p, groups=c), pw1)
    y = F.batch_norm(y, None, None, None, None, True, 0.0, 1e-5)
    y = F.conv2d(F.conv2d(F.relu(y), dw2, padding=p, groups=c), pw2)
    return F.batch_norm(y, None, None, None, None, True, 0.0, 1e-5)


def sep_conv(
    shape: tuple[int, ...], device: torch.device, repeats: int, compile_op: bool = False
) -> dict:
    c = shape[1]
    op = SepConv(c, 3, 1, affine=False, track=False).to(device)
    x = torch.randn(*shape, device=device, requires_grad=True)
    grad = torch.randn(*shape, device=device)

    def eager() -> None:
        op(x).backward(grad)

    out = {"shape": list(shape), "eager_us": timed(eager, device, repeats) * 1e6}
    weights = [op[1].weight, op[2].weight, op[5].weight, op[6].weight]
    with torch.no_grad():
        out["functional_max_abs_diff"] = float(
            (functional_sep_conv(x, *weights) - op(x)).abs().max()
        )
    if device.type == "cuda":
        shared = torch.cuda.make_graphed_callables(
            functional_sep_conv, (x, *(w.detach().clone().requires_grad_() for w in weights))
        )

        def shared_replay() -> None:
            shared(x, *weights).backward(grad)

        out["shared_graphed_us"] = timed(shared_replay, device, repeats) * 1e6
        graphed_op = SepConv(c, 3, 1, affine=False, track=False).to(device)
        graphed_op.load_state_dict(op.state_dict())
        graphed = torch.cuda.make_graphed_callables(graphed_op, (x,))

        def replay() -> None:
            graphed(x).backward(grad)

        out["graphed_us"] = timed(replay, device, repeats) * 1e6
    if compile_op:
        try:
            out.update(compiled_sep_conv(x, weights, grad, device, repeats))
        except Exception as error:  # e.g. no C compiler for Triton: recorded, not fatal
            out["compile_error"] = f"{type(error).__name__}: {error}"[:500]
    return out


def compiled_sep_conv(
    x: torch.Tensor,
    weights: list[torch.Tensor],
    grad: torch.Tensor,
    device: torch.device,
    repeats: int,
) -> dict:
    """The functional SepConv under ``torch.compile``: time per forward + backward, compile time
    (first call, forward and backward) and its largest difference from eager."""
    compiled = torch.compile(functional_sep_conv, dynamic=False)
    start = time.perf_counter()
    compiled(x, *weights).backward(grad)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    compile_s = time.perf_counter() - start
    with torch.no_grad():
        diff = (compiled(x, *weights) - functional_sep_conv(x, *weights)).abs().max()
    return {
        "compiled_us": timed(lambda: compiled(x, *weights).backward(grad), device, repeats) * 1e6,
        "compile_s": compile_s,
        "compiled_max_abs_diff": float(diff),
    }


def conditional_chain(
    shape: tuple[int, ...], device: torch.device, repeats: int, depth: int, options: int = 5
) -> dict:
    """One CUDA graph for every architecture of a chain of choice slots (see the module's doc)."""
    out: dict = {
        "shape": list(shape),
        "depth": depth,
        "options": options,
        "available": hasattr(torch.cuda.CUDAGraph, "begin_capture_to_if_node"),
    }
    if device.type != "cuda" or not out["available"]:
        return out
    c = shape[1]
    gen = torch.Generator(device=device).manual_seed(0)

    def weight(*size: int) -> torch.Tensor:
        return torch.randn(*size, device=device, generator=gen) * 0.3

    slots = [  # slots[i][k]: the four weights of option k at slot i
        [
            [weight(c, 1, 3, 3), weight(c, c, 1, 1), weight(c, 1, 3, 3), weight(c, c, 1, 1)]
            for _ in range(options)
        ]
        for _ in range(depth)
    ]
    x = torch.randn(*shape, device=device, generator=gen)
    archs = torch.randint(options, (4, depth), device=device, generator=gen)

    def eager(arch: list[int]) -> torch.Tensor:
        y = x
        for slot, k in zip(slots, arch, strict=True):
            y = functional_sep_conv(y, *slot[k])
        return y

    with torch.no_grad():
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):  # warm-up (cuDNN plans) of every option off the capture
            for slot in slots:
                for ws in slot:
                    functional_sep_conv(x, *ws)
        torch.cuda.current_stream(device).wait_stream(side)
        choice = torch.zeros(depth, dtype=torch.long, device=device)
        graph = torch.cuda.CUDAGraph()
        try:
            start = time.perf_counter()
            with torch.cuda.graph(graph):
                y = x
                for i, slot in enumerate(slots):
                    result = torch.empty_like(y)
                    for k, ws in enumerate(slot):
                        graph.begin_capture_to_if_node(choice[i] == k)
                        result.copy_(functional_sep_conv(y, *ws))
                        graph.end_capture_to_conditional_node()
                    y = result
            torch.cuda.synchronize(device)
            out["capture_s"] = time.perf_counter() - start
        except Exception as error:  # a probe: why this torch cannot, recorded, not fatal
            out["error"] = f"{type(error).__name__}: {error}"[:500]
            return out
        diffs = []
        for arch in archs.tolist():
            choice.copy_(torch.tensor(arch, device=device))
            graph.replay()
            diffs.append(float((y - eager(arch)).abs().max()))
        out["max_abs_diff"] = max(diffs)
        arch = archs[0].tolist()
        choice.copy_(archs[0])
        out["graph_us"] = timed(graph.replay, device, repeats) * 1e6
        out["eager_us"] = timed(lambda: eager(arch), device, repeats) * 1e6
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--repeats", type=int, default=None, help="default: 200 on CUDA, 5 on CPU")
    p.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="time torch.compile'd SepConv too (default: on CUDA only)",
    )
    p.add_argument("--chain", type=int, default=8, help="choice slots of the conditional graph")
    p.add_argument("--json", required=True)
    args = p.parse_args(argv)
    device = torch.device(args.device)
    repeats = args.repeats or (200 if device.type == "cuda" else 5)
    compile_op = device.type == "cuda" if args.compile is None else args.compile
    result: dict = {
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
        "python": sys.version.split()[0],
        "repeats": repeats,
    }
    sections = {  # each written as soon as it is measured: a time limit keeps what was done
        "conditional": lambda: conditional_chain(SHAPES[0], device, repeats, args.chain),
        "bn": lambda: [bn_variants(s, device, repeats) for s in SHAPES],
        "sep_conv": lambda: [sep_conv(s, device, repeats, compile_op) for s in SHAPES],
    }
    for name, measure in sections.items():
        result[name] = measure()
        for row in result[name] if isinstance(result[name], list) else [result[name]]:
            print(name, row, flush=True)
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
