"""The problem's own tests as a verifier: the share of them each candidate's code passes.

Where the oracle says pass or fail, this gives partial credit (3 of 4 tests pass: 0.75), so
best-of-N prefers the nearest miss when no candidate passes everything. Each distinct
program runs once in the sandbox with the problem's tests (its `CodeSpec`: the cases, then
the assert script as one test), all at once, off the event loop; the wall seconds they ran
are charged as `sandbox_seconds`. A candidate without code scores 0 and runs nothing.

It reads the problem's tests, which for a benchmark are its hidden tests, so it is a gold
reader (`reads_gold`): the lab treats it as the oracle's kin and no learned policy uses it.
It declares `gold_is_tests` too: its gold is nothing but those tests, so a server request
that brings its own tests (`testtime.tests`) may use it, because there the tests are the
user's own, not a benchmark's answers. The server refuses every other gold reader.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from testtime.core.cost import Cost
from testtime.core.types import Candidate, Problem
from testtime.sandbox.problems import run_hidden
from testtime.verifiers.base import Scores, Traits, Verifier, VerifierDeps, verifier
from testtime.verifiers.sandboxed import SandboxParams, code_spec, run_each


@dataclass(frozen=True)
class UnitTestsParams(SandboxParams):
    """Only the sandbox limits: the tests are the problem's own."""


class UnitTests(Verifier):
    """passed / total of the problem's tests, per candidate."""

    name = "unit_tests"

    def __init__(self, params: UnitTestsParams = UnitTestsParams()) -> None:
        self.limits = params.limits

    async def score(self, problem: Problem, candidates: Sequence[Candidate]) -> Scores:
        spec = code_spec(problem, self.name)
        runs, seconds = await run_each(
            [c.answer for c in candidates], lambda code: run_hidden(spec, code, self.limits)
        )
        scores = (0.0 if r is None or not r.total else r.passed / r.total for r in runs)
        return Scores(tuple(scores), Cost(sandbox_seconds=seconds))


@verifier("unit_tests", UnitTestsParams, Traits(reads_gold=True, gold_is_tests=True))
def unit_tests(params: UnitTestsParams, deps: VerifierDeps) -> Verifier:
    """The share of the problem's own tests a program passes, run in the sandbox."""
    return UnitTests(params)
