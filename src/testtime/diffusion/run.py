"""Running a diffusion strategy on one problem: the one entry point for the CLI, the lab
and tests."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import testtime.diffusion  # noqa: F401  (registers the strategies)
from testtime.core.budget import Budget
from testtime.core.registry import Spec
from testtime.core.types import Problem
from testtime.diffusion.base import DIFFUSION_STRATEGIES, Context, Labeler, Outcome
from testtime.diffusion.denoisers import Denoiser, Reward


def strategy_spec(name: str, params: Mapping[str, Any] | None = None) -> Spec:
    """A diffusion strategy's validated record (unknown names and parameters refused)."""
    return DIFFUSION_STRATEGIES.spec(name, params)


def solve(
    problem: Problem,
    spec: Spec,
    denoiser: Denoiser,
    reward: Reward,
    *,
    budget: Budget | None = None,
    seed: int = 0,
    judge: Labeler | None = None,
    max_batch: int = 256,
) -> Outcome:
    """Run one diffusion strategy on one problem under a budget."""
    ctx = Context(
        problem, denoiser, reward, spec=spec, budget=budget, seed=seed, judge=judge,
        max_batch=max_batch,
    )  # fmt: skip
    return DIFFUSION_STRATEGIES.get(spec.name).factory(ctx, spec.params)
