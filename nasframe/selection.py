"""The last step of a search: score candidate architectures with the shared weights, keep the best.

Random search with weight sharing (Li & Talwalkar, 2019) has no distribution to read an answer
from: it draws candidates and keeps the one whose sub-network, with the supernet's weights, does
best on validation data. ``search.select`` applies that step to any strategy. Every candidate sees
the same valid batches in the same mode as the search's own valid evaluations (no gradients,
BatchNorm on batch statistics), and is scored like the search ranks architectures: its mean valid
loss plus ``search.cost_penalty`` times its parameters in millions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .distributed import Group
from .precision import autocast

__all__ = ["Selection", "draw_candidates", "score_candidates"]


@dataclass
class Selection:
    """Candidates (option indices, one row each) with their valid loss, accuracy and score."""

    candidates: np.ndarray
    losses: np.ndarray
    accuracies: np.ndarray
    scores: np.ndarray
    samples: int

    @property
    def best(self) -> int:
        """Index of the lowest score (ties: the earliest candidate)."""
        return int(np.argmin(self.scores))

    @property
    def chosen(self) -> np.ndarray:
        return self.candidates[self.best]


def draw_candidates(
    strategy: Any, count: int, key: Callable[[np.ndarray], Any] = bytes
) -> np.ndarray:
    """``count`` architectures from ``strategy``: its most likely one first when it has one, then
    draws from its distribution. Repeats (equal ``key``, e.g. the same network) are dropped, the
    first occurrence kept."""
    rows = [np.asarray(strategy.mle(), dtype=np.int64)] if hasattr(strategy, "mle") else []
    if count > len(rows):
        rows.extend(np.asarray(strategy.sample(count - len(rows)), dtype=np.int64))
    unique: dict[Any, np.ndarray] = {}
    for row in rows:
        unique.setdefault(key(row), row)
    return np.stack(list(unique.values()))


def score_candidates(
    net: torch.nn.Module,
    candidates: np.ndarray,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    batches: int | None,
    *,
    penalty: Callable[[np.ndarray], float] | None = None,
    precision: str = "fp32",
    group: Group | None = None,
    stopped: Callable[[], bool] = lambda: False,
) -> Selection | None:
    """Mean loss and accuracy of each candidate over the first ``batches`` full batches of
    ``(x, y)`` (all of them when None). Returns None when ``stopped()`` turns true between
    candidates (under torchrun: on any rank)."""
    group = group or Group()
    full = x.shape[0] // batch_size
    count = full if batches is None else min(batches, full)
    losses, correct = [], []
    with torch.no_grad():
        for arch in candidates:
            loss_sum = torch.zeros((), device=x.device)
            right = torch.zeros((), device=x.device)
            for b in range(count):
                xb = x[b * batch_size : (b + 1) * batch_size]
                yb = y[b * batch_size : (b + 1) * batch_size]
                xb, yb = group.shard(xb, yb)
                with autocast(x.device, precision):
                    out = net(xb, arch)
                loss_sum += F.cross_entropy(out.float(), yb, reduction="sum")
                right += (out.argmax(1) == yb).sum()
            both = group.reduce(torch.stack([loss_sum, right.float()]), means=0, stop=stopped())
            if group.stopping:
                return None
            loss_total, right_total = both.tolist()
            losses.append(loss_total)
            correct.append(right_total)
    samples = count * batch_size
    loss = np.asarray(losses) / samples
    extra = np.asarray([penalty(a) for a in candidates]) if penalty else np.zeros(len(loss))
    return Selection(candidates, loss, np.asarray(correct) / samples, loss + extra, samples)
