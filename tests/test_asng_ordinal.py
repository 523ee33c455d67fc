"""Ordinal choices in ASNG: the reference's mixed categorical + integer update, replayed from its
test vectors, and the properties the rest of nasframe relies on."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
import torch
from conftest import DATA

from nasframe import ASNG

VECTORS = json.loads((DATA / "asng_ordinal_vectors.json").read_text())
# The reference takes the Fisher root through an eigendecomposition that loses digits to
# cancellation; nasframe's closed form does not (see ASNG._fisher_vector_int).
TOL = 1e-9


def _layout(case: dict) -> tuple[list[int], list[int]]:
    """nasframe's categories and ordinal rows for a reference case: its categorical variables
    first, then its integer ranges [0, K−1] as ordinal choices of K options."""
    cats = list(case["categories"])
    ints = [hi - lo + 1 for lo, hi in case["integers"]]
    return cats + ints, list(range(len(cats), len(cats) + len(ints)))


def _wrong_branch(theta_int: list[list[float]]) -> bool:
    """Whether the reference's update mis-pairs an eigenvalue here: a mean at 0 (its |2m| < 1e-8
    branch) with variance above 1/2, where it scales the direction (1, 0) by max(1, 2σ²)."""
    m, m2 = np.asarray(theta_int)
    return bool((np.abs(2 * m) < 1e-8)[(m2 - m**2) > 0.5].any())


def _clipped(theta_int: list[list[float]], hi: np.ndarray) -> bool:
    """Whether an update left a mean on a bound: there nasframe keeps the step's variance."""
    m = np.asarray(theta_int[0])
    return bool(((m == 0) | (m == hi)).any())


def _replay(case: dict, as_run: bool) -> int:
    """Sample, update and compare with the recorded states; returns the steps compared (``as_run``:
    up to the first step where one of nasframe's two fixes changes the reference's numbers)."""
    categories, ordinal = _layout(case)
    a = ASNG(
        categories,
        ordinal=ordinal,
        alpha=case["alpha"],
        init_delta=case["delta_init"],
        lam=case["lam"],
        seed=case["seed"],
    )
    d_cat = len(case["categories"])
    init = case["init"]
    width = len(init["theta_cat"][0])  # the reference pads rows to its categorical max C
    np.testing.assert_allclose(a.theta[:d_cat, :width], init["theta_cat"], rtol=0, atol=0)
    np.testing.assert_allclose(a.theta_int, init["theta_int"], rtol=0, atol=0)
    assert a.N == sum(c - 1 for c in case["categories"]) + 2 * len(ordinal)
    hi = np.array(categories[d_cat:], dtype=float) - 1
    before = init["theta_int"]
    for t, step in enumerate(case["steps"]):
        if as_run and (_wrong_branch(before) or _clipped(step["theta_int"], hi)):
            return t
        before = step["theta_int"]
        x = a.sample()
        np.testing.assert_array_equal(x[:, :d_cat], step["c_cat"], err_msg=f"step {t}")
        z = a._draws[x.tobytes()]
        np.testing.assert_allclose(z, step["c_int"], rtol=0, atol=TOL, err_msg=f"step {t}")
        np.testing.assert_array_equal(x[:, d_cat:], np.rint(np.clip(step["c_int"], 0, hi)))
        assert abs(a.delta - step["delta"]) <= TOL  # the radius this update uses
        a.update(x, step["losses"])
        np.testing.assert_allclose(
            a.theta[:d_cat, :width], step["theta_cat"], rtol=0, atol=TOL, err_msg=f"step {t}"
        )
        np.testing.assert_allclose(a.theta_int, step["theta_int"], rtol=0, atol=TOL)
        np.testing.assert_allclose(a.s, step["s"], rtol=0, atol=TOL)
        assert abs(a.gamma - step["gamma"]) <= TOL
        assert abs(a.Delta - step["Delta"]) <= TOL * max(1.0, step["Delta"])
    return len(case["steps"])


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda c: c["name"])
def test_mixed_sequences_replay_the_reference(case):
    """As run: every step up to the first one where the reference mis-pairs an eigenvalue or
    clips a mean."""
    assert _replay(case, as_run=True) >= 1


def test_the_reference_as_run_is_matched_over_dozens_of_steps():
    assert sum(_replay(case, as_run=True) for case in VECTORS["cases"]) >= 50


@pytest.mark.parametrize("case", VECTORS["cases_fixed"], ids=lambda c: c["name"])
def test_mixed_sequences_replay_the_reference_with_its_two_fixes(case):
    """Every step, against the reference with nasframe's two fixes (the vectors' fixed_source)."""
    assert _replay(case, as_run=False) == len(case["steps"])


def test_the_fixed_vectors_differ_from_the_reference_only_where_a_fix_applies():
    for as_run, fixed in zip(VECTORS["cases"], VECTORS["cases_fixed"], strict=True):
        hi = np.array([h for _, h in as_run["integers"]], dtype=float)
        before = as_run["init"]["theta_int"]
        for a, b in zip(as_run["steps"], fixed["steps"], strict=True):
            if _wrong_branch(before) or _clipped(a["theta_int"], hi):
                break
            np.testing.assert_allclose(a["theta_int"], b["theta_int"], rtol=0, atol=1e-15)
            np.testing.assert_allclose(a["s"], b["s"], rtol=0, atol=1e-15)
            before = a["theta_int"]


def test_the_bound_case_reaches_the_lower_bound():
    """The vectors exercise a mean clipped to exactly 0 (the root's off-diagonal vanishes)."""
    (case,) = [c for c in VECTORS["cases"] if c["name"] == "int_at_bounds"]
    assert any(step["theta_int"][0][0] == 0.0 for step in case["steps"])


def test_ordinal_rows_of_theta_are_the_probabilities_of_the_rounded_gaussian():
    a = ASNG([7, 3], ordinal=[0], seed=0, lam=2)
    a.theta_int = np.array([[2.3], [2.3**2 + 1.1**2]])
    a._ordinal_rows()
    n = 40_000
    x = a.sample(n)
    freq = np.bincount(x[:, 0], minlength=7) / n
    np.testing.assert_allclose(freq, a.theta[0], atol=0.01)
    assert abs(a.theta[0].sum() - 1) < 1e-12
    z = a._draws[x.tobytes()][:, 0]
    # Mirrored pairs: each pair's draws sit symmetrically about the mean.
    np.testing.assert_allclose(z[0::2] + z[1::2], 2 * 2.3, atol=1e-12)
    assert abs(np.std(z) - 1.1) < 0.02


def test_mle_is_the_rounded_mean_and_entropy_uses_the_discretised_gaussian():
    a = ASNG([5, 4], ordinal=[0], seed=0)
    assert a.mle()[0] == 2  # mean starts in the middle of 0..4
    a.theta_int = np.array([[3.6], [3.6**2 + 0.25**2]])
    a._ordinal_rows()
    assert a.mle()[0] == 4
    p = a.theta[0, :5]
    assert abs(a.entropy()[0] + (p[p > 0] * np.log(p[p > 0])).sum()) < 1e-12


def test_an_ordinal_toy_converges_to_its_optimum():
    """Three ordinal choices of 8 options, quadratic loss, λ = 4: every seed converges on the
    optimum, its spread at the floor (λ = 2 learns no spread: see docs/asng.md)."""
    target = np.array([1, 6, 3])
    for seed in range(5):
        a = ASNG([8, 8, 8], ordinal=[0, 1, 2], seed=seed, lam=4)
        for _ in range(300):
            x = a.sample()
            a.update(x, ((x - target) ** 2).sum(1))
        np.testing.assert_array_equal(a.mle(), target, err_msg=f"seed {seed}")
        assert a.converged(0.9), (seed, a.theta_int)
        np.testing.assert_allclose(a.ordinal_std, 0.25, atol=0.05)


def test_a_mean_pushed_into_its_bound_does_not_inflate_the_spread():
    """The reference clips E[z] and keeps E[z²], which turns the clipped part of the step into
    variance: a choice whose best option is next to the end can stick at the end with the largest
    spread. nasframe keeps the variance the step gave."""
    a = ASNG([8, 3], ordinal=[0], seed=0, lam=4)
    a.theta_int = np.array([[6.9], [6.9**2 + 1.0]])
    x = np.array([[7, 0], [7, 1], [3, 2], [2, 0]])
    draws = np.array([[7.6], [7.3], [3.4], [2.1]])
    a.update(x, [1.0, 1.5, 5.0, 6.0], draws=draws)
    assert a.ordinal_mean[0] == 7.0  # pushed past the end, clipped
    assert a.ordinal_std[0] < 1.0  # the step shrank the spread; the reference would raise it


def test_projection_keeps_means_and_spreads_within_their_bounds():
    a = ASNG([4, 6, 2], ordinal=[0, 1], seed=3, init_delta=2.0)
    rs = np.random.RandomState(0)
    for _ in range(300):
        x = a.sample()
        a.update(x, rs.rand(2))
        hi = np.array([3.0, 5.0])
        assert (a.ordinal_mean >= 0).all() and (a.ordinal_mean <= hi).all()
        assert (a.ordinal_std >= 0.25 - 1e-12).all()
        assert (a.ordinal_std <= hi / 2 + 1e-12).all()
        np.testing.assert_allclose(a.theta.sum(1), 1.0, atol=1e-12)


def test_fisher_root_of_an_ordinal_choice_is_the_inverse_root_of_the_covariance():
    a = ASNG([9, 9], ordinal=[0, 1])
    a.theta_int = np.array([[0.0, 6.5], [0.3**2, 6.5**2 + 2.0**2]])
    g = np.array([[0.3, -0.7], [1.1, 2.5]])
    v = a._fisher_vector_int(g)
    for j in range(2):
        m, var = a.ordinal_mean[j], a.ordinal_std[j] ** 2
        cov = var * np.array([[1, 2 * m], [2 * m, 4 * m**2 + 2 * var]])
        vals, vecs = np.linalg.eigh(cov)
        root = vecs @ np.diag(vals**-0.5) @ vecs.T
        np.testing.assert_allclose(v[:, j], root @ g[:, j], rtol=1e-9)
        assert abs(v[:, j] @ v[:, j] - g[:, j] @ np.linalg.solve(cov, g[:, j])) < 1e-8


def test_update_needs_the_draws_behind_the_samples():
    a = ASNG([4, 5], ordinal=[1], seed=0)
    x = a.sample()
    with pytest.raises(ValueError, match="Gaussian draws"):
        a.update(np.array([[0, 1], [1, 4]]), [1.0, 2.0])
    z = a._draws[x.tobytes()].copy()
    b = ASNG([4, 5], ordinal=[1], seed=0)
    b.update(x, [1.0, 2.0], draws=z)
    a.update(x, [1.0, 2.0])
    np.testing.assert_array_equal(a.theta, b.theta)
    np.testing.assert_array_equal(a.theta_int, b.theta_int)


def test_state_dict_round_trip_with_ordinal_choices_continues_identically():
    a = ASNG([3, 6, 4], ordinal=[1, 2], seed=5)
    target = np.array([2, 4, 0])
    for _ in range(25):
        x = a.sample()
        a.update(x, (x != target).sum(1) + 0.1 * np.abs(x - target).sum(1))
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b = ASNG([3, 6, 4], ordinal=[1, 2], seed=999)
    b.load_state_dict(torch.load(buf, weights_only=True))
    for _ in range(25):
        xa, xb = a.sample(), b.sample()
        np.testing.assert_array_equal(xa, xb)
        for s in (a, b):
            s.update(xa, (xa != target).sum(1) + 0.1 * np.abs(xa - target).sum(1))
    np.testing.assert_array_equal(a.theta, b.theta)
    np.testing.assert_array_equal(a.theta_int, b.theta_int)
    assert a.Delta == b.Delta
    with pytest.raises(ValueError, match="ordinal"):
        ASNG([3, 6, 4], ordinal=[1]).load_state_dict(a.state_dict())
    with pytest.raises(ValueError, match="ordinal"):
        ASNG([3, 6, 4]).load_state_dict(a.state_dict())


def test_ordinal_choices_need_two_options():
    with pytest.raises(ValueError, match="at least 2 options"):
        ASNG([3, 1], ordinal=[1])
    with pytest.raises(ValueError, match="at least 2 options"):
        ASNG([3, 2], ordinal=[2])


def test_without_ordinal_choices_sampling_and_updates_are_the_categorical_ones():
    """The categorical path is untouched: same stream, same θ as an instance built before the
    ordinal option existed would give (the reference vectors of test_asng cover it exactly)."""
    a, b = ASNG([4, 3], seed=2), ASNG([4, 3], seed=2, ordinal=())
    for _ in range(30):
        xa, xb = a.sample(), b.sample()
        np.testing.assert_array_equal(xa, xb)
        a.update(xa, xa.sum(1))
        b.update(xb, xb.sum(1))
    np.testing.assert_array_equal(a.theta, b.theta)
    assert not a._draws and a.N == 5 and math.isclose(a.cap, 0.5)


def test_a_state_written_before_ordinal_choices_existed_still_loads():
    a = ASNG([3, 4], seed=1)
    x = a.sample()
    a.update(x, [1.0, 2.0])
    old = {k: v for k, v in a.state_dict().items() if k not in ("ordinal", "theta_int")}
    b = ASNG([3, 4])
    b.load_state_dict(old)
    np.testing.assert_array_equal(a.sample(3), b.sample(3))
    np.testing.assert_array_equal(a.theta, b.theta)


def test_convergence_is_the_largest_fraction_at_which_converged_holds():
    """Mixed categorical and ordinal choices along a run: converged(f) holds exactly for f up to
    convergence() (the run's "to search longer" hint names it)."""
    a = ASNG([4, 8, 3, 6], ordinal=[1, 3], seed=3, lam=4)
    target = np.array([2, 5, 0, 1])
    for step in range(200):
        x = a.sample()
        a.update(x, (x != target).sum(1) + ((x - target) ** 2).sum(1) * 0.1)
        if step % 20 == 0:
            level = a.convergence()
            assert 0 < level <= 1
            assert a.converged(level * (1 - 1e-9)) and not a.converged(min(level * 1.001, 1.5))
    assert ASNG([1, 1]).convergence() == 1.0  # nothing to decide
