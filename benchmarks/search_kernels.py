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

It also checks that ``unit_affine`` and ``composite`` compute what ``native`` does (max abs
difference), and ``functional`` SepConv what the module does. On the CPU it runs (small repeat
counts) so that it stays tested; only the CUDA figures matter.

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


def sep_conv(shape: tuple[int, ...], device: torch.device, repeats: int) -> dict:
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
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--repeats", type=int, default=None, help="default: 200 on CUDA, 5 on CPU")
    p.add_argument("--json", required=True)
    args = p.parse_args(argv)
    device = torch.device(args.device)
    repeats = args.repeats or (200 if device.type == "cuda" else 5)
    result = {
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
        "python": sys.version.split()[0],
        "repeats": repeats,
        "bn": [bn_variants(s, device, repeats) for s in SHAPES],
        "sep_conv": [sep_conv(s, device, repeats) for s in SHAPES],
    }
    with open(args.json, "w") as f:
        json.dump(result, f, indent=2)
    for row in result["bn"]:
        print("bn", row)
    for row in result["sep_conv"]:
        print("sep_conv", row)
    return result


if __name__ == "__main__":
    main()
