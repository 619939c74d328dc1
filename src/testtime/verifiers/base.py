"""The verifier interface: score candidates, and say what scoring cost.

Outcome verifiers score finished candidates. A verifier built on a model reports the
tokens and FLOPs it spent, which the strategy's ledger charges as verifier cost.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from testtime.core.cost import Cost
from testtime.core.registry import Registry
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


@dataclass(frozen=True)
class VerifierDeps:
    """What a verifier may be built from: the task's gold check and a model to ask."""

    check: Checker | None = None
    generator: Generator | None = None


# a factory takes its own Params subclass, already validated by `VERIFIERS.spec`
VerifierFactory = Callable[[Any, VerifierDeps], Verifier]
VERIFIERS: Registry[VerifierFactory] = Registry("verifier")
