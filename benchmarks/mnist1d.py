"""Searched vs random architectures on MNIST-1D.

For each seed: search ``spaces/mnist1d.yaml`` with ASNG, retrain the most likely architecture (or
the selected one, with ``search.select`` or ``--set search.strategy=random``), and
retrain architectures drawn uniformly at random from the same space with the same training budget
(``--random-per-seed``, 2 by default). Writes ``searched_test_acc`` and ``random_test_acc`` (lists
over seeds; a seed's random figure is the mean of its random architectures), timings, and
``searched_latency_ms``: one example through each searched network on the CPU (for
``--set search.cost=latency``; measure with ``--jobs 1`` for undisturbed figures; ``arch_latency.py``
times the ``searched_samples`` of several runs again, side by side).

    python benchmarks/mnist1d.py --seeds 3 --json mnist1d.json
    python benchmarks/mnist1d.py --seeds 3 --random-per-seed 5 --jobs 3 --json mnist1d.json

``--jobs N`` runs N seeds at once, each in its own single-threaded process (many cores, or one GPU
shared by several processes), and merges their results into the same format, in seed order.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from nasframe import (
    Config,
    SearchSpace,
    build_network,
    load_config,
    run_search,
    run_train,
    validate_data,
)
from nasframe.latency import measure_ms, on_device_with_constants

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> dict:
    # Run as a script, this folder is sys.path[0] and this file would shadow the mnist1d package.
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument(
        "--first-seed", type=int, default=0, help="seeds run are first-seed .. first-seed+seeds-1"
    )
    p.add_argument("--config", default=str(ROOT / "spaces" / "mnist1d.yaml"))
    p.add_argument("--json", required=True, help="where to write the results")
    p.add_argument("--set", action="append", default=[], help="config overrides (key=value)")
    p.add_argument("--device", default=None, help="override the config's device")
    p.add_argument(
        "--random-per-seed",
        type=int,
        default=2,
        help="random architectures trained per seed (their mean is the seed's figure)",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="seeds run at once, one single-threaded process each (for many cores or a GPU)",
    )
    args = p.parse_args(argv)
    if args.jobs > 1:
        return run_parallel(args)
    overrides = list(args.set) + ([f"device={args.device}"] if args.device else [])

    searched, random_acc, archs, random_archs, times, latency = [], [], [], [], [], []
    samples: list[list[int]] = []
    device = ""  # set by the first search; write() reads it when called
    t_all = time.perf_counter()

    def write() -> dict:
        """Write what is done so far: a run cut short still leaves its finished trainings."""
        result = {
            "config": args.config,
            "overrides": overrides,
            "seeds": args.seeds,
            "first_seed": args.first_seed,
            "random_per_seed": args.random_per_seed,
            "searched_test_acc": searched,
            "random_test_acc": random_acc,
            "searched_mean": _mean(searched),
            "random_mean": _mean(random_acc),
            "searched_archs": archs,
            "searched_latency_ms": latency,
            "searched_samples": samples,
            "random_archs": random_archs,
            "times": times,
            "wall_time_s": time.perf_counter() - t_all,
            "device": device,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "cpu_threads": torch.get_num_threads(),
        }
        Path(args.json).write_text(json.dumps(result, indent=2))
        return result

    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            config, _ = load_config(args.config, [*overrides, f"seed={seed}"])
            space = SearchSpace(config)
            t0 = time.perf_counter()
            search = run_search(config, Path(tmp) / f"search{seed}", progress=False)
            t_search = time.perf_counter() - t0
            device = str(search["device"])
            chosen = search["selection"]["chosen"] if search["selection"] else None
            best = space.encode(chosen or search["most_likely"])
            t0 = time.perf_counter()
            trained = run_train(
                validate_data(space.freeze(best)), Path(tmp) / f"train{seed}", progress=False
            )
            t_train = time.perf_counter() - t0
            searched.append(trained["test_acc"])
            archs.append(space.describe(best))
            samples.append([int(v) for v in best])
            shape, classes = trained["sample_shape"], trained["num_classes"]
            latency.append(cpu_latency_ms(validate_data(space.freeze(best)), shape, classes))
            times.append({"search_s": t_search, "retrain_s": t_train})
            write()
            rng = np.random.default_rng(10_000 + seed)
            accs = []
            for k in range(args.random_per_seed):
                sample = space.random_sample(rng)
                rnd = run_train(
                    validate_data(space.freeze(sample)),
                    Path(tmp) / f"random{seed}-{k}",
                    progress=False,
                )
                accs.append(rnd["test_acc"])
                random_archs.append(
                    {"seed": seed, "test_acc": rnd["test_acc"], "arch": space.describe(sample)}
                )
                write()
            if accs:
                random_acc.append(float(np.mean(accs)))
            print(
                f"seed {seed}: searched {trained['test_acc']:.4f}  random {accs}", file=sys.stderr
            )
    result = write()
    print(json.dumps({k: result[k] for k in ("searched_mean", "random_mean", "wall_time_s")}))
    return result


def cpu_latency_ms(arch: Config, sample_shape: list[int], classes: int) -> float:
    """Milliseconds of one example through the frozen network on the CPU: the median of three
    medians of :func:`nasframe.latency.measure_ms` (constant weights, as search.cost: latency)."""
    with torch.device("meta"):
        net = build_network(arch, sample_shape, classes)
    net = on_device_with_constants(net, torch.device("cpu"))
    x = torch.full((1, *sample_shape), 0.5)
    return float(np.median([measure_ms(net, (x,)) for _ in range(3)]))


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def run_parallel(args: argparse.Namespace) -> dict:
    """Run every seed in its own process (``--jobs`` at a time) and merge their JSON in seed order."""
    t_all = time.perf_counter()
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    # Each seed writes its own file beside --json (kept if this process is killed), merged here.
    out = Path(args.json)
    parts = {s: out.with_name(f"{out.stem}.seed{s}{out.suffix}") for s in seeds}
    running: list[subprocess.Popen] = []
    for s in seeds:
        while len(running) >= args.jobs:
            running.pop(0).wait()
        cmd = [sys.executable, __file__, "--seeds", "1", "--first-seed", str(s)]
        cmd += ["--config", args.config, "--random-per-seed", str(args.random_per_seed)]
        cmd += [f"--set={o}" for o in args.set] + ["--json", str(parts[s])]
        cmd += ["--device", args.device] if args.device else []
        running.append(subprocess.Popen(cmd, env=env))
    for proc in running:
        proc.wait()
    done = [json.loads(f.read_text()) for f in parts.values() if f.exists()]
    if not done:
        raise SystemExit("no seed finished")
    result = dict(done[0])
    merged = ("searched_test_acc", "random_test_acc", "searched_archs", "searched_latency_ms")
    merged += ("searched_samples",)
    for key in (*merged, "random_archs", "times"):
        result[key] = [v for d in done for v in d.get(key, [])]
    result.update(
        seeds=args.seeds,
        first_seed=args.first_seed,
        jobs=args.jobs,
        seeds_done=[d["first_seed"] for d in done],
        searched_mean=_mean(result["searched_test_acc"]),
        random_mean=_mean(result["random_test_acc"]),
        wall_time_s=time.perf_counter() - t_all,
    )
    out.write_text(json.dumps(result, indent=2))
    for f in parts.values():
        f.unlink(missing_ok=True)
    print(json.dumps({k: result[k] for k in ("searched_mean", "random_mean", "wall_time_s")}))
    return result


if __name__ == "__main__":
    main()
