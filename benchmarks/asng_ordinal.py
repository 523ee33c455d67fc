"""Ordinal against categorical ASNG on an ordered toy: how fast each finds the best option.

``d`` choices of ``k`` ordered options (think widths or depths), a hidden target per choice, and
loss = Σ (option index − target)², optionally plus Gaussian noise of std ``--noise`` (one-shot
losses are noisy); λ = ``--lam`` (2 by default, the search protocol's). Each seed runs both models of the same space — every choice categorical
(the reference's ASNG) or every choice ``ordinal: true`` (a rounded Gaussian per choice) — for
``--budget`` iterations and records: the first iteration at which the distribution counts as
converged (``converged(0.9)``), the squared distance of the most likely architecture to the target
at a few checkpoints, and whether the final most likely architecture is the target.

    python benchmarks/asng_ordinal.py --lam 4 --json asng_ordinal_lam4.json
    python benchmarks/asng_ordinal.py --lam 2 --noise 2 --json asng_ordinal_lam2_noise2.json
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import numpy as np

from nasframe import ASNG

CHECKPOINTS = (50, 100, 300, 1000, 3000)


def run(
    mode: str, seed: int, d: int, k: int, lam: int, target: np.ndarray, noise: float, budget: int
) -> dict:
    """One search of the toy; the noise has its own stream, the same for both modes."""
    a = ASNG([k] * d, seed=seed, lam=lam, ordinal=range(d) if mode == "ordinal" else ())
    rs = np.random.RandomState(10_000 + seed)
    converged_at, distance = None, {}
    for t in range(1, budget + 1):
        x = a.sample()
        loss = ((x - target) ** 2).sum(1) + noise * rs.randn(len(x))
        a.update(x, loss)
        if converged_at is None and a.converged(0.9):
            converged_at = t
        if t in CHECKPOINTS:
            distance[t] = int(((a.mle() - target) ** 2).sum())
    return {
        "converged_at": converged_at,
        "distance": distance,
        "found_target": bool((a.mle() == target).all()),
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--d", type=int, default=10, help="number of choices")
    p.add_argument("--k", type=int, default=8, help="options per choice")
    p.add_argument("--lam", type=int, default=2, help="samples per update")
    p.add_argument("--noise", type=float, default=0.0, help="std of the loss noise")
    p.add_argument("--budget", type=int, default=3000, help="iterations per search")
    p.add_argument("--json", required=True)
    args = p.parse_args(argv)
    target = np.random.RandomState(12345).randint(args.k, size=args.d)
    out: dict = {
        "d": args.d,
        "k": args.k,
        "lam": args.lam,
        "noise": args.noise,
        "budget": args.budget,
        "target": target.tolist(),
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
    for mode in ("categorical", "ordinal"):
        runs = [
            run(mode, s, args.d, args.k, args.lam, target, args.noise, args.budget)
            for s in range(args.seeds)
        ]
        conv = [r["converged_at"] for r in runs]
        done = [c for c in conv if c is not None]
        out[mode] = {
            "runs": runs,
            "converged": len(done),
            "median_converged_at": float(np.median(done)) if done else None,
            "found_target": sum(r["found_target"] for r in runs),
            "mean_distance": {
                t: float(np.mean([r["distance"][t] for r in runs]))
                for t in CHECKPOINTS
                if t <= args.budget
            },
        }
    Path(args.json).write_text(json.dumps(out, indent=2))
    for mode in ("categorical", "ordinal"):
        r = out[mode]
        print(
            f"{mode:11s} converged {r['converged']}/{args.seeds} (median at "
            f"{r['median_converged_at']}), target found {r['found_target']}/{args.seeds}, "
            f"mean squared distance {r['mean_distance']}"
        )
    return out


if __name__ == "__main__":
    main()
