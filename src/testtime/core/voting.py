"""Voting over answers, written once: grouping by the task's notion of the same answer,
majority, weighted majority (verifier scores turned into vote weights), best-of-majority
filtering, and the two stopping rules of adaptive self-consistency (Beta, doubling).

Ties between answer groups go to the group seen first (the lowest candidate index), so a
vote is deterministic given the sample order. Candidates without an answer never vote.
Answers group by `same` (default: core's canonical form, every task's default notion).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from testtime.core.answers import same_answer
from testtime.core.types import Candidate

Equivalence = Callable[[str, str], bool]
Weighting = Literal["score", "exp"]
WEIGHTINGS: tuple[str, ...] = ("score", "exp")
_EXP_MAX = math.log(sys.float_info.max)  # exp of more overflows a float


@dataclass(frozen=True, slots=True)
class Group:
    """Candidates whose answers are the same; `answer` is the first one seen."""

    answer: str
    members: tuple[int, ...]  # indices into the candidate list
    weight: float

    @property
    def count(self) -> int:
        return len(self.members)


def group(
    candidates: Sequence[Candidate],
    weights: Sequence[float] | None = None,
    same: Equivalence = same_answer,
) -> list[Group]:
    """Group candidates by `same` answers in first-seen order, summing `weights` (default 1)."""
    answers: list[str] = []
    members: list[list[int]] = []
    totals: list[float] = []
    for i, c in enumerate(candidates):
        if c.answer is None:
            continue
        w = 1.0 if weights is None else float(weights[i])
        for g, rep in enumerate(answers):
            if same(rep, c.answer):
                members[g].append(i)
                totals[g] += w
                break
        else:
            answers.append(c.answer)
            members.append([i])
            totals.append(w)
    return [Group(a, tuple(m), t) for a, m, t in zip(answers, members, totals, strict=True)]


def leader(groups: Sequence[Group]) -> Group | None:
    """The heaviest group; ties go to the group seen first."""
    best: Group | None = None
    for g in groups:  # strict '>' keeps the first-seen group on ties
        if best is None or g.weight > best.weight:
            best = g
    return best


def majority(candidates: Sequence[Candidate], same: Equivalence = same_answer) -> Group | None:
    """Plurality vote (self-consistency); None when no candidate has an answer."""
    return leader(group(candidates, None, same))


def weighted_majority(
    candidates: Sequence[Candidate], weights: Sequence[float], same: Equivalence = same_answer
) -> Group | None:
    """Answer with the largest summed weight (Li et al. 2023; Wu et al. 2024); `weights`
    come from `vote_weight`, so they are never negative."""
    return leader(group(candidates, weights, same))


def vote_weight(score: float, how: str = "score") -> float:
    """A verifier score as a vote weight: never negative, monotone in the verifier's
    confidence, and 0 when the score is not finite (a NaN or an infinity never wins a vote).

    `score`: the score already is a confidence >= 0 (a probability, a 0/1 check, a KL
    from uniform in nats), used as it is, negatives floored at 0. `exp`: the score is a
    log-probability (<= 0; a mean token log-probability), weighed exp(score), the
    geometric-mean token probability (its_hub's certainty weighting). A sum of raw
    log-probabilities would punish agreement: 15 votes at -0.5 lose to one at -3.
    """
    if not math.isfinite(score):
        return 0.0
    if how == "exp":
        return math.exp(score) if score < _EXP_MAX else 0.0  # overflow: not finite, as its_hub
    if how == "score":
        return max(score, 0.0)
    raise ValueError(f"unknown weighting {how!r}; known: {', '.join(WEIGHTINGS)}")


def frequent_groups(
    candidates: Sequence[Candidate], alpha: float, same: Equivalence = same_answer
) -> list[Group]:
    """Groups whose empirical frequency among all candidates is at least `alpha`
    (the filter of best-of-majority, Di et al. 2025). Unanswered candidates count in the total.
    """
    total = len(candidates)
    if total == 0:
        return []
    return [g for g in group(candidates, None, same) if g.count / total >= alpha - 1e-12]


def beta_confidence(top: int, second: int) -> float:
    """P(p1 > p2) under Beta(top+1, second+1) for the two leading answers' shares
    (Aggarwal et al. 2023, Adaptive-Consistency): P(X > 1/2) for X ~ Beta(top+1, second+1).
    """
    a, b = top + 1, second + 1
    # for integer a, b: P(X > 1/2) = P(Binomial(a+b-1, 1/2) <= a-1), exactly
    n = a + b - 1
    return sum(math.comb(n, k) for k in range(a)) / 2.0**n


def vote_confidence(groups: Sequence[Group]) -> float:
    """Confidence that the current leader is the true mode (0 with no votes)."""
    counts = sorted((g.count for g in groups), reverse=True)
    if not counts:
        return 0.0
    return beta_confidence(counts[0], counts[1] if len(counts) > 1 else 0)


def agreement(groups: Sequence[Group], samples: int) -> float:
    """The leading answer's share of all `samples` (unanswered ones count in the total):
    the supermajority test of its_hub's doubling rule (0 with no samples)."""
    if samples <= 0:
        return 0.0
    return max((g.count for g in groups), default=0) / samples
