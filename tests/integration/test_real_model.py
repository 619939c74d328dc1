"""The real embedded model (SmolLM2-135M) through several strategies, via the library and CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import testtime.strategies  # noqa: F401  (registers strategies)
from testtime.core.budget import Budget
from testtime.strategies.base import STRATEGIES
from testtime.strategies.run import build_task, build_verifier, solve_many

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("strategy", "params", "verifier"),
    [
        ("single", {"temperature": 0.0}, None),
        ("self_consistency", {"n": 4}, None),
        ("best_of_n", {"n": 4}, "self_certainty"),
        ("weighted_majority", {"n": 4}, "self_certainty"),
        ("adaptive_consistency", {"max_samples": 6}, None),
        ("first_finish", {"n": 3}, None),
    ],
)
async def test_strategy_runs_on_the_real_model(generator, strategy, params, verifier) -> None:
    task = build_task("arithmetic", {"size": 3})
    problems = list(task.problems())
    spec = STRATEGIES.spec(strategy, params)
    ver = build_verifier(verifier, task=task, generator=generator) if verifier else None
    results = await solve_many(problems, spec, generator, task=task, verifier=ver, max_tokens=64)
    assert len(results) == 3
    for r in results:
        assert r.correct is not None
        assert r.cost.samples >= 1
        assert r.cost.generated_tokens > 0
        assert r.cost.flops > 0
        assert len(r.candidates) == r.cost.samples
        if verifier:
            assert all(verifier in c.scores for c in r.candidates)


async def test_budget_in_tokens_is_never_exceeded(generator) -> None:
    task = build_task("arithmetic", {"size": 2})
    spec = STRATEGIES.spec("self_consistency", {"n": 16})
    results = await solve_many(
        list(task.problems()), spec, generator, task=task, budget=Budget(tokens=200), max_tokens=64
    )
    for r in results:
        assert r.cost.generated_tokens <= 200
        assert r.budget_exhausted


def test_cli_json_on_the_real_model() -> None:
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "testtime",
            "run",
            "What is 2 + 3? Give only the number.",
            "--answer",
            "5",
            "-s",
            "self_consistency",
            "-p",
            "n=3",
            "--max-tokens",
            "32",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["cost"]["samples"] == 3
    assert data["correct"] in (True, False)
    assert data["answer"] is None or isinstance(data["answer"], str)
