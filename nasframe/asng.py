"""ASNG: adaptive stochastic natural gradient over categorical variables.

Exact to the reference implementation of Akimoto et al. (ICML 2019), shirakawas/ASNG-NAS
``classification/util/categorical_asng.py`` (the design notes' §4), with two deliberate departures that
are invisible at the defaults: ``delta_max`` is honoured, and each instance owns its random stream.

θ is a float64 numpy array on the CPU: it is tiny and exactness matters more than placement.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["ASNG", "ranking_utility"]

_TIE_RTOL = 1e-14
_TINY_GRAD = 1e-18


def ranking_utility(losses: Sequence[float]) -> np.ndarray:
    """Ranking weights of λ losses (lower is better): +1/mu for the best mu, -1/mu for the worst mu.

    mu = ceil(λ/4). Consecutive sorted losses with ``f[j+1] - f[j] < 1e-14 * f[j]`` are ties and share
    the mean of their weights. The tolerance is relative, as in the reference: an exact tie at f <= 0
    is not detected.
    """
    f = np.asarray(losses, dtype=np.float64)
    lam = f.shape[0]
    mu = math.ceil(lam / 4)
    order = np.argsort(f, kind="stable")
    fs = f[order]
    w_sorted = np.zeros(lam)
    w_sorted[:mu] = 1.0 / mu
    w_sorted[lam - mu :] = -1.0 / mu
    start = 0
    while start < lam:
        end = start
        while end + 1 < lam and fs[end + 1] - fs[end] < _TIE_RTOL * fs[end]:
            end += 1
        if end > start:
            w_sorted[start : end + 1] = w_sorted[start : end + 1].mean()
        start = end + 1
    weights = np.empty(lam)
    weights[order] = w_sorted
    return weights


class ASNG:
    """Categorical distribution over ``d`` choices, optimised by ASNG.

    Args:
        categories: number of options C_i of each choice (C_i = 1 is allowed: a fixed choice).
        alpha: threshold of the step-size adaptation (reference default 1.5).
        init_delta: initial trust-region radius.
        delta_max: upper bound of the accumulated ``Delta`` (the reference ignores it; inf = same).
        lam: number of samples per update, used by the search loop (the update accepts any λ ≥ 2).
        seed: seed of this instance's own ``numpy.random.RandomState``; the stream of uniforms is
            the reference's ``np.random.rand(d, 1)`` per sample, so the same seed samples the same
            architectures as the reference.
        theta: initial θ (d, max C); default uniform.
    """

    def __init__(
        self,
        categories: Sequence[int],
        *,
        alpha: float = 1.5,
        init_delta: float = 1.0,
        delta_max: float = math.inf,
        lam: int = 2,
        seed: int | None = None,
        theta: np.ndarray | None = None,
    ) -> None:
        cats = np.asarray(list(categories), dtype=np.int64)
        if cats.ndim != 1 or cats.size == 0 or (cats < 1).any():
            raise ValueError(
                f"categories must be a non-empty list of integers >= 1, got {categories}"
            )
        if lam < 2:
            raise ValueError(f"lam must be >= 2, got {lam}")
        for key, value in (("alpha", alpha), ("init_delta", init_delta), ("delta_max", delta_max)):
            if not value > 0:
                raise ValueError(f"{key} must be > 0, got {value}")
        self.categories = cats
        self.d = int(cats.size)
        self.c_max = int(cats.max())
        self.N = int((cats - 1).sum())
        self.valid_d = int((cats > 1).sum())
        self.alpha = float(alpha)
        self.init_delta = float(init_delta)
        self.delta_max = float(delta_max)
        self.lam = int(lam)
        cols = np.arange(self.c_max)
        self._valid = cols[None, :] < cats[:, None]
        # Entries of the Fisher vector: every category but the last (implicit) one.
        self._free = cols[None, :] < (cats - 1)[:, None]
        self._last = cats - 1
        projected = cats > 1
        self._theta_min = np.where(
            projected, 1.0 / (max(self.valid_d, 1) * np.maximum(cats - 1, 1)), 0
        )
        self._projected = projected
        # The projected rows grouped by their number of categories, so that the projection runs
        # on one (rows, C) block per distinct C: the same arithmetic as row by row, bit for bit
        # (a row sum over a block of equal-length rows adds in the same order as over one row).
        self._groups = [
            (int(c), rows, self._theta_min[rows][:, None])
            for c in np.unique(cats[projected])
            for rows in [np.flatnonzero(projected & (cats == c))]
        ]
        if theta is None:
            theta = np.where(self._valid, 1.0 / cats[:, None], 0.0)
        theta = np.array(theta, dtype=np.float64)
        if theta.shape != (self.d, self.c_max):
            raise ValueError(f"theta must have shape {(self.d, self.c_max)}, got {theta.shape}")
        self.theta = theta
        self.Delta = 1.0
        self.gamma = 0.0
        self.s = np.zeros(self.N)
        self.rng = np.random.RandomState(seed)

    # ----------------------------------------------------------------------------------------
    @property
    def delta(self) -> float:
        """Trust-region radius the next update uses: ``init_delta / Delta``."""
        return self.init_delta / self.Delta

    @property
    def cap(self) -> float:
        """Largest probability the projection allows: ``1 - 1/valid_d`` (1 with one free choice)."""
        return 1.0 - 1.0 / self.valid_d if self.valid_d > 1 else 1.0

    @property
    def snr(self) -> float:
        """Signal-to-noise estimate of the accumulated steps, ``||s||² / gamma``.

        About 1 when successive updates are independent noise; above ``alpha`` the step size
        grows, below it shrinks (0 before the first update).
        """
        return float(np.dot(self.s, self.s)) / self.gamma if self.gamma > 0 else 0.0

    def sample(self, n: int | None = None) -> np.ndarray:
        """Draw ``n`` (default λ) architectures as category indices, shape (n, d)."""
        n = self.lam if n is None else int(n)
        lower = np.cumsum(self.theta, axis=1) - self.theta
        return np.stack([self._inverse_cdf(lower, self.rng.rand(self.d)) for _ in range(n)])

    def sample_from_uniforms(self, u: np.ndarray) -> np.ndarray:
        """Inverse-CDF sampling of one architecture from ``d`` uniforms in [0, 1)."""
        return self._inverse_cdf(np.cumsum(self.theta, axis=1) - self.theta, u)

    def _inverse_cdf(self, lower: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Category of each uniform, given each category's lower CDF bound ``cumsum(θ) - θ``."""
        u = np.asarray(u, dtype=np.float64).reshape(self.d, 1)
        idx = ((lower <= u) & self._valid).sum(axis=1) - 1
        return np.minimum(np.maximum(idx, 0), self._last)

    def one_hot(self, samples: np.ndarray) -> np.ndarray:
        """One-hot encoding (n, d, Cmax) of category indices (n, d)."""
        samples = np.asarray(samples, dtype=np.int64).reshape(-1, self.d)
        return np.eye(self.c_max)[samples]

    def mle(self) -> np.ndarray:
        """Most likely architecture: row-wise argmax of θ (ties go to the lowest index)."""
        return np.argmax(self.theta, axis=1)

    def converged(self, fraction: float = 0.9) -> bool:
        """Whether every row's largest probability is within ``fraction`` of the cap."""
        rows = self.theta[self._projected]
        return bool(rows.size == 0 or rows.max(axis=1).min() >= fraction * self.cap)

    def entropy(self) -> np.ndarray:
        """Entropy of each choice (nats)."""
        p = np.where(self._valid & (self.theta > 0), self.theta, 1.0)
        return -(self.theta * np.log(p)).sum(axis=1)

    # ----------------------------------------------------------------------------------------
    def update(self, samples: np.ndarray, losses: Sequence[float]) -> bool:
        """One ASNG step from λ evaluated samples (indices (λ, d)); returns whether θ changed."""
        x = self.one_hot(samples)
        f = np.asarray(losses, dtype=np.float64).reshape(-1)
        if x.shape[0] != f.shape[0] or f.shape[0] < 2:
            raise ValueError(
                f"need λ >= 2 samples and as many losses, got {x.shape[0]}, {f.shape[0]}"
            )
        if not np.isfinite(f).all():
            raise ValueError(f"non-finite loss passed to ASNG.update: {f.tolist()}")
        delta = self.delta
        beta = delta / math.sqrt(self.N) if self.N > 0 else 0.0
        w = ranking_utility(f)
        if np.var(w) == 0:
            return False
        g = np.mean(w[:, None, None] * (x - self.theta), axis=0)
        g = np.where(self._valid, g, 0.0)
        if (np.abs(g) < _TINY_GRAD).all():
            return False
        v = self._fisher_vector(g)
        norm = math.sqrt(float(np.dot(v, v)))
        self.theta = self.theta + delta * g / norm
        self._project()
        self.s = (1 - beta) * self.s + math.sqrt(beta * (2 - beta)) * v / norm
        self.gamma = (1 - beta) ** 2 * self.gamma + beta * (2 - beta)
        self.Delta = min(
            self.Delta * math.exp(beta * (self.gamma - float(np.dot(self.s, self.s)) / self.alpha)),
            self.delta_max,
        )
        return True

    def _fisher_vector(self, g: np.ndarray) -> np.ndarray:
        """g in the Fisher metric's square-root coordinates, concatenated over variables."""
        rows = np.arange(self.d)
        theta_k = self.theta[rows, self._last]
        free_theta = np.where(self._free, self.theta, 1.0)
        free_g = np.where(self._free, g, 0.0)
        sqrt_theta = np.sqrt(free_theta)
        g_sum = free_g.sum(axis=1, keepdims=True)
        denom = (theta_k + np.sqrt(theta_k))[:, None]
        v = free_g / sqrt_theta + sqrt_theta * g_sum / denom
        return v[self._free]

    def _project(self) -> None:
        """Keep every probability above θmin = 1/(valid_d (C_i - 1)) and rows summing to one."""
        for c, rows, t_min in self._groups:
            block = np.maximum(self.theta[rows, :c], t_min)
            total = block.sum(axis=1, keepdims=True)
            block = block - (total - 1.0) * (block - t_min) / (total - c * t_min)
            self.theta[rows, :c] = block / block.sum(axis=1, keepdims=True)

    # ----------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything needed to continue bit-for-bit, in types ``torch.load(weights_only=True)`` takes."""
        name, keys, pos, has_gauss, cached = self.rng.get_state()
        return {
            "categories": self.categories.tolist(),
            "theta": self.theta.tolist(),
            "Delta": self.Delta,
            "gamma": self.gamma,
            "s": self.s.tolist(),
            "alpha": self.alpha,
            "init_delta": self.init_delta,
            "delta_max": self.delta_max,
            "lam": self.lam,
            "rng": {
                "keys": keys.tolist(),
                "pos": int(pos),
                "has_gauss": int(has_gauss),
                "cached": float(cached),
            },
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a state written by :meth:`state_dict` (categories must match)."""
        if list(state["categories"]) != self.categories.tolist():
            raise ValueError(
                f"ASNG state is for categories {state['categories']}, not {self.categories.tolist()}"
            )
        self.theta = np.array(state["theta"], dtype=np.float64)
        self.Delta = float(state["Delta"])
        self.gamma = float(state["gamma"])
        self.s = np.array(state["s"], dtype=np.float64)
        self.alpha = float(state["alpha"])
        self.init_delta = float(state["init_delta"])
        self.delta_max = float(state["delta_max"])
        self.lam = int(state["lam"])
        r = state["rng"]
        self.rng.set_state(
            ("MT19937", np.array(r["keys"], dtype=np.uint32), r["pos"], r["has_gauss"], r["cached"])
        )
