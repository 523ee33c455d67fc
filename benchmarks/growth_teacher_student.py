"""GradMax paper's teacher–student study (Evci et al., ICLR 2022, §5.1 / growneuron's notebook).

A random teacher MLP ``10 → 10 → 10`` (no biases, weights U(-1, 1), ReLU with derivative 1 at 0)
labels 1000 Gaussian inputs. A student of the same shape starts at half the hidden width (5) and
grows one hidden unit every 200 full-batch SGD steps (lr 0.1, MSE), 5 times starting at step 200,
then trains to step 1500. Growth methods: gradmax, gradmax_opt, random, firefly; baselines: the
small (5) and big (10) students trained without growth. Every growth student of a seed starts from
the same weights (the first 5 units of the big student).

Reported per method, mean ± std over seeds: ``final_loss`` (training loss after the last step),
``new_unit_grad_norm`` (norm of the gradient of a new unit's incoming weights at its growth event,
averaged over events), and ``max_output_change_at_growth`` (largest |Δ output| over growth events).

    python benchmarks/growth_teacher_student.py --json growth_ts.json [--seeds 10]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from nasframe_growth import GrowthController, GrowthSchedule, ReLU0, make_strategy

METHODS = ["gradmax", "gradmax_opt", "random", "firefly", "baseline_small", "baseline_big"]


def mlp(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(d_in, hidden, bias=False), ReLU0(), nn.Linear(hidden, d_out, bias=False)
    )


def run(method: str, seed: int, args) -> dict:
    g = torch.Generator().manual_seed(1000 + seed)
    teacher = mlp(args.d, args.width, args.d)
    with torch.no_grad():
        for p in teacher.parameters():
            p.uniform_(-1.0, 1.0, generator=g)
        x = torch.randn(args.n, args.d, generator=g)
        y = teacher(x)
    torch.manual_seed(seed)
    student = mlp(args.d, args.width, args.d)  # same initial weights for every method of a seed
    ctrl = None
    if method != "baseline_big":
        # Shrinks the student to half width; baseline_small then never grows.
        ctrl = GrowthController(
            student,
            make_strategy("random" if method == "baseline_small" else method, seed=seed),
            schedule=GrowthSchedule(every=args.every, steps=args.growths, start_fraction=0.5),
            targets=[args.width],
        )
    opt = torch.optim.SGD(student.parameters(), lr=args.lr)

    def loss_fn():
        return F.mse_loss(student(x), y)

    total = args.every * args.growths + args.final_steps
    grad_norms, out_changes, losses = [], [], []
    for step in range(1, total + 1):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if ctrl is not None and method != "baseline_small":
            with torch.no_grad():
                before = student(x)
            info = ctrl.maybe_grow(step, loss_fn, opt)
            if info is not None:
                with torch.no_grad():
                    out_changes.append((student(x) - before).abs().max().item())
                for p in info["pairs"]:
                    grad_norms += p["new_unit_grad_norms"]
    with torch.no_grad():
        final = loss_fn().item()
    hidden = student[0].out_features
    return {
        "final_loss": final,
        "hidden_width": hidden,
        "new_unit_grad_norm": statistics.fmean(grad_norms) if grad_norms else None,
        "max_output_change_at_growth": max(out_changes) if out_changes else None,
        "loss_curve_every_100": losses[::100],
    }


def summarise(values: list[float | None]) -> dict | None:
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return {
        "mean": statistics.fmean(vals),
        "std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
        "per_seed": vals,
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--json", required=True)
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--d", type=int, default=10, help="input and output dimension")
    p.add_argument("--width", type=int, default=10, help="teacher (and big student) hidden width")
    p.add_argument("--n", type=int, default=1000, help="training points")
    p.add_argument("--every", type=int, default=200)
    p.add_argument("--final-steps", type=int, default=500)
    p.add_argument("--lr", type=float, default=0.1)
    args = p.parse_args(argv)
    args.growths = args.width - (args.width + 1) // 2  # one unit per event, half to full width
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    runs = {m: [run(m, s, args) for s in range(args.seeds)] for m in METHODS}
    table = {
        m: {
            key: summarise([r[key] for r in rs])
            for key in ("final_loss", "new_unit_grad_norm", "max_output_change_at_growth")
        }
        for m, rs in runs.items()
    }
    gm, rd = runs["gradmax"], runs["random"]
    result = {
        "setup": {k: v for k, v in vars(args).items() if k != "json"},
        "methods": table,
        "gradmax_beats_random_final_loss_seeds": sum(
            a["final_loss"] < b["final_loss"] for a, b in zip(gm, rd, strict=True)
        ),
        "gradmax_beats_random_grad_norm_seeds": sum(
            a["new_unit_grad_norm"] > b["new_unit_grad_norm"] for a, b in zip(gm, rd, strict=True)
        ),
        "runs": runs,
        "seconds": time.perf_counter() - t0,
        "device": f"CPU ({torch.get_num_threads()} thread), {platform.processor() or platform.machine()}",
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    Path(args.json).write_text(json.dumps(result, indent=2))
    for m in METHODS:
        row = table[m]
        cells = [
            f"{row[k]['mean']:.4g} ± {row[k]['std']:.2g}" if row[k] else "–"
            for k in ("final_loss", "new_unit_grad_norm", "max_output_change_at_growth")
        ]
        print(f"| {m} | " + " | ".join(cells) + " |")
    print(
        f"gradmax < random final loss on {result['gradmax_beats_random_final_loss_seeds']}"
        f"/{args.seeds} seeds; larger new-unit gradients on "
        f"{result['gradmax_beats_random_grad_norm_seeds']}/{args.seeds}; {result['seconds']:.0f} s"
    )
    return result


if __name__ == "__main__":
    main()
