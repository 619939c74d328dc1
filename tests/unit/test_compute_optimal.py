"""compute_optimal builds the verifiers its policy names through the one build path, once per
generator and verifier, however many problems run at once and however the policy writes them."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

import testtime.strategies  # noqa: F401  (registers the strategies)
from testtime.core.registry import Spec
from testtime.core.types import Problem
from testtime.generators.fake import FakeGenerator
from testtime.strategies.base import STRATEGIES
from testtime.strategies.policy import Choice, Pilot, Policy, save_policy
from testtime.strategies.run import solve_many
from testtime.verifiers.base import VERIFIERS

PROBLEMS = [
    Problem.from_prompt(f"What is {i} + 1?", answer=str(i + 1), id=f"q{i}") for i in range(6)
]


def policy_file(folder: Path) -> str:
    """A pilot scored by self-certainty (written with its parameters), then self-consistency
    with the same verifier written without them: one verifier either way."""
    sc = {"name": "self_consistency", "params": {"n": 4, "temperature": 0.8, "top_p": 1.0}}
    scorer = {"name": "self_certainty"}
    policy = Policy(
        model="fake", fingerprint="f", n_params=FakeGenerator().n_params, task={}, run="r",
        trained_on=(), max_tokens=64, axis="samples",
        pilot=Pilot(2, 0.8, 1.0, "score", {**scorer, "params": {}}),
        edges=(), frontiers=((Choice("sc4", sc, scorer, 4, 4.0, 0.9),),),
    )  # fmt: skip
    path = folder / "policy.json"
    save_policy(policy, path)
    return str(path)


def test_the_policys_verifier_is_built_once_per_generator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[Spec] = []
    build = VERIFIERS.build

    def counting(spec: Spec, deps: Any) -> Any:
        built.append(spec)
        return build(spec, deps)

    monkeypatch.setattr(VERIFIERS, "build", counting)
    spec = STRATEGIES.spec("compute_optimal", {"policy": policy_file(tmp_path), "budget": 8})
    gen = FakeGenerator()
    for _ in range(2):  # all problems at once, then again
        results = asyncio.run(solve_many(PROBLEMS, spec, gen, max_tokens=64, concurrency=6))
        assert [r.trace and r.trace["choice"]["label"] for r in results] == ["sc4"] * 6
    assert [s.name for s in built] == ["self_certainty"]
    asyncio.run(solve_many(PROBLEMS[:2], spec, FakeGenerator(), max_tokens=64))
    assert len(built) == 2  # another model: its own verifier
