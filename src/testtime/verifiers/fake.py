"""A scripted fake verifier: scores as a function of a candidate's answer, with seeded noise.

It drives best-of-N, weighted voting and every other verifier-guided strategy exactly in
tests and examples, and can charge the cost of a pretend reward model (tokens and FLOPs per
candidate), so that verifier cost accounting and FLOPs budgets are exercised too.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from testtime.core.answers import equivalent
from testtime.core.cost import Cost, flops
from testtime.core.errors import ConfigError
from testtime.core.registry import Params
from testtime.core.types import Candidate, Problem
from testtime.verifiers.base import (
    Checker,
    Scores,
    Traits,
    Verifier,
    VerifierDeps,
    gold_check,
    verifier,
)

ScoreFn = Callable[[Problem, Candidate], float]


class FakeVerifier(Verifier):
    """Scores from `scores`: a dict answer -> score (answers matched by equivalence; the key
    None scores candidates without an answer; others get `default`), or a function of
    (problem, candidate). Without `scores`, `check` (a gold check) gives 1.0 or 0.0.

    `noise` adds Gaussian noise of that standard deviation, seeded by (seed, problem id,
    candidate text), so a candidate always gets the same score. Each scored candidate is
    charged `tokens_per_candidate` tokens of a model with `n_params` parameters.
    Example: FakeVerifier({"7": 0.9, "8": 0.2}, noise=0.05)
    """

    def __init__(
        self,
        scores: Mapping[str | None, float] | ScoreFn | None = None,
        *,
        check: Checker | None = None,
        default: float = 0.0,
        noise: float = 0.0,
        seed: int = 0,
        n_params: int = 0,
        tokens_per_candidate: int = 0,
        name: str = "fake",
    ) -> None:
        if scores is None and check is None:
            raise ConfigError("a fake verifier needs scores (answer -> score) or a gold check")
        if noise < 0 or n_params < 0 or tokens_per_candidate < 0:
            raise ConfigError("noise, n_params and tokens_per_candidate must be >= 0")
        self.scores = scores
        self.check = check
        self.default = default
        self.noise = noise
        self.seed = seed
        self.n_params = n_params
        self.tokens_per_candidate = tokens_per_candidate
        self.name = name

    async def score(self, problem: Problem, candidates: Sequence[Candidate]) -> Scores:
        values = tuple(self._one(problem, c) for c in candidates)
        tokens = self.tokens_per_candidate * len(candidates)
        return Scores(values, Cost.of_verification(self.n_params, tokens, calls=len(candidates)))

    def flops_per_candidate(self, problem: Problem) -> float:
        return flops(self.n_params, self.tokens_per_candidate)

    def _one(self, problem: Problem, c: Candidate) -> float:
        if callable(self.scores):
            value = self.scores(problem, c)
        elif self.scores is not None:
            value = self._lookup(self.scores, c.answer)
        else:
            assert self.check is not None  # the constructor requires scores or a check
            value = 1.0 if self.check(problem, c.answer) else 0.0
        if self.noise:
            value += random.Random(f"{self.seed}\x00{problem.id}\x00{c.text}").gauss(0, self.noise)
        return value

    def _lookup(self, scores: Mapping[str | None, float], answer: str | None) -> float:
        if answer in scores:
            return scores[answer]
        if answer is None:
            return self.default
        same = (v for k, v in scores.items() if k is not None and equivalent(k, answer))
        return next(same, self.default)


@dataclass(frozen=True)
class FakeVerifierParams(Params):
    """The fake verifier as built by name: gold-check scores, optional noise and cost."""

    noise: float = 0.0  # standard deviation of seeded Gaussian noise on the 0/1 score
    seed: int = 0
    n_params: int = 0  # pretend reward-model size: FLOPs = 2 x n_params x tokens
    tokens_per_candidate: int = 0

    def validate(self) -> None:
        for name in ("noise", "n_params", "tokens_per_candidate"):
            if getattr(self, name) < 0:
                raise ConfigError(f"parameter {name!r} must be >= 0, got {getattr(self, name)}")


@verifier("fake", FakeVerifierParams, Traits(reads_gold=True))
def fake(params: FakeVerifierParams, deps: VerifierDeps) -> Verifier:
    """Scripted scores: 1 for a correct answer, 0 otherwise, plus optional seeded noise."""
    remedy = "run it with a task that has answers, or build FakeVerifier(scores=...) in Python"
    return FakeVerifier(
        check=gold_check(deps, "'fake'", remedy),
        noise=params.noise,
        seed=params.seed,
        n_params=params.n_params,
        tokens_per_candidate=params.tokens_per_candidate,
    )
