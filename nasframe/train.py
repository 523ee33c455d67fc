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
from .cell_network import main_parameters
from .checkpoint import first_non_finite, save_checkpoint, write_json
from .config import Config, TrainConfig
from .console import EpochProgress, say
from .data import TRAINING, augment_at, batch_at, check_augment, epoch_order, load_dataset
from .datasets import Dataset
from .device import resolve_device
from .errors import Interrupted, TrainingDiverged, UserError, counted
from .interrupt import StopFlag, stopped
from .latency import latency_device, network_latency_ms
from .macs import count_macs
from .network import build_network, count_parameters, num_classes_of
from .optim import build_optimizer, build_schedule, fit_schedule
from .precision import autocast
from .regularize import l2_penalty
from .run_files import CHECKPOINT, SUMMARY, WEIGHTS
from .run_outline import follow_outline
from .runstate import Meter, RunState
from .show import read_summary
from .space import SearchSpace, config_warnings
from .tblog import RunLogger, flat_params, log_lr, log_speed

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


def growth_plugin(name: str) -> Any:
    """The growth plugin ``name``, refused as the plugin's bug when it has no ``controller``
    to call (what nasframe drives a growth with: see docs/growth.md)."""
    strategy = registry.get("growth", name)
    if not callable(getattr(strategy, "controller", None)):
        raise registry.failure(
            "growth",
            name,
            f"is {registry.shown(strategy)}, which has no controller(model, every=..., steps=..., "
            "...) for nasframe to call (a growth strategy subclasses "
            "nasframe_growth.GrowthStrategy)",
        )
    return strategy


def _growth_controller(model: nn.Module, cfg: Any) -> Any:
    """The growth plugin's controller for ``train.growth`` (it shrinks ``model`` to start)."""
    strategy = growth_plugin(cfg.strategy)
    return registry.call(
        "growth",
        cfg.strategy,
        strategy.controller,
        (model,),
        {
            "every": cfg.every,
            "steps": cfg.steps,
            "start_fraction": cfg.start_fraction,
            "layers": cfg.layers,
            "options": dict(cfg.options),  # apart: a strategy may have its own `steps`
        },
        label="controller",
        blame=growth_blame(cfg),
    )


def growth_blame(cfg: Any) -> Callable[[Exception], str | None]:
    """Which errors of a growth plugin are refusals of the user's ``train.growth``, as located
    messages: the plugin's own kinds of error (``nasframe_growth``'s GrowthError, with the
    option's ``key`` where it has one), and Python's that name a setting (``steps must be >= 0``).
    Anything else (``TypeError: object of type 'int' has no len()``) is the plugin's bug (None)."""
    settings = {"every": 0, "steps": 0, "start_fraction": 0, "layers": 0, **dict(cfg.options)}

    def blame(e: Exception) -> str | None:
        own_kind = type(e).__module__ != "builtins"
        if own_kind or registry.named_option(str(e), settings) is not None:
            return str(growth_error(e))
        return None

    return blame


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
            f"{planned[-1]}, but training takes {total} steps ({counted(epochs, 'epoch')} of {steps}); the "
            f"network would end below its width: {_fewer_events(growth, total, len(planned))} "
            "or train longer"
        )


def _fewer_events(growth: Any, total: int, events: int) -> str:
    """How to fit ``events`` growth events into ``total`` steps: fewer steps between them while
    that helps, else fewer events."""
    every = getattr(getattr(growth, "schedule", None), "every", None)
    fits = total // events
    if every is not None and 1 <= fits < every:
        return f"set train.growth.every to at most {fits}"
    return f"set train.growth.steps to at most {max(total // (every or 1), 1)}"


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
    --data``). ``on_ready``: as for :func:`~nasframe.search.run_search`. A resumed training that
    had finished (no epoch left, its results written) says so in one line and returns its
    ``summary.json``, writing nothing (``on_ready`` is not called)."""
    run = _TrainRun(config, run_dir, resume=resume, progress=progress, dry_run=dry_run)
    if dry_run:
        return run.dry_run_summary()
    return follow_outline(run, "train", run_dir, on_ready)


class _TrainRun:
    """The state of one :func:`run_train`, and its steps.

    Set up by the constructor (everything a dry run checks), then driven by
    :func:`~nasframe.run_outline.follow_outline`: :meth:`start` (the run directory, checkpoint and
    logger; or, for a resumed training that had finished, a line that says so), :meth:`epoch`
    until :meth:`epochs_left` says no, :meth:`log_hparams` and :meth:`close`, and
    :meth:`write_results` (weights, ``summary.json``, the growth baseline, pruning).
    """

    # set up by the constructor: what a dry run checks
    config: Config
    T: TrainConfig  # the config's train section
    run_dir: Path | None  # None: a dry run
    resume: bool
    progress: bool
    device: torch.device
    data: Dataset
    classes: int
    cell_size: Any  # cell networks: their cells, width and budget (RetrainSize); else None
    model: nn.Module
    space_hash: str  # of the search space the architecture came from
    # ... the data on the device (by _set_up_data)
    x: torch.Tensor  # the whole training data
    y: torch.Tensor
    xt: torch.Tensor  # the test split
    yt: torch.Tensor
    bs: int  # batch size
    steps: int  # optimizer steps an epoch
    # ... growth and the optimizer (by _set_up_training)
    target_params: int  # the network's parameters at full width
    growth: Any  # the growth plugin's controller (None: no train.growth)
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    # set by start()
    state: RunState
    pos: dict[str, Any]  # the checkpointed position: epoch, step, global_step (state.pos)
    finished: dict[str, Any] | None  # resumed after it finished: its summary
    logger: RunLogger  # (from here on: not for a finished training)
    sums: _RunningSums

    def __init__(
        self,
        config: Config,
        run_dir: str | Path | None,
        *,
        resume: bool,
        progress: bool,
        dry_run: bool,
    ) -> None:
        if run_dir is None and not dry_run:
            raise TypeError("run_train: run_dir is None, but only a dry run has no directory")
        self.config, self.T = config, config.train
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.resume, self.progress = resume, progress
        self.device = resolve_device(config.device)
        self.data = load_dataset(config.data)
        T, data = self.T, self.data
        check_augment(T.augment, data.sample_shape, "train.augment")
        if config.space.type == "cells":
            for key, part in (("train.growth", T.growth), ("prune", config.prune)):
                if part is not None:
                    raise UserError(f"{key}: works on chain spaces only, not on cell spaces")
        torch.manual_seed(config.seed)
        self.classes = num_classes_of(config, data.num_classes)
        model = build_network(config, data.sample_shape, self.classes)
        self.cell_size = getattr(model, "retrain_size", None)  # cell networks: cells, width, budget
        self.model = model.to(self.device)
        self.space_hash = config.space_hash or SearchSpace(config).hash
        self._set_up_data()
        self._set_up_training()

    def _set_up_data(self) -> None:
        """The whole training data and the test split on the device; batch size and steps."""
        data, device = self.data, self.device
        self.x, self.y = data.x_train.to(device), data.y_train.to(device)
        self.xt, self.yt = data.x_test.to(device), data.y_test.to(device)
        self.bs = min(self.T.batch_size, self.x.shape[0])
        self.steps = max(1, self.x.shape[0] // self.bs)

    def _set_up_training(self) -> None:
        """Growth (which shrinks the network, so before the optimizer), the optimizer and its
        schedule, and a check of ``search.latency``'s device when the network will be timed."""
        T, config, model = self.T, self.config, self.model
        self.target_params = count_parameters(model)
        self.growth = _growth_controller(model, T.growth) if T.growth else None
        if self.growth is not None:
            _check_growth_fits(self.growth, T.epochs * self.steps, T.epochs, self.steps)
        self.optimizer = build_optimizer(model.parameters(), T.optimizer, "train.optimizer")
        self.schedule = build_schedule(self.optimizer, T.optimizer, T.epochs * self.steps)
        if config.search.cost == "latency":  # how the trained network will be timed
            latency_device(config.search.latency_options, self.device)

    def dry_run_summary(self) -> dict[str, Any]:
        """What ``nasframe validate --data`` reports of a training it set up."""
        return {
            "kind": "train",
            "data": self.data.name,
            "train": self.x.shape[0],
            "test": self.xt.shape[0],
            "sample_shape": tuple(self.data.sample_shape),
        }

    def start(self, on_ready: Callable[[], None] | None) -> None:
        """Make the run directory, start or restore the checkpointed state; a resumed training
        that had finished says so and stops there (``finished``: nothing written, ``on_ready`` not
        called); else call ``on_ready``, say what the run is (a new run), and open the TensorBoard
        logger and the on-device running sums."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # the growth controller first: on resume it resizes the model before the model loads
        parts = {"growth": self.growth} if self.growth is not None else {}
        self.state = RunState(  # keyed to this architecture: another one from the space is refused
            "train",
            SearchSpace(self.config).network_hash,
            self.run_dir,
            **parts,
            model=self.model,
            optimizer=self.optimizer,
            schedule=self.schedule,
        )
        self.pos = self.state.pos
        note = self.state.start(self.device, self.resume)
        self.finished = self._finished() if self.resume else None
        if self.finished is not None:
            return
        if on_ready is not None:
            on_ready()
        if self.resume:
            where = self.state.resumed_at(self.epochs_left())
            say(f"resuming {self.run_dir} {where}")
            if note:
                say(note)
            fitted = fit_schedule(self.schedule, self.T.epochs * self.steps)
            if fitted and self.epochs_left():  # resumed with another train.epochs
                say(fitted)
        else:
            self._new_run_notes()
        self.logger = RunLogger(
            self.run_dir,
            self.config.log.tensorboard,
            purge_step=self.pos["global_step"] + 1 if self.resume else None,
        )
        self.sums = _RunningSums(self.device)
        if self.resume:  # stopped within an epoch: its steps' sums go on where they were
            self.sums.take_back(self.state.meter, self.bs)

    def _finished(self) -> dict[str, Any] | None:
        """For a resumed training with no epoch left: its summary, if it wrote its results (its
        weights, and a summary.json of as many epochs, with the pruning if the config prunes) and
        so has nothing to do, said in one line; None for a training with something left to do
        (epochs, or the results that a stop while writing them left unwritten)."""
        if self.epochs_left():
            return None
        summary = written_summary(self.run_dir, "train", (WEIGHTS,))
        done = self.pos["epoch"]
        if summary is None or summary.get("epochs") != done:
            return None  # not written, or the results of an earlier end (before a longer resume)
        if self.config.prune is not None and "prune" not in summary:
            return None
        epochs = self.T.epochs
        how = f"{done} of {epochs} epochs" if done == epochs else f"{done} epochs"
        say(
            f"{self.run_dir}: this training has finished ({how}); nothing to resume (to train "
            f"longer: --set train.epochs=N, N above {done})"
        )
        return summary

    def epochs_left(self) -> bool:
        """Whether another epoch runs."""
        return self.pos["epoch"] < self.T.epochs

    def _new_run_notes(self) -> None:
        """A new run's first lines: device, data, size, and warnings (layers never built, what
        leaves a later ``prune:`` little to do)."""
        say(
            f"device: {self.device}   data: {self.data.name}, {self.x.shape[0]} train / "
            f"{self.xt.shape[0]} test   parameters: {_parameters_shown(self.model)}   "
            f"run: {self.run_dir}"
        )
        if self.cell_size is not None:
            say(self.cell_size.describe())
        for note in config_warnings(self.config):
            say(self.config.located_warning(note))
        if self.config.prune is not None:
            _warn_prune_setup(self.config, self.model, self.optimizer)

    def epoch(self, stop: StopFlag) -> None:
        """One epoch (or the rest of a resumed one): its steps, then its test, logs and
        checkpoint. ``stop`` is set by a signal (:func:`stop_on_signals`)."""
        T, pos, model = self.T, self.pos, self.model
        epoch = pos["epoch"]
        order = epoch_order(self.x.shape[0], self.config.seed, epoch, TRAINING, self.device)
        bar = EpochProgress(
            epoch,
            T.epochs,
            self.steps,
            pos["step"],
            enabled=self.progress and self.config.log.progress,
        )
        t_epoch, first_step = time.perf_counter(), pos["step"]
        model.train()
        if hasattr(model, "start_epoch"):  # cell networks: the drop-path schedule
            model.start_epoch(epoch, T.epochs)
        while pos["step"] < self.steps:
            self._step(epoch, order, bar, stop)
        self._end_epoch(bar, first_step, t_epoch)
        if stop:  # came in the last step or the epoch's end: the last epoch's too (not ignored)
            raise stopped(stop, f"after epoch {pos['epoch']} of {T.epochs}", "train", self.run_dir)

    def _step(self, epoch: int, order: torch.Tensor, bar: EpochProgress, stop: StopFlag) -> None:
        """One optimizer step at ``pos``, then growth when due; on a signal, save and raise
        :class:`Interrupted`."""
        T, pos, model, optimizer = self.T, self.pos, self.model, self.optimizer
        xb, yb = batch_at(self.x, self.y, order, pos["step"], self.bs)
        xb = augment_at(xb, T.augment, self.config.seed, epoch, pos["step"], TRAINING)
        optimizer.zero_grad(set_to_none=True)
        with autocast(self.device, T.precision):
            out, loss, aux_loss = _training_loss(model, xb, yb)
        data_loss = loss.detach()  # what train/loss shows: without penalties
        if T.l2:
            loss = loss + l2_penalty(model, T.l2)
        (loss if aux_loss is None else loss + aux_loss).backward()
        if T.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), T.grad_clip)
        optimizer.step()
        self.schedule.step()
        self.sums.add(data_loss, loss, out, yb, pos["global_step"] + 1)
        pos["step"] += 1
        pos["global_step"] += 1
        bar.step(xb.shape[0])
        if self.growth is not None:
            info = self.growth.maybe_grow(
                pos["global_step"],
                lambda xb=xb, yb=yb: F.cross_entropy(model(xb), yb),
                optimizer,
            )
            if info is not None:
                self._refuse_non_finite_growth()
                self.logger.scalars(info["scalars"], pos["global_step"])
        if stop and pos["step"] < self.steps:  # at the last step: after the epoch's end
            self._add_sums()
            self.state.save()
            raise stopped(stop, f"after step {pos['global_step']}", "train", self.run_dir)

    def _refuse_non_finite_growth(self) -> None:
        """After a growth event: weights holding NaN or infinity are the growth plugin's (the
        next step's loss would blame the learning rate); one host synchronisation per event."""
        bad = first_non_finite(dict(self.model.named_parameters()))
        if bad is not None:
            name = self.T.growth.strategy
            raise registry.failure(
                "growth",
                name,
                f"grew weights that hold NaN or infinity ({bad}) at step {self.pos['global_step']}",
            )

    def _add_sums(self) -> None:
        """Check the running sums for divergence and move them into the epoch's meter (one host
        synchronisation)."""
        self.sums.check_and_move_to(self.state.meter, self.bs, self.pos["epoch"])

    def _end_epoch(self, bar: EpochProgress, first_step: int, t_epoch: float) -> None:
        """The epoch's train means and test loss and accuracy: logged, shown, checkpointed."""
        pos, logger = self.pos, self.logger
        self._add_sums()
        done, elapsed = pos["step"] - first_step, time.perf_counter() - t_epoch
        test_loss, test_acc = evaluate(self.model, self.xt, self.yt, precision=self.T.precision)
        metrics = {
            "train/loss": self.state.meter.mean("train/loss"),
            "train/acc": self.state.meter.mean("train/acc"),
            "test/loss": test_loss,
            "test/acc": test_acc,
        }
        logger.scalars(metrics, pos["global_step"])
        log_lr(logger, self.optimizer, pos["global_step"])
        log_speed(logger, self.device, done, elapsed, self.bs, pos["global_step"])
        bar.close(seconds=elapsed, **{k.replace("/", "_"): v for k, v in metrics.items()})
        self.state.end_epoch(metrics)
        self.state.save()
        logger.flush()

    def after_epochs(self, stop: StopFlag) -> None:
        """Nothing: a training's results follow its epochs (growth's baseline and pruning are
        part of them)."""

    def log_hparams(self) -> None:
        """The run's settings and final metrics in TensorBoard's hparams (a run that got here)."""
        self.logger.hparams(flat_params(self.config, ("seed", "train", "data")), self.state.metrics)

    def close(self) -> None:
        """Close the TensorBoard logger (however the run ended)."""
        self.logger.close()

    def write_results(self) -> dict[str, Any]:
        """Write the weights and ``summary.json`` (with growth's and the latency's results), then
        prune if the config says so; the summary."""
        metrics = self.state.metrics
        save_checkpoint(self.model.state_dict(), self.run_dir / WEIGHTS)
        extra: dict[str, Any] = {}
        if self.growth is not None:
            extra["growth"] = self._growth_summary()
        if self.config.search.cost == "latency":  # an arch.yaml of a latency-aware search
            extra.update(self._latency())
        summary = self._summary(metrics, extra)
        write_json(summary, self.run_dir / SUMMARY)
        say(f"test accuracy: {summary['test_acc']:.4f}   weights: {self.run_dir / WEIGHTS}")
        if self.config.prune is not None:
            from .prune_run import run_prune

            summary["prune"] = run_prune(self.run_dir, config=self.config)
            write_json(summary, self.run_dir / SUMMARY)
        return summary

    def _growth_summary(self) -> dict[str, Any]:
        """What growth did: events, widths at the start, end and target; with ``baseline``, the
        test accuracy of the same network trained at full width (a second run, in
        ``full_width/``)."""
        growth = self.growth
        summary = {
            "strategy": self.T.growth.strategy,
            "events": growth.events_done,
            "start_widths": {k: plan[0] for k, plan in growth.plans.items()},
            "final_widths": growth.widths,
            "target_widths": dict(growth.targets),
            "parameters_full_width": self.target_params,
        }
        if self.T.growth.baseline:
            full = self.config.model_copy(deep=True)
            full.train.growth = None
            say("training the same architecture at full width from the start, for comparison")
            base_dir = self.run_dir / "full_width"
            try:
                base = run_train(
                    full,
                    base_dir,
                    resume=self.resume and (base_dir / CHECKPOINT).exists(),
                    progress=self.progress,
                )
            except Interrupted as e:  # resuming this run resumes the baseline's too
                raise Interrupted(str(e).replace(str(base_dir), str(self.run_dir))) from None
            summary["full_width_test_acc"] = base["test_acc"]
        return summary

    def _latency(self) -> dict[str, Any]:
        """The trained network's latency, timed as ``search.latency`` says, and said."""
        measured = network_latency_ms(
            self.model, self.data.sample_shape, self.config.search.latency_options, self.device
        )
        say(
            f"latency: {measured['latency_ms']:.3f} ms per batch of "
            f"{measured['latency_batch_size']} on {measured['latency_device']} (search.latency)"
        )
        return measured

    def _summary(self, metrics: dict[str, float], extra: dict[str, Any]) -> dict[str, Any]:
        """``summary.json``: the run, its final metrics, the network's size, and ``extra``."""
        data, model = self.data, self.model
        return {
            "kind": "train",
            "name": self.config.name,
            "space_hash": self.space_hash,
            "device": str(self.device),
            "epochs": self.T.epochs,
            "sample_shape": list(data.sample_shape),
            "num_classes": self.classes,
            **parameter_counts(model),
            "macs": count_macs(model, data.sample_shape),  # of one example, as search.cost counts
            "wall_time_s": self.state.wall_s(),
            "environment": self.state.environment,
            "train_loss": metrics.get("train/loss"),
            "train_acc": metrics.get("train/acc"),
            "test_loss": metrics.get("test/loss"),
            "test_acc": metrics.get("test/acc"),
            "weights": WEIGHTS,
            **(self.cell_size.summary() if self.cell_size is not None else {}),
            **extra,
        }


def written_summary(run_dir: Path, kind: str, results: tuple[str, ...]) -> dict[str, Any] | None:
    """``run_dir``'s ``summary.json``, if it is a ``kind`` run's and the run's other ``results``
    (file names) are there too; None if any is missing or the summary unreadable: the run has not
    (all) written its results."""
    if not all((run_dir / name).exists() for name in results):
        return None
    try:
        summary = read_summary(run_dir)
    except UserError:  # none, or unreadable
        return None
    return summary if summary.get("kind") == kind else None


class _RunningSums:
    """The training loss and correct count of the steps since the last read, summed on the
    device so that a step needs no host synchronisation, and the first iteration whose loss
    (penalties included) was not finite (-1: none yet)."""

    def __init__(self, device: torch.device) -> None:
        self.loss = torch.zeros((), device=device)
        self.correct = torch.zeros((), device=device)
        self.first_bad = torch.full((), -1, dtype=torch.long, device=device)
        self.counted = 0

    def add(
        self,
        data_loss: torch.Tensor,
        loss: torch.Tensor,
        out: torch.Tensor,
        yb: torch.Tensor,
        iteration: int,
    ) -> None:
        """One step: its loss without penalties (``data_loss``), its minimised ``loss`` (checked
        for divergence), its logits and labels."""
        self.loss += data_loss
        self.first_bad = torch.where(
            (self.first_bad < 0) & ~torch.isfinite(loss.detach()), iteration, self.first_bad
        )
        self.correct += (out.argmax(1) == yb).sum()
        self.counted += 1

    def take_back(self, meter: Meter, batch_size: int) -> None:
        """Move the sums a stop within an epoch put into ``meter`` back onto the device: the
        epoch's train loss is then one float32 running sum over all its steps, bit for bit as
        in an epoch that was not stopped (the float32 sum, written as a mean times its count in
        float64, rounds back to itself)."""
        counted = int(meter.counts.pop("train/loss", 0))
        loss, correct = meter.sums.pop("train/loss", 0.0), meter.sums.pop("train/acc", 0.0)
        meter.counts.pop("train/acc", None)
        if counted:
            self.loss.fill_(loss)
            self.correct.fill_(round(correct * batch_size))
            self.counted = counted

    def check_and_move_to(self, meter: Meter, batch_size: int, epoch: int) -> None:
        """Read the sums (one host synchronisation) and raise :class:`TrainingDiverged` if the
        loss was not finite (0-based ``epoch`` for the message); else add the means to ``meter``
        (train/loss, train/acc) and start again."""
        if self.counted:
            tl, tc, bad = torch.stack(
                [self.loss, self.correct.float(), self.first_bad.double()]
            ).tolist()
            if not math.isfinite(tl):
                raise TrainingDiverged(
                    f"non-finite training loss at epoch {epoch + 1}, iteration {int(bad)}; "
                    "try a smaller train.optimizer.lr or set train.grad_clip"
                )
            meter.add("train/loss", tl / self.counted, self.counted)
            meter.add("train/acc", tc / (self.counted * batch_size), self.counted)
        self.loss.zero_()
        self.correct.zero_()
        self.counted = 0


def parameter_counts(model: torch.nn.Module) -> dict[str, int]:
    """``summary.json``'s parameter counts: ``parameters``, those of the network that is tested
    and exported, and, for a cell network with an auxiliary head (used in training only),
    ``parameters_auxiliary``, the head's."""
    main = main_parameters(model)
    auxiliary = count_parameters(model) - main
    return {"parameters": main, **({"parameters_auxiliary": auxiliary} if auxiliary else {})}


def _parameters_shown(model: torch.nn.Module) -> str:
    counts = parameter_counts(model)
    auxiliary = counts.get("parameters_auxiliary")
    extra = f" (+{auxiliary:,} in the auxiliary head, for training only)" if auxiliary else ""
    return f"{counts['parameters']:,}{extra}"
