"""Step-level search on the real embedded model with the exact step checker."""

from __future__ import annotations

import asyncio

import pytest

from testtime.strategies.base import STRATEGIES
from testtime.strategies.run import build_task, build_verifier, solve_many

pytestmark = pytest.mark.integration


def test_beam_search_runs_step_by_step_and_reuses_the_prompt(generator) -> None:
    task = build_task("arithmetic", {"size": 4})
    spec = STRATEGIES.spec("beam_search", {"n": 4, "width": 2, "max_steps": 3, "step_tokens": 48})
    verifier = build_verifier("step_check")
    results = asyncio.run(
        solve_many(task.problems(), spec, generator, task=task, verifier=verifier)
    )
    assert len(results) == 4 and all(r.correct is not None for r in results)
    for r in results:
        assert r.trace is not None and r.trace["rounds"]
        assert all(c.steps for c in r.candidates)  # every candidate knows its steps
        assert all(set(c.scores) == {"step_check"} for c in r.candidates)
        children = [c for c in r.candidates if c.parent is not None]
        for c in children:  # a child continues its parent's text, step by step
            parent = r.candidates[c.parent]
            assert c.text.startswith(parent.text) and c.steps[:-1] == parent.steps
    cost = sum((r.cost for r in results[1:]), results[0].cost)
    assert cost.cached_prompt_tokens > cost.prompt_tokens  # parents' text served from cache


def test_particle_filtering_runs_on_the_real_model(generator) -> None:
    task = build_task("arithmetic", {"size": 3})
    spec = STRATEGIES.spec(
        "particle_filtering", {"particles": 4, "max_steps": 3, "step_tokens": 48, "entropic": True}
    )
    results = asyncio.run(
        solve_many(
            task.problems(), spec, generator, task=task, verifier=build_verifier("step_check")
        )
    )
    for r in results:
        assert r.correct is not None and r.trace is not None and r.trace["steps"]
        for step in r.trace["steps"]:
            assert abs(sum(step["weights"]) - 1.0) < 1e-9
        assert r.cost.samples == len(r.candidates) > 0
