"""One-shot architecture search: supernet weights by SGD, architecture distribution by a strategy.

A run (:func:`run_search`) is epochs of iterations (:mod:`nasframe.search_step`, the reference
protocol of ASNG-NAS) whose valid losses update the strategy, with checkpoints, logs and clean
stops; then the final selection (if any) and the results: ``arch.yaml`` and ``summary.json``.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import registry
from .asng import ASNG
from .cell_network import check_retraining
from .checked_strategy import CheckedStrategy, unchecked
from .checkpoint import write_json
from .config import NO_CONVERGED, Config, SearchConfig, SelectConfig
from .console import EpochProgress, say
from .cost import ArchitectureCost
from .data import (
    SEARCH_TRAIN,
    SEARCH_VALID,
    augment_at,
    batch_at,
    check_augment,
    epoch_order,
    load_dataset,
    split_train_valid,
)
from .datasets import Dataset
from .device import resolve_device
from .distributed import Group, join_group
from .errors import Interrupted, TrainingDiverged, UserError, counted, did_you_mean
from .interrupt import StopFlag, stopped
from .latency import LatencyTable, open_latency_table
from .network import make_supernet, num_classes_of
from .optim import build_optimizer, build_schedule, fit_schedule
from .option_kinds import checked_options
from .plots import theta_image
from .precision import autocast
from .run_files import ARCH, SUMMARY
from .run_outline import follow_outline
from .runstate import RunState
from .search_step import ReadBack, search_iteration
from .selection import Selection, run_selection
from .space import SearchSpace, config_warnings
from .strategy import Strategy
from .tblog import RunLogger, evenly_due, flat_params, log_lr, log_speed
from .train import written_summary
from .yaml_io import dump_yaml, yaml_text

__all__ = [
    "run_search",
    "TrainingDiverged",
    "Interrupted",
    "log_distribution",
]


def ordinal_gaussians(space: SearchSpace, strategy: Strategy) -> dict[str, dict[str, float]]:
    """Mean and std (in option indices) of each ordinal choice's Gaussian, by path; empty for a
    strategy that does not model ordinal choices."""
    if not space.ordinal or not hasattr(strategy, "ordinal_mean"):
        return {}
    mean, std = strategy.ordinal_mean, strategy.ordinal_std
    return {
        space.choices[row].path: {"mean": float(mean[k]), "std": float(std[k])}
        for k, row in enumerate(space.ordinal)
    }


def log_distribution(
    logger: RunLogger, space: SearchSpace, strategy: Strategy, step: int, image: bool = True
) -> None:
    """θ per choice and option (scalars, and an image when ``image``), entropy per choice, the
    step size."""
    theta = np.asarray(strategy.theta)
    if logger.enabled and image:
        image = theta_image(theta, space.paths, [c.options for c in space.choices])
        logger.image("arch/theta", image, step, dataformats="HWC")
    for k, c in enumerate(space.choices):
        for j, opt in enumerate(c.options):
            logger.scalar(f"arch/theta/{c.path}/{opt}", float(theta[k, j]), step)
        p = theta[k, : c.size]
        p = p[p > 0]
        logger.scalar(f"arch/entropy/{c.path}", float(-(p * np.log(p)).sum()), step)
    for path, gauss in ordinal_gaussians(space, strategy).items():
        logger.scalar(f"arch/ordinal_mean/{path}", gauss["mean"], step)
        logger.scalar(f"arch/ordinal_std/{path}", gauss["std"], step)
    if hasattr(strategy, "delta"):
        logger.scalar("asng/delta", float(strategy.delta), step)
    if hasattr(strategy, "Delta"):
        logger.scalar("asng/Delta", float(strategy.Delta), step)
    if hasattr(strategy, "snr"):
        logger.scalar("asng/snr", float(strategy.snr), step)


def run_search(
    config: Config,
    run_dir: str | Path | None,
    *,
    resume: bool = False,
    progress: bool = True,
    group: Group | None = None,
    dry_run: bool = False,
    on_ready: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Search ``config``'s space; write checkpoints, events, ``arch.yaml`` and ``summary.json``.

    Under torchrun, ``group`` (joined by the caller with :func:`join_group`, which also picks the
    rank's device) shares the work; rank 0 alone prints and writes. ``dry_run`` sets up what the
    search needs (data, supernet, strategy, optimizer), raising what a run would raise at its
    start, and returns before writing anything (``nasframe validate --data``). ``on_ready`` is
    called once the run is set up (a resumed run's checkpoint restored), before it writes anything
    but a new run's latency table: the command line writes ``config.yaml`` there, so that a run
    refused while it sets up leaves no run behind and a refused change leaves a resumed run as it
    was. A resumed search that had finished (no epoch left, its results written) says so in one
    line and returns its ``summary.json``, writing nothing (``on_ready`` is not called).
    """
    if group is None:
        group, spec = join_group(config.device)
        config = config.model_copy(update={"device": spec})
    run = _SearchRun(config, run_dir, group, resume=resume, progress=progress, dry_run=dry_run)
    if dry_run:
        return run.dry_run_summary()
    return follow_outline(run, "search", run_dir, on_ready, writes=group.main)


class _SearchRun:
    """The state of one :func:`run_search`, and its steps.

    Set up by the constructor (everything a dry run checks), then driven by
    :func:`~nasframe.run_outline.follow_outline`: :meth:`start` (the run directory, checkpoint and
    logger; or, for a resumed search that had finished, a line that says so), :meth:`epoch` until
    :meth:`epochs_left` says no, :meth:`after_epochs` (the final selection), :meth:`log_hparams`
    and :meth:`close`, and :meth:`write_results`.
    """

    # set up by the constructor: what a dry run checks
    config: Config
    S: SearchConfig  # the config's search section
    group: Group
    run_dir: Path | None  # None: a dry run
    resume: bool
    progress: bool
    tell: Callable[[str], None]  # say on rank 0, silent on the others
    device: torch.device
    data: Dataset
    space: SearchSpace
    classes: int
    net: torch.nn.Module  # the supernet
    # ... the data on the device (by _set_up_data)
    xtr: torch.Tensor  # the train half
    ytr: torch.Tensor
    xva: torch.Tensor  # the valid half
    yva: torch.Tensor
    xte: torch.Tensor  # the test split (monitoring only)
    yte: torch.Tensor
    bs: int  # train batch size
    vbs: int  # valid batch size
    steps: int  # iterations an epoch
    # ... the strategy and the optimizer (by _set_up_strategy)
    strategy: Strategy  # (behind CheckedStrategy for a plugin's)
    has_mle: bool  # whether the strategy has a most likely architecture
    select: SelectConfig | None  # the final selection (None: the most likely architecture)
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    # ... what search.cost counts (by _set_up_cost)
    latency: LatencyTable | None
    cost: ArchitectureCost
    measures: tuple[str, ...]  # the costs logged of the most likely architecture
    # set by start()
    state: RunState
    pos: dict[str, Any]  # the checkpointed position: epoch, step, global_step (state.pos)
    finished: dict[str, Any] | None  # resumed after it finished: its summary ({} off rank 0)
    logger: RunLogger  # (from here on: not for a finished search)
    params: list[torch.nn.Parameter]
    # set by after_epochs()
    selection: Selection | None  # the final selection's (None: the most likely architecture)

    def __init__(
        self,
        config: Config,
        run_dir: str | Path | None,
        group: Group,
        *,
        resume: bool,
        progress: bool,
        dry_run: bool,
    ) -> None:
        if run_dir is None and not dry_run:
            raise TypeError("run_search: run_dir is None, but only a dry run has no directory")
        self.config, self.S, self.group = config, config.search, group
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.resume, self.progress = resume, progress
        self.tell = say if group.main else _silent
        self.device = resolve_device(config.device)
        self.data = load_dataset(config.data)
        self.space = SearchSpace(config)
        if not self.space.choices:
            raise UserError(
                "space: nothing to search (every field is a constant); use `nasframe train`"
            )
        check_augment(self.S.augment, self.data.sample_shape, "search.augment")
        if self.space.is_cells:  # what `nasframe train` would refuse, whatever is found
            check_retraining(config.space, self.data.sample_shape)
        torch.manual_seed(config.seed)
        self.classes = num_classes_of(config, self.data.num_classes)
        self.net = make_supernet(self.space, self.data.sample_shape, self.classes).to(self.device)
        self._set_up_data()
        self._set_up_strategy()
        self._set_up_cost(dry_run)

    def _set_up_data(self) -> None:
        """The train and valid halves and the test split on the device; batch sizes and steps."""
        config, S, group = self.config, self.S, self.group
        data = self.data
        split = split_train_valid(
            data.x_train, data.y_train, config.data.valid_fraction, config.seed
        )
        self.xtr, self.ytr, self.xva, self.yva = (t.to(self.device) for t in split)
        self.xte, self.yte = data.x_test.to(self.device), data.y_test.to(self.device)
        self.bs = min(S.batch_size, self.xtr.shape[0])
        self.vbs = min(S.batch_size, self.xva.shape[0])
        group.check_batch(self.bs, "search.batch_size")
        group.check_batch(self.vbs, "search.batch_size (valid split)")
        self.steps = max(1, self.xtr.shape[0] // self.bs)

    def _set_up_strategy(self) -> None:
        """The strategy, the final selection (if any), the optimizer and its schedule."""
        config, S = self.config, self.S
        self.strategy = make_strategy(
            S.strategy, self.space, S.lam, config.seed, S.strategy_options
        )
        if S.stop_when_converged is not None and not hasattr(self.strategy, "converged"):
            problem = NO_CONVERGED.format(s=S.strategy)  # a factory's strategy: see the config
            raise UserError(f"search.stop_when_converged: {problem}")
        self.has_mle = hasattr(self.strategy, "mle")
        # a strategy without a most likely architecture (random) ends by selection
        self.select = S.select or (None if self.has_mle else SelectConfig())
        self.optimizer = build_optimizer(self.net.parameters(), S.optimizer, "search.optimizer")
        _refuse_fused_momentum(self.optimizer)
        self.schedule = build_schedule(self.optimizer, S.optimizer, S.epochs * self.steps)

    def _set_up_cost(self, dry_run: bool) -> None:
        """What ``search.cost`` counts; a latency table is opened (a new run's: written) here,
        except by a dry run, which only checks its options."""
        S = self.S
        self.latency = None
        if S.cost == "latency":
            where = None if dry_run else self.run_dir
            say_it = _silent if dry_run else self.tell
            self.latency = open_latency_table(
                S.latency_options, self.device, where, self.resume, self.group, say_it
            )
        self.cost = ArchitectureCost(
            self.space, self.data.sample_shape, self.classes, S.cost, latency=self.latency
        )
        self.measures = (
            ("parameters", "macs", "latency") if self.latency else ("parameters", "macs")
        )

    def dry_run_summary(self) -> dict[str, Any]:
        """What ``nasframe validate --data`` reports of a search it set up."""
        return {
            "kind": "search",
            "data": self.data.name,
            "train": self.xtr.shape[0],
            "valid": self.xva.shape[0],
            "sample_shape": tuple(self.data.sample_shape),
        }

    def start(self, on_ready: Callable[[], None] | None) -> None:
        """Make the run directory, start or restore the checkpointed state; a resumed search that
        had finished says so and stops there (``finished``: nothing written, ``on_ready`` not
        called); else call ``on_ready``, say what the run is (a new run) or where it resumes, and
        open the TensorBoard logger."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.state = RunState(
            "search",
            self.space.hash,
            self.run_dir,
            model=self.net,
            optimizer=self.optimizer,
            schedule=self.schedule,
            strategy=unchecked(self.strategy),  # a plugin's own, to name it if it fails
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
            self.tell(f"resuming {self.run_dir} {where}")
            if note:
                self.tell(note)
            fitted = fit_schedule(self.schedule, self.S.epochs * self.steps)
            if fitted and self.epochs_left():  # resumed with another search.epochs
                self.tell(fitted)
        else:
            self._new_run_notes()
        self.logger = RunLogger(
            self.run_dir,
            self.config.log.tensorboard and self.group.main,
            purge_step=self.pos["global_step"] + 1 if self.resume else None,
        )
        self.params = list(self.net.parameters())

    def _finished(self) -> dict[str, Any] | None:
        """For a resumed search with no epoch left: its summary, if it wrote its results (its
        arch.yaml, and a summary.json of this very position) and so has nothing to do, said in
        one line ({} on ranks other than 0); None for a search with something left to do (epochs,
        or the final selection and results that a stop during it left unwritten)."""
        if self.epochs_left():
            return None
        summary = None
        if self.group.main:  # rank 0's files decide, for every rank
            summary = written_summary(self.run_dir, "search", (ARCH,))
            if summary is not None and summary.get("iterations") != self.pos["global_step"]:
                summary = None  # the results of an earlier end, before a resume to search longer
        if not self.group.broadcast(summary is not None):
            return None
        S, done = self.S, self.pos["epoch"]
        if done < S.epochs:  # stopped early by search.stop_when_converged
            how = f"converged after {done} of {S.epochs} epochs"
            longer = "--set search.stop_when_converged=null" + self._higher_threshold()
        else:
            how = f"{done} of {S.epochs} epochs" if done == S.epochs else f"{done} epochs"
            longer = f"--set search.epochs=N, N above {done}"
        self.tell(
            f"{self.run_dir}: this search has finished ({how}); nothing to resume (to search "
            f"longer: {longer})"
        )
        return summary or {}

    def _new_run_notes(self) -> None:
        """A new run's first lines: device, data, space, and what in the config to look out for."""
        S, space, tell = self.S, self.space, self.tell
        data = self.data
        tell(
            f"device: {self.device}{_processes(self.group)}   data: {data.name} "
            f"{tuple(data.sample_shape)}, {self.xtr.shape[0]} train / {self.xva.shape[0]} valid"
        )
        tell(
            f"space: {counted(len(space.choices), 'choice')}, {space.size:,} architectures   "
            f"strategy: {S.strategy}   run: {self.run_dir}"
        )
        for note in config_warnings(self.config):
            tell(self.config.located_warning(note))
        if self.select is not None and S.select is None:
            tell(
                f"strategy '{S.strategy}' has no most likely architecture: the search ends by "
                f"scoring {self.select.candidates} drawn candidates (search.select)"
            )
        if S.warmup_epochs >= S.epochs and self.has_mle:
            tell(
                f"note: all {S.epochs} epochs are warm-up (search.warmup_epochs: "
                f"{S.warmup_epochs}): the architecture distribution will not move, and the "
                "search ends where it started"
                + ("" if S.select else "; lower warmup_epochs, or add search.select")
            )
        if space.ordinal and S.lam == 2 and hasattr(self.strategy, "ordinal_mean"):
            tell(
                "note: with search.lam: 2 the ordinal choices' spread learns only from "
                "second-order drift (mirrored pairs); search.lam: 4 converges them (docs/asng.md)"
            )

    def converged(self) -> bool:
        """Whether ``search.stop_when_converged`` (if set) ends the search now: never before its
        first epoch (a strategy that starts converged would export an untrained pick)."""
        S = self.S
        if S.stop_when_converged is None or self.pos["epoch"] == 0:
            return False
        return self.strategy.converged(S.stop_when_converged)

    def _higher_threshold(self) -> str:
        """', or above X' for the thresholds at which a converged search goes on: above how far
        θ has decided ('' for a strategy that cannot say, or for θ decided beyond any threshold)."""
        level = getattr(self.strategy, "convergence", None)
        try:
            above = math.ceil(float(level()) * 1000) / 1000 if level is not None else 1.0
        except (TypeError, ValueError, OverflowError):  # a plugin's that is no number: no hint
            return ""
        return f", or above {above:g}" if above < 1.0 else ""

    def epochs_left(self) -> bool:
        """Whether another epoch runs: not all done, and not converged."""
        return self.pos["epoch"] < self.S.epochs and not self.converged()

    def epoch(self, stop: StopFlag) -> None:
        """One epoch (or the rest of a resumed one): its iterations, then its logs and checkpoint.
        ``stop`` is set by a signal (:func:`stop_on_signals`)."""
        S, pos, seed = self.S, self.pos, self.config.seed
        epoch = pos["epoch"]
        tr_order = epoch_order(self.xtr.shape[0], seed, epoch, SEARCH_TRAIN, self.device)
        va_order = epoch_order(self.xva.shape[0], seed, epoch, SEARCH_VALID, self.device)
        bar = EpochProgress(
            epoch,
            S.epochs,
            self.steps,
            pos["step"],
            enabled=self.progress and self.config.log.progress and self.group.main,
        )
        t_epoch = time.perf_counter()
        first_step = pos["step"]
        self.net.train()
        while pos["step"] < self.steps:
            self._iteration(epoch, tr_order, va_order, bar, stop)
        self._end_epoch(epoch, bar, first_step, t_epoch)
        self._halt_after_epoch(stop)

    def _iteration(
        self,
        epoch: int,
        tr_order: torch.Tensor,
        va_order: torch.Tensor,
        bar: EpochProgress,
        stop: StopFlag,
    ) -> None:
        """One search iteration at ``pos``: step the weights, rank the valid losses (after the
        warm-up), meter, count, and checkpoint or stop when due."""
        S, pos, lam = self.S, self.pos, self.S.lam
        i = pos["step"]
        train_batch, valid_batch = self._batches(epoch, i, tr_order, va_order)
        host, archs, varchs = search_iteration(
            self.net,
            self.optimizer,
            self.strategy,
            train_batch,
            valid_batch,
            lam,
            S.grad_clip,
            self.params,
            S.precision,
            self.group,
            bool(stop),
        )
        self.schedule.step()
        read = ReadBack.of(host, lam)
        if not read.losses_finite():
            raise TrainingDiverged(
                f"non-finite loss at epoch {epoch + 1}, step {i} (iteration "
                f"{pos['global_step']}): {_diverged(self.space, host, archs, varchs)}; "
                "try a smaller search.optimizer.lr or grad_clip"
            )
        if epoch >= S.warmup_epochs:
            self._update_strategy(read.valid_losses, varchs)
        self._meter(read)
        pos["step"] += 1
        pos["global_step"] += 1
        bar.step(self.bs * lam, loss=read.train_loss, acc=self.state.meter.mean("train/acc"))
        self._checkpoint_or_halt(stop)

    def _batches(
        self, epoch: int, i: int, tr_order: torch.Tensor, va_order: torch.Tensor
    ) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        """Iteration ``i``'s train and valid batches, augmented, and this rank's shard of each."""
        S, seed, group = self.S, self.config.seed, self.group
        xb, yb = batch_at(self.xtr, self.ytr, tr_order, i, self.bs)
        xb, yb = group.shard(augment_at(xb, S.augment, seed, epoch, i, SEARCH_TRAIN), yb)
        xv, yv = batch_at(self.xva, self.yva, va_order, i, self.vbs)
        xv, yv = group.shard(augment_at(xv, S.augment, seed, epoch, i, SEARCH_VALID), yv)
        return (xb, yb), (xv, yv)

    def _update_strategy(self, losses: list[float], varchs: Any) -> None:
        """Update the distribution with the valid losses, plus the cost penalty if any."""
        S = self.S
        if S.cost_penalty:
            losses = [
                v + S.cost_penalty * self.cost(a) for v, a in zip(losses, varchs, strict=True)
            ]
        self.strategy.update(varchs, losses)

    def _meter(self, read: ReadBack) -> None:
        """Add an iteration's read values to the epoch's means (train and valid loss and
        accuracy)."""
        lam, meter = self.S.lam, self.state.meter
        meter.add("train/loss", read.train_loss)
        meter.add("train/acc", read.train_correct / (lam * self.bs))
        meter.add("valid/loss", sum(read.valid_losses) / lam)
        meter.add("valid/acc", read.valid_correct / (lam * self.vbs))

    def _checkpoint_or_halt(self, stop: StopFlag) -> None:
        """Save every ``search.checkpoint_every`` iterations, except at an epoch's last, which
        the epoch's own checkpoint follows once its logs are written (a checkpoint before them
        would have a resume log them twice, a stop there would lose them); on a signal (under
        torchrun: any rank's), save and raise :class:`Interrupted`."""
        S, pos, group = self.S, self.pos, self.group
        if pos["step"] == self.steps:  # the epoch's end checkpoints, and stops on a signal
            return
        halt = group.stopping if group.distributed else bool(stop)
        due = S.checkpoint_every and pos["global_step"] % S.checkpoint_every == 0
        if group.main and (halt or due):
            self.state.save()
        if halt:
            raise stopped(stop, f"after iteration {pos['global_step']}", "search", self.run_dir)

    def _halt_after_epoch(self, stop: StopFlag) -> None:
        """Raise :class:`Interrupted` after an epoch's checkpoint when a signal came in its last
        iteration or its end (its test, logs, checkpoint): the last epoch's too, which went on to
        the results, unasked. Under torchrun, any rank's signal stops them all."""
        group, halt = self.group, bool(stop)
        if group.distributed:
            earlier = group.stopping  # asked during the last iteration, known to every rank
            group.reduce(torch.zeros(0, device=self.device), 0, stop=halt)
            halt = earlier or group.stopping
        if halt:
            when = f"after epoch {self.pos['epoch']} of {self.S.epochs}"
            raise stopped(stop, when, "search", self.run_dir)

    def _end_epoch(self, epoch: int, bar: EpochProgress, first_step: int, t_epoch: float) -> None:
        """The epoch's metrics and logs, the ranks' agreement check, the checkpoint."""
        steps_s = time.perf_counter() - t_epoch  # the steps' time (the last one read back)
        metrics, mle = self._epoch_metrics()
        self._log_epoch(epoch, metrics, mle, self.pos["step"] - first_step, steps_s)
        bar.close(seconds=steps_s, **{k.replace("/", "_"): v for k, v in metrics.items()})
        if self.group.distributed:
            self.group.same_everywhere(_fingerprint(self.strategy, self.params), "the search state")
        self.state.end_epoch(metrics)
        if self.group.main:
            self.state.save()
        self.logger.flush()

    def _epoch_metrics(self) -> tuple[dict[str, float], Any]:
        """The epoch's mean train and valid loss and accuracy, and the most likely architecture
        (None without one) with its test accuracy (monitoring only)."""
        meter = self.state.meter
        metrics = {k: meter.mean(k) for k in ("train/loss", "train/acc", "valid/loss", "valid/acc")}
        mle = self.strategy.mle() if self.has_mle else None
        if mle is not None:
            with torch.no_grad():
                metrics["test/acc"] = _accuracy(
                    self.net, self.xte, self.yte, mle, self.vbs, self.S.precision
                )
        return metrics, mle

    def _log_epoch(
        self, epoch: int, metrics: dict[str, float], mle: Any, steps: int, steps_s: float
    ) -> None:
        """TensorBoard at the epoch's end: the most likely architecture's costs, the metrics, the
        distribution, the speed of its ``steps`` (``steps_s`` seconds, the epoch's test not
        included), the most likely architecture."""
        logger, gstep = self.logger, self.pos["global_step"]
        if mle is not None:
            for measure in self.measures:
                logger.scalar(f"arch/{measure}_most_likely", self.cost.count(mle, measure), gstep)
        logger.scalars(metrics, gstep)
        log_lr(logger, self.optimizer, gstep)
        image = evenly_due(epoch, self.S.epochs, self.config.log.theta_images)
        log_distribution(logger, self.space, self.strategy, gstep, image)
        log_speed(logger, self.device, steps, steps_s, self.bs * self.S.lam, gstep)
        if mle is not None:
            logger.text("arch/most_likely", _as_code_block(self.space.describe(mle)), gstep)

    def after_epochs(self, stop: StopFlag) -> None:
        """The final selection, if any (:meth:`select_final`), for :meth:`write_results`."""
        self.selection = self.select_final(stop)

    def select_final(self, stop: StopFlag) -> Selection | None:
        """After the epochs: say if the search converged early, and run the final selection (if
        any; None without one); a signal during it raises :class:`Interrupted`."""
        S, pos = self.S, self.pos
        if self.converged() and pos["epoch"] < S.epochs:
            meaning = (  # ASNG's meaning; a plugin strategy's converged() says its own
                f"every choice's most likely option holds {S.stop_when_converged} of its cap"
                if type(unchecked(self.strategy)).converged is ASNG.converged
                else f"strategy '{S.strategy}' says it converged at {S.stop_when_converged}"
            )
            self.tell(
                f"converged after epoch {pos['epoch']} of {S.epochs}: {meaning} "
                "(search.stop_when_converged)"
            )
        if self.select is None:
            return None
        dumped = self.config.model_dump(mode="json", warnings=False)  # Choice in unions
        read = {k: dumped[k] for k in ("search", "seed", "data")}  # what the selection reads
        settings = hashlib.sha256(json.dumps(read, sort_keys=True).encode()).hexdigest()
        kept = self._kept_selection(settings)
        if kept is not None:
            self.tell("final selection: made and logged before the stop; kept")
            return kept
        self.net.train()
        before = self.state.snapshot("strategy") if self.group.main else None
        cost_penalty = (lambda a: S.cost_penalty * self.cost(a)) if S.cost_penalty else None
        selection = run_selection(
            self.select,
            self.strategy,
            self.space,
            self.net,
            (self.xva, self.yva),
            self.vbs,
            seed=self.config.seed,
            penalty=cost_penalty,
            precision=S.precision,
            group=self.group,
            stopped=lambda: bool(stop),
            tell=self.tell,
        )
        if selection is None:
            when = "during the final selection (the search itself is checkpointed)"
            raise stopped(stop, when, "search", self.run_dir, then="select again with")
        _log_selection(self.logger, self.space, selection, pos["global_step"])
        if self.group.main:  # a stop from here on keeps it, rather than logging it again
            self.state.final["selection"] = {**selection.state_dict(), "settings": settings}
            self.state.save(as_of=before)  # as if before the selection's draws
        return selection

    def _kept_selection(self, settings: str) -> Selection | None:
        """The selection the checkpoint holds (made, logged, then stopped before the results), if
        it was made with these ``settings`` (a digest of what a selection reads) and fits."""
        saved = self.state.final.get("selection")
        if isinstance(saved, dict) and saved.get("settings") == settings:
            return Selection.from_state(saved, self.space.categories)
        return None

    def log_hparams(self) -> None:
        """The run's settings and final metrics in TensorBoard's hparams (a run that got here)."""
        self.logger.hparams(flat_params(self.config), self.state.metrics)

    def close(self) -> None:
        """Close the TensorBoard logger (however the run ended)."""
        self.logger.close()

    def write_results(self) -> dict[str, Any]:
        """Write ``arch.yaml`` (the selected or the most likely architecture) and
        ``summary.json``, say what was found; the summary (``{}`` on ranks other than 0)."""
        selection = self.selection
        mle = self.strategy.mle() if self.has_mle else None
        chosen = mle if selection is None else selection.chosen
        if not self.group.main:
            return {}
        space, run_dir, tell = self.space, self.run_dir, self.tell
        arch = space.freeze(chosen)
        _keep_earlier(run_dir / ARCH, yaml_text(arch), tell)
        dump_yaml(arch, run_dir / ARCH)
        summary = self._summary(mle)
        if selection is not None:
            with torch.no_grad():
                test_acc = _accuracy(
                    self.net, self.xte, self.yte, chosen, self.vbs, self.S.precision
                )
            summary["selection"] = _selection_summary(space, selection, self.cost, test_acc)
            tell(
                f"selected candidate {selection.best + 1} of {len(selection.candidates)}: valid "
                f"loss {selection.losses[selection.best]:.4f}, valid acc "
                f"{selection.accuracies[selection.best]:.4f} on {selection.samples} samples"
            )
        write_json(summary, run_dir / SUMMARY)
        tell("found architecture:\n" + _indent(space.describe(chosen)))
        tell(f"run directory: {run_dir}   (tensorboard --logdir {run_dir})")
        arch = run_dir / ARCH
        retrain = f"nasframe.run_train(nasframe.load_config('{arch}')[0], RUN_DIR)"
        tell(f"retrain it with: {registry.how_to_go_on(f'nasframe train {arch}', retrain)}")
        return summary

    def _summary(self, mle: Any) -> dict[str, Any]:
        """``summary.json`` but the final selection: the run, its final metrics, the
        distribution and the most likely architecture (None without one)."""
        space, cost, pos = self.space, self.cost, self.pos
        return {
            "kind": "search",
            "name": self.config.name,
            "space_hash": space.hash,
            "device": str(self.device),
            "processes": self.group.world,
            "epochs": self.S.epochs,
            "epochs_run": pos["epoch"],
            "iterations": pos["global_step"],
            "wall_time_s": self.state.wall_s(),
            "environment": self.state.environment,
            "final": dict(self.state.metrics),
            "categories": space.categories,
            "paths": space.paths,
            "theta": np.asarray(self.strategy.theta).tolist(),
            "ordinal": ordinal_gaussians(space, self.strategy),
            "most_likely": None if mle is None else space.decode(mle),
            "most_likely_parameters": None if mle is None else cost.count(mle, "parameters"),
            "most_likely_macs": None if mle is None else cost.count(mle, "macs"),
            "most_likely_latency_ms": None
            if mle is None or not self.latency
            else cost.count(mle, "latency"),
            "selection": None,
            "arch": ARCH,
        }


def _log_selection(logger: RunLogger, space: SearchSpace, selection: Selection, step: int) -> None:
    """The chosen candidate's valid loss and accuracy and its architecture; for an evolution, the
    best score so far after each generation (its step is the generation)."""
    best = selection.best
    logger.scalar("select/valid_loss", float(selection.losses[best]), step)
    logger.scalar("select/valid_acc", float(selection.accuracies[best]), step)
    logger.scalar("select/candidates", len(selection.candidates), step)
    logger.text("arch/selected", _as_code_block(space.describe(selection.chosen)), step)
    if selection.generations is not None:
        for g in range(int(selection.generations.max()) + 1):
            so_far = selection.scores[selection.generations <= g].min()
            logger.scalar("select/best_score_by_generation", float(so_far), g)


def _selection_summary(
    space: SearchSpace, selection: Selection, cost: ArchitectureCost, test_acc: float
) -> dict[str, Any]:
    """What ``summary.json`` records of the final selection: the chosen candidate and every
    candidate's scores (option indices in the order of ``paths``)."""
    best = selection.best
    return {
        "chosen": space.decode(selection.chosen),
        "chosen_index": best,
        "valid_loss": float(selection.losses[best]),
        "valid_acc": float(selection.accuracies[best]),
        "score": float(selection.scores[best]),
        "parameters": cost.count(selection.chosen, "parameters"),
        "macs": cost.count(selection.chosen, "macs"),
        "latency_ms": cost.count(selection.chosen, "latency") if cost.latency else None,
        "test_acc": test_acc,
        "samples": selection.samples,
        "generations": None if selection.generations is None else selection.generations.tolist(),
        "candidates": selection.candidates.tolist(),
        "valid_losses": selection.losses.tolist(),
        "valid_accs": selection.accuracies.tolist(),
        "scores": selection.scores.tolist(),
    }


def _accuracy(
    net: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    sample: Any,
    batch_size: int,
    precision: str = "fp32",
) -> float:
    """Accuracy of one architecture of the supernet (monitoring only: never used to decide)."""
    correct = torch.zeros((), device=x.device)
    starts = list(range(0, x.shape[0], batch_size))
    if len(starts) > 1 and x.shape[0] - starts[-1] == 1:
        starts.pop()  # the supernet's BatchNorm needs 2 samples: the last one joins the batch before
    for start, end in zip(starts, [*starts[1:], x.shape[0]], strict=True):
        with autocast(x.device, precision):
            out = net(x[start:end], sample)
        correct += (out.argmax(1) == y[start:end]).sum()
    return correct.item() / max(x.shape[0], 1)


def make_strategy(
    name: str, space: SearchSpace, lam: int, seed: int, options: dict[str, Any]
) -> Strategy:
    """The strategy plugin for ``space``'s choices, with the options of
    ``search.strategy_options``; the rows of ordinal choices go to its ``ordinal`` argument."""
    set_by = {"lam": "search.lam", "seed": "seed", "ordinal": "'ordinal: true' on the choices"}
    for key, where in set_by.items():
        if key in options:
            raise UserError(
                f"search.strategy_options.{key}: set by {where}; remove it from strategy_options"
            )
    factory = registry.get("strategy", name)
    accepted = registry.keywords(factory, exclude=("categories", "lam", "seed"))  # None: any
    extra: dict[str, Any] = {}
    if space.ordinal:
        if accepted is not None and "ordinal" not in accepted:
            first = space.choices[space.ordinal[0]].path
            raise UserError(
                f"{first}: ordinal: strategy '{name}' models every choice as categorical; "
                "remove 'ordinal: true' or use asng"
            )
        extra["ordinal"] = space.ordinal
    if accepted is not None:
        accepted.discard("ordinal")
    for key in options:
        if accepted is not None and key not in accepted:
            raise UserError(
                f"search.strategy_options.{key}: strategy '{name}' takes no option '{key}' "
                f"(it takes {', '.join(sorted(accepted)) or 'none'}){did_you_mean(key, accepted)}"
            )
    own = registry.package(factory) == "nasframe"
    if not own:  # nasframe's own strategies check their options themselves
        options = checked_options(factory, options, "search.strategy_options")

    def blame(e: Exception) -> str | None:
        """nasframe's own strategies refuse bad options with TypeError or ValueError (numpy's
        words for a malformed theta, say); a plugin's are the user's when they name an option."""
        if isinstance(e, RuntimeError):
            return None
        if own or registry.named_option(str(e), options) is not None:
            return f"search.strategy_options: {e}"
        given = registry.named_option(str(e), {"lam": lam, "seed": seed})  # set by the user too
        if given is not None:
            return f"{'search.lam' if given == 'lam' else 'seed'}: strategy '{name}': {e}"
        return None

    strategy = registry.call(
        "strategy",
        name,
        factory,
        (space.categories,),
        {"lam": lam, "seed": seed, **extra, **options},
        options=options,
        where="search.strategy_options",
        blame=blame,
    )
    return strategy if own else CheckedStrategy(strategy, name, space.categories)


def _refuse_fused_momentum(optimizer: torch.optim.Optimizer) -> None:
    """torch's fused SGD with momentum fails (``expected Tensor as element N in argument 2``)
    once a parameter first gets a gradient after its first step, as the supernet's unsampled
    options do: refuse it before the search starts."""
    for group in optimizer.param_groups:
        if isinstance(optimizer, torch.optim.SGD) and group.get("fused") and group["momentum"]:
            raise UserError(
                "search.optimizer.fused: torch's fused SGD with momentum fails on a supernet "
                "(options first sampled after its first step have no momentum buffer); remove "
                "fused: the search already takes multi-tensor (foreach) steps"
            )


def _keep_earlier(path: Path, text: str, tell: Callable[[str], None]) -> None:
    """Keep an ``arch.yaml`` that differs from the one about to be written (a hand edit, or an
    earlier result of a search resumed to run longer) as ``arch.previous[-N].yaml``."""
    if path.is_dir():  # not a file to keep: writing over it is refused, saying why
        return
    try:
        earlier = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):  # none, or unreadable: kept below if it is there
        earlier = None if not path.exists() else ""
    if earlier is None or earlier == text:
        return
    n = 1
    while (
        kept := path.with_name(f"{path.stem}.previous{'' if n == 1 else f'-{n}'}.yaml")
    ).exists():
        n += 1
    try:
        path.rename(kept)
    except OSError as e:
        raise UserError(f"{path}: cannot keep it as {kept.name} ({e.strerror or e})") from None
    tell(f"kept the earlier {path.name}, which differs from this search's, as {kept.name}")


def _diverged(space: SearchSpace, host: list[float], archs: Any, varchs: Any) -> str:
    """Which architectures gave a non-finite loss (``host``: :func:`search_iteration`'s read
    values): a valid one by name, or the λ whose mean train loss it was."""
    read = ReadBack.of(host, len(varchs))
    if not math.isfinite(read.train_loss):
        named = "; ".join(str(space.decode(a)) for a in archs)
        return f"mean train loss {read.train_loss} of the architectures {named}"
    k, loss = next((k, v) for k, v in enumerate(read.valid_losses) if not math.isfinite(v))
    return f"valid loss {loss} of the architecture {space.decode(varchs[k])}"


def _fingerprint(strategy: Strategy, params: list[torch.nn.Parameter]) -> torch.Tensor:
    """θ and one sum per weight tensor: equal on every rank of a search in lock-step."""
    theta = torch.as_tensor(np.asarray(strategy.theta), dtype=torch.float64).reshape(-1)
    with torch.no_grad():
        sums = torch.stack([p.double().sum() for p in params]).cpu()
    return torch.cat([theta, sums]).to(params[0].device)


def _processes(group: Group) -> str:
    return f" (x{group.world} processes)" if group.distributed else ""


def _silent(message: str = "") -> None:
    pass


def _as_code_block(text: str) -> str:
    return "\n".join(f"    {line}" for line in text.splitlines())


def _indent(text: str) -> str:
    return "\n".join(f"  {line}" for line in text.splitlines())
