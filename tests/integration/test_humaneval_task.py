"""HumanEval through the real sandbox: every canonical solution passes its problem's hidden
tests (as converted: cases compared outside the jail, or the whole check as a script), and a wrong
solution fails every problem. 328 jails, about 10 s on two cores."""

from __future__ import annotations

import asyncio
import time

import pytest

from testtime.sandbox.problems import spec_of
from testtime.tasks.humaneval import HumanEvalTask, records

pytestmark = pytest.mark.sandbox  # the real jail must work (tests/conftest.py)

WRONG = "def f(*a):\n    return None\n"


def test_every_canonical_solution_passes_and_a_wrong_one_fails_every_problem() -> None:
    task = HumanEvalTask()
    solutions = {r["task_id"]: r["prompt"] + r["canonical_solution"] for r in records()}
    problems = task.problems()
    assert len(problems) == 164 and all(spec_of(p) is not None for p in problems)

    async def grade_all() -> list[tuple[bool, ...]]:
        runs = (task.grade(p, [solutions[p.id], WRONG]) for p in problems)
        return [graded for graded, _ in await asyncio.gather(*runs)]

    start = time.monotonic()
    graded = dict(zip((p.id for p in problems), asyncio.run(grade_all()), strict=True))
    seconds = time.monotonic() - start
    assert [i for i, g in graded.items() if not g[0]] == [], "canonical solutions that failed"
    assert [i for i, g in graded.items() if g[1]] == [], "problems a wrong solution passed"
    print(f"328 HumanEval gradings in {seconds:.1f} s")


def test_every_public_example_holds_for_the_canonical_solution() -> None:
    """The examples a verifier may read (doctests and inline `f(x) => y` lines) are true:
    the canonical solution passes every one of them, on the 137 problems that state some."""
    from testtime.sandbox.problems import run_cases

    solutions = {r["task_id"]: r["prompt"] + r["canonical_solution"] for r in records()}
    shown = [p for p in HumanEvalTask().problems() if spec_of(p).examples]  # type: ignore[union-attr]
    assert len(shown) >= 130

    async def run_all() -> list[str]:
        runs = await asyncio.gather(
            *(run_cases(s, solutions[p.id], s.examples) for p in shown if (s := spec_of(p)))
        )
        return [
            f"{p.id}: {r.detail}" for p, r in zip(shown, runs, strict=True) if r.passed < r.total
        ]

    assert asyncio.run(run_all()) == []
