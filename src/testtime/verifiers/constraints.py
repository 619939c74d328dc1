"""The exact checker of verifiable instructions: a candidate's score is the fraction of its
problem's constraints (`Problem.metadata["constraints"]`, as the `instructions` task draws
them) that its whole reply follows, strictly by default (IFEval's checkers, core/constraints).

With best-of-N it is "best-of-N with the exact checker": the ceiling a judge or a reward
model is compared against on that task. Its partial credit ranks a reply that follows two
of three constraints above one that follows none, which plain pass/fail (the oracle) cannot.
It reads what the prompt asks for, not a hidden answer; it is still marked as reading the
gold, since it is the task's own check. It costs nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from testtime.core import constraints as cs
from testtime.core.errors import ConfigError
from testtime.core.registry import Params
from testtime.core.types import Candidate, Problem
from testtime.verifiers.base import Scores, Traits, Verifier, VerifierDeps, verifier

KEY = "constraints"  # the metadata key the instructions task writes


@dataclass(frozen=True)
class ConstraintsParams(Params):
    mode: cs.Mode = "strict"  # IFEval's strict or loose checking


class Constraints(Verifier):
    """The fraction of the problem's constraints each candidate's reply follows."""

    name = "constraints"

    def __init__(self, mode: cs.Mode = "strict") -> None:
        self.mode = mode

    async def score(self, problem: Problem, candidates: Sequence[Candidate]) -> Scores:
        drawn = problem.metadata.get(KEY)
        if not drawn:
            raise ConfigError(
                f"verifier 'constraints' scores problems that carry constraints, and problem "
                f"{problem.id!r} has none; use it with --task instructions, or choose another "
                "verifier"
            )
        values = []
        for c in candidates:
            got = cs.results(c.text.strip(), drawn, self.mode)
            values.append(sum(got) / len(got))
        return Scores(tuple(values))


@verifier("constraints", ConstraintsParams, Traits(reads_gold=True))
def constraints(params: ConstraintsParams, deps: VerifierDeps) -> Verifier:
    """The fraction of a problem's verifiable instructions a reply follows (exact)."""
    return Constraints(params.mode)
