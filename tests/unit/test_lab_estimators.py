"""The replay estimators against brute force over every k-subset (and every order, where
the tie-break depends on it) of small pools, exact to 1e-12."""

from __future__ import annotations

import itertools
import math
import random
import time
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from testtime.core.types import Candidate
from testtime.core.voting import group, leader
from testtime.lab.analysis import estimators

# a pool: each sample's answer group (None: no answer)
answers_st = st.lists(st.one_of(st.none(), st.integers(0, 3)), min_size=1, max_size=9)
credits_st = st.lists(st.sampled_from([0.0, 1.0, 0.5, 0.25]), min_size=4, max_size=4)


def as_groups(answers: list[int | None], credit: list[float]) -> list[tuple[int, float]]:
    return [(answers.count(g), credit[g]) for g in range(4) if answers.count(g)]


def brute_majority(answers: list[int | None], credit: list[float], k: int) -> float:
    """Mean over every k-subset of the plurality vote, a t-way tie splitting credit by t."""
    total, subsets = Fraction(0), 0
    for sub in itertools.combinations(range(len(answers)), k):
        votes: dict[int, int] = {}
        for i in sub:
            a = answers[i]
            if a is not None:
                votes[a] = votes.get(a, 0) + 1
        if votes:
            top = max(votes.values())
            lead = [g for g, v in votes.items() if v == top]
            total += sum(Fraction(credit[g]) for g in lead) / len(lead)
        subsets += 1
    return float(total / subsets)


def first_seen_majority(answers: list[int | None], credit: list[float], k: int) -> float:
    """Mean over every ordered k-subset of core's vote (ties to the first-seen group)."""
    total, orders = Fraction(0), 0
    for perm in itertools.permutations(range(len(answers)), k):
        cands = [Candidate("", None if answers[i] is None else str(answers[i])) for i in perm]
        top = leader(group(cands, None, lambda a, b: a == b))
        total += Fraction(credit[int(top.answer)]) if top else 0
        orders += 1
    return float(total / orders)


@settings(max_examples=80, deadline=None)
@given(answers_st, credits_st)
def test_majority_is_exact_against_every_subset(answers, credit) -> None:
    ks = list(range(1, len(answers) + 1))
    curve = estimators.majority_curve(as_groups(answers, credit), answers.count(None), ks)
    for k, value in zip(ks, curve, strict=True):
        assert value == pytest.approx(brute_majority(answers, credit, k), abs=1e-12)


@settings(max_examples=15, deadline=None)
@given(st.lists(st.one_of(st.none(), st.integers(0, 3)), min_size=1, max_size=5), credits_st)
def test_splitting_ties_equals_first_seen_under_random_order(answers, credit) -> None:
    groups, unanswered = as_groups(answers, credit), answers.count(None)
    for k in range(1, len(answers) + 1):
        want = first_seen_majority(answers, credit, k)
        assert estimators.majority_at_k(groups, unanswered, k) == pytest.approx(want, abs=1e-12)


def test_majority_edge_cases() -> None:
    assert estimators.majority_curve([], 3, [1, 2, 3]) == [0.0, 0.0, 0.0]  # nobody answers
    assert estimators.majority_curve([(4, 1.0)], 0, [1, 4]) == [1.0, 1.0]
    # 2 vs 2 over the whole pool: an even split of the credit
    assert estimators.majority_at_k([(2, 1.0), (2, 0.0)], 1, 5) == pytest.approx(0.5)
    assert estimators.majority_at_k([(2, 0.5), (0, 1.0)], 0, 1) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="k must be"):
        estimators.majority_at_k([(2, 1.0)], 0, 3)
    with pytest.raises(ValueError, match="credits"):
        estimators.majority_at_k([(2, 1.5)], 0, 1)
    with pytest.raises(ValueError, match=">= 0"):
        estimators.majority_at_k([(2, 1.0)], -1, 1)


def test_majority_curve_is_fast_on_a_pool_of_256() -> None:
    rng = random.Random(5)
    sizes = [rng.randint(1, 16) for _ in range(30)]
    groups = [(s, rng.choice([0.0, 1.0, 0.5])) for s in sizes]
    unanswered = 256 - sum(sizes)
    estimators._wins.cache_clear()
    start = time.perf_counter()
    curve = estimators.majority_curve(groups, unanswered, list(range(1, 257)))
    assert time.perf_counter() - start < 5.0
    assert all(0.0 <= v <= 1.0 for v in curve)
    top = max(sizes)
    leaders = [w for s, w in groups if s == top]
    assert curve[-1] == pytest.approx(sum(leaders) / len(leaders))  # the whole pool votes
    assert estimators.majority_at_k(groups, unanswered, 17) == curve[16]  # cached counts


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.sampled_from([0.0, 1.0, 0.5])), min_size=1,
                max_size=9))  # fmt: skip
def test_best_of_k_is_exact_with_ties_broken_at_random(samples) -> None:
    scores = [float(s) for s, _ in samples]
    correct = [c for _, c in samples]
    n = len(samples)
    ks = list(range(1, n + 1))
    curve = estimators.best_of_k_curve(scores, correct, ks)
    for k, value in zip(ks, curve, strict=True):
        want = []
        for sub in itertools.combinations(range(n), k):
            top = max(scores[i] for i in sub)
            tied = [correct[i] for i in sub if scores[i] == top]
            want.append(sum(tied) / len(tied))
        assert value == pytest.approx(math.fsum(want) / len(want), abs=1e-12)
        assert estimators.best_of_k(scores, correct, k) == value


@given(st.integers(1, 12), st.data())
def test_pass_at_k_is_exact_and_is_best_of_k_with_a_perfect_verifier(n, data) -> None:
    c = data.draw(st.integers(0, n))
    k = data.draw(st.integers(1, n))
    subsets = list(itertools.combinations(range(n), k))
    want = sum(any(i < c for i in s) for s in subsets) / len(subsets)
    assert estimators.pass_at_k(n, c, k) == pytest.approx(want, abs=1e-12)
    perfect = [1.0] * c + [0.0] * (n - c)
    assert estimators.best_of_k(perfect, perfect, k) == pytest.approx(want, abs=1e-12)


def test_pass_at_k_edges_and_bad_arguments() -> None:
    assert estimators.pass_at_k(10, 0, 5) == 0.0
    assert estimators.pass_at_k(10, 10, 1) == 1.0
    assert estimators.pass_at_k(10, 1, 10) == 1.0
    assert estimators.pass_at_k(10, 1, 1) == pytest.approx(0.1)
    exact = 1 - Fraction(math.comb(997, 100), math.comb(1000, 100))
    assert estimators.pass_at_k(1000, 3, 100) == pytest.approx(float(exact), abs=1e-12)
    for n, c, k, msg in [(4, 1, 5, "k must"), (4, 1, 0, "k must"), (4, 5, 1, "c must"),
                         (4, -1, 1, "c must")]:  # fmt: skip
        with pytest.raises(ValueError, match=msg):
            estimators.pass_at_k(n, c, k)
    with pytest.raises(ValueError, match="k must"):
        estimators.best_of_k([1.0], [1.0], 0)
    with pytest.raises(ValueError, match="scores but"):
        estimators.best_of_k([1.0, 2.0], [1.0], 1)


def _voter(answers: list[int | None], credit: list[float]):
    def select(idx: np.ndarray) -> float:
        cands = [Candidate("", None if answers[i] is None else str(answers[i])) for i in idx]
        top = leader(group(cands, None, lambda a, b: a == b))
        return credit[int(top.answer)] if top else 0.0

    return select


def test_monte_carlo_enumerates_small_cases_exactly() -> None:
    answers: list[int | None] = [0, 1, 1, None, 2, 0, 3]
    credit = [1.0, 0.0, 0.5, 0.0]
    groups = as_groups(answers, credit)
    select = _voter(answers, credit)
    # every ordered subset fits in draws: exact even for the order-dependent tie-break
    for k in (1, 2, 3):
        got = estimators.monte_carlo_at_k(select, 7, k, draws=300)
        assert got == pytest.approx(estimators.majority_at_k(groups, 1, k), abs=1e-12)
    # every subset (not every order) fits: exact for an order-free rule
    rng = random.Random(1)
    scores = [rng.random() for _ in range(9)]
    correct = [float(rng.random() < 0.4) for _ in range(9)]

    def best(idx: np.ndarray) -> float:
        return correct[max(idx, key=lambda i: scores[i])]

    for k in (3, 4, 6):
        assert math.comb(9, k) <= 200 < math.perm(9, k)
        got = estimators.monte_carlo_at_k(best, 9, k, draws=200)
        assert got == pytest.approx(estimators.best_of_k(scores, correct, k), abs=1e-12)


def test_monte_carlo_is_close_on_larger_pools_and_deterministic() -> None:
    rng = random.Random(3)
    answers: list[int | None] = [rng.choice([0, 0, 0, 1, 1, 2, 3, None]) for _ in range(40)]
    credit = [1.0, 0.0, 0.0, 0.0]
    select = _voter(answers, credit)
    exact = estimators.majority_at_k(as_groups(answers, credit), answers.count(None), 5)
    mc = estimators.monte_carlo_at_k(select, 40, 5, draws=3000, seed=2)
    assert mc == pytest.approx(exact, abs=0.03)
    assert mc == estimators.monte_carlo_at_k(select, 40, 5, draws=3000, seed=2)

    scores = [rng.random() for _ in range(40)]
    correct = [float(rng.random() < 0.3) for _ in range(40)]

    def best(idx: np.ndarray) -> float:
        return correct[max(idx, key=lambda i: scores[i])]

    mc = estimators.monte_carlo_at_k(best, 40, 8, draws=3000, seed=1)
    assert mc == pytest.approx(estimators.best_of_k(scores, correct, 8), abs=0.03)


def test_monte_carlo_draws_random_orders() -> None:
    firsts = []
    estimators.monte_carlo_at_k(lambda idx: firsts.append(int(idx[0])) or 0.0, 8, 3, draws=20)
    assert len(firsts) == 20 and len(set(firsts)) > 1  # C(8, 3) > 20: random subsets
    firsts.clear()
    estimators.monte_carlo_at_k(lambda idx: firsts.append(int(idx[0])) or 0.0, 5, 3, draws=20)
    assert len(firsts) == 10  # C(5, 3) <= 20: each subset once


def test_bootstrap_interval() -> None:
    rng = np.random.default_rng(0)
    few, many = rng.random(10), rng.random(400)
    lo, hi = estimators.bootstrap_ci(few)
    assert lo <= few.mean() <= hi
    lo2, hi2 = estimators.bootstrap_ci(many)
    assert lo2 <= many.mean() <= hi2
    assert hi2 - lo2 < hi - lo
    assert estimators.bootstrap_ci(few, seed=4) == estimators.bootstrap_ci(few, seed=4)
    assert estimators.bootstrap_ci(few, seed=4) != estimators.bootstrap_ci(few, seed=5)
    assert estimators.bootstrap_ci([0.5]) == (0.5, 0.5)
    assert estimators.bootstrap_ci([0.3, 0.3, 0.3]) == (0.3, 0.3)
    lo50, hi50 = estimators.bootstrap_ci(few, level=0.5)
    assert lo <= lo50 <= hi50 <= hi


def test_bootstrap_many_resamples_problems_once_for_all_budgets() -> None:
    rng = np.random.default_rng(1)
    matrix = rng.random((30, 4))
    matrix[:, 3] = 0.7  # a flat column
    lo, hi = estimators.bootstrap_ci_many(matrix, seed=3)
    assert lo.shape == hi.shape == (4,)
    assert np.all(lo <= matrix.mean(axis=0) + 1e-12) and np.all(matrix.mean(axis=0) <= hi + 1e-12)
    assert lo[3] == hi[3] == 0.7
    # the same resampled problem sets serve every column: a column's band is what it gets alone
    for j in range(3):
        assert (lo[j], hi[j]) == pytest.approx(estimators.bootstrap_ci(matrix[:, j], seed=3))
    # a shifted copy of a column gets the shifted band (same resamples, not new ones)
    shifted = np.column_stack([matrix[:, 0], matrix[:, 0] + 0.1])
    lo, hi = estimators.bootstrap_ci_many(shifted, seed=3)
    assert lo[1] - lo[0] == pytest.approx(0.1) and hi[1] - hi[0] == pytest.approx(0.1)
