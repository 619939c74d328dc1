"""Running an experiment: record the run, cut the grid into units, skip what is stored,
do the rest (here, or on Ray), and store each unit as it finishes.

Pools are cut into slices of `SLICE` samples: a slice is generated in one request, stored
in one transaction, and a resume redraws only the slices not stored (the seeded stream
makes a redrawn slice equal the one an uninterrupted run would have drawn). A pool that a
tournament replays is one unit per problem: all its samples, then its judges' verdicts on
every pair, stored together (a resume redoes it whole, or not at all).
"""

from __future__ import annotations

import asyncio
import platform
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from testtime.core.errors import ConfigError, DataError, TesttimeError
from testtime.core.types import Problem
from testtime.generators.base import Generator
from testtime.generators.models import fingerprint, open_generator
from testtime.lab.data.rows import ProblemRow, ResultRow, SampleRow, Unit, VerdictRow
from testtime.lab.data.spec import RunSpec, spec_key
from testtime.lab.data.store import Store
from testtime.lab.execution.heldout import check_policies
from testtime.lab.execution.work import UnitRunner, load_problems, pool_key, problem_rows
from testtime.tasks.base import Task

SLICE = 8  # samples per pool slice: one request, one transaction
Done = Callable[[Unit, list[SampleRow], ResultRow | None, list[VerdictRow]], None]


@dataclass(frozen=True, slots=True)
class Plan:
    """A run ready to go: its id, every unit of the grid, and those not stored yet."""

    run_id: str
    units: tuple[Unit, ...]
    pending: tuple[Unit, ...]
    resumed: bool


def environment(spec: RunSpec) -> dict[str, Any]:
    """What produced the run: package versions and each model's file hash."""
    return {
        "testtime": _version("testtime"),
        "torch": _version("torch"),
        "transformers": _version("transformers"),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "models": {m: fingerprint(m) for m in spec.models},
        "n_params": {},  # filled in as each model loads
    }


def prepare(
    store: Store,
    spec: RunSpec,
    source: str,
    run_id: str | None = None,
    env: dict[str, Any] | None = None,
) -> Plan:
    """Record the run (or find it, to resume) and list the units still to do.

    Refuses a resume when the task's problems changed since the run began (their ids,
    order, prompts or answers), since mixing two datasets would corrupt every estimate.
    """
    run_id = run_id or spec.run_id
    tasks = checked_problems(spec)
    rows = problem_rows(tasks)
    env = env if env is not None else environment(spec)
    check_policies(spec, tasks, env["models"])  # compute_optimal: held-out, same model/task
    created = store.create_run(run_id, spec.name, source, spec.to_dict(), env)
    if created:
        store.put_problems(run_id, rows)
    else:
        _same_problems(store, run_id, rows)
    units = tuple(plan_units(spec, {k: [p.id for p in ps] for k, (_, ps) in tasks.items()}))
    samples, results = store.done(run_id)
    unjudged = _unjudged(spec, store.judged(run_id))
    pending = tuple(u for u in units if not _stored(u, samples, results) or unjudged(u))
    return Plan(run_id, units, pending, resumed=not created)


def checked_problems(spec: RunSpec) -> dict[str, tuple[Task, list[Problem]]]:
    """Each task's problems, refusing a spec that asks for more problems than a task has
    (running fewer than the spec records would be silent)."""
    tasks = load_problems(spec)
    for key, (_, problems) in tasks.items():
        if spec.problems is not None and len(problems) < spec.problems:
            task = next(t for t in spec.tasks if spec_key(t) == key)
            more = (
                f"raise its size (it is {task.params.size})"
                if hasattr(task.params, "size")
                else "give it more problems"
            )
            raise ConfigError(
                f"task {key!r} has {len(problems)} problems and the spec asks for "
                f"{spec.problems} (problems / --problems); ask for {len(problems)} or fewer "
                f"(or leave 'problems' out to run them all), or {more}"
            )
    return tasks


def plan_units(spec: RunSpec, problems: dict[str, list[str]]) -> Iterable[Unit]:
    """Every unit of the grid: pool slices first (cheap to batch), then per-budget runs. A
    judged pool is one slice: its judges compare all of its samples."""
    pools = spec.pools()
    for model in spec.models:
        for task, ids in problems.items():
            for seed in spec.seeds:
                for sampling, size in pools.items():
                    step = size if spec.pool_judges(sampling) else SLICE
                    for pid in ids:
                        for first in range(0, size, step):
                            count = min(step, size - first)
                            yield Unit(model, task, seed, pid, pool_key(sampling), first, count)
                for arm in spec.arms:
                    if arm.replay is None:
                        for budget in arm.budgets:
                            for pid in ids:
                                yield Unit(model, task, seed, pid, arm=arm.label, budget=budget)


def _unjudged(spec: RunSpec, counts: dict[tuple[Any, ...], int]) -> Callable[[Unit], bool]:
    """Whether a pool unit still lacks verdicts: a judged pool of K samples is done when
    each of its judges has stored all K x (K - 1) (`Store.judged` counts them)."""
    judges = {pool_key(s): set(spec.pool_judges(s)) for s in spec.pools()}
    sizes = {pool_key(s): n for s, n in spec.pools().items()}

    def unjudged(unit: Unit) -> bool:
        if unit.pool is None:
            return False
        size = sizes[unit.pool]
        base = (unit.model, unit.task, unit.pool)
        return any(
            counts.get((*base, judge, unit.seed, unit.problem), 0) < size * (size - 1)
            for judge in judges[unit.pool]
        )

    return unjudged


def _stored(unit: Unit, samples: set[tuple[Any, ...]], results: set[tuple[Any, ...]]) -> bool:
    if unit.pool is not None:
        base = (unit.model, unit.task, unit.pool, unit.seed, unit.problem)
        return all((*base, i) in samples for i in range(unit.first, unit.first + unit.count))
    return (unit.model, unit.task, unit.arm, unit.budget, unit.seed, unit.problem) in results


def _same_problems(store: Store, run_id: str, rows: Sequence[ProblemRow]) -> None:
    for task in {r.task for r in rows}:
        now = [r for r in rows if r.task == task]
        if store.problems(run_id, task) != now:
            raise DataError(
                f"the problems of task {task!r} changed since run {run_id} began (ids, order, "
                f"prompts or answers differ); resuming would mix two datasets. Start a new "
                f"run (change 'name') or restore the task's data"
            )


async def run_units(
    runner: UnitRunner, units: Sequence[Unit], done: Done, concurrency: int = 64
) -> None:
    """Run units concurrently (the generator batches them); `done` each as it finishes.

    The first failure cancels the rest and is raised; what finished before stays stored.
    """
    gate = asyncio.Semaphore(concurrency)

    async def one(unit: Unit) -> None:
        async with gate:
            samples, result, verdicts = await runner.run(unit)
        done(unit, samples, result, verdicts)

    tasks = [asyncio.ensure_future(one(u)) for u in units]
    try:
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def run_local(
    store: Store,
    spec: RunSpec,
    plan: Plan,
    *,
    on_unit: Callable[[Unit], None] | None = None,
    generators: Callable[[str], Generator] = open_generator,
) -> None:
    """Do a plan's pending units in this process, one model at a time."""
    for model in spec.models:
        units = [u for u in plan.pending if u.model == model]
        if not units:
            continue
        generator = generators(model)
        store.set_n_params(plan.run_id, model, generator.n_params)
        try:
            await run_units(
                UnitRunner(spec, generator), units, writer(store, plan.run_id, on_unit),
                spec.concurrency,
            )  # fmt: skip
        finally:
            await generator.aclose()


def writer(store: Store, run_id: str, on_unit: Callable[[Unit], None] | None = None) -> Done:
    """The one place rows reach the store: one transaction per finished unit."""

    def done(
        unit: Unit, samples: list[SampleRow], result: ResultRow | None, verdicts: list[VerdictRow]
    ) -> None:
        store.put(run_id, unit, samples, result, verdicts)
        if on_unit is not None:
            on_unit(unit)

    return done


def execute(
    store: Store,
    spec: RunSpec,
    plan: Plan,
    work: Callable[[], Awaitable[None]],
) -> float:
    """Run `work` for a plan, keeping the run's status true: success, error or cancelled."""
    started = time.perf_counter()
    try:
        asyncio.run(_awaited(work))
    except KeyboardInterrupt:
        store.set_status(plan.run_id, "cancelled", time.perf_counter() - started)
        raise
    except TesttimeError as e:
        store.set_status(plan.run_id, "error", time.perf_counter() - started, str(e))
        raise
    except Exception as e:
        store.set_status(plan.run_id, "error", time.perf_counter() - started, repr(e))
        raise
    seconds = time.perf_counter() - started
    store.set_status(plan.run_id, "success", seconds)
    return seconds


async def _awaited(work: Callable[[], Awaitable[None]]) -> None:
    await work()


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None
