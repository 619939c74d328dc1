"""The verifier interface: score candidates, and say what scoring cost.

Outcome verifiers score finished candidates; process verifiers score every step of a
(possibly unfinished) candidate, and serve as outcome verifiers through an aggregate of
their step scores. A verifier built on a model reports the tokens and FLOPs it spent,
which the strategy's ledger charges as verifier cost.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from testtime.core.cost import Cost
from testtime.core.registry import Registry
from testtime.core.steps import Aggregate, StepSplitter, aggregate
from testtime.core.types import Candidate, Problem
from testtime.generators.base import Generator

Checker = Callable[[Problem, str | None], bool]


@dataclass(frozen=True, slots=True)
class Scores:
    """One score per candidate (higher is better) and the cost of computing them."""

    values: tuple[float, ...]
    cost: Cost = field(default_factory=Cost)


class Verifier(ABC):
    """Scores candidates for a problem."""

    name: str = "verifier"
    needs_logprobs: bool = False  # the strategy must sample with logprobs=True (certainty)

    @abstractmethod
    async def score(self, problem: Problem, candidates: Sequence[Candidate]) -> Scores:
        """A score for each candidate, in order."""

    def flops_per_candidate(self, problem: Problem) -> float:
        """Worst-case FLOPs to score one candidate (0 for verifiers that run no model)."""
        return 0.0


@dataclass(frozen=True, slots=True)
class StepScores:
    """Per candidate, one score per step (higher is better), and what scoring cost."""

    values: tuple[tuple[float, ...], ...]
    cost: Cost = field(default_factory=Cost)


class ProcessVerifier(Verifier):
    """Scores each step of a candidate (a PRM). Its outcome score is the aggregate of its
    step scores (`how`: last, min, product or mean)."""

    def __init__(self, splitter: StepSplitter | None = None, how: Aggregate = "last") -> None:
        self.splitter = splitter or StepSplitter()
        self.how = how

    @abstractmethod
    async def score_steps(self, problem: Problem, candidates: Sequence[Candidate]) -> StepScores:
        """Each candidate's step scores, in order."""

    async def score(self, problem: Problem, candidates: Sequence[Candidate]) -> Scores:
        got = await self.score_steps(problem, candidates)
        return Scores(tuple(aggregate(v, self.how) for v in got.values), got.cost)

    def steps(self, candidate: Candidate) -> tuple[str, ...]:
        """The candidate's steps as a search recorded them, else its text cut into steps."""
        return candidate.steps or self.splitter.split(candidate.text)

    def prefixes(self, candidate: Candidate) -> list[str]:
        """The candidate's first 1, 2, ... steps as texts: what each step score judges."""
        steps = self.steps(candidate)
        return ["\n\n".join(steps[: t + 1]) for t in range(len(steps))]


@dataclass(frozen=True)
class VerifierDeps:
    """What a verifier may be built from: the task's gold check and a model to ask."""

    check: Checker | None = None
    generator: Generator | None = None


# a factory takes its own Params subclass, already validated by `VERIFIERS.spec`
VerifierFactory = Callable[[Any, VerifierDeps], Verifier]
VERIFIERS: Registry[VerifierFactory] = Registry("verifier")
