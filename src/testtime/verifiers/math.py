"""Math-aware equivalence of a candidate's answer with the problem's gold answer.

Answers are compared exactly, numerically, then symbolically with math-verify (LaTeX
forms like \\frac{1}{2} = 0.5). Only the extracted answer is compared, never the whole
text, which would match numbers restated from the question; and only plain math reaches
math-verify, so code or prose never matches (`core.answers.plain_math`). For reasoning-gym tasks
prefer `oracle`, which uses the dataset's own scorer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from testtime.core.answers import Extractor, equivalent, extract
from testtime.core.registry import Params
from testtime.core.types import Candidate, Problem
from testtime.verifiers.base import Scores, Traits, Verifier, VerifierDeps, verifier


@dataclass(frozen=True)
class MathParams(Params):
    extractor: Extractor = "auto"  # reads an answer from candidates that carry none


class MathVerifier(Verifier):
    """1.0 when the answer is equivalent to the gold answer, else 0.0 (also without gold)."""

    name = "math"

    def __init__(self, extractor: str = "auto") -> None:
        self.extractor = extractor

    async def score(self, problem: Problem, candidates: Sequence[Candidate]) -> Scores:
        return Scores(tuple(self._one(problem, c) for c in candidates))

    def _one(self, problem: Problem, c: Candidate) -> float:
        answer = c.answer if c.answer is not None else extract(c.text, self.extractor)
        if answer is None or problem.answer is None:
            return 0.0
        return 1.0 if equivalent(answer, problem.answer) else 0.0


@verifier("math", MathParams, Traits(reads_gold=True))
def math_verifier(params: MathParams, deps: VerifierDeps) -> Verifier:
    """math-verify equivalence of the extracted answer with the gold answer."""
    return MathVerifier(params.extractor)
