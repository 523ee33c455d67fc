"""Training one fixed architecture (an exported ``arch.yaml``) from scratch, and testing it.

Retraining uses the whole training data (both search halves); the test split is used only to
report accuracy.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import registry
from .checkpoint import save_checkpoint, write_json
from .config import Config
from .console import EpochProgress, say
from .data import augment_at, batch_at, check_augment, epoch_order, load_dataset
from .device import resolve_device
from .errors import Interrupted, TrainingDiverged, UserError
from .interrupt import stop_on_signals
from .latency import latency_device, network_latency_ms
from .macs import count_macs
from .network import build_network, count_parameters, num_classes_of
from .optim import build_optimizer, build_schedule
from .precision import autocast
from .regularize import l2_penalty
from .run_files import CHECKPOINT, SUMMARY, WEIGHTS
from .runstate import RunState
from .space import SearchSpace
from .tblog import RunLogger, flat_params, log_speed

__all__ = ["run_train", "evaluate", "WEIGHTS"]


@torch.no_grad()
def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int = 1024,
    precision: str = "fp32",
) -> tuple[float, float]:
    """Mean loss and accuracy of ``model`` (eval mode) on tensors already on its device."""
    was_training = model.training
    model.eval()
    loss = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device)
    for start in range(0, x.shape[0], batch_size):
        yb = y[start : start + batch_size]
        with autocast(x.device, precision):
            out = model(x[start : start + batch_size])
            loss += F.cross_entropy(out, yb, reduction="sum")
        correct += (out.argmax(1) == yb).sum()
    model.train(was_training)
    n = max(x.shape[0], 1)
    loss_v, correct_v = torch.stack([loss, correct.float()]).tolist()
    return loss_v / n, correct_v / n


def _growth_controller(model: nn.Module, cfg: Any) -> Any:
    """The growth plugin's controller for ``train.growth`` (it shrinks ``model`` to start)."""
    strategy = registry.get("growth", cfg.strategy)
    try:
        return strategy.controller(
            model,
            every=cfg.every,
            steps=cfg.steps,
            start_fraction=cfg.start_fraction,
            layers=cfg.layers,
            options=dict(cfg.options),  # apart: a strategy may have its own `steps`
        )
    except (ValueError, TypeError) as e:
        raise growth_error(e) from None


def growth_error(e: Exception) -> UserError:
    """A growth plugin's refusal as a located message: at ``train.growth.options.KEY`` when the
    error names the option (``key`` and ``what`` attributes, as ``nasframe_growth`` raises)."""
    key = getattr(e, "key", None)
    if isinstance(key, str):
        return UserError(f"train.growth.options.{key}: {getattr(e, 'what', e)}")
    return UserError(f"train.growth: {e}")


def _check_growth_fits(growth: Any, total: int, epochs: int, steps: int) -> None:
    """Every growth event must happen during training, or the network ends below its width."""
    schedule = getattr(growth, "schedule", None)
    planned = schedule.growth_steps() if hasattr(schedule, "growth_steps") else []
    if planned and planned[-1] > total:
        raise UserError(
            f"train.growth: the last of {len(planned)} growth events comes after optimizer step "
            f"{planned[-1]}, but training takes {total} steps ({epochs} epochs of {steps}); the "
            f"network would end below its width: set train.growth.every to at most "
            f"{max(total // len(planned), 1)} or train longer"
        )


def _training_loss(
    model: nn.Module, xb: torch.Tensor, yb: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Logits, loss, and the weighted loss of the auxiliary head of cell networks (None without
    one), which the reference adds to the loss it minimises but does not report."""
    weight = getattr(model, "auxiliary_weight", 0.0)
    if not weight:
        out = model(xb)
        return out, F.cross_entropy(out, yb), None
    out, aux = model(xb, auxiliary=True)
    return out, F.cross_entropy(out, yb), weight * F.cross_entropy(aux, yb)


def _warn_prune_setup(config: Config, model: nn.Module, optimizer: Any) -> None:
    """Say why this training may leave little for the ``prune:`` step (the pruner's own check)."""
    check = getattr(registry.get("pruner", config.prune.method), "check_training", None)
    if check is not None:
        for problem in check(model, optimizer, config.train.l2 > 0):
            say(f"warning: prune ({config.prune.method}): {problem}")


def run_train(
    config: Config,
    run_dir: str | Path | None,
    *,
    resume: bool = False,
    progress: bool = True,
    dry_run: bool = False,
    on_ready: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Train the fixed architecture of ``config``; write weights, events and ``summary.json``.

    ``dry_run`` sets up what the training needs (data, network, growth, optimizer), raising what a
    run would raise at its start, and returns before writing anything (``nasframe validate
    --data``). ``on_ready``: as for :func:`~nasframe.search.run_search`."""
    device = resolve_device(config.device)
    data = load_dataset(config.data)
    T = config.train
    check_augment(T.augment, data.sample_shape, "train.augment")
    if config.space.type == "cells":
        for key, part in (("train.growth", T.growth), ("prune", config.prune)):
            if part is not None:
                raise UserError(f"{key}: works on chain spaces only, not on cell spaces")
    torch.manual_seed(config.seed)
    classes = num_classes_of(config, data.num_classes)
    model = build_network(config, data.sample_shape, classes)
    cell_size = getattr(model, "retrain_size", None)  # cell networks: cells, width, budget
    model = model.to(device)
    space_hash = config.space_hash or SearchSpace(config).hash
    x, y = data.x_train.to(device), data.y_train.to(device)
    xt, yt = data.x_test.to(device), data.y_test.to(device)
    bs = min(T.batch_size, x.shape[0])
    steps = max(1, x.shape[0] // bs)
    target_params = count_parameters(model)
    growth = _growth_controller(model, T.growth) if T.growth else None  # before the optimizer
    if growth is not None:
        _check_growth_fits(growth, T.epochs * steps, T.epochs, steps)
    optimizer = build_optimizer(model.parameters(), T.optimizer, "train.optimizer")
    schedule = build_schedule(optimizer, T.optimizer, T.epochs * steps)
    if config.search.cost == "latency":  # how the trained network will be timed
        latency_device(config.search.latency_options, device)
    if dry_run:
        return {"kind": "train", "data": data.name, "train": x.shape[0], "test": xt.shape[0]}
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    parts = {"growth": growth} if growth is not None else {}  # resized first on resume
    state = RunState(  # keyed to this architecture: another one from the space is refused
        "train",
        SearchSpace(config).network_hash,
        run_dir,
        **parts,
        model=model,
        optimizer=optimizer,
        schedule=schedule,
    )
    note = state.start(device, resume, on_ready)
    pos = state.pos
    if resume:
        if note:
            say(note)
    else:
        say(
            f"device: {device}   data: {data.name}, {x.shape[0]} train / {xt.shape[0]} test   "
            f"parameters: {count_parameters(model):,}   run: {run_dir}"
        )
        if cell_size is not None:
            say(cell_size.describe())
        if config.prune is not None:
            _warn_prune_setup(config, model, optimizer)
    logger = RunLogger(
        run_dir, config.log.tensorboard, purge_step=pos["global_step"] + 1 if resume else None
    )
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device)
    first_bad = torch.full((), -1, dtype=torch.long, device=device)  # no host sync per step
    counted = 0

    def add_sums() -> None:
        """Move the on-device running sums into the meter (one host synchronisation)."""
        nonlocal counted
        if counted:
            tl, tc, bad = torch.stack([loss_sum, correct.float(), first_bad.double()]).tolist()
            if not math.isfinite(tl):
                raise TrainingDiverged(
                    f"non-finite training loss at epoch {pos['epoch'] + 1}, iteration {int(bad)}; "
                    "try a smaller train.optimizer.lr or set train.grad_clip"
                )
            state.meter.add("train/loss", tl / counted, counted)
            state.meter.add("train/acc", tc / (counted * bs), counted)
        loss_sum.zero_()
        correct.zero_()
        counted = 0

    try:
        with stop_on_signals() as stop:
            while pos["epoch"] < T.epochs:
                epoch = pos["epoch"]
                order = epoch_order(x.shape[0], config.seed, epoch, 2, device)
                bar = EpochProgress(
                    epoch, T.epochs, steps, pos["step"], enabled=progress and config.log.progress
                )
                t_epoch, first_step = time.perf_counter(), pos["step"]
                model.train()
                if hasattr(model, "start_epoch"):  # cell networks: the drop-path schedule
                    model.start_epoch(epoch, T.epochs)
                while pos["step"] < steps:
                    xb, yb = batch_at(x, y, order, pos["step"], bs)
                    xb = augment_at(xb, T.augment, config.seed, epoch, pos["step"], 2)
                    optimizer.zero_grad(set_to_none=True)
                    with autocast(device, T.precision):
                        out, loss, aux_loss = _training_loss(model, xb, yb)
                    data_loss = loss.detach()  # what train/loss shows: without penalties
                    if T.l2:
                        loss = loss + l2_penalty(model, T.l2)
                    (loss if aux_loss is None else loss + aux_loss).backward()
                    if T.grad_clip:
                        torch.nn.utils.clip_grad_norm_(model.parameters(), T.grad_clip)
                    optimizer.step()
                    schedule.step()
                    loss_sum += data_loss
                    first_bad = torch.where(
                        (first_bad < 0) & ~torch.isfinite(loss.detach()),
                        pos["global_step"] + 1,
                        first_bad,
                    )
                    correct += (out.argmax(1) == yb).sum()
                    counted += 1
                    pos["step"] += 1
                    pos["global_step"] += 1
                    bar.step(xb.shape[0])
                    if growth is not None:
                        info = growth.maybe_grow(
                            pos["global_step"],
                            lambda xb=xb, yb=yb: F.cross_entropy(model(xb), yb),
                            optimizer,
                        )
                        if info is not None:
                            logger.scalars(info["scalars"], pos["global_step"])
                    if stop:
                        add_sums()
                        state.save()
                        raise Interrupted(
                            f"stopped by signal {stop.signal}; checkpoint written; continue with: "
                            f"nasframe train --resume {run_dir}"
                        )
                add_sums()
                done, elapsed = pos["step"] - first_step, time.perf_counter() - t_epoch
                test_loss, test_acc = evaluate(model, xt, yt, precision=T.precision)
                metrics = {
                    "train/loss": state.meter.mean("train/loss"),
                    "train/acc": state.meter.mean("train/acc"),
                    "test/loss": test_loss,
                    "test/acc": test_acc,
                }
                logger.scalars(metrics, pos["global_step"])
                log_speed(logger, device, done, elapsed, bs, pos["global_step"])
                bar.close(**{k.replace("/", "_"): v for k, v in metrics.items()})
                state.end_epoch(metrics)
                state.save()
                logger.flush()
        logger.hparams(flat_params(config, ("seed", "train", "data")), state.metrics)
    finally:
        logger.close()
    metrics = state.metrics
    save_checkpoint(model.state_dict(), run_dir / WEIGHTS)
    extra: dict[str, Any] = {}
    if growth is not None:
        extra["growth"] = {
            "strategy": T.growth.strategy,
            "events": growth.events_done,
            "start_widths": {k: plan[0] for k, plan in growth.plans.items()},
            "final_widths": growth.widths,
            "target_widths": dict(growth.targets),
            "parameters_full_width": target_params,
        }
        if T.growth.baseline:
            full = config.model_copy(deep=True)
            full.train.growth = None
            say("training the same architecture at full width from the start, for comparison")
            base = run_train(
                full,
                run_dir / "full_width",
                resume=resume and (run_dir / "full_width" / CHECKPOINT).exists(),
                progress=progress,
            )
            extra["growth"]["full_width_test_acc"] = base["test_acc"]
    if config.search.cost == "latency":  # an arch.yaml of a latency-aware search
        extra.update(
            network_latency_ms(model, data.sample_shape, config.search.latency_options, device)
        )
        say(
            f"latency: {extra['latency_ms']:.3f} ms per batch of {extra['latency_batch_size']} "
            f"on {extra['latency_device']} (search.latency)"
        )
    summary = {
        "kind": "train",
        "name": config.name,
        "space_hash": space_hash,
        "device": str(device),
        "epochs": T.epochs,
        "sample_shape": list(data.sample_shape),
        "num_classes": classes,
        "parameters": count_parameters(model),
        "macs": count_macs(model, data.sample_shape),  # of one example, as search.cost counts
        "wall_time_s": state.wall_s(),
        "environment": state.environment,
        "train_loss": metrics.get("train/loss"),
        "train_acc": metrics.get("train/acc"),
        "test_loss": metrics.get("test/loss"),
        "test_acc": metrics.get("test/acc"),
        "weights": WEIGHTS,
        **(cell_size.summary() if cell_size is not None else {}),
        **extra,
    }
    write_json(summary, run_dir / SUMMARY)
    say(f"test accuracy: {summary['test_acc']:.4f}   weights: {run_dir / WEIGHTS}")
    if config.prune is not None:
        from .prune_run import run_prune

        summary["prune"] = run_prune(run_dir, config=config)
        write_json(summary, run_dir / SUMMARY)
    return summary
