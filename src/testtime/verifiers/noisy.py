"""A verifier with flaws you set: false positives, false negatives, and overconfidence early
in a solution, wrapped around any other verifier.

Overconfidence mixes each step's score with a random high one (uniform in 0.5-1), by a
weight that fades over the solution: early steps look promising whatever they say, and
their ranking is noise, which is what makes particle methods exploit too early.
It is for studying how verifier flaws bend scaling curves (Stroebl et al.'s false-positive
ceiling; premature exploitation of an overconfident PRM in particle filtering). The noise
is seeded by (seed, problem, the text scored), so the same step always gets the same score.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from testtime.core.errors import ConfigError
from testtime.core.registry import Params
from testtime.core.types import Candidate, Problem
from testtime.verifiers.base import (
    VERIFIERS,
    ProcessVerifier,
    StepScores,
    Traits,
    Verifier,
    VerifierDeps,
    gold_check,
    traits_of,
    verifier,
)


@dataclass(frozen=True)
class NoisyParams(Params):
    inner: str = "step_check"  # the verifier to corrupt (built with its defaults)
    false_positive: float = 0.0  # P(a score below 0.5 is flipped to 1 - score)
    false_negative: float = 0.0  # P(a score of 0.5 or more is flipped to 1 - score)
    overconfidence: float = 0.0  # weight of a confident (0.5-1) but uninformed score at step 1
    horizon: float = 2.0  # ... fading as exp(-(t - 1) / horizon) over later steps t
    seed: int = 0

    def validate(self) -> None:
        for name in ("false_positive", "false_negative", "overconfidence"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(
                    f"parameter {name!r} must be in [0, 1], got {getattr(self, name)}"
                )
        self.positive("horizon")
        if self.inner == "noisy":
            raise ConfigError("parameter 'inner' cannot be 'noisy' itself")


class Noisy(ProcessVerifier):
    """Another verifier's scores, corrupted as its parameters say."""

    def __init__(self, inner: Verifier, p: NoisyParams) -> None:
        if isinstance(inner, ProcessVerifier):
            super().__init__(inner.splitter, inner.how)
        else:
            super().__init__()
        self.inner, self.p = inner, p
        self.name = f"noisy({inner.name})"
        self.traits = inner.traits  # built by name, it takes on the inner verifier's traits

    def flops_per_candidate(self, problem: Problem) -> float:
        return self.inner.flops_per_candidate(problem)

    async def score_steps(self, problem: Problem, candidates: Sequence[Candidate]) -> StepScores:
        if isinstance(self.inner, ProcessVerifier):
            got = await self.inner.score_steps(problem, candidates)
            values, cost = got.values, got.cost
        else:  # an outcome verifier: its one score counts as the only step's
            scores = await self.inner.score(problem, candidates)
            values, cost = tuple((v,) for v in scores.values), scores.cost
        out = []
        for c, steps in zip(candidates, values, strict=True):
            texts = self.prefixes(c) or [c.text]
            out.append(tuple(
                self._corrupt(problem, texts[min(t, len(texts) - 1)], t + 1, s)
                for t, s in enumerate(steps)
            ))  # fmt: skip
        return StepScores(tuple(out), cost)

    def _corrupt(self, problem: Problem, prefix: str, t: int, score: float) -> float:
        rng = random.Random(f"{self.p.seed}\x00{problem.id}\x00{prefix}")
        flip = self.p.false_positive if score < 0.5 else self.p.false_negative
        if rng.random() < flip:
            score = 1.0 - score
        pull = self.p.overconfidence * math.exp(-(t - 1) / self.p.horizon)
        return (1.0 - pull) * score + pull * rng.uniform(0.5, 1.0)  # confident, uninformed


@verifier("noisy", NoisyParams, Traits(wraps="inner"))
def noisy(params: NoisyParams, deps: VerifierDeps) -> Verifier:
    """Any verifier with set false-positive / false-negative rates and early overconfidence."""
    if traits_of(params.inner).reads_gold:
        remedy = "run it on a task, or wrap a verifier that needs no gold (e.g. inner=step_check)"
        gold_check(deps, f"'noisy' with inner={params.inner!r}", remedy)
    return Noisy(VERIFIERS.build(VERIFIERS.spec(params.inner), deps), params)
