"""One budget across many problems: a little on each, then the rest where it buys the most.

After `initial` samples per problem, each further sample goes to the problems whose vote is
still the most uncertain per unit of cost: the expected gain is the probability that the
current leader is not the true mode under the Beta posterior of Adaptive-Consistency
(Aggarwal et al. 2023), divided by the problem's mean cost per sample so far. A problem
whose leader is confident (`threshold`) or that reached `cap` samples is settled and gets
nothing more. The total budget is never exceeded: every request is admitted at its worst case.
The rule (`Allocator`) is pure, so the lab replays it on stored pools.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from testtime.core.answers import same_answer
from testtime.core.budget import Budget
from testtime.core.cost import Cost, UnitCost
from testtime.core.errors import BudgetError, ConfigError
from testtime.core.ledger import Ledger
from testtime.core.types import Candidate, Problem, Request, Result
from testtime.core.voting import group, leader, singletons, vote_confidence
from testtime.generators.base import Generator
from testtime.strategies.base import STRATEGIES, Context
from testtime.tasks.base import Task


@dataclass
class Allocator:
    """Which problems get the next samples, from the answers and costs seen so far."""

    problems: int
    threshold: float = 0.95  # settled once P(leader is the mode) reaches this
    cap: int = 64  # the most samples one problem may get
    answers: list[list[str | None]] = field(init=False)
    costs: list[list[float]] = field(init=False)
    _confidence: dict[int, float] = field(init=False)

    def __post_init__(self) -> None:
        if not 0 < self.threshold <= 1 or self.cap < 1:
            raise ConfigError("threshold must be in (0, 1] and cap >= 1")
        self.answers = [[] for _ in range(self.problems)]
        self.costs = [[] for _ in range(self.problems)]
        self._confidence = {}

    def add(self, i: int, answer: str | None, cost: float) -> None:
        self.answers[i].append(answer)
        self.costs[i].append(cost)
        self._confidence.pop(i, None)

    def confidence(self, i: int) -> float:
        """P(the leading answer is the mode) under the Beta posterior of its votes."""
        if i not in self._confidence:
            cands = [Candidate("", a, id=j) for j, a in enumerate(self.answers[i])]
            self._confidence[i] = vote_confidence(group(cands))
        return self._confidence[i]

    def settled(self, i: int) -> bool:
        return len(self.answers[i]) >= self.cap or self.confidence(i) >= self.threshold

    def gain_per_cost(self, i: int) -> float:
        """The expected gain of one more sample per unit of its cost (0 when settled)."""
        if self.settled(i):
            return 0.0
        spent = self.costs[i]
        per = sum(spent) / len(spent) if spent else 1.0
        return (1.0 - self.confidence(i)) / max(per, 1e-12)

    def next(self, width: int) -> list[int]:
        """Up to `width` unsettled problems, the highest expected gain per cost first."""
        ranked = sorted(range(self.problems), key=lambda i: -self.gain_per_cost(i))
        return [i for i in ranked if not self.settled(i)][:width]


@dataclass(frozen=True, slots=True)
class Batch:
    """The results of a batch, how many samples each problem got, and the total cost."""

    results: tuple[Result, ...]
    allocation: tuple[int, ...]
    cost: Cost
    log: tuple[tuple[int, float], ...]  # each sample after the first round: (problem, confidence)


async def solve_batch(
    problems: Sequence[Problem],
    generator: Generator,
    *,
    total_budget: Budget,
    initial: int = 2,
    threshold: float = 0.95,
    cap: int = 64,
    width: int = 16,
    temperature: float = 0.8,
    top_p: float = 1.0,
    max_tokens: int = 256,
    task: Task | None = None,
    seed: int = 0,
) -> Batch:
    """Self-consistency on many problems under ONE budget, spent where votes are uncertain."""
    if not problems or initial < 1 or width < 1:
        raise ConfigError("solve_batch needs problems, initial >= 1 and width >= 1")
    spec = STRATEGIES.spec("self_consistency", {"temperature": temperature, "top_p": top_p})
    extract = task.extract if task is not None else None
    same = task.same if task is not None else same_answer
    ctxs = [Context(p, generator, spec=spec, extract=extract, same=same, max_tokens=max_tokens,
                    seed=seed) for p in problems]  # fmt: skip
    alloc = Allocator(len(problems), threshold, cap)
    gate = _Gate(total_budget, generator, max_tokens)
    if gate.fits([c.problem for c in ctxs], 1) < len(ctxs):
        raise BudgetError(
            f"a total budget of {total_budget} is smaller than one sample for each of the "
            f"{len(problems)} problems; raise it or give fewer problems"
        )
    first = min(initial, cap)
    while first > 1 and gate.fits([c.problem for c in ctxs], first) < len(ctxs):
        first -= 1
    await _draw(ctxs, list(range(len(ctxs))), first, alloc, gate, temperature, top_p)
    log: list[tuple[int, float]] = []
    while chosen := alloc.next(width):
        admitted = chosen[: gate.fits([ctxs[i].problem for i in chosen], 1)]
        if not admitted:
            break
        log += [(i, alloc.confidence(i)) for i in admitted]
        await _draw(ctxs, admitted, 1, alloc, gate, temperature, top_p)
    results = tuple(await asyncio.gather(*(_finish(ctx, task) for ctx in ctxs)))
    total = sum((r.cost for r in results), Cost())
    return Batch(results, tuple(len(a) for a in alloc.answers), total, tuple(log))


class _Gate:
    """The shared ceiling: a ledger of every problem's spending that admits requests at
    their worst case."""

    def __init__(self, budget: Budget, generator: Generator, max_tokens: int) -> None:
        self.ledger, self.generator, self.max_tokens = Ledger(budget), generator, max_tokens

    def fits(self, problems: Sequence[Problem], n: int) -> int:
        """How many of these problems can each get n more samples (in order)."""
        reserved, count = Cost(), 0
        for p in problems:
            prompt = self.generator.count_prompt_tokens(Request(p.messages))
            unit = UnitCost.sample(self.generator.n_params, prompt, self.max_tokens)
            if self.ledger.fits(n, unit, reserved) < n:
                break
            reserved += unit.of(n)
            count += 1
        return count


async def _draw(
    ctxs: list[Context], which: list[int], n: int, alloc: Allocator, gate: _Gate,
    temperature: float, top_p: float,
) -> None:  # fmt: skip
    """n more samples for each chosen problem; their cost (FLOPs, else tokens) to the rule."""
    before = [ctxs[i].cost for i in which]
    got = await asyncio.gather(*(ctxs[i].sample(n, temperature=temperature, top_p=top_p)
                                 for i in which))  # fmt: skip
    for i, old, cands in zip(which, before, got, strict=True):
        drew = ctxs[i].cost - old
        gate.ledger.charge(drew)
        spent = drew.flops or float(drew.generated_tokens)
        for c in cands:
            alloc.add(i, c.answer, spent / len(cands))


async def _finish(ctx: Context, task: Task | None) -> Result:
    groups = group(ctx.candidates, same=ctx.same)
    top = leader(groups)
    chosen = ctx.candidates[top.members[0]] if top else None
    spec = STRATEGIES.spec("self_consistency", {**_params(ctx), "n": len(ctx.candidates)})
    result = ctx.finish(chosen, trace={"samples": len(ctx.candidates), **singletons(groups)})
    result = replace(result, strategy=spec.to_dict())  # the n it was given in the end
    if task is not None and task.graded(ctx.problem):
        (right,), _ = await task.grade(ctx.problem, [result.answer])
        result = replace(result, correct=right)
    return result


def _params(ctx: Context) -> dict[str, object]:
    return {k: v for k, v in ctx.spec.to_dict()["params"].items() if k != "n"}
