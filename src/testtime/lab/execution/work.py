"""Doing one unit of work: what a worker (this process, or a Ray actor) holds and runs.

A `UnitRunner` holds one generator, the run's tasks, problems and verifiers, built once;
`run` turns a `Unit` into the rows it stores. Pool slices are drawn as the strategies would draw
them (same messages, sampling, max_tokens and seed stream), so replaying a pool is running. A
pool that a tournament replays is drawn whole in one unit, and its judge then compares every
pair of its samples in both orders, asked as the tournament asks (`strategies/tournament.py`:
`comparison`, `asking`), so a replayed tournament of any k of them reads what it would have
been told; samples and verdicts are stored in one transaction.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from testtime.core.budget import Budget
from testtime.core.cost import Cost, flops
from testtime.core.errors import DataError
from testtime.core.registry import Spec
from testtime.core.types import Candidate, Problem, Request, Result, candidate_dict
from testtime.generators.base import Generator
from testtime.generators.models import opened
from testtime.lab.data.arms import BUDGET_PARAM, WIDTH_BUDGET
from testtime.lab.data.rows import ProblemRow, ResultRow, SampleRow, Unit, VerdictRow
from testtime.lab.data.spec import ArmSpec, RunSpec, spec_key
from testtime.strategies.base import STRATEGIES, call_seed
from testtime.strategies.run import RunSettings, build_task, build_verifier, solve
from testtime.strategies.tournament import TournamentParams, asking, comparison, verdict
from testtime.tasks.base import Task
from testtime.verifiers.base import Verifier


def pool_key(sampling: tuple[float, float]) -> str:
    """The name of the pool drawn at (temperature, top_p)."""
    return f"T{sampling[0]:g}-p{sampling[1]:g}"


def load_problems(spec: RunSpec) -> dict[str, tuple[Task, list[Problem]]]:
    """Each task of the run with its first `problems` problems (ids must be unique)."""
    out: dict[str, tuple[Task, list[Problem]]] = {}
    for t in spec.tasks:
        task = build_task(t)
        problems = (
            list(task.problems())[: spec.problems] if spec.problems else list(task.problems())
        )
        ids = [p.id for p in problems]
        if len(set(ids)) != len(ids):
            raise DataError(f"task {t.name!r} has repeated problem ids; each must be unique")
        if not problems:
            raise DataError(f"task {t.name!r} has no problems")
        out[spec_key(t)] = (task, problems)
    return out


def problem_rows(tasks: dict[str, tuple[Task, list[Problem]]]) -> list[ProblemRow]:
    return [
        ProblemRow(key, p.id, i, json.dumps([[m.role, m.content] for m in p.messages]), p.answer)
        for key, (_, problems) in tasks.items()
        for i, p in enumerate(problems)
    ]


class UnitRunner:
    """Runs a run's units with one generator (in this process, or in one Ray worker): holds
    the generator, the tasks, their problems and verifiers, each built once."""

    def __init__(self, spec: RunSpec, generator: Generator) -> None:
        self.spec = spec
        self.generator = generator
        self.tasks = load_problems(spec)
        self.arms = {a.label: a for a in spec.arms}
        self.pools = {pool_key(s): s for s in spec.pools()}
        self.settings = RunSettings(max_tokens=spec.max_tokens)
        self._verifiers: dict[tuple[str, str], Verifier] = {}

    async def run(self, unit: Unit) -> tuple[list[SampleRow], ResultRow | None, list[VerdictRow]]:
        """The unit's rows: a pool slice's samples (and, for a pool a tournament replays,
        its judges' verdicts on every pair), or one strategy run's result."""
        task, problem = self._problem(unit)
        if unit.pool is not None:
            samples = await self._pool_slice(unit, task, problem)
            return samples, None, await self._verdicts(unit, problem, [s.text for s in samples])
        return [], await self._arm(unit, task, problem), []

    def _problem(self, unit: Unit) -> tuple[Task, Problem]:
        task, problems = self.tasks[unit.task]
        return task, next(p for p in problems if p.id == unit.problem)

    def verifier(self, unit: Unit, spec: Spec) -> Verifier:
        key = (unit.task, spec_key(spec))
        if key not in self._verifiers:
            task = self.tasks[unit.task][0]
            self._verifiers[key] = build_verifier(spec, task=task, generator=self.generator)
        return self._verifiers[key]

    async def _pool_slice(self, unit: Unit, task: Task, problem: Problem) -> list[SampleRow]:
        sampling = self.pools[unit.pool or ""]
        specs = self.spec.pool_verifiers(sampling)
        verifiers = [self.verifier(unit, v) for v in specs]
        request = Request(
            problem.messages,
            n=unit.count,
            first_index=unit.first,
            max_tokens=self.spec.max_tokens,
            temperature=sampling[0],
            top_p=sampling[1],
            seed=call_seed(unit.seed, problem.id, 1),  # a one-request strategy's first call
            logprobs=any(v.needs_logprobs for v in verifiers),
        )
        started = time.perf_counter()
        gen = await self.generator.generate(request)
        cands = [
            Candidate(c.text, task.extract(c.text), completion=c, id=unit.first + i)
            for i, c in enumerate(gen.completions)
        ]
        scores: list[dict[str, float]] = [{} for _ in cands]
        v_costs: dict[str, float] = {}
        v_tokens = 0.0
        for spec, v in zip(specs, verifiers, strict=True):
            got = await v.score(problem, cands)
            for s, value in zip(scores, got.values, strict=True):
                s[spec_key(spec)] = value
            v_costs[spec_key(spec)] = got.cost.flops / len(cands)
            v_tokens += got.cost.verifier_tokens / len(cands)
        seconds = (time.perf_counter() - started) / len(cands)
        n_params = self.generator.n_params
        graded = task.graded(problem)
        right = (await task.grade(problem, [c.answer for c in cands]))[0] if graded else ()
        return [
            SampleRow(
                idx=c.id or 0,
                text=c.text,
                answer=c.answer,
                correct=right[i] if graded else None,
                finish=c.completion.finish_reason if c.completion else None,
                prompt_tokens=c.completion.prompt_tokens if c.completion else 0,
                generated_tokens=c.completion.generated_tokens if c.completion else 0,
                flops=flops(n_params, c.completion.generated_tokens if c.completion else 0),
                seconds=seconds,
                scores=s,
                verifier_flops=sum(v_costs.values()),
                verifier_tokens=round(v_tokens),
                verifier_costs=v_costs,
            )
            for i, (c, s) in enumerate(zip(cands, scores, strict=True))
        ]

    async def _verdicts(self, unit: Unit, problem: Problem, texts: list[str]) -> list[VerdictRow]:
        """Each judge of the pool on every pair of its samples (i < j), both orders; a pair
        of identical texts (one entrant to a tournament) is stored 'same', never asked.
        Texts are asked once per ordered pair of distinct texts (a greedy judge replies
        alike to the same prompt); each row carries its call's cost."""
        judges = self.spec.pool_judges(self.pools[unit.pool or ""])
        if not judges:
            return []
        if (unit.first, unit.count) != (0, self.spec.pools()[self.pools[unit.pool or ""]]):
            raise DataError(f"unit {unit.key} is a slice of a judged pool; judge it whole")
        rows: list[VerdictRow] = []
        for key, spec in judges.items():
            p = spec.params
            assert isinstance(p, TournamentParams)  # pool_judges holds tournaments alone
            judge = await asyncio.to_thread(opened, p.judge) if p.judge else self.generator
            pairs = [(i, j) for i in range(len(texts)) for j in range(i + 1, len(texts))]
            shown = {
                (texts[x], texts[y])
                for i, j in pairs
                if texts[i].strip() != texts[j].strip()
                for x, y in ((i, j), (j, i))
            }
            order = sorted(shown)
            replies = await asyncio.gather(*(_ask(judge, p, problem, a, b) for a, b in order))
            got = dict(zip(order, replies, strict=True))
            for i, j in pairs:
                for swapped, (x, y) in enumerate(((i, j), (j, i))):
                    if texts[i].strip() == texts[j].strip():
                        rows.append(VerdictRow(key, i, j, swapped, None, None, None, "same",
                                               0, 0, 0, 0.0, 0.0))  # fmt: skip
                        continue
                    reply, refused, cut, cost = got[(texts[x], texts[y])]
                    letter = None if reply is None else verdict(reply)
                    vote = None if letter is None else x if letter == "A" else y
                    rows.append(VerdictRow(
                        key, i, j, swapped, reply, letter, vote, refused, cut,
                        cost.prompt_tokens, cost.generated_tokens, cost.flops, cost.seconds,
                    ))  # fmt: skip
        return rows

    async def _arm(self, unit: Unit, task: Task, problem: Problem) -> ResultRow:
        arm = self.arms[unit.arm or ""]
        strategy = at_budget(arm, unit.budget)
        settings = replace(
            self.settings,
            task=task,
            verifier=self.verifier(unit, arm.verifier) if arm.verifier else None,
            budget=None if arm.strategy.name in WIDTH_BUDGET else Budget(samples=unit.budget),
            seed=unit.seed,
        )
        result = await solve(problem, strategy, self.generator, settings)
        graded = task.graded(problem)
        answers = [c.answer for c in result.candidates]
        right = (await task.grade(problem, answers))[0] if graded else None
        return result_row(result, right)


async def _ask(
    judge: Generator, p: TournamentParams, problem: Problem, a: str, b: str
) -> tuple[str | None, str | None, int, Cost]:
    """The judge's reply with `a` shown as Response A and `b` as B, asked as the tournament
    asks it: (reply, refused, responses cut, cost). The cost is what `Context.ask` charges
    for the call with nothing served from a prefix cache (its whole prompt and its reply at
    the judge's size): a pool's comparisons share prefixes with each other that a
    tournament of k would not, so the stored cost does not depend on what ran beside it."""
    fit = comparison(judge, p, problem, a, b)
    if fit is None:
        return None, "context", 0, Cost()
    chat, cut = fit
    started = time.perf_counter()
    gen = await judge.generate(Request(chat, n=1, **asking(p)))
    c = gen.cost
    prompt = c.prompt_tokens + c.cached_prompt_tokens
    cost = Cost(
        prompt_tokens=prompt,
        generated_tokens=c.generated_tokens,
        flops=Cost.of_verification(judge.n_params, prompt + c.generated_tokens).flops,
        seconds=time.perf_counter() - started,
    )
    return gen.completions[0].text, None, cut, cost


def at_budget(arm: ArmSpec, budget: int) -> Spec:
    """The arm's strategy with its budget parameter (n, max_samples, ...) set to `budget`."""
    param = BUDGET_PARAM.get(arm.strategy.name)
    if param is None:
        return arm.strategy  # the Budget ceiling alone limits it
    return STRATEGIES.spec(arm.strategy.name, {**_params(arm.strategy), param: budget})


def result_row(result: Result, right: Sequence[bool] | None) -> ResultRow:
    """A strategy's result as stored; `right` grades its candidates (None: ungraded)."""
    return ResultRow(
        answer=result.answer,
        correct=result.correct,
        chosen=result.chosen,
        exhausted=result.budget_exhausted,
        cost=result.cost.to_dict(),
        trace=dict(result.trace) if result.trace is not None else None,
        candidates=[
            candidate_dict(c, right[i] if right is not None else None)
            for i, c in enumerate(result.candidates)
        ],
    )


def _params(spec: Spec) -> dict[str, Any]:
    return dataclasses.asdict(spec.params)
