"""Voting in core: grouping by equivalence, ties to the first seen, the Beta stopping rule."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from testtime.core.types import Candidate
from testtime.core.voting import (
    beta_confidence,
    frequent_groups,
    group,
    leader,
    majority,
    vote_confidence,
    weighted_majority,
)


def cands(*answers: str | None) -> list[Candidate]:
    return [Candidate(f"Answer: {a}", a, id=i) for i, a in enumerate(answers)]


def test_group_merges_equivalent_answers_in_first_seen_order() -> None:
    groups = group(cands("0.5", "7", None, "1/2", "7.0", "\\frac{1}{2}"))
    assert [(g.answer, g.members, g.weight) for g in groups] == [
        ("0.5", (0, 3, 5), 3.0),
        ("7", (1, 4), 2.0),
    ]


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
