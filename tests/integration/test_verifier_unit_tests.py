"""The `unit_tests` verifier in the real bubblewrap sandbox: partial credit per candidate,
each distinct program run once, the seconds charged, and what it refuses.

Where bwrap cannot run, these tests FAIL with the install hint (never a silent skip); set
TESTTIME_NO_SANDBOX_TESTS=1 only on a machine that cannot have it.
"""

from __future__ import annotations

import pytest

from testtime.core.errors import ConfigError
from testtime.core.types import Candidate, Message, Problem
from testtime.sandbox.problems import KEY, CodeSpec, parse_tests
from testtime.strategies.run import build_verifier
from testtime.verifiers.base import traits_of

pytestmark = pytest.mark.sandbox  # the real jail must work (tests/conftest.py)

TESTS = ["assert add(1, 2) == 3", "assert add(0, 0) == 0", "assert add(2, 2) > 3"]
RIGHT = "def add(a, b):\n    return a + b"
TIMES = "def add(a, b):\n    return a * b"  # add(1, 2) is 2: fails one case of three
LOOPS = "def add(a, b):\n    while True:\n        pass"


def problem() -> Problem:
    cases, script = parse_tests(TESTS, "add")
    spec = CodeSpec("add", cases, script)
    return Problem((Message("user", "Write add."),), id="add", metadata={KEY: spec})


async def test_each_candidate_scores_the_share_of_tests_its_code_passes() -> None:
    verifier = build_verifier("unit_tests", {"wall_seconds": 2.0})
    answers = [RIGHT, TIMES, None, RIGHT, LOOPS]
    scores = await verifier.score(problem(), [Candidate(f"#{i}", a) for i, a in enumerate(answers)])
    assert list(scores.values[:4]) == [1.0, pytest.approx(2 / 3), 0.0, 1.0]
    assert scores.values[4] == 0.0  # killed at its wall-clock limit: no test passed
    # three distinct programs ran (the repeat and the one without code did not), the loop
    # for its whole 2 s: every second is charged
    assert 2.0 <= scores.cost.sandbox_seconds < 2.0 + 3 * 1.0


async def test_a_problem_without_tests_is_refused_in_one_line() -> None:
    verifier = build_verifier("unit_tests")
    with pytest.raises(ConfigError, match="is not a code problem") as info:
        await verifier.score(Problem.from_prompt("What is 3 + 4?"), [Candidate("7", "7")])
    assert "\n" not in str(info.value)


def test_it_reads_the_tests_as_gold_and_says_they_are_all_it_reads() -> None:
    traits = traits_of("unit_tests")
    assert traits.reads_gold and traits.gold_is_tests
    assert not traits_of("oracle").gold_is_tests and not traits_of("math").gold_is_tests
