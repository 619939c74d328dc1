"""The units of work a run is cut into, and the rows a finished unit stores (samples, a
strategy's result, a judge's pairwise verdicts).

Plain, picklable data: a unit travels to a Ray worker and its rows travel back to the
one process that writes the store.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Unit:
    """One piece of work: a slice of a problem's sample pool, or one strategy run."""

    model: str
    task: str
    seed: int
    problem: str
    pool: str | None = None  # a pool slice: samples first .. first+count-1
    first: int = 0
    count: int = 0
    arm: str | None = None  # or: the arm `arm` run at `budget`
    budget: int = 0

    @property
    def key(self) -> tuple[Any, ...]:
        if self.pool is not None:
            return ("pool", self.model, self.task, self.pool, self.seed, self.problem, self.first)
        return ("arm", self.model, self.task, self.arm, self.budget, self.seed, self.problem)


@dataclass(frozen=True, slots=True)
class ProblemRow:
    task: str
    problem: str
    position: int
    prompt: str  # the problem's messages (JSON), to refuse a resume if the data changed
    answer: str | None


@dataclass(frozen=True, slots=True)
class SampleRow:
    """One stored pool sample with its answer, correctness, verifier scores and cost."""

    idx: int
    text: str
    answer: str | None
    correct: bool | None
    finish: str | None
    prompt_tokens: int
    generated_tokens: int
    flops: float  # generation FLOPs of this sample (its share of the prompt excluded)
    seconds: float
    scores: dict[str, float] = field(default_factory=dict)
    verifier_flops: float = 0.0  # every pool verifier together
    verifier_tokens: int = 0
    verifier_costs: dict[str, float] = field(default_factory=dict)  # verifier key -> FLOPs

    def key(self, unit: Unit) -> tuple[Any, ...]:
        return (unit.model, unit.task, unit.pool, unit.seed, unit.problem, self.idx)

    def values(self) -> tuple[Any, ...]:
        return (
            self.text, self.answer, _flag(self.correct), self.finish, self.prompt_tokens,
            self.generated_tokens, self.flops, self.seconds, json.dumps(self.scores),
            self.verifier_flops, self.verifier_tokens, json.dumps(self.verifier_costs),
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class ResultRow:
    """One strategy's result on one problem at one budget, with all of its candidates."""

    answer: str | None
    correct: bool | None
    chosen: int | None
    exhausted: bool
    cost: dict[str, Any]
    trace: dict[str, Any] | None
    candidates: list[dict[str, Any]]  # each one as core.types.candidate_dict writes it

    def key(self, unit: Unit) -> tuple[Any, ...]:
        return (unit.model, unit.task, unit.arm, unit.budget, unit.seed, unit.problem)

    def values(self) -> tuple[Any, ...]:
        return (
            self.answer, _flag(self.correct), self.chosen, int(self.exhausted),
            json.dumps(self.cost), json.dumps(self.trace, default=str),
            json.dumps(self.candidates, default=str),
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class VerdictRow:
    """One judge call on a pair of pool samples i < j: sample i shown as Response A
    (`swapped` 0) or sample j (`swapped` 1), the reply, the letter read from it, the sample
    it votes for, and what the call cost. `refused`: 'same' (identical texts, one entrant:
    never asked), 'context' (the prompt cannot fit the judge), None when asked. Its cost
    counts the whole prompt, none of it served from a prefix cache (see work._ask)."""

    judge: str  # the judge key (lab.data.arms.judge_key)
    i: int
    j: int
    swapped: int
    reply: str | None
    parsed: str | None
    vote: int | None
    refused: str | None
    cut: int
    prompt_tokens: int
    generated_tokens: int
    flops: float
    seconds: float

    def key(self, unit: Unit) -> tuple[Any, ...]:
        return (
            unit.model, unit.task, unit.pool, self.judge, unit.seed, unit.problem, self.i,
            self.j, self.swapped,
        )  # fmt: skip

    def values(self) -> tuple[Any, ...]:
        return (
            self.reply, self.parsed, self.vote, self.refused, self.cut, self.prompt_tokens,
            self.generated_tokens, self.flops, self.seconds,
        )  # fmt: skip


def _flag(value: bool | None) -> int | None:
    return None if value is None else int(value)
