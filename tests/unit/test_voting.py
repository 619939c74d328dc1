"""Voting in core: grouping by the same answer, ties to the first seen, vote weights, and the
stopping rules of adaptive self-consistency (Beta, doubling), against its_hub's values."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from testtime.core.answers import equivalent
from testtime.core.types import Candidate
from testtime.core.voting import (
    agreement,
    beta_confidence,
    frequent_groups,
    group,
    leader,
    majority,
    vote_confidence,
    vote_weight,
    weighted_majority,
)


def cands(*answers: str | None) -> list[Candidate]:
    return [Candidate(f"Answer: {a}", a, id=i) for i, a in enumerate(answers)]


def test_group_merges_spellings_of_one_number_in_first_seen_order() -> None:
    groups = group(cands("0.5", "7", None, "1/2", "7.0", "\\frac{1}{2}", "-0", "0"))
    assert [(g.answer, g.members, g.weight) for g in groups] == [
        ("0.5", (0, 3), 2.0),
        ("7", (1, 4), 2.0),
        ("\\frac{1}{2}", (5,), 1.0),  # a task's check may grade LaTeX apart from 0.5
        ("-0", (6, 7), 2.0),
    ]
    loose = group(cands("0.5", "1/2", "\\frac{1}{2}"), same=equivalent)  # a task may ask
    assert [g.members for g in loose] == [(0, 1, 2)]


def test_an_equation_is_not_a_vote_for_its_result() -> None:
    """core's `equivalent` merged '2 + 3 = 5' (graded wrong by the task) with '5' (right)."""
    groups = group(cands("2 + 3 = 5", "5", "5", "2 + 3 = 5", "2 + 3 = 5"))
    assert [(g.answer, g.count) for g in groups] == [("2 + 3 = 5", 3), ("5", 2)]


def test_majority_ties_go_to_the_first_seen_answer() -> None:
    top = majority(cands("8", "7", "7", "8"))
    assert top is not None and (top.answer, top.count) == ("8", 2)
    top = majority(cands(None, "7", "8", "8", "7"))
    assert top is not None and top.answer == "7"


def test_majority_of_nothing_is_none() -> None:
    assert majority([]) is None
    assert majority(cands(None, None)) is None
    assert vote_confidence(group(cands(None))) == 0.0


def test_weighted_majority_sums_weights_and_ties_go_first() -> None:
    c = cands("8", "8", "8", "7", "7")
    top = weighted_majority(c, [0.1, 0.1, 0.1, 0.9, 0.9])
    assert top is not None and top.answer == "7" and top.weight == pytest.approx(1.8)
    tie = weighted_majority(cands("9", "7"), [0.5, 0.5])
    assert tie is not None and tie.answer == "9"


def test_a_custom_equivalence_is_used() -> None:
    same_parity = lambda a, b: int(a) % 2 == int(b) % 2  # noqa: E731
    top = majority(cands("1", "2", "3", "4", "5"), same=same_parity)
    assert top is not None and (top.answer, top.members) == ("1", (0, 2, 4))


def test_frequent_groups_keep_answers_at_or_above_alpha() -> None:
    c = cands("7", "8", "7", "9", "8", "7", None, "8")  # 7: 3/8, 8: 3/8, 9: 1/8
    assert [g.answer for g in frequent_groups(c, 0.375)] == ["7", "8"]
    assert [g.answer for g in frequent_groups(c, 0.1)] == ["7", "8", "9"]
    assert frequent_groups(c, 0.5) == []
    assert frequent_groups([], 0.1) == []


def _beta_tail(a: int, b: int, steps: int = 20_000) -> float:
    """P(X > 1/2) for X ~ Beta(a, b) by midpoint-rule integration of the density."""
    log_norm = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    h = 0.5 / steps
    xs = (0.5 + (i + 0.5) * h for i in range(steps))
    density = (math.exp(log_norm + (a - 1) * math.log(x) + (b - 1) * math.log1p(-x)) for x in xs)
    return sum(density) * h


@pytest.mark.parametrize(("top", "second"), [(0, 0), (1, 0), (3, 1), (5, 5), (9, 2), (20, 14)])
def test_beta_confidence_matches_numeric_integration(top: int, second: int) -> None:
    assert beta_confidence(top, second) == pytest.approx(_beta_tail(top + 1, second + 1), abs=1e-6)


def test_beta_confidence_values_of_the_adaptive_rule() -> None:
    assert beta_confidence(0, 0) == 0.5
    assert beta_confidence(4, 0) == 1 - 2**-5  # 4 unanimous votes pass 0.95
    assert beta_confidence(3, 0) < 0.95


@given(st.integers(0, 40), st.integers(0, 40))
def test_beta_confidence_is_monotone_and_symmetric(top: int, second: int) -> None:
    p = beta_confidence(top, second)
    assert 0 < p < 1
    assert beta_confidence(top + 1, second) > p > beta_confidence(top, second + 1)
    assert p + beta_confidence(second, top) == pytest.approx(1.0)


def test_vote_confidence_uses_the_two_largest_groups() -> None:
    groups = group(cands("7", "8", "7", "9", "7", "8"))  # 3, 2, 1
    assert vote_confidence(groups) == beta_confidence(3, 2)
    assert vote_confidence(group(cands("7", "7"))) == beta_confidence(2, 0)


@given(st.lists(st.sampled_from(["1", "2", "3", None]), max_size=30))
def test_the_majority_has_the_most_votes_and_appears_first(answers: list[str | None]) -> None:
    c = cands(*answers)
    top = majority(c)
    counted = [a for a in answers if a is not None]
    if not counted:
        assert top is None
        return
    assert top is not None
    best = max(counted.count(a) for a in counted)
    assert top.count == best
    assert top.answer == next(a for a in counted if counted.count(a) == best)
    assert leader(group(c)) == top


# -- vote weights: its_hub's certainty weighting -------------------------------------------


def its_hub_weight(score: float) -> float:
    """its_hub's `_scores_to_weights` for a higher-is-better score: exp, non-finite -> 0."""
    w = math.exp(score) if score < 700 else math.inf
    return w if math.isfinite(w) else 0.0


@pytest.mark.parametrize("score", [-0.01, -0.5, -3.0, -40.0, 0.0])
def test_a_log_probability_weighs_exp_of_itself_as_its_hub_does(score: float) -> None:
    assert vote_weight(score, "exp") == pytest.approx(its_hub_weight(score))


def test_likelihood_weights_elect_the_majority_not_the_minority() -> None:
    """15 samples answering 42 at mean log-probability -0.5 and one answering 99 at -3: raw
    log-probabilities as weights (-7.5 against -3) elected 99."""
    c = cands(*["42"] * 15, "99")
    scores = [-0.5] * 15 + [-3.0]
    raw = weighted_majority(c, scores)
    assert raw is not None and raw.answer == "99"  # what summing log-probabilities did
    top = weighted_majority(c, [vote_weight(s, "exp") for s in scores])
    assert top is not None and top.answer == "42"
    assert top.weight == pytest.approx(15 * math.exp(-0.5))


@pytest.mark.parametrize(
    ("score", "how", "weight"),
    [
        (0.9, "score", 0.9),  # a probability (judge, oracle, PRM) weighs as it is
        (0.0, "score", 0.0),
        (-0.2, "score", 0.0),  # noise below 0 floors at 0: no negative votes
        (7.5, "score", 7.5),  # entropy-like: self-certainty, a KL from uniform in nats
        (-math.log(2), "exp", 0.5),  # a log-probability: exp
        (-math.inf, "exp", 0.0),  # no tokens (or no logprobs): the least certain
        (math.inf, "score", 0.0),  # an infinite score never wins a vote
        (math.inf, "exp", 0.0),
        (math.nan, "score", 0.0),
        (math.nan, "exp", 0.0),
        (1e6, "exp", 0.0),  # overflows to inf: weighs 0 as its_hub's does
    ],
)
def test_vote_weights_are_finite_non_negative_and_monotone(
    score: float, how: str, weight: float
) -> None:
    got = vote_weight(score, how)
    assert got == pytest.approx(weight) and got >= 0 and math.isfinite(got)


@given(st.floats(-50, 50), st.floats(-50, 50), st.sampled_from(["score", "exp"]))
def test_vote_weights_never_reverse_confidence(a: float, b: float, how: str) -> None:
    lo, hi = sorted((a, b))
    assert 0 <= vote_weight(lo, how) <= vote_weight(hi, how)


def test_an_infinite_score_no_longer_wins_the_vote() -> None:
    c = cands("7", "7", "8")
    top = weighted_majority(c, [vote_weight(s) for s in (0.9, 0.8, math.inf)])
    assert top is not None and top.answer == "7"


def test_an_unknown_weighting_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown weighting 'log'"):
        vote_weight(0.5, "log")


# -- stopping rules, with its_hub's formulas ------------------------------------------------


@pytest.mark.parametrize(("v1", "v2"), [(1, 0), (2, 0), (3, 0), (4, 0), (5, 2), (12, 7), (30, 1)])
def test_beta_confidence_is_its_hubs_stopping_probability(v1: int, v2: int) -> None:
    from scipy.special import betainc

    assert beta_confidence(v1, v2) == pytest.approx(1.0 - float(betainc(v1 + 1, v2 + 1, 0.5)))


def test_agreement_is_the_leaders_share_of_every_sample() -> None:
    assert agreement(group(cands("7", "8", "7", "7")), 4) == 0.75  # its_hub stops at 0.75
    assert agreement(group(cands("7", None)), 2) == 0.5  # unanswered samples count
    assert agreement([], 0) == 0.0
