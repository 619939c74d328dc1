"""An exact process verifier for arithmetic: every equation a step states is checked.

"12 * 3 = 36" holds, "9 x 2 = 19" does not. A step scores 1.0 while every equation stated
so far (in it and the steps before) holds, 0.0 from the first false one on: the
probability that the prefix is still right, as a PRM estimates it, but known exactly. It
runs no model, so it costs nothing, and its accuracy as a verifier can be measured against
the oracle in the lab (a right chain can still end in a wrong answer).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from testtime.core.arith import equations
from testtime.core.registry import Params
from testtime.core.steps import Aggregate, SplitMode, StepSplitter
from testtime.core.types import Candidate, Problem
from testtime.verifiers.base import ProcessVerifier, StepScores, Verifier, VerifierDeps, verifier


@dataclass(frozen=True)
class StepCheckParams(Params):
    split: SplitMode = "blank_line"  # how a text is cut into steps
    pattern: str = ""  # the separator for split=regex or split=stop
    aggregate: Aggregate = "last"  # the outcome score from the step scores

    def validate(self) -> None:
        StepSplitter(self.split, self.pattern)  # a bad pattern fails here


class StepCheck(ProcessVerifier):
    """1.0 per step while all equations so far hold, then 0.0."""

    name = "step_check"

    async def score_steps(self, problem: Problem, candidates: Sequence[Candidate]) -> StepScores:
        out = []
        for c in candidates:
            ok, scores = True, []
            for step in self.steps(c):
                ok = ok and all(e.holds for e in equations(step))
                scores.append(1.0 if ok else 0.0)
            out.append(tuple(scores))
        return StepScores(tuple(out))


@verifier("step_check", StepCheckParams)
def step_check(params: StepCheckParams, deps: VerifierDeps) -> Verifier:
    """Exact arithmetic step checker (a programmatic PRM): 1 while every stated equation holds."""
    return StepCheck(StepSplitter(params.split, params.pattern), params.aggregate)
