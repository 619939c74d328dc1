"""The oracle: the task's own gold check, scoring 1.0 for a correct answer and 0.0 otherwise.

It measures coverage (would a perfect verifier have found a right answer among the
samples?), the ceiling every real verifier is compared against. It costs nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from testtime.core.registry import Params
from testtime.core.types import Candidate, Problem
from testtime.verifiers.base import (
    Checker,
    Grader,
    Scores,
    Traits,
    Verifier,
    VerifierDeps,
    gold_check,
    verifier,
)


@dataclass(frozen=True)
class OracleParams(Params):
    """The oracle takes no parameters: the task decides what is correct."""


class Oracle(Verifier):
    """1.0 when the task's check accepts the candidate's answer, else 0.0."""

    name = "oracle"

    def __init__(self, check: Checker, grade: Grader | None = None) -> None:
        self.check = check
        self.grade = grade

    async def score(self, problem: Problem, candidates: Sequence[Candidate]) -> Scores:
        if self.grade is not None:  # checks that run code: concurrently, sandbox time charged
            right, cost = await self.grade(problem, [c.answer for c in candidates])
            return Scores(tuple(1.0 if r else 0.0 for r in right), cost)
        return Scores(tuple(1.0 if self.check(problem, c.answer) else 0.0 for c in candidates))


@verifier("oracle", OracleParams, Traits(reads_gold=True))
def oracle(params: Params, deps: VerifierDeps) -> Verifier:
    """The task's gold check (1 correct, 0 not): a perfect verifier, for coverage."""
    remedy = (
        "run it with a task that has answers (e.g. --task arithmetic), or choose a verifier "
        "that needs none (self_certainty, likelihood, judge)"
    )
    return Oracle(gold_check(deps, "'oracle'", remedy), deps.grade)
