"""Running a diffusion strategy on one problem: the one entry point for the CLI, the lab
and tests, plus what "spend this many NFE" means for each strategy (its declared width)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import testtime.diffusion  # noqa: F401  (registers the strategies)
from testtime.core.budget import Budget
from testtime.core.registry import Spec
from testtime.core.types import Problem
from testtime.diffusion.base import DIFFUSION_STRATEGIES, Context, Labeler, Outcome, traits_of
from testtime.diffusion.denoisers import Denoiser, Reward


def strategy_spec(name: str, params: Mapping[str, Any] | None = None) -> Spec:
    """A diffusion strategy's validated record (unknown names and parameters refused)."""
    return DIFFUSION_STRATEGIES.spec(name, params)


def widen(spec: Spec, width: int) -> Spec:
    """The strategy with the parameter it declares as its width (n, particles, ...) set."""
    params = dataclasses.asdict(spec.params)
    return strategy_spec(spec.name, {**params, traits_of(spec.name).width: width})


def fill(spec: Spec, nfe: int, evals_per_call: int) -> Spec:
    """The strategy with its width set to as many full denoising passes as `nfe` buys, so
    that, under a Budget of `nfe`, each strategy spends (about) the same compute: the
    context's grants then trim whatever does not fit."""
    steps = int(dataclasses.asdict(spec.params)["steps"])
    return widen(spec, max(1, nfe // (steps * evals_per_call)))


def unit_nfe(spec: Spec, evals_per_call: int) -> int:
    """The NFE of the smallest piece of work the strategy can do (a budget below it is
    refused): one denoising pass, or one beam of path search."""
    from testtime.diffusion.search import PathParams, path_plan

    p = spec.params
    if isinstance(p, PathParams):
        first, rounds = path_plan(p.steps, p)
        return (first + p.branches * sum(b - a for a, b in rounds)) * evals_per_call
    return int(dataclasses.asdict(p)["steps"]) * evals_per_call


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
    keep_scored: bool = False,
) -> Outcome:
    """Run one diffusion strategy on one problem under a budget (`keep_scored`: keep every
    rewarded intermediate image, for a trace)."""
    ctx = Context(
        problem, denoiser, reward, spec=spec, budget=budget, seed=seed, judge=judge,
        max_batch=max_batch, keep_scored=keep_scored,
    )  # fmt: skip
    return DIFFUSION_STRATEGIES.build(spec, ctx)
