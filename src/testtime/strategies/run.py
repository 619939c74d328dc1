"""Running strategies: one problem, or many concurrently so the generator can batch them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import replace

from testtime.core.answers import same_answer
from testtime.core.budget import Budget
from testtime.core.registry import Spec
from testtime.core.types import Problem, Result
from testtime.generators.base import Generator
from testtime.strategies.base import STRATEGIES, Context
from testtime.tasks.base import Task
from testtime.verifiers.base import Verifier


async def solve(
    problem: Problem,
    strategy: Spec,
    generator: Generator,
    *,
    task: Task | None = None,
    verifier: Verifier | None = None,
    budget: Budget | None = None,
    max_tokens: int = 256,
    seed: int = 0,
) -> Result:
    """Run one strategy on one problem; mark the result correct/incorrect when gold exists."""
    ctx = Context(
        problem,
        generator,
        spec=strategy,
        verifier=verifier,
        budget=budget,
        extract=task.extract if task is not None else None,
        same=task.same if task is not None else same_answer,
        max_tokens=max_tokens,
        seed=seed,
    )
    fn = STRATEGIES.get(strategy.name).factory
    result = await fn(ctx, strategy.params)
    if task is not None and problem.answer is not None:
        result = replace(result, correct=task.check(problem, result.answer))
    return result


async def solve_many(
    problems: Sequence[Problem],
    strategy: Spec,
    generator: Generator,
    *,
    task: Task | None = None,
    verifier: Verifier | None = None,
    budget: Budget | None = None,
    max_tokens: int = 256,
    seed: int = 0,
    concurrency: int = 64,
    on_result: Callable[[Result], None] | None = None,
) -> list[Result]:
    """Run a strategy on many problems at once (up to `concurrency` in flight), in order."""
    gate = asyncio.Semaphore(concurrency)

    async def one(p: Problem) -> Result:
        async with gate:
            r = await solve(
                p,
                strategy,
                generator,
                task=task,
                verifier=verifier,
                budget=budget,
                max_tokens=max_tokens,
                seed=seed,
            )
        if on_result is not None:
            on_result(r)
        return r

    return list(await asyncio.gather(*(one(p) for p in problems)))


def build_task(name: str, params: dict[str, object] | None = None) -> Task:
    """A task by registry name and parameters (validated)."""
    from testtime.tasks.base import TASKS

    spec = TASKS.spec(name, params)
    return TASKS.get(name).factory(spec.params)


def build_verifier(
    name: str,
    params: dict[str, object] | None = None,
    *,
    task: Task | None = None,
    generator: Generator | None = None,
) -> Verifier:
    """A verifier by registry name, wired to the task's gold check and a model to ask."""
    from testtime.verifiers.base import VERIFIERS, VerifierDeps

    spec = VERIFIERS.spec(name, params)
    deps = VerifierDeps(check=task.check if task is not None else None, generator=generator)
    return VERIFIERS.get(name).factory(spec.params, deps)
