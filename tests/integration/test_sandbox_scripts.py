"""Assert-style tests (HumanEval's `check(candidate)`) compare inside the jail: the forgeries
that would make them pass without a right answer must not, in the real sandbox."""

from __future__ import annotations

import pytest

from testtime.sandbox import Limits, Verdict, execute
from testtime.sandbox.problems import parse_tests

pytestmark = pytest.mark.sandbox  # the real jail must work (tests/conftest.py)

FAST = Limits(wall_seconds=3.0, cpu_seconds=3, memory_bytes=512 << 20, file_bytes=1 << 20)
CHECK = """
def check(candidate):
    assert abs(candidate(1.5) - 3.0) < 1e-9
    assert candidate(2) == 4
"""


def run(solution: str) -> Verdict:
    cases, script = parse_tests(CHECK, "double")
    return execute(solution, list(cases), FAST, script=script, entry="double").verdict


def test_a_right_solution_passes_and_a_wrong_one_fails() -> None:
    assert run("def double(x):\n    return 2 * x\n") is Verdict.PASSED
    assert run("def double(x):\n    return x + 1\n") is Verdict.FAILED


def test_an_eq_that_always_says_true_is_refused() -> None:
    lying = (
        "class Yes(float):\n"
        "    def __eq__(self, other): return True\n"
        "    def __sub__(self, other): return 0.0\n"
        "def double(x):\n    return Yes(0)\n"
    )
    assert run(lying) is Verdict.FAILED


def test_patching_builtins_does_not_reach_the_tests() -> None:
    patched = (
        "import builtins\n"
        "builtins.abs = lambda x: 0\n"
        "def double(x):\n    return 4 if x == 2 else 0\n"
    )
    assert run(patched) is Verdict.FAILED


def test_exiting_before_the_tests_fails() -> None:
    assert run("import os\nos._exit(0)\ndef double(x):\n    return 2 * x\n") is Verdict.FAILED


def test_a_missing_entry_point_fails_with_its_name() -> None:
    _, script = parse_tests(CHECK, "double")
    got = execute("def triple(x):\n    return 3 * x\n", [], FAST, script=script, entry="double")
    assert got.verdict is Verdict.FAILED and "double" in got.detail
