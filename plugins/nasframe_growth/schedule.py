"""Growth schedules and the controller a training loop drives.

Grow every ``every`` optimizer steps, ``steps`` times, from ``start_fraction`` of each pair's
target width to the target width. ``growth_plan`` gives the starting width and the number of units
added at each event; ``GrowthController`` shrinks a full-width model to the starting widths and
grows it at the scheduled steps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .pairs import BN_TYPES, GrowthPair, find_growable_pairs, resize_pair_
from .strategies import (
    Firefly,
    GradMax,
    GradMaxOpt,
    GrowthStrategy,
    RandomGrowth,
    preserved_buffers,
)

#: The built-in strategies by name (the same names as the ``nasframe.growth`` entry points).
STRATEGIES: dict[str, type[GrowthStrategy]] = {
    "gradmax": GradMax,
    "gradmax_opt": GradMaxOpt,
    "random": RandomGrowth,
    "firefly": Firefly,
}


def growth_plan(target: int, start_fraction: float, steps: int) -> tuple[int, list[int]]:
    """``(start_width, [k_1, ..., k_steps])`` growing ``start_width`` to ``target`` in ``steps``
    events: ``start_width = max(1, round_half_up(start_fraction × target))``; the units are spread as
    evenly as possible, the earlier events getting the remainder. ``sum(ks) == target - start``.
    """
    if target < 1:
        raise ValueError(f"target width must be >= 1, got {target}")
    if not 0.0 < start_fraction <= 1.0:
        raise ValueError(f"start_fraction must be in (0, 1], got {start_fraction}")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    start = min(target, max(1, int(start_fraction * target + 0.5)))
    total = target - start
    if steps == 0:
        return target, []
    q, r = divmod(total, steps)
    return start, [q + (1 if i < r else 0) for i in range(steps)]


def start_widths(targets, start_fraction: float):
    """Starting widths for target widths given as a dict (same keys) or a sequence (a list)."""
    if isinstance(targets, dict):
        return {key: growth_plan(t, start_fraction, 1)[0] for key, t in targets.items()}
    return [growth_plan(t, start_fraction, 1)[0] for t in targets]


@dataclass(frozen=True)
class GrowthSchedule:
    """Grow at optimizer steps ``first, first + every, ...`` (``steps`` events; ``first``
    defaults to ``every``). Steps count completed optimizer steps (1-based)."""

    every: int
    steps: int
    start_fraction: float = 0.5
    first: int | None = None

    def __post_init__(self):
        if self.every < 1:
            raise ValueError(f"every must be >= 1, got {self.every}")
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")
        growth_plan(1, self.start_fraction, self.steps)  # validates start_fraction

    @property
    def first_step(self) -> int:
        return self.every if self.first is None else self.first

    def event_at(self, step: int) -> int | None:
        """The 0-based event index if ``step`` is a growth step, else None."""
        d = step - self.first_step
        if d < 0 or d % self.every:
            return None
        i = d // self.every
        return i if i < self.steps else None

    def growth_steps(self) -> list[int]:
        return [self.first_step + i * self.every for i in range(self.steps)]

    @property
    def last_step(self) -> int:
        """The step of the last event (0 when there are none)."""
        return self.growth_steps()[-1] if self.steps else 0

    def plan(self, target: int) -> tuple[int, list[int]]:
        return growth_plan(target, self.start_fraction, self.steps)


def make_strategy(strategy: str | GrowthStrategy, **options) -> GrowthStrategy:
    """A strategy instance from a built-in name (``gradmax``, ``gradmax_opt``, ``random``,
    ``firefly``) or an instance (returned as is; ``options`` must then be empty)."""
    if isinstance(strategy, GrowthStrategy):
        if options:
            raise ValueError("options given together with a strategy instance")
        return strategy
    key = str(strategy).lower().replace("-", "_")
    if key not in STRATEGIES:
        raise ValueError(f"unknown growth strategy {strategy!r}; built-in: {sorted(STRATEGIES)}")
    cls = STRATEGIES[key]
    return cls(**cls.checked_options(options))


class GrowthController:
    """Drives growth during training.

    ``model`` is built at the **target** widths; unless ``shrink=False`` the controller shrinks
    each pair to its starting width (keeping its first units) at construction — do this before
    creating the optimizer. Then call ``maybe_grow(step, loss_fn, optimizer)`` after every
    optimizer step. ``pairs`` default to ``find_growable_pairs(model)``; ``targets`` (dict pair
    name → width, or a list aligned with ``pairs``) default to the current widths.
    """

    def __init__(
        self,
        model: nn.Module,
        strategy: str | GrowthStrategy = "gradmax",
        *,
        schedule: GrowthSchedule,
        pairs: Sequence[GrowthPair] | None = None,
        targets: dict[str, int] | Sequence[int] | None = None,
        shrink: bool = True,
        **strategy_options,
    ):
        self.model = model
        self.strategy = make_strategy(strategy, **strategy_options)
        self.schedule = schedule
        self.pairs = list(find_growable_pairs(model) if pairs is None else pairs)
        if targets is None:
            tw = [p.width for p in self.pairs]
        elif isinstance(targets, dict):
            unknown = set(targets) - {p.name for p in self.pairs}
            if unknown:
                raise ValueError(f"targets for unknown pairs {sorted(unknown)}")
            tw = [targets.get(p.name, p.width) for p in self.pairs]
        else:
            tw = list(targets)
            if len(tw) != len(self.pairs):
                raise ValueError(f"{len(tw)} targets for {len(self.pairs)} pairs")
        self.targets = {p.name: int(t) for p, t in zip(self.pairs, tw, strict=True)}
        self.plans = {name: schedule.plan(t) for name, t in self.targets.items()}
        self.events_done = 0
        if shrink:
            for p in self.pairs:
                resize_pair_(p, self.plans[p.name][0])

    @property
    def widths(self) -> dict[str, int]:
        return {p.name: p.width for p in self.pairs}

    def maybe_grow(
        self, step: int, loss_fn: Callable[[], torch.Tensor], optimizer=None
    ) -> dict | None:
        """Grow if ``step`` (completed optimizer steps) is a scheduled growth step; return the
        event's info dict, else None."""
        event = self.schedule.event_at(step)
        if event is None or event < self.events_done:
            return None
        return self.grow(event, loss_fn, optimizer, step=step)

    def grow(self, event: int, loss_fn, optimizer=None, *, step: int | None = None) -> dict:
        """Run growth event ``event`` (0-based) on every pair now, one pair after the other.

        Returns ``{"step", "event", "strategy", "widths", "pairs": [per-pair info],
        "scalars": {"growth/<pair>/width": ..., "growth/<pair>/new_grad_norm": ...}}``.
        """
        infos = []
        with preserved_buffers(self.model):  # taken before growth: old units keep their stats
            for p in self.pairs:
                k = self.plans[p.name][1][event]
                infos.append(
                    self.strategy.grow(p, k, loss_fn, optimizer=optimizer, model=self.model)
                )
            self._measure_new_statistics(loss_fn)
        self.events_done = event + 1
        scalars = {}
        for p, info in zip(self.pairs, infos, strict=True):
            scalars[f"growth/{p.name}/width"] = float(info["width_after"])
            norms = info["new_unit_grad_norms"]
            if norms:
                scalars[f"growth/{p.name}/new_grad_norm"] = sum(norms) / len(norms)
        return {
            "step": step,
            "event": event,
            "strategy": self.strategy.name,
            "widths": self.widths,
            "pairs": infos,
            "scalars": scalars,
        }

    def _measure_new_statistics(self, loss_fn: Callable[[], torch.Tensor]) -> None:
        """Give the new units' BatchNorm running statistics their values on the growth batch.

        Grown BatchNorm entries start at mean 0 and variance 1, but a new unit's activations
        start near zero (GradMax: exactly zero) and stay small for a while: the running variance
        would need a hundred steps to come down, and until then the network in eval mode scales
        the new units far below what training sees (a short run tested at chance). One forward
        pass in training mode with momentum 1 sets them to the batch's statistics; the caller's
        :func:`preserved_buffers` then restores every old unit's statistics.
        """
        grown = {
            m
            for p in self.pairs
            for m in p.between
            if isinstance(m, BN_TYPES) and m.track_running_stats and m.training
        }
        if not grown:
            return
        momenta = {m: m.momentum for m in grown}
        try:
            for m in grown:
                m.momentum = 1.0
            with torch.no_grad():
                loss_fn()
        finally:
            for m, momentum in momenta.items():
                m.momentum = momentum

    def state_dict(self) -> dict:
        return {
            "events_done": self.events_done,
            "widths": self.widths,
            "generator": self.strategy.generator.get_state(),
        }

    def load_state_dict(self, state: dict, optimizer=None) -> None:
        """Resize the pairs to the saved widths (new units zero) so that the model's and the
        optimizer's ``load_state_dict`` can follow."""
        self.events_done = int(state["events_done"])
        if "generator" in state:
            self.strategy.generator.set_state(state["generator"])
        for p in self.pairs:
            resize_pair_(p, int(state["widths"][p.name]), optimizer)
