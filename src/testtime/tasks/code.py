"""What every code task shares: a solution is the code of a completion, judged by the
problem's hidden tests in the sandbox.

A code task's problems carry a `CodeSpec` (`sandbox.problems`) in `metadata["code"]`. The
answer of a completion is its code (`extract_code`); `check` runs the hidden tests in the
jail; `grade` runs many answers concurrently, off the event loop, and charges the sandbox
seconds. Votes group programs by their syntax tree (comments and layout aside), which never
merges two programs the tests could tell apart; grouping by behaviour is a verifier's job
(`mbr_exec`).
"""

from __future__ import annotations

import ast
import asyncio
from collections.abc import Sequence

from testtime.core.cost import Cost
from testtime.core.types import Message, Problem
from testtime.sandbox import Limits, Verdict, execute
from testtime.sandbox.problems import KEY, CodeSpec, extract_code, program, run_hidden, spec_of
from testtime.tasks.base import Task

INSTRUCTION = (
    "Write the Python function `{entry}` described below. Answer with the whole function "
    "in one ```python code block.\n\n{description}"
)


class CodeTask(Task):
    """Problems whose answer is a Python function, graded by hidden tests in the sandbox."""

    name = "code"

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()

    def extract(self, text: str) -> str | None:
        return extract_code(text)

    def graded(self, problem: Problem) -> bool:
        return spec_of(problem) is not None

    def check(self, problem: Problem, answer: str | None) -> bool:
        """Whether the hidden tests pass (blocking: `grade` is the way inside a run)."""
        spec = spec_of(problem)
        if spec is None or answer is None:
            return False
        run = execute(
            program(spec, answer),
            list(spec.cases),
            self.limits,
            script=spec.script,
            entry=spec.entry,
        )
        return run.verdict is Verdict.PASSED

    async def grade(
        self, problem: Problem, answers: Sequence[str | None]
    ) -> tuple[tuple[bool, ...], Cost]:
        spec = spec_of(problem)
        if spec is None:
            return tuple(False for _ in answers), Cost()
        runs = await asyncio.gather(*(self._run(spec, a) for a in answers))
        seconds = sum(r[1] for r in runs)
        return tuple(r[0] for r in runs), Cost(sandbox_seconds=seconds)

    async def _run(self, spec: CodeSpec, answer: str | None) -> tuple[bool, float]:
        if answer is None:
            return False, 0.0  # no code block: fails without running anything
        run = await run_hidden(spec, answer, self.limits)
        return run.verdict is Verdict.PASSED, run.seconds

    @staticmethod
    def canonical(answer: str) -> str:
        """The program's syntax tree as source: comments and layout do not split a vote."""
        try:
            return ast.unparse(ast.parse(answer))
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return answer.strip()


def code_problem(spec: CodeSpec, description: str, id: str) -> Problem:
    """A code problem asking for `spec.entry` as described, with the spec on its metadata."""
    prompt = INSTRUCTION.format(entry=spec.entry, description=description.strip())
    return Problem((Message("user", prompt),), id=id, metadata={KEY: spec})
