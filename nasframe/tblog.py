"""TensorBoard logging of a run (one writer, one ``add_scalar`` per tag)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from .config import Config

__all__ = ["RunLogger", "NamespacedLogger", "evenly_due", "flat_params", "log_lr", "log_speed"]

EVENTS = "events.out.tfevents."  #: how TensorBoard's event files are named


def evenly_due(epoch: int, epochs: int, count: int) -> bool:
    """Whether 0-based ``epoch`` is one of ``count`` evenly spaced epochs of ``epochs``, the last
    always among them (every epoch when ``count >= epochs``; none when ``count`` is 0)."""
    if count <= 0:
        return False
    return (epoch + 1) * count // epochs > epoch * count // epochs


def flat_params(
    config: Config, sections: tuple[str, ...] = ("seed", "search", "data")
) -> dict[str, Any]:
    """Scalar config values as ``{"search.optimizer.lr": 0.05, ...}`` (for hparams)."""
    out: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(value, (int, float, str, bool)):
            out[prefix] = value

    dumped = config.model_dump(mode="json", warnings=False)
    for key in sections:
        walk(key, dumped.get(key))
    return out


def log_lr(logger: RunLogger, optimizer: torch.optim.Optimizer, step: int) -> None:
    """``train/lr``: the learning rate the schedule has reached at the end of an epoch (that of
    the next step), from the optimizer itself: what it trains with, whatever the config said."""
    logger.scalar("train/lr", float(optimizer.param_groups[0]["lr"]), step)


def log_speed(
    logger: RunLogger, device: torch.device, steps: int, seconds: float, samples: int, step: int
) -> None:
    """``sys/step_time`` and ``sys/samples_per_s`` of an epoch's ``steps`` of ``samples`` each,
    and the peak GPU memory in MiB on CUDA."""
    if steps:
        logger.scalar("sys/step_time", seconds / steps, step)
        logger.scalar("sys/samples_per_s", steps * samples / max(seconds, 1e-9), step)
    if device.type == "cuda":
        logger.scalar("sys/gpu_mem", torch.cuda.max_memory_allocated(device) / 2**20, step)


class RunLogger:
    """Writes a run's TensorBoard events; a no-op when disabled.

    ``purge_step`` (on resume: the checkpoint's step + 1, since what was logged at that step came
    before the checkpoint) makes TensorBoard drop events a killed run wrote after its last
    checkpoint, so the curves continue cleanly. A run that starts in a directory with events
    already (one restarted because it was stopped before its first checkpoint) drops them all.
    """

    def __init__(
        self, run_dir: str | os.PathLike, enabled: bool = True, purge_step: int | None = None
    ) -> None:
        self.writer = None
        self.run_dir = Path(run_dir)
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            if purge_step is None and any(self.run_dir.glob(f"{EVENTS}*")):
                purge_step = 0  # what an earlier start logged has no checkpoint behind it
            self.writer = SummaryWriter(log_dir=str(run_dir), purge_step=purge_step)

    @property
    def enabled(self) -> bool:
        return self.writer is not None

    def namespace(self, prefix: str) -> NamespacedLogger:
        """A logger whose tags all start with ``prefix/`` (what plugins get: growth/*, prune/*)."""
        return NamespacedLogger(self, prefix)

    def scalar(self, tag: str, value: float, step: int) -> None:
        if self.writer is not None:
            self.writer.add_scalar(tag, value, step)

    def scalars(self, values: dict[str, float], step: int) -> None:
        for tag, value in values.items():
            self.scalar(tag, value, step)

    def text(self, tag: str, text: str, step: int) -> None:
        if self.writer is not None:
            self.writer.add_text(tag, text, step)

    def image(self, tag: str, image: Any, step: int, dataformats: str = "HW") -> None:
        if self.writer is not None:
            self.writer.add_image(tag, image, step, dataformats=dataformats)

    def hparams(self, params: dict[str, Any], metrics: dict[str, float]) -> None:
        """Config values -> final metrics, in the run directory itself (``run_name='.'``), in
        place of those an earlier end of the run wrote (a resume that ends it again, or goes on
        longer): TensorBoard shows the run once."""
        if self.writer is not None:
            for path in self.run_dir.glob(f"{EVENTS}*"):
                if _hparams_only(path):
                    path.unlink()
            clean = {
                k: v if isinstance(v, (int, float, str, bool)) else str(v)
                for k, v in params.items()
            }
            self.writer.add_hparams(
                clean, {f"hparam/{k}": v for k, v in metrics.items()}, run_name="."
            )

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _hparams_only(path: Path) -> bool:
    """Whether events file ``path`` is one that :meth:`RunLogger.hparams` wrote: every summary in
    it is of the hparams plugin or an ``hparam/`` metric (read until the first that is not)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    found = False
    try:
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                plugin = value.metadata.plugin_data.plugin_name
                if plugin != "hparams" and not value.tag.startswith("hparam/"):
                    return False
                found = True
    except Exception:  # unreadable: not ours to remove
        return False
    return found


class NamespacedLogger:
    """Scalars and text under one tag prefix, written by the run's single writer."""

    def __init__(self, parent: RunLogger, prefix: str) -> None:
        self.parent, self.prefix = parent, prefix.strip("/")

    def scalar(self, tag: str, value: float, step: int) -> None:
        self.parent.scalar(f"{self.prefix}/{tag}", value, step)

    def scalars(self, values: dict[str, float], step: int) -> None:
        for tag, value in values.items():
            self.scalar(tag, value, step)

    def text(self, tag: str, text: str, step: int) -> None:
        self.parent.text(f"{self.prefix}/{tag}", text, step)
