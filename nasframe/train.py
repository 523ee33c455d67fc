"""Training one fixed architecture (an exported ``arch.yaml``) from scratch, and testing it.

Retraining uses the whole training data (both search halves); the test split is used only to
report accuracy.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state, write_json
from .config import Config
from .console import EpochProgress, say
from .data import batch_at, epoch_order, load_dataset
from .device import resolve_device
from .errors import UserError
from .interrupt import stop_on_signals
from .network import build_network, count_parameters, num_classes_of
from .optim import build_optimizer, build_schedule
from .search import CHECKPOINT, Interrupted, Meter, TrainingDiverged
from .space import SearchSpace
from .tblog import RunLogger

__all__ = ["run_train", "evaluate", "WEIGHTS"]

WEIGHTS = "weights.pt"


@torch.no_grad()
def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024
) -> tuple[float, float]:
    """Mean loss and accuracy of ``model`` (eval mode) on tensors already on its device."""
    was_training = model.training
    model.eval()
    loss = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device)
    for start in range(0, x.shape[0], batch_size):
        out = model(x[start : start + batch_size])
        yb = y[start : start + batch_size]
        loss += F.cross_entropy(out, yb, reduction="sum")
        correct += (out.argmax(1) == yb).sum()
    model.train(was_training)
    n = max(x.shape[0], 1)
    loss_v, correct_v = torch.stack([loss, correct.float()]).tolist()
    return loss_v / n, correct_v / n


def run_train(
    config: Config, run_dir: str | Path, *, resume: bool = False, progress: bool = True
) -> dict[str, Any]:
    """Train the fixed architecture of ``config``; write weights, events and ``summary.json``."""
    if config.train.growth:
        raise UserError(
            "train.growth: growth schedules are not wired into `nasframe train` yet; remove the "
            "growth section (the growth plugins can be used from Python, see docs/growth.md)"
        )
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(config.device)
    data = load_dataset(config.data)
    T = config.train
    torch.manual_seed(config.seed)
    model = build_network(config, data.sample_shape, num_classes_of(config, data.num_classes))
    model = model.to(device)
    space_hash = config.space_hash or SearchSpace(config).hash
    x, y = data.x_train.to(device), data.y_train.to(device)
    xt, yt = data.x_test.to(device), data.y_test.to(device)
    bs = min(T.batch_size, x.shape[0])
    steps = max(1, x.shape[0] // bs)
    optimizer = build_optimizer(model.parameters(), T.optimizer)
    schedule = build_schedule(optimizer, T.optimizer, T.epochs * steps)
    pos = {"epoch": 0, "step": 0, "global_step": 0, "wall_s": 0.0}
    meter = Meter()
    metrics: dict[str, float] = {}
    ckpt_path = run_dir / CHECKPOINT

    def snapshot() -> dict[str, Any]:
        return {
            "kind": "train",
            "space_hash": space_hash,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict(),
            "rng": rng_state(),
            "pos": dict(pos),
            "meter": meter.state_dict(),
            "metrics": dict(metrics),
        }

    if resume:
        ckpt = load_checkpoint(ckpt_path)
        if ckpt.get("kind") != "train" or ckpt.get("space_hash") != space_hash:
            raise UserError(f"{ckpt_path}: this checkpoint is not from training this architecture")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        schedule.load_state_dict(ckpt["schedule"])
        set_rng_state(ckpt["rng"])
        pos.update(ckpt["pos"])
        meter.load_state_dict(ckpt["meter"])
        metrics.update(ckpt["metrics"])
    else:
        say(
            f"device: {device}   data: {data.name}, {x.shape[0]} train / {xt.shape[0]} test   "
            f"parameters: {count_parameters(model):,}   run: {run_dir}"
        )
    logger = RunLogger(
        run_dir, config.log.tensorboard, purge_step=pos["global_step"] if resume else None
    )
    t_start, wall0 = time.perf_counter(), pos["wall_s"]
    try:
        with stop_on_signals() as stop:
            while pos["epoch"] < T.epochs:
                epoch = pos["epoch"]
                order = epoch_order(x.shape[0], config.seed, epoch, 2, device)
                bar = EpochProgress(epoch, T.epochs, steps, pos["step"], enabled=progress)
                model.train()
                loss_sum = torch.zeros((), device=device)
                correct = torch.zeros((), device=device)
                first = pos["step"]
                while pos["step"] < steps:
                    xb, yb = batch_at(x, y, order, pos["step"], bs)
                    optimizer.zero_grad(set_to_none=True)
                    out = model(xb)
                    loss = F.cross_entropy(out, yb)
                    loss.backward()
                    if T.grad_clip:
                        torch.nn.utils.clip_grad_norm_(model.parameters(), T.grad_clip)
                    optimizer.step()
                    schedule.step()
                    loss_sum += loss.detach()
                    correct += (out.argmax(1) == yb).sum()
                    pos["step"] += 1
                    pos["global_step"] += 1
                    bar.step(xb.shape[0])
                    if stop:
                        pos["wall_s"] = wall0 + time.perf_counter() - t_start
                        save_checkpoint(snapshot(), ckpt_path)
                        raise Interrupted(
                            f"stopped by signal {stop.signal}; checkpoint written; continue with: "
                            f"nasframe train --resume {run_dir}"
                        )
                done = pos["step"] - first
                if done:
                    tl, tc = torch.stack([loss_sum, correct.float()]).tolist()
                    if tl != tl or tl in (float("inf"), float("-inf")):
                        raise TrainingDiverged(
                            f"non-finite training loss in epoch {epoch + 1}; try a smaller "
                            "train.optimizer.lr or set train.grad_clip"
                        )
                    meter.add("train/loss", tl / done, done)
                    meter.add("train/acc", tc / (done * bs), done)
                test_loss, test_acc = evaluate(model, xt, yt)
                metrics = {
                    "train/loss": meter.mean("train/loss"),
                    "train/acc": meter.mean("train/acc"),
                    "test/loss": test_loss,
                    "test/acc": test_acc,
                }
                logger.scalars(metrics, pos["global_step"])
                bar.close(**{k.replace("/", "_"): v for k, v in metrics.items()})
                meter = Meter()
                pos["epoch"] += 1
                pos["step"] = 0
                pos["wall_s"] = wall0 + time.perf_counter() - t_start
                save_checkpoint(snapshot(), ckpt_path)
                logger.flush()
    finally:
        logger.close()
    save_checkpoint(model.state_dict(), run_dir / WEIGHTS)
    summary = {
        "kind": "train",
        "name": config.name,
        "space_hash": space_hash,
        "device": str(device),
        "epochs": T.epochs,
        "parameters": count_parameters(model),
        "wall_time_s": pos["wall_s"],
        "train_loss": metrics.get("train/loss"),
        "train_acc": metrics.get("train/acc"),
        "test_loss": metrics.get("test/loss"),
        "test_acc": metrics.get("test/acc"),
        "weights": WEIGHTS,
    }
    write_json(summary, run_dir / "summary.json")
    say(f"test accuracy: {summary['test_acc']:.4f}   weights: {run_dir / WEIGHTS}")
    return summary
