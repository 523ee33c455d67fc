"""What a run checkpoints, so that a resumed run continues bit-for-bit.

Weights, optimizer and schedule (and the search strategy), every RNG state, the position in the
run and the running metrics; written atomically, read with ``weights_only=True``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .errors import UserError

__all__ = ["Meter", "RunState", "CHECKPOINT", "RUN_CONFIG"]

CHECKPOINT = "checkpoint.pt"
RUN_CONFIG = "config.yaml"  # the config a run directory holds: what ran


class Meter:
    """Running weighted means of host-side metrics."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, float] = {}

    def add(self, key: str, value: float, n: float = 1.0) -> None:
        self.sums[key] = self.sums.get(key, 0.0) + value * n
        self.counts[key] = self.counts.get(key, 0.0) + n

    def mean(self, key: str) -> float:
        return self.sums.get(key, 0.0) / max(self.counts.get(key, 0.0), 1e-12)

    def state_dict(self) -> dict:
        return {"sums": dict(self.sums), "counts": dict(self.counts)}

    def load_state_dict(self, state: dict) -> None:
        self.sums, self.counts = dict(state["sums"]), dict(state["counts"])


class RunState:
    """The resumable state of a search or training run.

    ``parts`` are objects with ``state_dict`` / ``load_state_dict`` (model, optimizer, schedule,
    strategy). ``pos`` counts epochs, steps within the epoch and iterations; ``meter`` holds the
    current epoch's running metrics and ``metrics`` the last finished epoch's.
    """

    def __init__(self, kind: str, space_hash: str, run_dir: Path, **parts: Any) -> None:
        self.kind, self.space_hash = kind, space_hash
        self.path = Path(run_dir) / CHECKPOINT
        self.parts = parts
        self.pos: dict[str, Any] = {"epoch": 0, "step": 0, "global_step": 0, "wall_s": 0.0}
        self.meter = Meter()
        self.metrics: dict[str, float] = {}
        self.environment: dict[str, Any] | None = None  # what this process runs on
        self.saved_environment: dict[str, Any] | None = None  # what the checkpoint was made on
        self._t0, self._wall0 = time.perf_counter(), 0.0

    def wall_s(self) -> float:
        """Seconds this run has been running, over all its resumptions."""
        return self._wall0 + time.perf_counter() - self._t0

    def end_epoch(self, metrics: dict[str, float]) -> None:
        self.metrics = dict(metrics)
        self.meter = Meter()
        self.pos["epoch"] += 1
        self.pos["step"] = 0

    def save(self) -> None:
        self.pos["wall_s"] = self.wall_s()
        save_checkpoint(
            {
                "kind": self.kind,
                "space_hash": self.space_hash,
                **{name: part.state_dict() for name, part in self.parts.items()},
                "rng": rng_state(),
                "pos": dict(self.pos),
                "meter": self.meter.state_dict(),
                "metrics": dict(self.metrics),
                "environment": self.environment,
            },
            self.path,
        )

    def resume(self) -> None:
        """Continue from the checkpoint; one from another kind of run or space is refused."""
        ckpt = load_checkpoint(self.path)
        if not isinstance(ckpt, dict):
            raise UserError(f"{self.path}: not a nasframe checkpoint (no mapping of its parts)")
        if ckpt.get("kind") != self.kind or ckpt.get("space_hash") != self.space_hash:
            what = "search space" if self.kind == "search" else "architecture"
            raise UserError(
                f"{self.path}: this checkpoint is from a different {self.kind} (kind "
                f"{ckpt.get('kind')}, hash {ckpt.get('space_hash')}; this config's is "
                f"{self.space_hash}): a different {what}; resume it with the config it was "
                "started with"
            )
        try:
            for name, part in self.parts.items():
                part.load_state_dict(ckpt[name])
            set_rng_state(ckpt["rng"])
            self.pos.update({k: type(v)(ckpt["pos"][k]) for k, v in self.pos.items()})
            self.meter.load_state_dict(ckpt["meter"])
            self.metrics = dict(ckpt["metrics"])
            self.saved_environment = ckpt.get("environment")  # older checkpoints have none
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
            raise UserError(
                f"{self.path}: this checkpoint does not fit this {self.kind} "
                f"({type(e).__name__}: {str(e).strip().splitlines()[0] if str(e) else ''}); "
                "it may be damaged or from another version"
            ) from None
        self._t0, self._wall0 = time.perf_counter(), float(self.pos["wall_s"])
