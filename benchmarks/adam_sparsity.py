"""Adam-induced sparsity (Yaguchi et al., 2018): Adam vs SGD, then pruning with the same threshold.

The same ReLU MLP (same initial weights, same data order) is trained on scikit-learn's digits twice,
with an L2 penalty in the loss: once with Adam, once with SGD with momentum. Both are then pruned by
:class:`nasframe_prune.AdamSparsityPruner` with the same threshold ξ. Expected (paper): Adam leaves
many units whose incoming weights are ~0 (removed at no accuracy cost); SGD does not.

    python benchmarks/adam_sparsity.py --json adam_sparsity.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import numpy as np
import sklearn
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from nasframe_prune import AdamSparsityPruner, check_sparsity_setup, l2_penalty, mask_units


def make_mlp(widths: list[int], n_in: int, n_out: int) -> nn.Sequential:
    mods: list[nn.Module] = []
    prev = n_in
    for w in widths:
        mods += [nn.Linear(prev, w), nn.ReLU()]
        prev = w
    mods.append(nn.Linear(prev, n_out))
    return nn.Sequential(*mods)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def train(model, opt, x, y, epochs, batch, weight_decay, seed) -> float:
    steps = epochs * ((len(x) + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    gen = torch.Generator().manual_seed(seed)
    crit = nn.CrossEntropyLoss()
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch):
            idx = perm[i : i + batch]
            loss = crit(model(x[idx]), y[idx]) + l2_penalty(model, weight_decay, include_bias=True)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return float(loss.detach())


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", help="write the results to this file")
    ap.add_argument("--widths", default="600,600", help="hidden widths")
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--weight-decay", type=float, default=1e-3, help="L2 coefficient in the loss")
    ap.add_argument("--adam-lr", type=float, default=1e-3)
    ap.add_argument("--sgd-lr", type=float, default=0.05)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--threshold", type=float, default=1e-3, help="ξ")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    torch.manual_seed(args.seed)

    digits = load_digits()
    xs = (digits.data / 16.0).astype(np.float32)
    x_tr, x_te, y_tr, y_te = train_test_split(
        xs, digits.target, test_size=0.3, random_state=args.seed, stratify=digits.target
    )
    x_tr, x_te = torch.from_numpy(x_tr), torch.from_numpy(x_te)
    y_tr, y_te = torch.from_numpy(y_tr).long(), torch.from_numpy(y_te).long()
    widths = [int(w) for w in args.widths.split(",")]
    init = make_mlp(widths, x_tr.shape[1], 10)
    pruner = AdamSparsityPruner(args.threshold)

    results: dict = {}
    for name in ("adam", "sgd"):
        model = make_mlp(widths, x_tr.shape[1], 10)
        model.load_state_dict(init.state_dict())
        if name == "adam":
            opt = torch.optim.Adam(model.parameters(), lr=args.adam_lr)
        else:
            opt = torch.optim.SGD(model.parameters(), lr=args.sgd_lr, momentum=args.momentum)
        problems = check_sparsity_setup(opt, True, nn.ReLU(), warn=False)
        t0 = time.perf_counter()
        final_loss = train(
            model, opt, x_tr, y_tr, args.epochs, args.batch, args.weight_decay, args.seed
        )
        train_s = time.perf_counter() - t0
        model.eval()
        norms = pruner.unit_norms(model, x_te)
        pruned, report = pruner.prune(model, x_te)
        masked = mask_units(model, report.removed_by_layer)
        with torch.no_grad():
            diff = float((pruned(x_te) - masked(x_te)).abs().max())
        all_norms = torch.cat(list(norms.values()))
        results[name] = {
            "removed_fraction": report.removed_fraction,
            "removed_units": report.removed_units,
            "prunable_units": report.prunable_units,
            "kept_widths": report.kept_widths,
            "acc_before": accuracy(model, x_te, y_te),
            "acc_after": accuracy(pruned, x_te, y_te),
            "train_acc_before": accuracy(model, x_tr, y_tr),
            "train_acc_after": accuracy(pruned, x_tr, y_tr),
            "params_before": report.params_before,
            "params_after": report.params_after,
            "macs_before": report.macs_before,
            "macs_after": report.macs_after,
            "max_abs_diff_pruned_vs_masked": diff,
            "norm_quantiles": {
                q: float(all_norms.quantile(float(q))) for q in ("0.05", "0.25", "0.5", "0.75")
            },
            "final_train_loss": final_loss,
            "train_seconds": round(train_s, 2),
            "setup_problems": problems,
        }
        print(
            f"{name:>4}: removed {report.removed_units}/{report.prunable_units} units "
            f"({100 * report.removed_fraction:.1f}%), test acc "
            f"{100 * results[name]['acc_before']:.2f}% -> {100 * results[name]['acc_after']:.2f}%, "
            f"params {report.params_before} -> {report.params_after}, "
            f"MACs {report.macs_before} -> {report.macs_after}, |pruned-masked| {diff:.2e}, "
            f"median norm {results[name]['norm_quantiles']['0.5']:.3g}"
        )
    ratio = results["adam"]["removed_fraction"] / max(results["sgd"]["removed_fraction"], 1e-12)
    out = {
        "benchmark": "adam_sparsity",
        "dataset": f"sklearn digits ({len(x_tr)} train / {len(x_te)} test, pixels / 16)",
        "config": {
            "model": f"MLP 64-{'-'.join(map(str, widths))}-10, ReLU",
            "epochs": args.epochs,
            "batch": args.batch,
            "l2_in_loss": args.weight_decay,
            "l2_on": "weights and biases of the Linear layers (l2_penalty)",
            "lr_schedule": "cosine to 0 over all steps (both optimizers)",
            "adam": {"lr": args.adam_lr, "betas": [0.9, 0.999]},
            "sgd": {"lr": args.sgd_lr, "momentum": args.momentum},
            "threshold": args.threshold,
            "seed": args.seed,
        },
        "adam": results["adam"],
        "sgd": results["sgd"],
        "adam_over_sgd_removed": ratio if results["sgd"]["removed_fraction"] > 0 else None,
        "versions": {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "numpy": np.__version__,
            "scikit-learn": sklearn.__version__,
        },
        "device": f"cpu ({platform.processor() or platform.machine()}), "
        f"{torch.get_num_threads()} threads",
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return out


if __name__ == "__main__":
    main()
