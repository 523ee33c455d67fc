"""One-shot architecture search: supernet weights by SGD, architecture distribution by a strategy.

One iteration is the reference protocol of ASNG-NAS: sample λ architectures, forward them on the
same train minibatch, backward the mean loss, clip, one optimizer step; then sample λ fresh
architectures, evaluate them on the same valid minibatch without gradients and update the
distribution with their losses. The only host synchronisation of an iteration is the one read of
those losses (together with the logging metrics).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from . import registry
from .checkpoint import write_json
from .config import Config, SelectConfig
from .console import EpochProgress, say
from .cost import ArchitectureCost
from .data import (
    augment_at,
    batch_at,
    check_augment,
    epoch_order,
    load_dataset,
    split_train_valid,
)
from .device import resolve_device
from .distributed import Group, join_group
from .errors import Interrupted, TrainingDiverged, UserError, did_you_mean
from .interrupt import stop_on_signals
from .latency import open_latency_table
from .network import make_supernet, num_classes_of
from .optim import build_optimizer, build_schedule
from .plots import theta_image
from .precision import autocast
from .run_files import ARCH, SUMMARY
from .runstate import RunState
from .selection import Selection, run_selection
from .space import SearchSpace
from .tblog import RunLogger, evenly_due, flat_params, log_speed
from .yaml_io import dump_yaml

__all__ = [
    "run_search",
    "search_iteration",
    "TrainingDiverged",
    "Interrupted",
    "log_distribution",
]


def ordinal_gaussians(space: SearchSpace, strategy: Any) -> dict[str, dict[str, float]]:
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
    logger: RunLogger, space: SearchSpace, strategy: Any, step: int, image: bool = True
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


def search_iteration(
    net: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    strategy: Any,
    train_batch: tuple[torch.Tensor, torch.Tensor],
    valid_batch: tuple[torch.Tensor, torch.Tensor],
    lam: int,
    grad_clip: float | None,
    params: list[torch.nn.Parameter],
    precision: str = "fp32",
    group: Group | None = None,
    stop: bool = False,
    pool: ThreadPoolExecutor | None = None,
) -> tuple[list[float], np.ndarray, np.ndarray]:
    """One iteration of the reference protocol, up to the ranking (the strategy is not updated).

    λ architectures forward the train batch, the mean loss is backpropagated, the gradients that
    exist are clipped, one optimizer step; λ fresh architectures are evaluated on the valid batch.
    Returns the values read in the iteration's one host synchronisation — the λ valid losses, the
    mean train loss, the train and the valid correct counts — and both samples. ``precision``
    ``bf16`` runs the forward passes under bfloat16 autocast. Under torchrun, ``group`` averages the
    gradients of the ranks' shards before clipping and reduces the read values (losses averaged,
    counts summed) together with each rank's ``stop`` request. With a ``pool`` of threads, the λ
    forward passes of each half run concurrently (an experiment for overhead-bound devices: the
    backward passes stay in order, so the numbers are bitwise the same, but the train step holds
    λ graphs at once; ``benchmarks/search_speed.py --concurrent-forwards``).
    """
    group = group or Group()
    xb, yb = train_batch
    xv, yv = valid_batch
    archs = strategy.sample(lam)
    optimizer.zero_grad(set_to_none=True)
    train_loss = torch.zeros((), device=xb.device)
    train_correct = torch.zeros((), device=xb.device)
    if pool is None:  # one graph at a time: forward, backward, then the next architecture
        passes = (_forward(net, xb, yb, a, precision, True) for a in archs)
    else:  # every forward at once, each in a thread; the backward passes below stay in order
        passes = list(pool.map(lambda a: _forward(net, xb, yb, a, precision, True), archs))
    for out, loss in passes:
        (loss / lam).backward()
        train_loss += loss.detach()
        train_correct += (out.argmax(1) == yb).sum()
    group.average_gradients(params)
    if grad_clip:
        torch.nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], grad_clip)
    optimizer.step()
    varchs = strategy.sample(lam)
    evaluate = map if pool is None else pool.map
    valid = list(evaluate(lambda a: _forward(net, xv, yv, a, precision, False), varchs))
    vlosses = [loss for _, loss in valid]
    vcorrect = sum((out.argmax(1) == yv).sum() for out, _ in valid)
    host = torch.stack([*vlosses, train_loss / lam, train_correct, vcorrect.float()])
    host = group.reduce(host, means=lam + 1, stop=stop).tolist()
    return host, archs, varchs


def _forward(
    net: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    arch: Any,
    precision: str,
    grad: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and cross-entropy of one architecture (grad mode and autocast are per thread, so
    both are set here)."""
    with torch.set_grad_enabled(grad), autocast(x.device, precision):
        out = net(x, arch)
        return out, F.cross_entropy(out, y)


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
    was.
    """
    if group is None:
        group, spec = join_group(config.device)
        config = config.model_copy(update={"device": spec})
    tell = say if group.main else _silent
    device = resolve_device(config.device)
    data = load_dataset(config.data)
    space = SearchSpace(config)
    if not space.choices:
        raise UserError(
            "space: nothing to search (every field is a constant); use `nasframe train`"
        )
    S = config.search
    check_augment(S.augment, data.sample_shape, "search.augment")
    torch.manual_seed(config.seed)
    classes = num_classes_of(config, data.num_classes)
    net = make_supernet(space, data.sample_shape, classes).to(device)
    split = split_train_valid(data.x_train, data.y_train, config.data.valid_fraction, config.seed)
    xtr, ytr, xva, yva = (t.to(device) for t in split)
    xte, yte = data.x_test.to(device), data.y_test.to(device)
    bs = min(S.batch_size, xtr.shape[0])
    vbs = min(S.batch_size, xva.shape[0])
    group.check_batch(bs, "search.batch_size")
    group.check_batch(vbs, "search.batch_size (valid split)")
    steps = max(1, xtr.shape[0] // bs)
    strategy = make_strategy(S.strategy, space, S.lam, config.seed, S.strategy_options)
    if S.stop_when_converged is not None and not hasattr(strategy, "converged"):
        raise UserError(
            f"search.stop_when_converged: strategy '{S.strategy}' has no converged(); remove "
            "the option or use asng"
        )

    def converged() -> bool:
        return S.stop_when_converged is not None and strategy.converged(S.stop_when_converged)

    has_mle = hasattr(strategy, "mle")
    select = S.select or (None if has_mle else SelectConfig())

    optimizer = build_optimizer(net.parameters(), S.optimizer, "search.optimizer")
    schedule = build_schedule(optimizer, S.optimizer, S.epochs * steps)
    latency = None
    if S.cost == "latency":  # (a dry run checks the options and writes nothing)
        where = None if dry_run else Path(run_dir)
        say_it = _silent if dry_run else tell
        latency = open_latency_table(S.latency_options, device, where, resume, group, say_it)
    cost = ArchitectureCost(space, data.sample_shape, classes, S.cost, latency=latency)
    if dry_run:
        return {"kind": "search", "data": data.name, "train": xtr.shape[0], "valid": xva.shape[0]}
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    state = RunState(
        "search",
        space.hash,
        run_dir,
        model=net,
        optimizer=optimizer,
        schedule=schedule,
        strategy=strategy,
    )
    note = state.start(device, resume, on_ready)
    pos = state.pos
    if resume:
        tell(f"resuming {run_dir} at epoch {pos['epoch'] + 1}, step {pos['step']}")
        if note:
            tell(note)
    else:
        tell(
            f"device: {device}{_processes(group)}   data: {data.name} {tuple(data.sample_shape)}, "
            f"{xtr.shape[0]} train / {xva.shape[0]} valid"
        )
        tell(
            f"space: {len(space.choices)} choices, {space.size:,} architectures   "
            f"strategy: {S.strategy}   run: {run_dir}"
        )
        if select is not None and S.select is None:
            tell(
                f"strategy '{S.strategy}' has no most likely architecture: the search ends by "
                f"scoring {select.candidates} drawn candidates (search.select)"
            )
        if S.warmup_epochs >= S.epochs and hasattr(strategy, "mle"):
            tell(
                f"note: all {S.epochs} epochs are warm-up (search.warmup_epochs: "
                f"{S.warmup_epochs}): the architecture distribution will not move, and the "
                "search ends where it started"
                + ("" if S.select else "; lower warmup_epochs, or add search.select")
            )
        if space.ordinal and S.lam == 2 and hasattr(strategy, "ordinal_mean"):
            tell(
                "note: with search.lam: 2 the ordinal choices' spread learns only from "
                "second-order drift (mirrored pairs); search.lam: 4 converges them (docs/asng.md)"
            )

    logger = RunLogger(
        run_dir,
        config.log.tensorboard and group.main,
        purge_step=pos["global_step"] + 1 if resume else None,
    )
    params = list(net.parameters())
    lam = S.lam
    measures = ("parameters", "macs", "latency") if latency else ("parameters", "macs")
    try:
        with stop_on_signals() as stop:
            while pos["epoch"] < S.epochs and not converged():
                epoch = pos["epoch"]
                tr_order = epoch_order(xtr.shape[0], config.seed, epoch, 0, device)
                va_order = epoch_order(xva.shape[0], config.seed, epoch, 1, device)
                bar = EpochProgress(
                    epoch,
                    S.epochs,
                    steps,
                    pos["step"],
                    enabled=progress and config.log.progress and group.main,
                )
                t_epoch = time.perf_counter()
                first_step = pos["step"]
                net.train()
                while pos["step"] < steps:
                    i = pos["step"]
                    xb, yb = batch_at(xtr, ytr, tr_order, i, bs)
                    xb, yb = group.shard(augment_at(xb, S.augment, config.seed, epoch, i, 0), yb)
                    xv, yv = batch_at(xva, yva, va_order, i, vbs)
                    xv, yv = group.shard(augment_at(xv, S.augment, config.seed, epoch, i, 1), yv)
                    host, archs, varchs = search_iteration(
                        net,
                        optimizer,
                        strategy,
                        (xb, yb),
                        (xv, yv),
                        lam,
                        S.grad_clip,
                        params,
                        S.precision,
                        group,
                        bool(stop),
                    )
                    schedule.step()
                    f = host[:lam]
                    if not all(math.isfinite(v) for v in host[: lam + 1]):
                        raise TrainingDiverged(
                            f"non-finite loss at epoch {epoch + 1}, step {i} (iteration "
                            f"{pos['global_step']}): {_diverged(space, host, archs, varchs)}; "
                            "try a smaller search.optimizer.lr or grad_clip"
                        )
                    if epoch >= S.warmup_epochs:
                        if S.cost_penalty:
                            f = [
                                v + S.cost_penalty * cost(a) for v, a in zip(f, varchs, strict=True)
                            ]
                        strategy.update(varchs, f)
                    state.meter.add("train/loss", host[lam])
                    state.meter.add("train/acc", host[lam + 1] / (lam * bs))
                    state.meter.add("valid/loss", sum(host[:lam]) / lam)
                    state.meter.add("valid/acc", host[lam + 2] / (lam * vbs))
                    pos["step"] += 1
                    pos["global_step"] += 1
                    bar.step(bs * lam, loss=host[lam], acc=state.meter.mean("train/acc"))
                    halt = group.stopping if group.distributed else bool(stop)
                    if group.main and (
                        halt
                        or (S.checkpoint_every and pos["global_step"] % S.checkpoint_every == 0)
                    ):
                        state.save()
                    if halt:
                        raise Interrupted(
                            f"stopped by signal {stop.signal or 'on another process'} after iteration "
                            f"{pos['global_step']}; checkpoint written; continue with: "
                            f"nasframe search --resume {run_dir}"
                        )
                gstep = pos["global_step"]
                metrics = {
                    k: state.meter.mean(k)
                    for k in ("train/loss", "train/acc", "valid/loss", "valid/acc")
                }
                mle = strategy.mle() if has_mle else None
                if mle is not None:
                    with torch.no_grad():
                        metrics["test/acc"] = _accuracy(net, xte, yte, mle, vbs, S.precision)
                    for measure in measures:
                        logger.scalar(
                            f"arch/{measure}_most_likely", cost.count(mle, measure), gstep
                        )
                logger.scalars(metrics, gstep)
                image = evenly_due(epoch, S.epochs, config.log.theta_images)
                log_distribution(logger, space, strategy, gstep, image)
                done, elapsed = pos["step"] - first_step, time.perf_counter() - t_epoch
                log_speed(logger, device, done, elapsed, bs * lam, gstep)
                if mle is not None:
                    logger.text("arch/most_likely", _markdown(space.describe(mle)), gstep)
                bar.close(**{k.replace("/", "_"): v for k, v in metrics.items()})
                if group.distributed:
                    group.same_everywhere(_fingerprint(strategy, params), "the search state")
                state.end_epoch(metrics)
                if group.main:
                    state.save()
                logger.flush()
            if converged() and pos["epoch"] < S.epochs:
                tell(
                    f"converged after epoch {pos['epoch']} of {S.epochs}: every choice's most "
                    f"likely option holds {S.stop_when_converged} of its cap "
                    "(search.stop_when_converged)"
                )
            selection = None
            if select is not None:
                net.train()
                selection = run_selection(
                    select,
                    strategy,
                    space,
                    net,
                    (xva, yva),
                    vbs,
                    seed=config.seed,
                    penalty=(lambda a: S.cost_penalty * cost(a)) if S.cost_penalty else None,
                    precision=S.precision,
                    group=group,
                    stopped=lambda: bool(stop),
                    tell=tell,
                )
                if selection is None:
                    raise Interrupted(
                        f"stopped by signal {stop.signal or 'on another process'} during the "
                        "final selection (the search itself is checkpointed); select again "
                        f"with: nasframe search --resume {run_dir}"
                    )
                _log_selection(logger, space, selection, pos["global_step"])
        logger.hparams(flat_params(config), state.metrics)
    finally:
        logger.close()

    mle = strategy.mle() if has_mle else None
    chosen = mle if selection is None else selection.chosen
    if not group.main:
        return {}
    dump_yaml(space.freeze(chosen), run_dir / ARCH)
    summary = {
        "kind": "search",
        "name": config.name,
        "space_hash": space.hash,
        "device": str(device),
        "processes": group.world,
        "epochs": S.epochs,
        "epochs_run": pos["epoch"],
        "iterations": pos["global_step"],
        "wall_time_s": state.wall_s(),
        "environment": state.environment,
        "final": dict(state.metrics),
        "categories": space.categories,
        "paths": space.paths,
        "theta": np.asarray(strategy.theta).tolist(),
        "ordinal": ordinal_gaussians(space, strategy),
        "most_likely": None if mle is None else space.decode(mle),
        "most_likely_parameters": None if mle is None else cost.count(mle, "parameters"),
        "most_likely_macs": None if mle is None else cost.count(mle, "macs"),
        "most_likely_latency_ms": None
        if mle is None or not latency
        else cost.count(mle, "latency"),
        "selection": None,
        "arch": ARCH,
    }
    if selection is not None:
        with torch.no_grad():
            test_acc = _accuracy(net, xte, yte, chosen, vbs, S.precision)
        summary["selection"] = _selection_summary(space, selection, cost, test_acc)
        tell(
            f"selected candidate {selection.best + 1} of {len(selection.candidates)}: valid loss "
            f"{selection.losses[selection.best]:.4f}, valid acc "
            f"{selection.accuracies[selection.best]:.4f} on {selection.samples} samples"
        )
    write_json(summary, run_dir / SUMMARY)
    tell("found architecture:\n" + _indent(space.describe(chosen)))
    tell(f"run directory: {run_dir}   (tensorboard --logdir {run_dir})")
    tell(f"retrain it with: nasframe train {run_dir / ARCH}")
    return summary


def _log_selection(logger: RunLogger, space: SearchSpace, selection: Selection, step: int) -> None:
    """The chosen candidate's valid loss and accuracy and its architecture; for an evolution, the
    best score so far after each generation (its step is the generation)."""
    best = selection.best
    logger.scalar("select/valid_loss", float(selection.losses[best]), step)
    logger.scalar("select/valid_acc", float(selection.accuracies[best]), step)
    logger.scalar("select/candidates", len(selection.candidates), step)
    logger.text("arch/selected", _markdown(space.describe(selection.chosen)), step)
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
) -> Any:
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
    try:
        return factory(space.categories, lam=lam, seed=seed, **extra, **options)
    except (TypeError, ValueError) as e:
        raise UserError(f"search.strategy_options: {e}") from None


def _diverged(space: SearchSpace, host: list[float], archs: Any, varchs: Any) -> str:
    """Which architectures gave a non-finite loss: a valid one by name, or the λ whose mean train
    loss it was."""
    lam = len(varchs)
    if not math.isfinite(host[lam]):
        named = "; ".join(str(space.decode(a)) for a in archs)
        return f"mean train loss {host[lam]} of the architectures {named}"
    k = next(k for k in range(lam) if not math.isfinite(host[k]))
    return f"valid loss {host[k]} of the architecture {space.decode(varchs[k])}"


def _fingerprint(strategy: Any, params: list[torch.nn.Parameter]) -> torch.Tensor:
    """θ and one sum per weight tensor: equal on every rank of a search in lock-step."""
    theta = torch.as_tensor(np.asarray(strategy.theta), dtype=torch.float64).reshape(-1)
    with torch.no_grad():
        sums = torch.stack([p.double().sum() for p in params]).cpu()
    return torch.cat([theta, sums]).to(params[0].device)


def _processes(group: Group) -> str:
    return f" (x{group.world} processes)" if group.distributed else ""


def _silent(message: str = "") -> None:
    pass


def _markdown(text: str) -> str:
    return "\n".join(f"    {line}" for line in text.splitlines())


def _indent(text: str) -> str:
    return "\n".join(f"  {line}" for line in text.splitlines())
