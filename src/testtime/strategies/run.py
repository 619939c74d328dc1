"""Running strategies: one problem, or many concurrently so the generator can batch them.

`RunSettings` is everything a run needs besides the problem, the strategy and the generator;
the CLI, the lab and the server make one and pass it on. `build_task` and `build_verifier`
are the one way to make a task or a verifier (the verifier wired to what it needs).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypedDict, Unpack

from testtime.core.answers import same_answer
from testtime.core.budget import Budget
from testtime.core.errors import ConfigError
from testtime.core.registry import Spec
from testtime.core.structured import ResponseFormat
from testtime.core.tools import Tools
from testtime.core.types import MAX_TOKENS, Problem, Result
from testtime.generators.base import Generator
from testtime.strategies.base import STRATEGIES, Context
from testtime.tasks.base import TASKS, JsonAnswers, Task
from testtime.verifiers.base import VERIFIERS, Verifier, VerifierDeps


@dataclass(frozen=True)
class RunSettings:
    """How to run a strategy, besides on what and with which model: the task (how answers
    are read, grouped and graded), the verifier, the budget ceiling, max new tokens per
    sample, the seed, how many problems `solve_many` runs at once, and the response format
    every sample follows (JSON: the answer is then a sample's canonical JSON, unless a task
    says how to read it, and the vote groups parsed values)."""

    task: Task | None = None
    verifier: Verifier | None = None
    budget: Budget | None = None
    max_tokens: int = 256
    seed: int = 0
    concurrency: int = 64
    response_format: ResponseFormat | None = None
    tools: Tools | None = None  # functions every sample may call; calls vote by core.tools

    def __post_init__(self) -> None:
        if not 0 < self.max_tokens <= MAX_TOKENS:
            raise ConfigError(
                f"max_tokens must be in 1..{MAX_TOKENS}, got {self.max_tokens}; ask for fewer"
            )
        if self.concurrency < 1:
            raise ConfigError(
                f"concurrency must be at least 1 problem at a time, got {self.concurrency}"
            )


class RunOptions(TypedDict, total=False):
    """`RunSettings`' fields as keyword arguments of `solve` and `solve_many`."""

    task: Task | None
    verifier: Verifier | None
    budget: Budget | None
    max_tokens: int
    seed: int
    concurrency: int
    response_format: ResponseFormat | None
    tools: Tools | None


def settings_of(settings: RunSettings | None, options: RunOptions) -> RunSettings:
    """`settings` (or the defaults) with `options` set on them."""
    return replace(settings or RunSettings(), **options)


async def solve(
    problem: Problem,
    strategy: Spec,
    generator: Generator,
    settings: RunSettings | None = None,
    **options: Unpack[RunOptions],
) -> Result:
    """Run one strategy on one problem; mark the result correct/incorrect when gold exists.

    Give a `RunSettings`, or its fields as keywords (`task=`, `verifier=`, `budget=`, ...)."""
    s = settings_of(settings, options)
    json = s.response_format is not None and s.response_format.json
    task = s.task if s.task is not None or not json else JsonAnswers()
    ctx = Context(
        problem,
        generator,
        spec=strategy,
        verifier=s.verifier,
        budget=s.budget,
        extract=task.extract if task is not None else None,
        same=task.same if task is not None else same_answer,
        max_tokens=s.max_tokens,
        seed=s.seed,
        response_format=s.response_format,
        tools=s.tools,
    )
    result = await STRATEGIES.build(strategy, ctx)
    if task is not None and task.graded(problem):
        (right,), _ = await task.grade(problem, [result.answer])
        result = replace(result, correct=right)
    return result


async def solve_many(
    problems: Iterable[Problem],
    strategy: Spec,
    generator: Generator,
    settings: RunSettings | None = None,
    *,
    on_result: Callable[[Result], None] | None = None,
    **options: Unpack[RunOptions],
) -> list[Result]:
    """Run a strategy on many problems at once (up to `concurrency` in flight), in order."""
    s = settings_of(settings, options)
    gate = asyncio.Semaphore(s.concurrency)

    async def one(p: Problem) -> Result:
        async with gate:
            r = await solve(p, strategy, generator, s)
        if on_result is not None:
            on_result(r)
        return r

    return list(await asyncio.gather(*(one(p) for p in problems)))


def build_task(name: str | Spec, params: Mapping[str, Any] | None = None) -> Task:
    """A task by registry name and `params` (validated), or from its spec."""
    return TASKS.build(name if isinstance(name, Spec) else TASKS.spec(name, params))


def build_verifier(
    name: str | Spec,
    params: Mapping[str, Any] | None = None,
    *,
    task: Task | None = None,
    generator: Generator | None = None,
) -> Verifier:
    """A verifier by registry name and `params` (or from its spec), wired to what it may
    need: the task's gold check (the oracle) and a model to ask (a judge). The one way the
    CLI, the lab and the server make one."""
    spec = name if isinstance(name, Spec) else VERIFIERS.spec(name, params)
    deps = VerifierDeps(
        check=task.check if task is not None else None,
        generator=generator,
        grade=task.grade if task is not None else None,
    )
    return VERIFIERS.build(spec, deps)
