"""The replay estimators against brute force over every subset (and order) of small pools,
and the coverage-law fit on synthetic data with known a and b."""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from testtime.core.types import Candidate
from testtime.core.voting import majority
from testtime.lab import estimators, fit

# a pool: each sample's answer group (None: no answer) and correctness of each group
pools = st.lists(st.one_of(st.none(), st.integers(0, 3)), min_size=1, max_size=7)


def _brute_majority(answers: list[int | None], credit: dict[int, float], k: int) -> float:
    """Average over every ordered k-subset of core's own first-seen plurality vote."""
    total, count = 0.0, 0
    for perm in itertools.permutations(range(len(answers)), k):
        cands = [Candidate("", None if answers[i] is None else str(answers[i])) for i in perm]
        top = majority(cands)
        total += credit[int(top.answer)] if top else 0.0
        count += 1
    return total / count


@settings(max_examples=60, deadline=None)
@given(pools, st.data())
def test_majority_is_exact_against_every_ordered_subset(answers, data) -> None:
    credit = {g: data.draw(st.sampled_from([0.0, 1.0])) for g in range(4)}
    groups = [(answers.count(g), credit[g]) for g in range(4) if answers.count(g)]
    unanswered = answers.count(None)
    ks = list(range(1, len(answers) + 1))
    curve = estimators.majority_curve(groups, unanswered, ks)
    for k, value in zip(ks, curve, strict=True):
        assert value == pytest.approx(_brute_majority(answers, credit, k), abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.booleans()), min_size=1, max_size=8))
def test_best_of_k_is_exact_with_ties_broken_at_random(samples) -> None:
    scores = [float(s) for s, _ in samples]
    correct = [float(c) for _, c in samples]
    n = len(samples)
    for k in range(1, n + 1):
        want = []
        for sub in itertools.combinations(range(n), k):
            top = max(scores[i] for i in sub)
            tied = [correct[i] for i in sub if scores[i] == top]
            want.append(sum(tied) / len(tied))
        assert estimators.best_of_k(scores, correct, k) == pytest.approx(np.mean(want), abs=1e-12)


@given(st.integers(1, 12), st.data())
def test_pass_at_k_is_exact(n, data) -> None:
    c = data.draw(st.integers(0, n))
    k = data.draw(st.integers(1, n))
    subsets = list(itertools.combinations(range(n), k))
    want = sum(any(i < c for i in s) for s in subsets) / len(subsets)
    assert estimators.pass_at_k(n, c, k) == pytest.approx(want, abs=1e-12)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="k must be"):
        estimators.pass_at_k(4, 1, 5)
    with pytest.raises(ValueError, match="c must be"):
        estimators.pass_at_k(4, 5, 1)
    with pytest.raises(ValueError, match="k must be"):
        estimators.best_of_k([1.0], [1.0], 0)


def test_monte_carlo_is_exact_when_it_can_enumerate_and_close_otherwise() -> None:
    rng = random.Random(3)
    scores = [rng.random() for _ in range(40)]
    correct = [float(rng.random() < 0.3) for _ in range(40)]

    def best(idx: np.ndarray) -> float:
        return correct[max(idx, key=lambda i: scores[i])]

    small = estimators.monte_carlo_at_k(best, 6, 3, draws=100)
    exact_small = estimators.best_of_k(scores[:6], correct[:6], 3)
    assert small == pytest.approx(exact_small, abs=1e-12)
    big = estimators.monte_carlo_at_k(best, 40, 8, draws=4000, seed=1)
    assert big == pytest.approx(estimators.best_of_k(scores, correct, 8), abs=0.03)


def test_majority_curve_is_fast_on_a_large_pool() -> None:
    groups = [(40, 1.0), (30, 0.0), (20, 0.0)] + [(6, 0.0)] * 25
    curve = estimators.majority_curve(groups, 16, list(range(1, 257)))
    assert curve[-1] == pytest.approx(1.0)  # the whole pool: the 40 win outright
    assert all(0 <= v <= 1 for v in curve)


def test_bootstrap_interval() -> None:
    rng = np.random.default_rng(0)
    few, many = rng.random(10), rng.random(400)
    lo, hi = estimators.bootstrap_ci(few)
    assert lo <= few.mean() <= hi
    lo2, hi2 = estimators.bootstrap_ci(many)
    assert hi2 - lo2 < hi - lo
    assert estimators.bootstrap_ci(few, seed=4) == estimators.bootstrap_ci(few, seed=4)
    assert estimators.bootstrap_ci([0.5]) == (0.5, 0.5)


@pytest.mark.parametrize(("a", "b", "noise"), [(-1.2, -0.35, 0.0), (-3.0, -0.6, 0.003),
                                                (-0.8, -0.2, 0.002)])  # fmt: skip
def test_coverage_law_recovers_a_and_b(a: float, b: float, noise: float) -> None:
    ks = fit.log_spaced(10_000, 40)
    rng = np.random.default_rng(1)
    cov = [min(0.9999, math.exp(a * k**b) + rng.normal(0, noise)) for k in ks]
    got = fit.fit_coverage(ks, cov)
    assert got is not None
    assert got.a == pytest.approx(a, rel=0.05) and got.b == pytest.approx(b, rel=0.05)
    assert got.r2 > 0.99
    assert got.predict(100) == pytest.approx(math.exp(a * 100**b), abs=0.01)


def test_coverage_law_needs_points_inside_zero_and_one() -> None:
    assert fit.fit_coverage([1, 2, 4], [1.0, 1.0, 1.0]) is None
    assert fit.fit_coverage([1, 2], [0.2, 0.4]) is None
    assert fit.log_spaced(1) == [1] and 30 <= len(fit.log_spaced(10_000, 40)) <= 40


def test_saturation_ceiling_and_pareto() -> None:
    ks = [1, 2, 4, 8, 16, 32]
    assert fit.saturation(ks, [0.2, 0.3, 0.40, 0.45, 0.452, 0.453]) == 8
    assert fit.saturation(ks, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]) is None
    ceiling = fit.verifier_ceiling(
        [[True, False, False, False], [False, False]], [[0.9, 0.8, 0.2, 0.7], [0.1, 0.3]], "v"
    )
    assert ceiling.value == pytest.approx((1 / 3 + 0) / 2)
    assert ceiling.true_positive_rate == 1.0
    assert ceiling.false_positive_rate == pytest.approx(2 / 5)
    points = [("a", 1, 1.0, 0.5), ("a", 2, 2.0, 0.6), ("b", 1, 2.0, 0.55), ("b", 2, 3.0, 0.6),
              ("c", 1, 1.0, 0.5)]  # fmt: skip
    assert fit.pareto(points) == [("a", 1), ("c", 1), ("a", 2)]
