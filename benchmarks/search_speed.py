"""Speed of the one-shot search iteration (the loop of `nasframe search`), on device-resident data.

One iteration is the reference protocol of ASNG-NAS: λ sampled architectures forward and backward the
same train batch, clipping, one SGD step, λ fresh architectures forward the valid batch, one host
read of the losses, the ASNG update. It runs :func:`nasframe.search.search_iteration` — the very
function `nasframe search` runs — on random data of the config's sample shape kept on the device
(e.g. CIFAR-10-shaped 3×32×32 for `spaces/asng_nas_cifar10.yaml`), so the figure is the search's own
speed, without data loading.

    python benchmarks/search_speed.py --config spaces/asng_nas_cifar10.yaml --device cuda \\
        --json search_speed.json

Reported: iterations/s and image passes/s (λ·batch train + λ·batch valid per iteration), the
start-up time (building the supernet and the first iteration, where compilation or capture would
happen), the share of time spent in the strategy's update, and the peak GPU memory.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from nasframe import SearchSpace, load_config, registry
from nasframe.network import num_classes_of
from nasframe.optim import build_optimizer, build_schedule
from nasframe.search import make_supernet, search_iteration

ROOT = Path(__file__).resolve().parent.parent


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(config_path: str, overrides: list[str], device: str, iters: int, warmup: int) -> dict:
    """Time ``iters`` search iterations after ``warmup`` ones; see the module docstring."""
    cfg, _ = load_config(config_path, overrides)
    dev = torch.device(device)
    S = cfg.search
    shape = tuple(cfg.data.options.get("shape", ())) or _sample_shape(cfg)
    classes = num_classes_of(cfg, 10)
    torch.manual_seed(cfg.seed)
    g = torch.Generator(device="cpu").manual_seed(cfg.seed)
    pool = 8  # distinct batches cycled through, so that no batch is special
    x = torch.randn(pool, S.batch_size, *shape, generator=g).to(dev)
    y = torch.randint(0, classes, (pool, S.batch_size), generator=g).to(dev)

    t0 = time.perf_counter()
    space = SearchSpace(cfg)
    net = make_supernet(space, shape, classes).to(dev)
    strategy = registry.get("strategy", S.strategy)(
        space.categories, lam=S.lam, seed=cfg.seed, **S.strategy_options
    )
    optimizer = build_optimizer(net.parameters(), S.optimizer)
    schedule = build_schedule(optimizer, S.optimizer, 10**6)
    params = list(net.parameters())
    net.train()

    update_s: list[float] = []

    def iteration(k: int) -> None:
        tb, vb = k % pool, (k + pool // 2) % pool
        host, _, varchs = search_iteration(
            net, optimizer, strategy, (x[tb], y[tb]), (x[vb], y[vb]), S.lam, S.grad_clip, params
        )
        schedule.step()
        t = time.perf_counter()
        strategy.update(varchs, host[: S.lam])
        update_s.append(time.perf_counter() - t)

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    iteration(0)
    _sync(dev)
    startup_s = time.perf_counter() - t0
    for k in range(1, warmup):
        iteration(k)
    _sync(dev)
    update_s.clear()
    per_iter = []
    for k in range(warmup, warmup + iters):
        t = time.perf_counter()
        iteration(k)  # ends with a host read, so the device is done with the iteration
        per_iter.append(time.perf_counter() - t)
    total = sum(per_iter)
    its = iters / total
    return {
        "config": str(config_path),
        "overrides": overrides,
        "sample_shape": list(shape),
        "batch_size": S.batch_size,
        "lam": S.lam,
        "choices": len(space.categories),
        "categories": space.categories,
        "parameters": sum(p.numel() for p in params),
        "iterations": iters,
        "iterations_per_s": its,
        "image_passes_per_s": its * 2 * S.lam * S.batch_size,
        "median_iteration_ms": 1000 * statistics.median(per_iter),
        "startup_s": startup_s,
        "strategy_update_share": sum(update_s) / total,
        "peak_gpu_mem_gib": (
            torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else None
        ),
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else _cpu_name(),
        "versions": {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "numpy": np.__version__,
        },
    }


def _sample_shape(cfg) -> tuple[int, ...]:
    from nasframe.data import load_dataset

    return tuple(load_dataset(cfg.data).sample_shape)


def _cpu_name() -> str:
    return f"cpu ({platform.processor() or platform.machine()}), {torch.get_num_threads()} threads"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=str(ROOT / "spaces" / "asng_nas_cifar10.yaml"))
    ap.add_argument("--set", action="append", default=[], help="config overrides (key=value)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--iters", type=int, default=50, help="timed iterations")
    ap.add_argument("--warmup", type=int, default=5, help="untimed iterations first")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--json", help="write the result to this file")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = measure(args.config, args.set, args.device, args.iters, args.warmup)
    print(
        f"{out['iterations_per_s']:.2f} it/s ({out['image_passes_per_s']:.0f} image passes/s, "
        f"median {out['median_iteration_ms']:.1f} ms), start-up {out['startup_s']:.2f} s, "
        f"strategy update {100 * out['strategy_update_share']:.1f}% of the time, "
        f"peak GPU memory {out['peak_gpu_mem_gib']} GiB, on {out['device']}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
