"""Verifier-free scores from the policy's own token distribution: no extra model, no cost.

`self_certainty` is the mean over generated tokens of KL(uniform || p), the self-certainty
of Kang et al. 2025: confident answers put their mass on few tokens. `likelihood` is the
mean token log-probability. Both need logprobs, which the strategy then asks for.

As vote weights (weighted majority): self-certainty is a KL in nats, >= 0 and higher when
more confident, so it weighs as it is; a log-probability is <= 0, so likelihood weighs
exp(mean log p), the geometric-mean token probability (its_hub's certainty weighting).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from testtime.core.errors import ConfigError
from testtime.core.registry import Params
from testtime.core.types import Candidate, Problem
from testtime.verifiers.base import Scores, Traits, Verifier, VerifierDeps, verifier


@dataclass(frozen=True)
class CertaintyParams(Params):
    """These verifiers take no parameters: the scores come from the sampled tokens."""


class TokenScore(Verifier):
    """The mean of a per-token series the generator returned with each completion.

    A completion with no generated tokens, or one that came without the series (a backend
    that dropped its logprobs), scores `empty`: the least certain possible, weighing 0 in a
    vote. Only when no candidate has the series is it an error: nothing could be ranked.
    """

    traits = Traits(needs_logprobs=True)

    def __init__(self, name: str, field: str, empty: float) -> None:
        self.name = name
        self.field = field  # "certainty" or "logprobs", an attribute of Completion
        self.empty = empty

    async def score(self, problem: Problem, candidates: Sequence[Candidate]) -> Scores:
        series = [self._series(c) for c in candidates]
        if candidates and all(s is None for s in series):
            raise ConfigError(
                f"verifier {self.name!r} needs the generator's per-token {self.field}, but no "
                f"candidate has them; sample with logprobs=True (strategies do so for this "
                "verifier) on a backend that returns logprobs, or use another verifier"
            )
        return Scores(tuple(sum(s) / len(s) if s else self.empty for s in series))

    def _series(self, c: Candidate) -> tuple[float, ...] | None:
        return getattr(c.completion, self.field) if c.completion is not None else None


@verifier("self_certainty", CertaintyParams, Traits(needs_logprobs=True))
def self_certainty(params: Params, deps: VerifierDeps) -> Verifier:
    """Mean per-token KL(uniform || p) of the candidate itself (Kang et al. 2025)."""
    return TokenScore("self_certainty", "certainty", empty=0.0)


@verifier("likelihood", CertaintyParams, Traits(needs_logprobs=True, weight="exp"))
def likelihood(params: Params, deps: VerifierDeps) -> Verifier:
    """Mean token log-probability of the candidate under the policy."""
    return TokenScore("likelihood", "logprobs", empty=-math.inf)
