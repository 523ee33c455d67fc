"""Speed of the one-shot search iteration (the loop of `nasframe search`) against its physical limit.

One iteration is the reference protocol of ASNG-NAS: λ sampled architectures forward and backward the
same train batch, clipping, one SGD step, λ fresh architectures forward the valid batch, one host
read of the losses, the ASNG update. Two measurements, in one run, on the same random data of the
config's sample shape kept on the device (CIFAR-10-shaped 3×32×32 for cell spaces and CIFAR
configs), the same seed, batch and batches:

- ``search_it_per_s``: :func:`nasframe.search_step.search_iteration` — the very function
  `nasframe search` runs — plus the learning-rate schedule and the strategy's update, exactly as
  `run_search` calls them: sampling, the supernet, the update and every bit of framework code.
- ``subnet_it_per_s``: the same work written by hand in plain PyTorch on static networks built from
  the frozen architectures the search sampled (cell spaces: :class:`nasframe.cell_network.CellNetwork`
  at the search size, no drop-path, no auxiliary head; chains: :func:`nasframe.network.build_network`
  of ``space.freeze(sample)``), with their BatchNorm layers made what the supernet's are (batch
  statistics only; cell BatchNorms without affine parameters, the stem's with): the λ train networks
  forward the train batch and the mean loss is backpropagated (each network's share right after its
  forward: the same gradients as one backward of the mean, with half the activations alive, which
  measured 8% faster on a CPU at batch 64), ``clip_grad_norm_(foreach=True)``, one step of the
  configured optimizer (built as the search builds it: the foreach step) over those networks'
  parameters, the λ valid networks forward the valid batch under ``no_grad``, one ``.tolist()`` of
  their losses. This is what a framework that samples and updates for free would cost.

Which architectures the baseline runs: the search samples new architectures every iteration, a static
network is fixed. So that the baseline runs the same mix of architectures (the cost of a cell
network varies a lot with its ops), its iteration k runs the architectures the search sampled in its
iteration k — train pair and valid pair — as static networks built (untimed) for it. Both sides are
timed warm, as in a search that has run a while: before the timed iterations the supernet runs
architectures that together use every candidate (forward, backward and optimizer step: autograd
nodes and momentum buffers exist; the strategy is not involved, so that the timed iterations sample
what a fresh run would; ``--no-cover`` skips this), and each baseline pair does one untimed
iteration before its timed one. The timed iterations run in rounds: one untimed search iteration
(freeing the previous round's networks leaves the allocator and caches cold, which a search alone
never meets), :data:`ROUND` timed search iterations, then the baseline on their architectures and
batches. Short rounds make drifts of the machine's speed (other processes) hit both sides alike.

``overhead_ratio`` = subnet / search (1.0: the framework costs nothing), ``asng_share``: the share of
the search iteration spent in the strategy's sampling and update. Also reported: image passes/s
(λ·batch train + λ·batch valid per iteration), median iteration times, the start-up time (building
the supernet and the first iteration, where compilation or capture would happen), the peak GPU
memory of the search, the device and the versions.

    python benchmarks/search_speed.py --device cuda --json search_speed.json
    python benchmarks/search_speed.py --device cpu --quick --threads 1 --json search_speed_cpu.json

``--set search.precision=bf16`` times both sides under bfloat16 autocast.

``--quick``: a small cell space (:data:`QUICK_OVERRIDES`: 5 cells, C = 8, batch 8, still 3×32×32
images and the 40 choices of ENAS's cells) and few iterations, for a CPU; the overrides are recorded
in the JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nasframe import SearchSpace, load_config, registry
from nasframe.environment import cpu_name
from nasframe.network import num_classes_of
from nasframe.optim import build_optimizer, build_schedule
from nasframe.precision import autocast
from nasframe.search import make_supernet
from nasframe.search_step import search_iteration

ROOT = Path(__file__).resolve().parent.parent

#: What ``--quick`` changes in a cell space (and its iteration counts).
QUICK_OVERRIDES = ["space.cells=5", "space.channels=8", "search.batch_size=8"]
QUICK_ITERS, QUICK_WARMUP = 8, 1
#: Timed search iterations per round (each round: search, then the baseline on its architectures).
ROUND = 1
#: Sample shape of datasets that need not be loaded to know it.
KNOWN_SHAPES = {"cifar10": (3, 32, 32), "cifar100": (3, 32, 32)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _TimedStrategy:
    """The strategy, with the wall time of its ``sample`` and ``update`` calls added up."""

    def __init__(self, strategy: Any) -> None:
        self.strategy = strategy
        self.seconds = 0.0

    def sample(self, n: int | None = None) -> np.ndarray:
        t = time.perf_counter()
        out = self.strategy.sample(n)
        self.seconds += time.perf_counter() - t
        return out

    def update(self, samples: np.ndarray, losses: Sequence[float]) -> Any:
        t = time.perf_counter()
        out = self.strategy.update(samples, losses)
        self.seconds += time.perf_counter() - t
        return out


def covering_samples(space: SearchSpace) -> list[np.ndarray]:
    """Architectures that together run every candidate of the supernet.

    Cell spaces: one per (input option s, op option o), every input choice set to s and every op
    choice to o (as far as the choice has options), so every (node, source, op) edge runs. Chains:
    one per option index j, every choice set to j (as far as it has options).
    """
    cats = np.array(space.categories, dtype=np.int64)
    if space.is_cells:
        is_input = np.array([".input" in path for path in space.paths])
        n_in = int(cats[is_input].max(initial=1))
        n_op = int(cats[~is_input].max(initial=1))
        return [np.where(is_input, s % cats, o % cats) for s in range(n_in) for o in range(n_op)]
    return [j % cats for j in range(int(cats.max(initial=1)))]


class _Replay:
    """A stand-in strategy that hands out given architectures λ at a time, each group twice (the
    train sample, then the valid sample of an iteration), cycling to fill the last group; it
    ignores updates."""

    def __init__(self, samples: list[np.ndarray], lam: int) -> None:
        self.samples, self.lam, self.pos, self.calls = samples, lam, 0, 0

    def left(self) -> bool:
        return self.pos < len(self.samples)

    def sample(self, n: int | None = None) -> np.ndarray:
        n = self.lam if n is None else n
        out = np.stack([self.samples[(self.pos + i) % len(self.samples)] for i in range(n)])
        self.calls += 1
        if self.calls % 2 == 0:
            self.pos += n
        return out

    def update(self, samples: np.ndarray, losses: Sequence[float]) -> None:
        pass


def _batch_statistics(net: nn.Module, affine: bool | set[str]) -> nn.Module:
    """Make ``net``'s BatchNorms normalise with batch statistics only, as the supernet's do;
    ``affine``: keep the affine parameters (all, or those of the named modules)."""
    for name, m in net.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.track_running_stats = False
            m.running_mean = m.running_var = m.num_batches_tracked = None
            if affine is not True and name not in affine:
                m.affine = False
                m.weight = m.bias = None
    return net


def plain_network(
    space: SearchSpace, sample: np.ndarray, shape: Sequence[int], classes: int
) -> nn.Module:
    """The static network of one sampled architecture at the search size (see the docstring)."""
    cfg = space.config
    if space.is_cells:
        from nasframe.cell_network import CellNetwork

        sp = cfg.space
        net = CellNetwork(
            sp, space.genotype(sample), shape, classes, cells=sp.cells, channels=sp.channels
        )
        return _batch_statistics(net, affine={"stem.1"})
    from nasframe.config_load import validate_data
    from nasframe.network import build_network

    return _batch_statistics(
        build_network(validate_data(space.freeze(sample)), shape, classes), True
    )


def plain_iteration(
    train_nets: Sequence[nn.Module],
    valid_nets: Sequence[nn.Module],
    optimizer: torch.optim.Optimizer,
    params: list[nn.Parameter],
    train_batch: tuple[torch.Tensor, torch.Tensor],
    valid_batch: tuple[torch.Tensor, torch.Tensor],
    grad_clip: float | None,
    precision: str = "fp32",
) -> list[float]:
    """The search iteration's work, by hand, on static networks."""
    xb, yb = train_batch
    xv, yv = valid_batch
    optimizer.zero_grad(set_to_none=True)
    for net in train_nets:  # the mean loss's gradients, one network's graph alive at a time
        with autocast(xb.device, precision):
            loss = F.cross_entropy(net(xb), yb)
        (loss / len(train_nets)).backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(params, grad_clip, foreach=True)
    optimizer.step()
    with torch.no_grad(), autocast(xv.device, precision):
        vlosses = torch.stack([F.cross_entropy(net(xv), yv) for net in valid_nets])
    return vlosses.tolist()


def measure(
    config_path: str,
    overrides: list[str],
    device: str,
    iters: int,
    warmup: int,
    shape: Sequence[int] | None = None,
    cover: bool = True,
    profile: str | None = None,
    concurrent_forwards: bool = False,
) -> dict:
    """Time ``iters`` search and baseline iterations after ``warmup`` ones; see the docstring."""
    cfg, _ = load_config(config_path, overrides)
    dev = torch.device(device)
    S = cfg.search
    shape = tuple(shape or ()) or _sample_shape(cfg)
    classes = num_classes_of(cfg, 10)
    torch.manual_seed(cfg.seed)
    g = torch.Generator(device="cpu").manual_seed(cfg.seed)
    pool = 8  # distinct batches cycled through, so that no batch is special
    x = torch.randn(pool, S.batch_size, *shape, generator=g).to(dev)
    y = torch.randint(0, classes, (pool, S.batch_size), generator=g).to(dev)

    def batches(k: int) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
        tb, vb = k % pool, (k + pool // 2) % pool
        return (x[tb], y[tb]), (x[vb], y[vb])

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    t0 = time.perf_counter()
    space = SearchSpace(cfg)
    net = make_supernet(space, shape, classes).to(dev)
    strategy = _TimedStrategy(
        registry.get("strategy", S.strategy)(
            space.categories, lam=S.lam, seed=cfg.seed, **S.strategy_options
        )
    )
    optimizer = build_optimizer(net.parameters(), S.optimizer)
    schedule = build_schedule(optimizer, S.optimizer, 10**6)
    params = list(net.parameters())
    net.train()
    threads = ThreadPoolExecutor(S.lam) if concurrent_forwards else None

    def search_step(k: int, strat: Any = strategy) -> tuple[tuple[float, float], Any]:
        t, c = time.perf_counter(), time.process_time()
        host, archs, varchs = search_iteration(
            net,
            optimizer,
            strat,
            *batches(k),
            S.lam,
            S.grad_clip,
            params,
            S.precision,
            pool=threads,
        )
        schedule.step()
        strat.update(varchs, host[: S.lam])
        # A host read ended it: the device is done.
        return (time.perf_counter() - t, time.process_time() - c), (archs, varchs)

    def plain_step(k: int, archs: np.ndarray, varchs: np.ndarray) -> tuple[float, float]:
        train_nets = [plain_network(space, a, shape, classes).to(dev).train() for a in archs]
        valid_nets = [plain_network(space, a, shape, classes).to(dev).train() for a in varchs]
        plain_params = [p for n in train_nets for p in n.parameters()]
        opt = build_optimizer(plain_params, S.optimizer)
        run = (train_nets, valid_nets, opt, plain_params, *batches(k), S.grad_clip, S.precision)
        plain_iteration(*run)  # first use: allocations, autograd and optimizer state
        _sync(dev)
        t, c = time.perf_counter(), time.process_time()
        plain_iteration(*run)
        return time.perf_counter() - t, time.process_time() - c

    # Warm-up: first every candidate of the supernet runs, backward and optimizer step included
    # (as in a search that has run a while), with architectures that cover them; the strategy is
    # neither asked nor updated, so that the timed iterations sample what a fresh run would.
    replay = _Replay(covering_samples(space) if cover else [], S.lam)
    k = 0
    startup_s = None
    while replay.left():
        search_step(k, replay)
        k += 1
        startup_s = startup_s or time.perf_counter() - t0
    warmup = max(warmup, 1)
    for _ in range(warmup):
        _, archs = search_step(k)
        k += 1
        startup_s = startup_s or time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else None
    plain_step(k - 1, *archs)
    # Rounds: one untimed search iteration (back to a warm search after the baseline's networks),
    # up to ROUND timed ones, then the baseline on the same architectures and batches.
    search_s: list[float] = []
    plain_s: list[float] = []
    search_cpu: list[float] = []
    plain_cpu: list[float] = []
    asng_s = 0.0
    while len(search_s) < iters:
        search_step(k)
        k += 1
        todo = []
        for _ in range(min(ROUND, iters - len(search_s))):
            before = strategy.seconds
            (seconds, cpu), archs = search_step(k)
            search_s.append(seconds)
            search_cpu.append(cpu)
            asng_s += strategy.seconds - before
            todo.append((k, archs))
            k += 1
        for j, archs in todo:
            seconds, cpu = plain_step(j, *archs)
            plain_s.append(seconds)
            plain_cpu.append(cpu)
    search_its = iters / sum(search_s)
    plain_its = iters / sum(plain_s)
    if profile:
        write_profile(profile, dev, lambda: search_step(k))
    return {
        "config": str(config_path),
        "overrides": overrides,
        "sample_shape": list(shape),
        "batch_size": S.batch_size,
        "lam": S.lam,
        "cells": cfg.space.cells if space.is_cells else None,
        "channels": cfg.space.channels if space.is_cells else None,
        "choices": len(space.categories),
        "categories": space.categories,
        "parameters": sum(p.numel() for p in params),
        "iterations": iters,
        "warmup": warmup,
        "covering_warmup": len(replay.samples),
        "search_it_per_s": search_its,
        "subnet_it_per_s": plain_its,
        "overhead_ratio": plain_its / search_its,
        # Cross-checks against noise: the ratio of the median iterations, and on a CPU the ratio
        # of the process's CPU time (what other processes on the machine hardly disturb).
        "overhead_ratio_of_medians": statistics.median(search_s) / statistics.median(plain_s),
        "overhead_ratio_cpu_time": sum(search_cpu) / sum(plain_cpu) if dev.type == "cpu" else None,
        "asng_share": asng_s / sum(search_s),
        "image_passes_per_s": search_its * 2 * S.lam * S.batch_size,
        "median_iteration_ms": 1000 * statistics.median(search_s),
        "subnet_median_iteration_ms": 1000 * statistics.median(plain_s),
        "search_iteration_ms": [round(1000 * t, 3) for t in search_s],
        "subnet_iteration_ms": [round(1000 * t, 3) for t in plain_s],
        "concurrent_forwards": concurrent_forwards,
        "startup_s": startup_s,
        "peak_gpu_mem_gib": peak,
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "cpu": cpu_name(),
        "threads": torch.get_num_threads(),
        "versions": {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if dev.type == "cuda" else None,
            "numpy": np.__version__,
        },
    }


def write_profile(path: str, dev: torch.device, step: Callable[[], Any], n: int = 5) -> None:
    """Where the time of ``n`` search iterations goes, as torch.profiler's table (for tuning)."""
    from torch.profiler import ProfilerActivity, profile

    cuda = dev.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        for _ in range(n):
            step()
    table = prof.key_averages().table(
        sort_by="self_cuda_time_total" if cuda else "self_cpu_time_total", row_limit=40
    )
    Path(path).write_text(f"{n} search iterations on {dev}\n{table}\n")


def _sample_shape(cfg) -> tuple[int, ...]:
    shape = cfg.data.options.get("shape") if cfg.data.options else None
    if shape:
        return tuple(shape)
    if cfg.data.name in KNOWN_SHAPES:
        return KNOWN_SHAPES[cfg.data.name]
    if cfg.space.type == "cells":
        return (3, 32, 32)
    from nasframe.data import load_dataset

    return tuple(load_dataset(cfg.data).sample_shape)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=str(ROOT / "spaces" / "asng_nas_cifar10.yaml"))
    ap.add_argument("--set", action="append", default=[], help="config overrides (key=value)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument(
        "--quick", action="store_true", help="a small cell space and few iterations (for a CPU)"
    )
    ap.add_argument("--iters", type=int, default=None, help="timed iterations (default 50)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed iterations first (5)")
    ap.add_argument(
        "--no-cover",
        action="store_true",
        help="skip the warm-up that runs every candidate once (long on a CPU at full size)",
    )
    ap.add_argument("--shape", help="sample shape, e.g. 3,32,32 (default: the data's)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument(
        "--concurrent-forwards",
        action="store_true",
        help="the search iteration's λ forward passes in concurrent threads (same numbers)",
    )
    ap.add_argument("--json", help="write the result to this file")
    ap.add_argument("--profile", help="also write torch.profiler's table of 5 iterations here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = list(args.set)
    quick_overrides: list[str] = []
    iters, warmup = 50, 5
    if args.quick:
        iters, warmup = QUICK_ITERS, QUICK_WARMUP
        cfg, _ = load_config(args.config, overrides)
        if cfg.space.type == "cells":
            quick_overrides = list(QUICK_OVERRIDES)
    iters = args.iters if args.iters is not None else iters
    warmup = args.warmup if args.warmup is not None else warmup
    shape = [int(s) for s in args.shape.split(",")] if args.shape else None
    out = measure(
        args.config,
        quick_overrides + overrides,
        args.device,
        iters,
        warmup,
        shape,
        not args.no_cover,
        args.profile,
        args.concurrent_forwards,
    )
    out["overrides"] = overrides
    out["quick"] = bool(args.quick)
    out["quick_overrides"] = quick_overrides
    print(
        f"search {out['search_it_per_s']:.2f} it/s ({out['image_passes_per_s']:.0f} image "
        f"passes/s, median {out['median_iteration_ms']:.1f} ms), sub-networks by hand "
        f"{out['subnet_it_per_s']:.2f} it/s: overhead ratio {out['overhead_ratio']:.3f}, "
        f"ASNG {100 * out['asng_share']:.2f}% of the time; start-up {out['startup_s']:.2f} s, "
        f"peak GPU memory {out['peak_gpu_mem_gib']} GiB, on {out['device']} "
        f"({out['cpu']}, {out['threads']} threads)"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
