"""Voting over answers, written once: grouping by the task's notion of the same answer,
majority, weighted majority (verifier scores turned into vote weights), best-of-majority
filtering, the two stopping rules of adaptive self-consistency (Beta, doubling), and what
happens when a vote decides nothing because every sample is its own group (free text).

Ties between answer groups go to the group seen first (the lowest candidate index), so a
vote is deterministic given the sample order. Candidates without an answer never vote.
Answers group by `same` (default: core's canonical form, every task's default notion).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, cast, get_args

from testtime.core.answers import same_answer
from testtime.core.errors import ConfigError
from testtime.core.tools import by_kind, is_call
from testtime.core.types import Candidate

Equivalence = Callable[[str, str], bool]
Weighting = Literal["score", "exp"]
WEIGHTINGS: tuple[str, ...] = ("score", "exp")
SINGLETONS = "all singletons"  # a trace's "groups" when every answer is its own group
FIRST = "first"  # the selection among singletons when only sample order decided
Fallback = Literal["likelihood", "first"]  # rules that choose when a vote decided nothing
FALLBACKS: tuple[str, ...] = get_args(Fallback)
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
    """The heaviest group; ties go to the group seen first. Where some answers are tool
    calls and others text (`core.tools`), the kind is voted first, then the group within it."""
    calls = by_kind([g.answer for g in groups], [g.weight for g in groups])
    if calls is not None:
        groups = [g for g in groups if is_call(g.answer) == calls]
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


def all_singletons(groups: Sequence[Group]) -> bool:
    """Whether a vote decided nothing: two or more answers and no two samples agreeing (free
    text: every haiku is its own group), so only weights or sample order pick the leader."""
    return len(groups) > 1 and all(g.count == 1 for g in groups)


def singletons(groups: Sequence[Group], selection: str = FIRST) -> dict[str, str]:
    """What a voting strategy's trace says when `all_singletons`: `groups` is SINGLETONS and
    `selection` names what chose among them (FIRST: sample order, nothing else; "verifier":
    its scores; "confidence": the model's own); nothing otherwise. The CLI notes it and the
    server replaces a FIRST choice with its fallback rule (`fallback`)."""
    return {"groups": SINGLETONS, "selection": selection} if all_singletons(groups) else {}


def fallback(candidates: Sequence[Candidate], rule: str) -> tuple[Candidate | None, str]:
    """The answered candidate `rule` chooses when a vote decided nothing, and the rule that
    chose it. `likelihood`: the highest mean token log-probability (the policy's own
    certainty, free when the samples carry logprobs; ties: the first); a candidate without
    logprobs ranks last, and when none has them the choice is `first`, named so. `first`:
    the first answered candidate, as the vote's tie-break would."""
    fallback_rule(rule)
    answered = [c for c in candidates if c.answer is not None]
    if not answered:
        return None, FIRST
    means = [_mean_logprob(c) for c in answered]
    if rule == FIRST or all(m is None for m in means):
        return answered[0], FIRST
    ranked = [-math.inf if m is None or math.isnan(m) else m for m in means]
    return answered[ranked.index(max(ranked))], rule


def fallback_rule(name: str) -> Fallback:
    """`name` as a fallback rule; a ConfigError listing the rules when it is none."""
    if name not in FALLBACKS:
        raise ConfigError(
            f"unknown fallback {name!r}; choose one of: {', '.join(FALLBACKS)} (likelihood: "
            "the highest mean token logprob; first: the first sample)"
        )
    return cast(Fallback, name)


def _mean_logprob(c: Candidate) -> float | None:
    lp = c.completion.logprobs if c.completion is not None else None
    return sum(lp) / len(lp) if lp else None
