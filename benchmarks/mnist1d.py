"""Searched vs random architectures on MNIST-1D.

For each seed: search ``spaces/mnist1d.yaml`` with ASNG, retrain the most likely architecture, and
retrain architectures drawn uniformly at random from the same space with the same training budget
(``--random-per-seed``, 2 by default). Writes ``searched_test_acc`` and ``random_test_acc`` (lists
over seeds; a seed's random figure is the mean of its random architectures) and timings.

    python benchmarks/mnist1d.py --seeds 3 --json mnist1d.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from nasframe import SearchSpace, load_config, run_search, run_train, validate_data

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> dict:
    # Run as a script, this folder is sys.path[0] and this file would shadow the mnist1d package.
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seeds", type=int, default=3)
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
    args = p.parse_args(argv)
    overrides = list(args.set) + ([f"device={args.device}"] if args.device else [])

    searched, random_acc, archs, random_archs, times = [], [], [], [], []
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            config, _ = load_config(args.config, [*overrides, f"seed={seed}"])
            t0 = time.perf_counter()
            search = run_search(config, Path(tmp) / f"search{seed}", progress=False)
            t_search = time.perf_counter() - t0
            arch = SearchSpace(config).freeze(SearchSpace(config).encode(search["most_likely"]))
            t0 = time.perf_counter()
            trained = run_train(validate_data(arch), Path(tmp) / f"train{seed}", progress=False)
            t_train = time.perf_counter() - t0
            space = SearchSpace(config)
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
            searched.append(trained["test_acc"])
            random_acc.append(float(np.mean(accs)))
            archs.append(space.describe(space.encode(search["most_likely"])))
            times.append({"search_s": t_search, "retrain_s": t_train})
            print(
                f"seed {seed}: searched {trained['test_acc']:.4f}  random {accs}", file=sys.stderr
            )
    result = {
        "config": args.config,
        "overrides": overrides,
        "seeds": args.seeds,
        "random_per_seed": args.random_per_seed,
        "searched_test_acc": searched,
        "random_test_acc": random_acc,
        "searched_mean": float(np.mean(searched)),
        "random_mean": float(np.mean(random_acc)),
        "searched_archs": archs,
        "random_archs": random_archs,
        "times": times,
        "wall_time_s": time.perf_counter() - t_all,
        "device": str(search["device"]),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_threads": torch.get_num_threads(),
    }
    Path(args.json).write_text(json.dumps(result, indent=2))
    print(json.dumps({k: result[k] for k in ("searched_mean", "random_mean", "wall_time_s")}))
    return result


if __name__ == "__main__":
    main()
