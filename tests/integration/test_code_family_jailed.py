"""Every `pyfunc` reference solution passes its own hidden tests in the real sandbox, and
wrong solutions (one step left out, a constant, the right values of another type) fail.
Where bwrap cannot run this FAILS with the install hint; TESTTIME_NO_SANDBOX_TESTS=1 leaves
it out on a machine that cannot have it."""

from __future__ import annotations

import asyncio

import pytest

from testtime.tasks.code_family import MAX_LEVEL, Chain, PyfuncTask, generate

pytestmark = pytest.mark.sandbox  # the real jail must work (tests/conftest.py)

SEEDS = (0, 1, 2)
PER_LEVEL = 8  # problems per level and seed


def without_step(chain: Chain, i: int) -> str:
    """The reference with step i's line left out."""
    lines = chain.reference.splitlines(keepends=True)
    return "".join(lines[: 2 + i] + lines[3 + i :])


def as_tuple(chain: Chain) -> str:
    """The reference returning its value in a tuple (right elements, wrong type)."""
    return chain.reference.replace("    return v\n", "    return (v,)\n")


async def grade_level(level: int) -> list[tuple[str, tuple[bool, ...]]]:
    graded = []
    for seed in SEEDS:
        task = PyfuncTask(level, PER_LEVEL, seed)
        for index, problem in enumerate(task.problems()):
            chain, spec = generate(level, seed, index)
            assert problem.metadata["reference"] == chain.reference
            first = spec.examples[0].expected
            answers = [chain.reference, as_tuple(chain), f"def f(a):\n    return {first!r}\n"]
            answers += [without_step(chain, i) for i in range(level)]
            verdicts, cost = await task.grade(problem, answers)
            assert cost.sandbox_seconds > 0
            graded.append((chain.reference, verdicts))
    return graded


@pytest.mark.parametrize("level", range(1, MAX_LEVEL + 1))
def test_references_pass_and_wrong_solutions_fail_in_the_jail(level: int) -> None:
    for reference, verdicts in asyncio.run(grade_level(level)):
        assert verdicts[0], f"the reference fails its own tests:\n{reference}"
        assert not any(verdicts[1:]), f"a wrong solution passed ({verdicts}):\n{reference}"
