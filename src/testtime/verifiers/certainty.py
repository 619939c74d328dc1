"""Verifier-free scores from the policy's own token distribution: no extra model, no cost.

`self_certainty` is the mean over generated tokens of KL(uniform || p), the self-certainty
of Kang et al. 2025: confident answers put their mass on few tokens. `likelihood` is the
mean token log-probability. Both need logprobs, which the strategy then asks for.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from testtime.core.errors import ConfigError
from testtime.core.registry import Params
from testtime.core.types import Candidate, Problem
from testtime.verifiers.base import VERIFIERS, Scores, Verifier, VerifierDeps


@dataclass(frozen=True)
class CertaintyParams(Params):
    """These verifiers take no parameters: the scores come from the sampled tokens."""


class TokenScore(Verifier):
    """The mean of a per-token series the generator returned with each completion.

    A completion with no generated tokens scores `empty`: the least certain possible.
    """

    needs_logprobs = True

    def __init__(self, name: str, field: str, empty: float) -> None:
        self.name = name
        self.field = field  # "certainty" or "logprobs", an attribute of Completion
        self.empty = empty

    async def score(self, problem: Problem, candidates: Sequence[Candidate]) -> Scores:
        return Scores(tuple(self._one(c) for c in candidates))

    def _one(self, c: Candidate) -> float:
        values: tuple[float, ...] | None = (
            getattr(c.completion, self.field) if c.completion is not None else None
        )
        if values is None:
            raise ConfigError(
                f"verifier {self.name!r} needs the generator's per-token {self.field}, but "
                f"candidate {c.id} has none; sample with logprobs=True (strategies do so "
                "for this verifier) on a backend that returns logprobs, or use another verifier"
            )
        return sum(values) / len(values) if values else self.empty


@VERIFIERS.register("self_certainty", CertaintyParams)
def self_certainty(params: Params, deps: VerifierDeps) -> Verifier:
    """Mean per-token KL(uniform || p) of the candidate itself (Kang et al. 2025)."""
    return TokenScore("self_certainty", "certainty", empty=0.0)


@VERIFIERS.register("likelihood", CertaintyParams)
def likelihood(params: Params, deps: VerifierDeps) -> Verifier:
    """Mean token log-probability of the candidate under the policy."""
    return TokenScore("likelihood", "logprobs", empty=-math.inf)
