"""A seconds budget on the embedded model: the engine ends the samples at the deadline and
the result says the budget ran out (seen before: "2 seconds" spent 21.3 s, not flagged)."""

from __future__ import annotations

import time
from typing import Any

import pytest

import testtime.strategies  # noqa: F401  (registers strategies)
from testtime.core.budget import Budget
from testtime.core.types import Problem
from testtime.strategies.base import STRATEGIES
from testtime.strategies.run import solve

pytestmark = pytest.mark.integration


async def test_two_seconds_are_two_seconds(generator: Any) -> None:
    problem = Problem.from_prompt("Write a long story about a lighthouse keeper.")
    spec = STRATEGIES.spec("self_consistency", {"n": 16})
    started = time.monotonic()
    result = await solve(problem, spec, generator, budget=Budget.parse("2 seconds"), max_tokens=512)
    took = time.monotonic() - started
    assert result.budget_exhausted
    assert took < 2.0 + 1.5, f"a 2-second budget took {took:.1f} s"  # one decode step past it
    assert result.candidates and all(
        c.completion is not None and c.completion.finish_reason == "length"
        for c in result.candidates
    )
