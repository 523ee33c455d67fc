"""ASNG against the reference implementation's test vectors, and its documented extensions."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import DATA

from nasframe import ASNG, ranking_utility

VECTORS = json.loads((DATA / "asng_vectors.json").read_text())
TOL = 1e-12


@pytest.mark.parametrize("case", VECTORS["utility_vectors"], ids=lambda c: str(c["f"]))
def test_ranking_utility_matches_reference(case):
    w = ranking_utility(case["f"])
    np.testing.assert_allclose(w[case["order"]], case["w_sorted"], atol=0)


def _assert_state(a: ASNG, ref: dict) -> None:
    np.testing.assert_allclose(a.theta, np.array(ref["theta_after"]), rtol=0, atol=TOL)
    assert abs(a.Delta - ref["Delta_after"]) <= TOL
    assert abs(a.delta - ref["delta_next"]) <= TOL
    assert abs(a.gamma - ref["gamma_after"]) <= TOL
    np.testing.assert_allclose(a.s, np.array(ref["s_after"]), rtol=0, atol=TOL)


@pytest.mark.parametrize("case", VECTORS["single_step_vectors"], ids=lambda c: c["name"])
def test_single_step_matches_reference(case):
    a = ASNG(
        case["categories"],
        alpha=case["alpha"],
        init_delta=case["init_delta"],
        theta=case["theta_before"],
    )
    changed = a.update(np.array(case["x"]), case["losses"])
    assert changed == case["theta_changed"]
    _assert_state(a, case)


@pytest.mark.parametrize("seq", VECTORS["sequences"], ids=lambda s: s["name"])
def test_sequences_replay_with_the_reference_sampling_stream(seq):
    a = ASNG(seq["categories"], alpha=seq["alpha"], init_delta=seq["init_delta"], seed=seq["seed"])
    assert a.N == seq["N"] and a.valid_d == seq["valid_d"]
    for step in seq["steps"]:
        x = a.sample(2)
        np.testing.assert_array_equal(x, step["x"])
        for u, xi in zip(step["uniforms"], step["x"], strict=True):
            np.testing.assert_array_equal(a.sample_from_uniforms(np.array(u)), xi)
        changed = a.update(x, step["losses"])
        assert changed == (not step["skipped"])
        _assert_state(a, step)
        np.testing.assert_array_equal(a.mle(), step["mle_after"])


def test_singleton_choice_is_a_variable_that_never_moves():
    a = ASNG([3, 1, 4], seed=1)
    assert a.N == 5 and a.valid_d == 2
    for _ in range(50):
        x = a.sample()
        a.update(x, (x[:, 0] != 2).astype(float) + (x[:, 2] != 1))
    assert a.theta[1, 0] == 1.0 and (a.sample(5)[:, 1] == 0).all()
    assert a.theta[0, 2] > 0.4 and a.theta[2, 1] > 0.4


def test_delta_max_is_honoured():
    def run(delta_max):
        a = ASNG([5] * 6, seed=3, delta_max=delta_max)
        target = np.arange(6) % 5
        Deltas = []
        for _ in range(300):
            x = a.sample()
            a.update(x, (x != target).sum(1))
            Deltas.append(a.Delta)
        return max(Deltas)

    assert run(math.inf) > 1.5
    assert run(1.5) <= 1.5


def test_own_generator_leaves_global_numpy_rng_alone():
    np.random.seed(123)
    expected = np.random.rand(3)
    np.random.seed(123)
    a = ASNG([4, 4], seed=0)
    a.sample(10)
    np.testing.assert_array_equal(np.random.rand(3), expected)
    b = ASNG([4, 4], seed=0)
    b.sample(10)
    np.testing.assert_array_equal(ASNG([4, 4], seed=0).sample(10), ASNG([4, 4], seed=0).sample(10))


def test_state_dict_round_trip_continues_identically():
    a = ASNG([3, 5, 2], seed=7)
    target = np.array([2, 4, 1])
    for _ in range(20):
        x = a.sample()
        a.update(x, (x != target).sum(1))
    b = ASNG([3, 5, 2], seed=999)
    b.load_state_dict(a.state_dict())
    for _ in range(20):
        xa, xb = a.sample(), b.sample()
        np.testing.assert_array_equal(xa, xb)
        a.update(xa, (xa != target).sum(1))
        b.update(xb, (xb != target).sum(1))
    np.testing.assert_array_equal(a.theta, b.theta)
    assert a.Delta == b.Delta
    with pytest.raises(ValueError, match="categories"):
        ASNG([3, 5]).load_state_dict(a.state_dict())


def test_update_with_more_than_two_samples_and_nonfinite_losses():
    a = ASNG([4, 4, 4], seed=0, lam=8)
    x = a.sample()
    assert x.shape == (8, 3)
    assert a.update(x, np.arange(8.0))
    with pytest.raises(ValueError, match="non-finite"):
        a.update(x, [np.nan] + [1.0] * 7)


def test_toy_converges_to_the_target_on_every_seed():
    """30 variables x 8 categories, noise-free loss = mismatches: every seed reaches the cap on the
    target (the reference's convergence definition) well within budget, and the MLE is the target."""
    cats = [8] * 30
    rs = np.random.RandomState(12345)
    target = np.array([rs.randint(c) for c in cats])
    for seed in range(10):
        a = ASNG(cats, seed=seed)
        t = 0
        while t < 5000 and a.theta[np.arange(30), target].min() < 0.9 * a.cap:
            x = a.sample()
            a.update(x, (x != target).sum(1))
            t += 1
        assert t < 5000 and a.converged(0.9), seed
        np.testing.assert_array_equal(a.mle(), target)


def test_vectorised_update_is_bit_for_bit_the_row_by_row_one():
    """The projection runs per block of rows with the same C: the same arithmetic as the
    reference's loop over rows, bit for bit."""

    def project_rows(a: ASNG) -> None:  # the reference's loop
        for i in np.flatnonzero(a._projected):
            c, t_min = int(a.categories[i]), a._theta_min[i]
            row = np.maximum(a.theta[i, :c], t_min)
            total = row.sum()
            row = row - (total - 1.0) * (row - t_min) / (total - c * t_min)
            a.theta[i, :c] = row / row.sum()

    rs = np.random.RandomState(0)
    for cats in (
        [2, 2, 5, 5, 3, 3, 5, 5, 4, 4, 5, 5, 5, 5, 5, 5, 6, 6, 5, 5],
        [1, 3, 12, 9, 2, 17, 1],
    ):
        a, b = ASNG(cats, seed=1), ASNG(cats, seed=1)
        b._project = lambda b=b: project_rows(b)
        for _ in range(200):
            x = a.sample()
            np.testing.assert_array_equal(x, b.sample())
            f = rs.choice([0.5, 1.0, 2.0], 2)  # ties included
            changed = a.update(x, f)
            assert changed == b.update(x, f)
            assert changed or np.var(ranking_utility(f)) == 0 or (x[0] == x[1]).all()
            np.testing.assert_array_equal(a.theta, b.theta)
            assert a.Delta == b.Delta and np.array_equal(a.s, b.s)


@pytest.mark.parametrize(
    "cats, bound_d", [([2], 3), ([3], 2), ([5], 2), ([3, 2], 3), ([2, 2], 3), ([2, 2, 2], 3)]
)
def test_spaces_too_small_for_the_reference_bound_stay_finite_and_converge(cats, bound_d):
    """θmin = 1/(valid_d (C − 1)) leaves no feasible θ when C θmin ≥ 1 (the reference's θ turns
    NaN: one choice, or two with a binary one); nasframe then bounds with the smallest count that
    is feasible, and keeps the reference's bound everywhere else."""
    target = np.array([c - 1 for c in cats])
    a = ASNG(cats, seed=0)
    assert a.bound_d == bound_d and a.valid_d == len(cats)
    for _ in range(400):
        x = a.sample()
        a.update(x, 1.0 + (x != target).sum(1))
    assert np.isfinite(a.theta).all() and np.isfinite(a.s).all()
    np.testing.assert_array_equal(a.mle(), target)
    assert a.converged(0.9)
    assert a.theta.max() <= a.cap + 1e-12 and abs(a.cap - (1 - 1 / bound_d)) < 1e-15
    np.testing.assert_allclose(a.theta.sum(1), 1.0, atol=1e-12)


def test_the_reference_bound_is_kept_wherever_it_is_feasible():
    for cats in ([3, 3], [2, 2, 2, 2], [8] * 30, [2, 5, 1, 3]):
        a = ASNG(cats)
        assert a.bound_d == a.valid_d, cats
