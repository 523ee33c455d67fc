"""What a run prints: a progress bar per epoch (or one line per epoch when not on a terminal)."""

from __future__ import annotations

import sys
import time

from tqdm import tqdm

__all__ = ["EpochProgress", "say"]


def say(message: str = "") -> None:
    """One line to the console (stderr, so that stdout stays clean for data)."""
    print(message, file=sys.stderr, flush=True)


class EpochProgress:
    """A progress bar for one epoch with loss, accuracy and throughput."""

    def __init__(self, epoch: int, epochs: int, steps: int, start: int = 0, enabled: bool = True):
        self.epoch, self.epochs = epoch, epochs
        self.interactive = enabled and sys.stderr.isatty()
        self.enabled = enabled
        self.bar = (
            tqdm(
                total=steps,
                initial=start,
                desc=f"epoch {epoch + 1}/{epochs}",
                unit="it",
                leave=False,
                file=sys.stderr,
                dynamic_ncols=True,
            )
            if self.interactive
            else None
        )
        self.t0 = time.perf_counter()
        self.samples = 0

    def step(self, samples: int, **metrics: float) -> None:
        self.samples += samples
        if self.bar is not None:
            self.bar.update(1)
            rate = self.samples / max(time.perf_counter() - self.t0, 1e-9)
            self.bar.set_postfix(
                {**{k: f"{v:.4g}" for k, v in metrics.items()}, "samples/s": f"{rate:.0f}"},
                refresh=False,
            )

    @property
    def samples_per_s(self) -> float:
        return self.samples / max(time.perf_counter() - self.t0, 1e-9)

    def close(self, *, seconds: float | None = None, **metrics: float) -> None:
        """End the bar and print the epoch's line: ``metrics`` and the samples per second of its
        steps, over ``seconds`` (the steps' time, as TensorBoard's ``sys/samples_per_s`` has it;
        default: since the bar started)."""
        if self.bar is not None:
            self.bar.close()
        if self.enabled:
            shown = "  ".join(f"{k} {v:.4f}" for k, v in metrics.items())
            rate = self.samples / max(seconds, 1e-9) if seconds is not None else self.samples_per_s
            say(f"epoch {self.epoch + 1}/{self.epochs}  {shown}  {rate:.0f} samples/s")
