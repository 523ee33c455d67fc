"""The last step of a search: score candidate architectures with the shared weights, keep the best.

Random search with weight sharing (Li & Talwalkar, 2019) has no distribution to read an answer
from: it draws candidates and keeps the one whose sub-network, with the supernet's weights, does
best on validation data. Single Path One-Shot (Guo et al., 2020) searches the candidates with an
evolutionary algorithm instead. ``search.select`` applies either step to any strategy. Every
candidate sees the same valid batches in the same mode as the search's own valid evaluations (no
gradients, BatchNorm on batch statistics), and is scored like the search ranks architectures: its
mean valid loss plus ``search.cost_penalty`` times its cost in millions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .config import SelectConfig
from .distributed import Group
from .precision import autocast
from .space import SearchSpace
from .strategy import Strategy

__all__ = [
    "Selection",
    "draw_candidates",
    "evolve_candidates",
    "run_selection",
    "score_candidates",
]


@dataclass
class Selection:
    """Candidates (option indices, one row each) with their valid loss, accuracy and score."""

    candidates: np.ndarray
    losses: np.ndarray
    accuracies: np.ndarray
    scores: np.ndarray
    samples: int
    generations: np.ndarray | None = None  # evolution: the generation of each candidate

    @property
    def best(self) -> int:
        """Index of the lowest score (ties: the earliest candidate)."""
        return int(np.argmin(self.scores))

    @property
    def chosen(self) -> np.ndarray:
        return self.candidates[self.best]

    def state_dict(self) -> dict[str, Any]:
        """The selection as tensors and numbers (what a checkpoint holds)."""
        arrays = {
            name: torch.from_numpy(np.ascontiguousarray(getattr(self, name)))
            for name in ("candidates", "losses", "accuracies", "scores")
        }
        gens = self.generations
        return {
            **arrays,
            "samples": int(self.samples),
            "generations": None if gens is None else torch.from_numpy(np.asarray(gens)),
        }

    @classmethod
    def from_state(cls, state: Any, categories: Sequence[int]) -> Selection | None:
        """The selection :meth:`state_dict` saved, or None where ``state`` is not one of a
        space with ``categories`` (then the selection is made again)."""
        try:
            arrays = [state[k].numpy() for k in ("candidates", "losses", "accuracies", "scores")]
            gens = state["generations"]
            gens = None if gens is None else gens.numpy()
            selection = cls(*arrays, samples=int(state["samples"]), generations=gens)
        except (LookupError, TypeError, AttributeError, ValueError, RuntimeError):
            return None
        rows = selection.candidates
        n = len(rows) if rows.ndim == 2 else -1
        fits = (
            n > 0
            and rows.shape[1] == len(categories)
            and ((rows >= 0) & (rows < np.asarray(categories))).all()
            and all(len(a) == n for a in arrays[1:])
            and (gens is None or len(gens) == n)
        )
        return selection if fits else None


def run_selection(
    select: SelectConfig,
    strategy: Strategy,
    space: SearchSpace,
    net: torch.nn.Module,
    valid: tuple[torch.Tensor, torch.Tensor],
    batch_size: int,
    *,
    seed: int,
    penalty: Callable[[np.ndarray], float] | None = None,
    precision: str = "fp32",
    group: Group | None = None,
    stopped: Callable[[], bool] = lambda: False,
    tell: Callable[[str], None] = lambda message: None,
) -> Selection | None:
    """``search.select`` at the end of a search: candidates drawn (or bred, for ``evolution``)
    from ``strategy``, scored on the first batches of the ``valid`` split; None when stopped."""
    x, y = valid
    batches = x.shape[0] // batch_size
    batches = batches if select.batches is None else min(select.batches, batches)

    def score(candidates: np.ndarray) -> Selection | None:
        return score_candidates(
            net,
            candidates,
            x,
            y,
            batch_size,
            batches,
            penalty=penalty,
            precision=precision,
            group=group,
            stopped=stopped,
        )

    on = f"on {batches} valid batches of {batch_size}"
    if select.method == "evolution":
        first = min(select.population, select.candidates)
        tell(
            f"selecting by evolution: up to {select.candidates} candidates, generations of "
            f"{first} bred from the best {select.breeding_parents}, {on}"
        )
        return evolve_candidates(
            score,
            draw_candidates(strategy, first, space.network_key),
            space.categories,
            select.candidates,
            select.breeding_parents,
            select.mutation,
            seed,
            space.network_key,
            population=first,
        )
    candidates = draw_candidates(strategy, select.candidates, space.network_key)
    tell(
        f"selecting: scoring {len(candidates)} distinct candidates (of {select.candidates} "
        f"drawn) {on}"
    )
    return score(candidates)


def draw_candidates(
    strategy: Strategy, count: int, key: Callable[[np.ndarray], Any] = bytes
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


def evolve_candidates(
    score: Callable[[np.ndarray], Selection | None],
    initial: np.ndarray,
    categories: Sequence[int],
    budget: int,
    parents: int,
    mutation: float,
    seed: int,
    key: Callable[[np.ndarray], Any] = bytes,
    population: int | None = None,
) -> Selection | None:
    """Single Path One-Shot's evolutionary search over the shared weights: score the ``initial``
    population, then, generation after generation until ``budget`` candidates are scored, breed
    ``population`` new architectures (default: as many as ``initial`` holds; it can hold fewer,
    the distinct ones of that many draws) from the ``parents`` best scored so far,
    half by mutation (each choice redrawn uniformly with probability ``mutation``) and half by
    uniform crossover of two parents. Children that build an already scored network are bred
    again. Returns every scored candidate (None if ``score`` was stopped)."""
    rng = np.random.RandomState(seed)
    cats = np.asarray(list(categories), dtype=np.int64)
    size = len(initial) if population is None else population
    seen = {key(a) for a in initial}
    first = score(initial)
    if first is None:
        return None
    parts, generation = [first], 0
    while sum(len(p.candidates) for p in parts) < budget:
        scored = _merge(parts)
        pool = scored.candidates[np.argsort(scored.scores, kind="stable")[:parents]]
        want = min(size, budget - len(scored.candidates))
        children: list[np.ndarray] = []
        for attempt in range(50 * want):
            if len(children) == want:
                break
            if attempt % 2 == 0:
                child = pool[rng.randint(len(pool))].copy()
                redraw = rng.rand(len(cats)) < mutation
                child[redraw] = (rng.rand(int(redraw.sum())) * cats[redraw]).astype(np.int64)
            else:
                a, b = pool[rng.randint(len(pool))], pool[rng.randint(len(pool))]
                child = np.where(rng.rand(len(cats)) < 0.5, a, b)
            if key(child) not in seen:
                seen.add(key(child))
                children.append(child)
        if not children:  # nothing new near the parents: the space around them is exhausted
            break
        generation += 1
        part = score(np.stack(children))
        if part is None:
            return None
        part.generations = np.full(len(part.candidates), generation)
        parts.append(part)
    return _merge(parts)


def _merge(parts: list[Selection]) -> Selection:
    """One selection of the candidates of ``parts``, in order."""
    gens = [
        p.generations if p.generations is not None else np.zeros(len(p.candidates)) for p in parts
    ]
    return Selection(
        np.concatenate([p.candidates for p in parts]),
        np.concatenate([p.losses for p in parts]),
        np.concatenate([p.accuracies for p in parts]),
        np.concatenate([p.scores for p in parts]),
        parts[0].samples,
        np.concatenate(gens).astype(np.int64),
    )
