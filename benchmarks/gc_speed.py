"""Cost of one Gradient Centralization optimizer step vs its torch.optim base (foreach).

The parameters are those of a ResNet-18 (ImageNet head: 11.7M parameters, 62 tensors), built
directly as tensors with fixed random gradients; no forward/backward pass is timed. For every
pair the script times ``opt.step()`` (warm-up first, CUDA synchronised, median over repeats,
GC and base repeats interleaved) and reports ``ratio = gc_time / base_time``.

    python benchmarks/gc_speed.py --device cuda --json gc_cuda.json
    python benchmarks/gc_speed.py --device cpu --steps 3 --json gc_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

import torch

import nasframe_gc


def resnet18_shapes(num_classes: int = 1000) -> list[tuple[int, ...]]:
    """Parameter shapes of torchvision's resnet18, in module order."""
    shapes: list[tuple[int, ...]] = [(64, 3, 7, 7), (64,), (64,)]
    cin = 64
    for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        for block in range(2):
            first = block == 0
            shapes += [(cout, cin if first else cout, 3, 3), (cout,), (cout,)]
            shapes += [(cout, cout, 3, 3), (cout,), (cout,)]
            if first and (stride != 1 or cin != cout):
                shapes += [(cout, cin, 1, 1), (cout,), (cout,)]
        cin = cout
    return shapes + [(num_classes, 512), (num_classes,)]


def make_params(device: torch.device, seed: int = 0) -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(seed)
    params = []
    for shape in resnet18_shapes():
        p = torch.nn.Parameter((torch.randn(shape, generator=gen) * 0.05).to(device))
        p.grad = (torch.randn(shape, generator=gen) * 1e-2).to(device)
        params.append(p)
    return params


# (name, GC optimizer factory, base factory); hyper-parameters as in the GC paper's CIFAR runs
SGD_HP = dict(lr=0.1, momentum=0.9, weight_decay=5e-4)
ADAM_HP = dict(lr=1e-3, weight_decay=5e-4)
ADAGRAD_HP = dict(lr=1e-2, weight_decay=5e-4)


def pairs(gc_foreach: bool | None) -> list[tuple[str, str, Callable, Callable]]:
    f = dict(foreach=gc_foreach)
    return [
        ("sgd_gc", "SGD", lambda p: nasframe_gc.SGD_GC(p, **SGD_HP, **f),
         lambda p: torch.optim.SGD(p, **SGD_HP, foreach=True)),
        ("sgdw_gc", "SGD", lambda p: nasframe_gc.SGDW_GC(p, **SGD_HP, **f),
         lambda p: torch.optim.SGD(p, **SGD_HP, foreach=True)),
        ("adam_gc", "Adam", lambda p: nasframe_gc.Adam_GC(p, **ADAM_HP, **f),
         lambda p: torch.optim.Adam(p, **ADAM_HP, foreach=True)),
        ("adam_gc2", "Adam", lambda p: nasframe_gc.Adam_GC2(p, **ADAM_HP, **f),
         lambda p: torch.optim.Adam(p, **ADAM_HP, foreach=True)),
        ("adamw_gc", "AdamW", lambda p: nasframe_gc.AdamW_GC(p, **ADAM_HP, **f),
         lambda p: torch.optim.AdamW(p, **ADAM_HP, foreach=True)),
        ("adamw_gc2", "AdamW", lambda p: nasframe_gc.AdamW_GC2(p, **ADAM_HP, **f),
         lambda p: torch.optim.AdamW(p, **ADAM_HP, foreach=True)),
        ("adagrad_gc", "Adagrad", lambda p: nasframe_gc.Adagrad_GC(p, **ADAGRAD_HP, **f),
         lambda p: torch.optim.Adagrad(p, **ADAGRAD_HP, foreach=True)),
        ("with_gc(SGD, all)", "SGD",
         lambda p: nasframe_gc.with_gc(torch.optim.SGD, "all")(p, **SGD_HP, foreach=True),
         lambda p: torch.optim.SGD(p, **SGD_HP, foreach=True)),
        ("with_gc(AdamW, all)", "AdamW",
         lambda p: nasframe_gc.with_gc(torch.optim.AdamW, "all")(p, **ADAM_HP, foreach=True),
         lambda p: torch.optim.AdamW(p, **ADAM_HP, foreach=True)),
    ]  # fmt: skip


def time_steps(opt: torch.optim.Optimizer, steps: int, device: torch.device) -> float:
    """Seconds per ``opt.step()``, averaged over ``steps`` consecutive steps."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        opt.step()
    sync()
    return (time.perf_counter() - t0) / steps


def bench_pair(make_gc, make_base, device, steps, repeats, warmup) -> tuple[list, list]:
    gc_opt, base_opt = make_gc(make_params(device)), make_base(make_params(device))
    for opt in (gc_opt, base_opt):
        time_steps(opt, warmup, device)
    gc_t, base_t = [], []
    for _ in range(repeats):  # interleaved, so drifts (clock, other load) hit both alike
        gc_t.append(time_steps(gc_opt, steps, device))
        base_t.append(time_steps(base_opt, steps, device))
    del gc_opt, base_opt
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return gc_t, base_t


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json", help="write the results to this file")
    ap.add_argument("--steps", type=int, default=None, help="steps per timed repeat")
    ap.add_argument("--repeats", type=int, default=None, help="timed repeats (median taken)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--only", nargs="*", help="run only these variants")
    ap.add_argument(
        "--gc-foreach",
        choices=["auto", "true", "false"],
        default="auto",
        help="foreach setting of the GC optimizers (auto: torch's rule, i.e. True on CUDA)",
    )
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    steps = args.steps or (20 if cuda else 1)
    repeats = args.repeats or (15 if cuda else 9)
    warmup = args.warmup if args.warmup is not None else (10 if cuda else 2)
    gc_foreach = {"auto": None, "true": True, "false": False}[args.gc_foreach]
    if args.threads:
        torch.set_num_threads(args.threads)

    n_params = sum(torch.Size(s).numel() for s in resnet18_shapes())
    results = []
    for name, base_name, make_gc, make_base in pairs(gc_foreach):
        if args.only and name not in args.only:
            continue
        gc_t, base_t = bench_pair(make_gc, make_base, device, steps, repeats, warmup)
        gc_s, base_s = statistics.median(gc_t), statistics.median(base_t)
        row = dict(
            variant=name,
            base=f"torch.optim.{base_name}(foreach=True)",
            gc_ms=round(gc_s * 1e3, 4),
            base_ms=round(base_s * 1e3, 4),
            ratio=round(gc_s / base_s, 3),
            # median of the ratios of back-to-back repeats: robust to slow drifts in machine load
            ratio_paired=round(
                statistics.median(g / b for g, b in zip(gc_t, base_t, strict=True)), 3
            ),
        )
        results.append(row)
        print(
            f"{name:22s} {row['gc_ms']:10.3f} ms   {row['base']:34s} {row['base_ms']:10.3f} ms"
            f"   ratio {row['ratio']:.3f} (paired {row['ratio_paired']:.3f})",
            flush=True,
        )
    out = dict(
        benchmark="gc_speed",
        device=str(device),
        device_name=torch.cuda.get_device_name(device) if cuda else platform.processor() or "cpu",
        cpu_threads=torch.get_num_threads(),
        load_average=list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        torch=torch.__version__,
        python=platform.python_version(),
        params=n_params,
        tensors=len(resnet18_shapes()),
        dtype="float32",
        gc_foreach=args.gc_foreach,
        steps_per_repeat=steps,
        repeats=repeats,
        warmup=warmup,
        results=results,
    )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)
            fh.write("\n")
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
