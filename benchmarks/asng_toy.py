"""ASNG on the noise-free toy of the reference: iterations to convergence.

30 categorical variables with 8 categories; loss = number of variables that differ from a hidden
target; λ = 2. Converged: every target probability >= 0.9 x the cap 1 - 1/valid_d (the definition
in shared/reference/asng_vectors.json). RESULTS.md compares the median over seeds 0..9 with the
reference implementation's 1149; the vectors file checks single steps and does not hold that figure.
Also times the sampling + update of one iteration.

    python benchmarks/asng_toy.py --json asng_toy.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from nasframe import ASNG


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--d", type=int, default=30)
    p.add_argument("--c", type=int, default=8)
    p.add_argument("--json", required=True)
    args = p.parse_args(argv)
    cats = [args.c] * args.d
    rs = np.random.RandomState(12345)
    target = np.array([rs.randint(c) for c in cats])
    iters, seconds = [], 0.0
    for seed in range(args.seeds):
        a = ASNG(cats, seed=seed)
        t = 0
        t0 = time.perf_counter()
        while a.theta[np.arange(args.d), target].min() < 0.9 * a.cap and t < 100_000:
            x = a.sample()
            a.update(x, (x != target).sum(1))
            t += 1
        seconds += time.perf_counter() - t0
        iters.append(t)
    result = {
        "d": args.d,
        "categories": args.c,
        "iterations": iters,
        "median_iterations": float(np.median(iters)),
        "reference_median_iterations": 1149,
        "us_per_iteration": 1e6 * seconds / max(sum(iters), 1),
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
    Path(args.json).write_text(json.dumps(result, indent=2))
    print(json.dumps({k: result[k] for k in ("median_iterations", "us_per_iteration")}))
    return result


if __name__ == "__main__":
    main()
