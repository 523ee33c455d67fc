"""ASNG: adaptive stochastic natural gradient over categorical (and ordinal) variables.

Exact to the reference implementation of Akimoto et al. (ICML 2019), shirakawas/ASNG-NAS
``classification/util/categorical_asng.py`` (the design notes' §4), with two deliberate departures that
are invisible at the defaults: ``delta_max`` is honoured, and each instance owns its random stream.

Ordinal variables (an option beyond that reference) follow the reference's mixed categorical +
integer ``AdaptiveSNG`` of the same repository: a Gaussian per variable over its option indices,
updated by the natural gradient in its expectation parameters (E[z], E[z²]) within the same step-size
adaptation. A sample is the Gaussian draw rounded to the nearest option.

θ is a float64 numpy array on the CPU: it is tiny and exactness matters more than placement.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .strategy_common import (
    DamagedState,
    checked_categories,
    numpy_rng_state,
    set_numpy_rng_state,
)
from .values import is_integer

__all__ = ["ASNG", "ranking_utility"]

_TIE_RTOL = 1e-14
_TINY_GRAD = 1e-18
_ORDINAL_STD_MIN = 0.25  # the reference's floor of an integer variable's standard deviation
_NORM_EPS = 1e-9  # added to the Fisher norm of the step in the reference's mixed update
_KEPT_DRAWS = 8  # how many recent sample() calls keep their ordinal Gaussian draws
_STATE_TOL = 1e-9  # rounding a saved state may carry: a row's sum, a bound, a recomputed row


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
        theta: initial θ (d, max C): each row a probability vector over its choice's options,
            every categorical option above zero (ValueError otherwise); default uniform.
        ordinal: indices of the choices whose options are ordered (C_i ≥ 2): each is a Gaussian
            over its option indices 0..C_i−1 instead of a categorical distribution (see
            :attr:`theta_int`); empty (the default) is the reference's categorical ASNG.
        theta_int: initial (2, #ordinal) expectation parameters (E[z]; E[z²]) of the ordinal
            choices; default the reference's: mean in the middle, standard deviation (C_i−1)/2.
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
        ordinal: Sequence[int] = (),
        theta_int: np.ndarray | None = None,
    ) -> None:
        cats = checked_categories(categories, lam)
        for key, value in (("alpha", alpha), ("init_delta", init_delta), ("delta_max", delta_max)):
            if isinstance(value, bool) or not isinstance(value, int | float | np.floating):
                raise ValueError(f"{key}: expected a number, got {value!r}")
            if not value > 0 or (key != "delta_max" and not math.isfinite(value)):
                bound = "a finite number > 0" if key != "delta_max" else "> 0"
                raise ValueError(f"{key} must be {bound}, got {value}")
        ords = np.array(sorted({int(i) for i in ordinal}), dtype=np.int64)
        if ords.size and (ords.min() < 0 or ords.max() >= cats.size or (cats[ords] < 2).any()):
            raise ValueError(
                f"ordinal must index choices with at least 2 options, got {list(ordinal)} "
                f"for categories {cats.tolist()}"
            )
        is_ord = np.zeros(cats.size, dtype=bool)
        is_ord[ords] = True
        self.categories = cats
        self.ordinal = ords
        self.d = int(cats.size)
        self.c_max = int(cats.max())
        # N counts the free parameters: C_i − 1 per categorical choice, 2 per ordinal one.
        self.N = int((cats[~is_ord] - 1).sum()) + 2 * int(ords.size)
        self.valid_d = int(((cats > 1) & ~is_ord).sum())
        self.alpha = float(alpha)
        self.init_delta = float(init_delta)
        self.delta_max = float(delta_max)
        self.lam = int(lam)
        cols = np.arange(self.c_max)
        self._valid = cols[None, :] < cats[:, None]
        self._cat = ~is_ord
        self._cat_valid = self._valid & self._cat[:, None]
        # Entries of the Fisher vector: every category but the last (implicit) one.
        self._free = (cols[None, :] < (cats - 1)[:, None]) & self._cat[:, None]
        self._last = cats - 1
        projected = (cats > 1) & self._cat
        # The reference's bound θmin = 1/(valid_d (C_i − 1)) leaves no feasible row when
        # C_i θmin ≥ 1 (one categorical choice, or two with a binary one): θ turns NaN there.
        # bound_d is valid_d where that cannot happen, else the smallest count where it cannot.
        ratio = cats[projected] / (cats[projected] - 1)
        self.bound_d = max(self.valid_d, int(ratio.max()) + 1 if ratio.size else 1)
        self._theta_min = np.where(projected, 1.0 / (self.bound_d * np.maximum(cats - 1, 1)), 0)
        self._projected = projected
        # The projected rows grouped by their number of categories, so that the projection runs
        # on one (rows, C) block per distinct C: the same arithmetic as row by row, bit for bit
        # (a row sum over a block of equal-length rows adds in the same order as over one row).
        self._groups = [
            (int(c), rows, self._theta_min[rows][:, None])
            for c in np.unique(cats[projected])
            for rows in [np.flatnonzero(projected & (cats == c))]
        ]
        # Ordinal choices: a Gaussian over 0..C−1, its std kept within [1/4, (C−1)/2].
        self._int_max = (cats[ords] - 1).astype(np.float64)
        self._std_max = self._int_max / 2.0
        if theta is None:
            theta = np.where(self._valid, 1.0 / cats[:, None], 0.0)
        theta = np.array(theta, dtype=np.float64)
        if theta.shape != (self.d, self.c_max):
            raise ValueError(f"theta must have shape {(self.d, self.c_max)}, got {theta.shape}")
        self.theta = theta
        if theta_int is None:
            mean = self._int_max / 2.0
            theta_int = np.stack([mean, mean**2 + self._std_max**2])
        theta_int = np.array(theta_int, dtype=np.float64).reshape(2, ords.size)
        problem = self._theta_int_problem(theta_int)
        if problem:
            raise ValueError(problem)
        self.theta_int = theta_int
        self._ordinal_rows()
        problem = self._theta_problem(self.theta)
        if problem:
            raise ValueError(problem)
        self.Delta = 1.0
        self.gamma = 0.0
        self.s = np.zeros(self.N)
        self.rng = np.random.RandomState(seed)
        self._draws: dict[bytes, np.ndarray] = {}

    # ----------------------------------------------------------------------------------------
    @property
    def delta(self) -> float:
        """Trust-region radius the next update uses: ``init_delta / Delta``."""
        return self.init_delta / self.Delta

    @property
    def cap(self) -> float:
        """Largest probability the projection allows a categorical choice: ``1 − 1/bound_d``
        (``bound_d`` is ``valid_d``, the categorical choices with C > 1, unless the space is too
        small for the reference's bound; 1 without such choices)."""
        return 1.0 - 1.0 / self.bound_d if self.valid_d else 1.0

    @property
    def snr(self) -> float:
        """Signal-to-noise estimate of the accumulated steps, ``||s||² / gamma``.

        About 1 when successive updates are independent noise; above ``alpha`` the step size
        grows, below it shrinks (0 before the first update).
        """
        return float(np.dot(self.s, self.s)) / self.gamma if self.gamma > 0 else 0.0

    @property
    def ordinal_mean(self) -> np.ndarray:
        """Mean of each ordinal choice's Gaussian, in option indices."""
        return self.theta_int[0].copy()

    @property
    def ordinal_std(self) -> np.ndarray:
        """Standard deviation of each ordinal choice's Gaussian, in option indices."""
        return np.sqrt(np.maximum(self.theta_int[1] - self.theta_int[0] ** 2, 0.0))

    def sample(self, n: int | None = None) -> np.ndarray:
        """Draw ``n`` (default λ) architectures as category indices, shape (n, d).

        The reference's order of draws: one uniform per categorical choice and sample, then one
        normal per ordinal choice and pair of samples (the pair is mirrored about the mean). The
        Gaussian draws are kept for :meth:`update`.
        """
        n = self.lam if n is None else int(n)
        lower = np.cumsum(self.theta, axis=1) - self.theta
        d_cat = int(self._cat.sum())
        out = np.zeros((n, self.d), dtype=np.int64)
        for k in range(n):
            u = np.zeros(self.d)
            u[self._cat] = self.rng.rand(d_cat)
            out[k] = self._inverse_cdf(lower, u)
        if self.ordinal.size:
            z = self._gaussian_draws(n)
            out[:, self.ordinal] = self._round(z)
            key = out.tobytes()
            self._draws.pop(key, None)
            self._draws[key] = z
            while len(self._draws) > _KEPT_DRAWS:
                self._draws.pop(next(iter(self._draws)))
        return out

    def _gaussian_draws(self, n: int) -> np.ndarray:
        """(n, #ordinal) mirrored draws: mean ± std · Z, one Z per pair."""
        mean, std = self.theta_int[0], self.ordinal_std
        z = np.empty((2 * ((n + 1) // 2), self.ordinal.size))
        for i in range(0, n, 2):
            step = std * self.rng.randn(self.ordinal.size)
            z[i], z[i + 1] = mean + step, mean - step
        return z[:n]

    def _round(self, z: np.ndarray) -> np.ndarray:
        """The option index of Gaussian draws: rounded to the nearest, clipped to 0..C−1."""
        return np.rint(np.clip(z, 0.0, self._int_max)).astype(np.int64)

    def sample_from_uniforms(self, u: np.ndarray) -> np.ndarray:
        """Inverse-CDF sampling of one architecture from ``d`` uniforms in [0, 1) (categorical
        choices; ordinal ones take the option of the uniform under their discretised Gaussian)."""
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
        """Most likely architecture: row-wise argmax of θ (ties go to the lowest index); an
        ordinal choice takes its mean, rounded."""
        out = np.argmax(self.theta, axis=1)
        if self.ordinal.size:
            out[self.ordinal] = self._round(self.theta_int[0])
        return out

    def converged(self, fraction: float = 0.9) -> bool:
        """Whether every categorical row's largest probability is within ``fraction`` of the cap
        and every ordinal choice's most likely option has probability ``fraction`` (at most
        about 0.95, 0.98 for an end option: the standard deviation stays at least 1/4)."""
        rows = self.theta[self._projected]
        cat = rows.size == 0 or rows.max(axis=1).min() >= fraction * self.cap
        ords = self.theta[self.ordinal]
        return bool(cat and (ords.size == 0 or ords.max(axis=1).min() >= fraction))

    def convergence(self) -> float:
        """How far θ has decided: the largest ``fraction`` at which :meth:`converged` holds (1.0
        for a space without choices)."""
        rows, ords = self.theta[self._projected], self.theta[self.ordinal]
        levels = [rows.max(axis=1).min() / self.cap] if rows.size else []
        levels += [ords.max(axis=1).min()] if ords.size else []
        return float(min(levels, default=1.0))

    def entropy(self) -> np.ndarray:
        """Entropy of each choice (nats; ordinal choices: of their discretised Gaussian)."""
        p = np.where(self._valid & (self.theta > 0), self.theta, 1.0)
        return -(self.theta * np.log(p)).sum(axis=1)

    # ----------------------------------------------------------------------------------------
    def update(
        self, samples: np.ndarray, losses: Sequence[float], draws: np.ndarray | None = None
    ) -> bool:
        """One ASNG step from λ evaluated samples (indices (λ, d)); returns whether θ changed.

        With ordinal choices the step needs their Gaussian draws: those :meth:`sample` made for
        ``samples`` (kept for its last few calls), or ``draws`` (λ, #ordinal).
        """
        x = self.one_hot(samples)
        f = np.asarray(losses, dtype=np.float64).reshape(-1)
        if x.shape[0] != f.shape[0] or f.shape[0] < 2:
            raise ValueError(
                f"need λ >= 2 samples and as many losses, got {x.shape[0]}, {f.shape[0]}"
            )
        if not np.isfinite(f).all():
            raise ValueError(f"non-finite loss passed to ASNG.update: {f.tolist()}")
        z = self._draws_of(samples, draws, f.shape[0]) if self.ordinal.size else None
        delta = self.delta
        beta = delta / math.sqrt(self.N) if self.N > 0 else 0.0
        w = ranking_utility(f)
        if np.var(w) == 0:
            return False
        g = np.mean(w[:, None, None] * (x - self.theta), axis=0)
        g = np.where(self._cat_valid, g, 0.0)
        v = self._fisher_vector(g)
        if z is None:
            if (np.abs(g) < _TINY_GRAD).all():
                return False
            norm = math.sqrt(float(np.dot(v, v)))
            self.theta = self.theta + delta * g / norm
        else:  # the reference's mixed update: both parts in one Fisher norm
            g_int = np.stack(
                [
                    np.mean(w[:, None] * (z - self.theta_int[0]), axis=0),
                    np.mean(w[:, None] * (z**2 - self.theta_int[1]), axis=0),
                ]
            )
            v_int = self._fisher_vector_int(g_int)
            v = np.concatenate([v, v_int.ravel()])
            norm = math.sqrt(float(np.dot(v, v)))
            step = delta / (norm + _NORM_EPS)
            self.theta = self.theta + step * g
            self.theta_int = self.theta_int + step * g_int
        self._project()
        self.s = (1 - beta) * self.s + math.sqrt(beta * (2 - beta)) * v / norm
        self.gamma = (1 - beta) ** 2 * self.gamma + beta * (2 - beta)
        self.Delta = min(
            self.Delta * math.exp(beta * (self.gamma - float(np.dot(self.s, self.s)) / self.alpha)),
            self.delta_max,
        )
        return True

    def _draws_of(self, samples: np.ndarray, draws: np.ndarray | None, lam: int) -> np.ndarray:
        """The Gaussian draws behind ``samples``: given, or kept by :meth:`sample`."""
        if draws is None:
            key = np.ascontiguousarray(samples, dtype=np.int64).reshape(-1, self.d).tobytes()
            draws = self._draws.get(key)
            if draws is None:
                raise ValueError(
                    "update needs the Gaussian draws of the ordinal choices: pass samples as "
                    "returned by one of the last sample() calls, or draws="
                )
        draws = np.asarray(draws, dtype=np.float64)
        if draws.shape != (lam, self.ordinal.size):
            raise ValueError(f"draws must have shape {(lam, self.ordinal.size)}, got {draws.shape}")
        return draws

    def _fisher_vector(self, g: np.ndarray) -> np.ndarray:
        """g in the Fisher metric's square-root coordinates, concatenated over the categorical
        variables."""
        rows = np.arange(self.d)
        theta_k = np.where(self._cat, self.theta[rows, self._last], 1.0)
        free_theta = np.where(self._free, self.theta, 1.0)
        free_g = np.where(self._free, g, 0.0)
        sqrt_theta = np.sqrt(free_theta)
        g_sum = free_g.sum(axis=1, keepdims=True)
        denom = (theta_k + np.sqrt(theta_k))[:, None]
        v = free_g / sqrt_theta + sqrt_theta * g_sum / denom
        return v[self._free]

    def _fisher_vector_int(self, g_int: np.ndarray) -> np.ndarray:
        """(2, #ordinal): F^(1/2) g of each Gaussian in its expectation parameters (E[z], E[z²]).

        F⁻¹ is the covariance of the sufficient statistics (z, z²): A = σ²[[1, 2m], [2m, 4m² + 2σ²]].
        A 2×2 SPD matrix has A^(1/2) = (A + rI) / t with r = √det A and t = √(tr A + 2r), so
        A^(−1/2) = [[a₂₂ + r, −a₁₂], [−a₁₂, a₁₁ + r]] / (r t); here det A = 2σ⁶ exactly. (The
        reference takes the same root through an eigendecomposition whose smaller eigenvalue
        loses digits to cancellation: the two agree to about 1e-10.)
        """
        m, var = self.theta_int[0], self.ordinal_std**2
        a11, a12, a22 = var, 2 * m * var, var * (4 * m**2 + 2 * var)
        r = math.sqrt(2.0) * var**1.5
        t = np.sqrt(a11 + a22 + 2 * r)
        scale = 1.0 / (r * t)
        return np.stack(
            [
                scale * ((a22 + r) * g_int[0] - a12 * g_int[1]),
                scale * (-a12 * g_int[0] + (a11 + r) * g_int[1]),
            ]
        )

    def _project(self) -> None:
        """Keep every probability above θmin = 1/(bound_d (C_i - 1)) and rows summing to one;
        keep each ordinal mean within 0..C−1 and its std within [1/4, (C−1)/2]."""
        for c, rows, t_min in self._groups:
            block = np.maximum(self.theta[rows, :c], t_min)
            total = block.sum(axis=1, keepdims=True)
            block = block - (total - 1.0) * (block - t_min) / (total - c * t_min)
            self.theta[rows, :c] = block / block.sum(axis=1, keepdims=True)
        if self.ordinal.size:
            step_mean, second = self.theta_int
            mean = np.clip(step_mean, 0.0, self._int_max)
            # A mean clipped at a bound keeps the variance its step gave (the reference keeps
            # E[z²] instead, which turns the clipped part of the step into variance).
            second = np.where(mean == step_mean, second, mean**2 + (second - step_mean**2))
            second = np.clip(second, mean**2 + _ORDINAL_STD_MIN**2, mean**2 + self._std_max**2)
            self.theta_int = np.stack([mean, second])
            self._ordinal_rows()

    def _ordinal_rows(self) -> None:
        """θ's rows of the ordinal choices: each option's probability under the rounded Gaussian."""
        for row, probabilities in self._ordinal_probabilities(self.theta_int):
            self.theta[row, : probabilities.size] = probabilities

    def _ordinal_probabilities(self, theta_int: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """(row, probabilities of its options) of each ordinal choice, from ``theta_int``."""
        mean = theta_int[0]
        std = np.sqrt(np.maximum(theta_int[1] - theta_int[0] ** 2, 0.0))
        out = []
        for j, row in enumerate(self.ordinal):
            c = int(self.categories[row])
            edges = (np.arange(1, c) - 0.5 - mean[j]) / (std[j] * math.sqrt(2.0))
            cdf = np.concatenate([[0.0], [0.5 * (1 + math.erf(e)) for e in edges], [1.0]])
            out.append((int(row), np.diff(cdf)))
        return out

    def _theta_problem(self, theta: np.ndarray) -> str | None:
        """What makes ``theta`` no distribution this ASNG can sample and update, or None.

        Each row is a probability vector over its choice's options (zero beyond them); the
        categorical choices' options keep a probability above zero, as the projection keeps
        them (the natural gradient divides by it).
        """
        if theta.shape != (self.d, self.c_max):
            return f"theta must have shape {(self.d, self.c_max)}, got {theta.shape}"
        if not np.isfinite(theta).all():
            return "theta holds values that are not finite numbers"
        if ((theta < 0) | (theta > 1)).any():
            return "theta holds probabilities outside [0, 1]"
        if (theta[~self._valid] != 0).any():
            return "theta gives a probability to an option a choice does not have"
        sums = theta.sum(axis=1)
        bad = np.flatnonzero(np.abs(sums - 1.0) > _STATE_TOL)
        if bad.size:
            return f"theta's row {int(bad[0])} sums to {float(sums[bad[0]])!r}, not 1"
        zero = np.flatnonzero(self._projected & ((theta <= 0) & self._cat_valid).any(axis=1))
        if zero.size:
            return f"theta's row {int(zero[0])} gives one of its options probability 0"
        return None

    def _theta_int_problem(self, theta_int: np.ndarray) -> str | None:
        """What makes ``theta_int`` no Gaussians over the ordinal choices' options, or None: each
        mean within 0..C−1 and each variance above zero."""
        if theta_int.shape != (2, self.ordinal.size):
            return f"theta_int must have shape {(2, self.ordinal.size)}, got {theta_int.shape}"
        if not np.isfinite(theta_int).all():
            return "theta_int holds values that are not finite numbers"
        mean, second = theta_int
        slack = _STATE_TOL * np.maximum(self._int_max, 1.0)
        if ((mean < -slack) | (mean > self._int_max + slack)).any():
            return "theta_int has a mean outside its ordinal choice's options"
        if (second - mean**2 <= 0).any():
            return "theta_int has a variance that is not above zero"
        return None

    # ----------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything needed to continue bit-for-bit, in types ``torch.load(weights_only=True)`` takes."""
        return {
            "categories": self.categories.tolist(),
            "ordinal": self.ordinal.tolist(),
            "theta": self.theta.tolist(),
            "theta_int": self.theta_int.tolist(),
            "Delta": self.Delta,
            "gamma": self.gamma,
            "s": self.s.tolist(),
            "alpha": self.alpha,
            "init_delta": self.init_delta,
            "delta_max": self.delta_max,
            "lam": self.lam,
            "rng": numpy_rng_state(self.rng),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a state written by :meth:`state_dict` (categories and ordinal choices must
        match: ValueError). A state no run writes (θ not a distribution, a step size that is not
        positive, ...) raises :class:`DamagedState` and leaves this ASNG as it was."""
        if list(state["categories"]) != self.categories.tolist():
            raise ValueError(
                f"ASNG state is for categories {state['categories']}, not {self.categories.tolist()}"
            )
        ordinal = list(state.get("ordinal", []))
        if ordinal != self.ordinal.tolist():
            raise ValueError(
                f"ASNG state has ordinal choices {ordinal}, not {self.ordinal.tolist()}"
            )
        theta = np.array(state["theta"], dtype=np.float64)
        theta_int = self.theta_int
        if self.ordinal.size:
            theta_int = np.array(state["theta_int"], dtype=np.float64)
        scalars = {
            k: float(state[k]) for k in ("Delta", "gamma", "alpha", "init_delta", "delta_max")
        }
        s = np.array(state["s"], dtype=np.float64)
        lam = state["lam"]
        problem = (
            self._theta_int_problem(theta_int)
            or self._theta_problem(theta)
            or self._ordinal_rows_problem(theta, theta_int)
            or self._scalars_problem(scalars, s, lam)
        )
        if problem:
            raise DamagedState(f"ASNG state: {problem}")
        set_numpy_rng_state(self.rng, state["rng"])  # checks its state before setting it
        self.theta, self.theta_int, self.s, self.lam = theta, theta_int, s, int(lam)
        self.Delta, self.gamma = scalars["Delta"], scalars["gamma"]
        self.alpha, self.init_delta = scalars["alpha"], scalars["init_delta"]
        self.delta_max = scalars["delta_max"]
        self._draws.clear()

    def _ordinal_rows_problem(self, theta: np.ndarray, theta_int: np.ndarray) -> str | None:
        """Whether θ's ordinal rows are not those ``theta_int`` gives (up to rounding)."""
        for row, probabilities in self._ordinal_probabilities(theta_int):
            if np.abs(theta[row, : probabilities.size] - probabilities).max() > _STATE_TOL:
                return f"theta's row {row} is not the distribution its theta_int gives"
        return None

    def _scalars_problem(self, scalars: dict[str, float], s: np.ndarray, lam: object) -> str | None:
        """What in the step-size state no update writes, or None."""
        for key in ("Delta", "alpha", "init_delta"):
            if not (math.isfinite(scalars[key]) and scalars[key] > 0):
                return f"{key} is {scalars[key]!r}, not a positive number"
        if not scalars["delta_max"] > 0:  # inf (no bound) is allowed
            return f"delta_max is {scalars['delta_max']!r}, not a positive number"
        if not 0 <= scalars["gamma"] <= 1 + _STATE_TOL:  # NaN fails too
            return f"gamma is {scalars['gamma']!r}, not within [0, 1]"
        if s.shape != (self.N,) or not np.isfinite(s).all():
            return f"s is not {self.N} finite numbers"
        if not (is_integer(lam) and lam >= 2):
            return f"lam is {lam!r}, not a whole number >= 2"
        beta = scalars["init_delta"] / scalars["Delta"] / math.sqrt(self.N) if self.N else 0.0
        if beta > 2:  # the update's sqrt(beta (2 - beta)) has no value
            return f"Delta is {scalars['Delta']!r}: too small for any update to take a step"
        return None
