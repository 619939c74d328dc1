"""Public tests: score a program by the examples its problem states (its doctests), no gold.

AlphaCode (Li et al. 2022, "Competition-Level Code Generation with AlphaCode", section 4.5)
filters its samples by the example tests in the problem statement before anything else; here
the same tests rank instead of filter: a candidate's score is the fraction of the problem's
public examples (`CodeSpec.examples`) it passes in the sandbox, so best-of-N keeps a program
that passes them all and a weighted vote leans to programs that pass more. The hidden tests
are never read.

A candidate without code scores 0 without running. A problem that states no example gives
every candidate with code 0.5 (nothing tells them apart, so a weighted vote is a plain
majority over programs and best-of-N keeps the first), and runs nothing. Scoring costs the
sandbox seconds of the runs; a program given by several candidates runs once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from testtime.core.cost import Cost
from testtime.core.types import Candidate, Problem
from testtime.sandbox.problems import run_cases
from testtime.verifiers.base import Scores, Traits, Verifier, VerifierDeps, verifier
from testtime.verifiers.sandboxed import NEUTRAL, SandboxParams, code_spec, run_each


@dataclass(frozen=True)
class PublicTestsParams(SandboxParams):
    """Only the sandbox limits: the tests are the problem's own examples."""


class PublicTests(Verifier):
    """The fraction of the problem's public examples each candidate passes."""

    name = "public_tests"

    def __init__(self, params: PublicTestsParams = PublicTestsParams()) -> None:
        self.limits = params.limits

    async def score(self, problem: Problem, candidates: Sequence[Candidate]) -> Scores:
        spec = code_spec(problem, self.name)
        examples = spec.examples
        if not examples:
            return Scores(tuple(0.0 if c.answer is None else NEUTRAL for c in candidates))
        runs, seconds = await run_each(
            [c.answer for c in candidates],
            lambda code: run_cases(spec, code, examples, self.limits),
        )
        scores = (0.0 if r is None else r.passed / len(examples) for r in runs)
        return Scores(tuple(scores), Cost(sandbox_seconds=seconds))


@verifier("public_tests", PublicTestsParams, Traits())
def public_tests(params: PublicTestsParams, deps: VerifierDeps) -> Verifier:
    """The share of the problem's public examples (doctests) a program passes; no gold."""
    return PublicTests(params)
