"""Adaptive self-consistency: sample until the leading answer is confidently ahead.

Easy problems (one answer over and over) stop after a few samples; split ones keep
sampling up to the cap. Batches are small, which serializes one problem, but many problems
run at once, so the generator still batches their requests together.
"""

from __future__ import annotations

from dataclasses import dataclass

from testtime.core.errors import ConfigError
from testtime.core.registry import Params
from testtime.core.types import Candidate, Result
from testtime.core.voting import group, leader, vote_confidence
from testtime.strategies.base import Context, strategy
from testtime.strategies.parallel import check_sampling, votes


@dataclass(frozen=True)
class AdaptiveParams(Params):
    threshold: float = 0.95  # stop once P(leader is the mode) reaches this (Aggarwal et al.)
    max_samples: int = 40  # the cap, as in the paper
    batch: int = 1  # samples drawn between two checks of the stopping rule
    temperature: float = 0.8
    top_p: float = 1.0

    def validate(self) -> None:
        self.positive("max_samples", "batch")
        if not 0 < self.threshold <= 1:
            raise ConfigError(f"parameter 'threshold' must be in (0, 1], got {self.threshold}")
        check_sampling(self.temperature, self.top_p)


@strategy("adaptive_consistency", AdaptiveParams)
async def adaptive_consistency(ctx: Context, p: AdaptiveParams) -> Result:
    """Adaptive-Consistency (Aggarwal et al. 2023): draw samples `batch` at a time and stop
    when the Beta rule P(p1 > p2 | votes) >= threshold for the two leading answers, or at
    `max_samples`; then take the majority answer."""
    samples: list[Candidate] = []
    confidence, stopped = 0.0, "max_samples"
    while len(samples) < p.max_samples:
        k = min(p.batch, p.max_samples - len(samples))
        got = await ctx.sample(k, temperature=p.temperature, top_p=p.top_p)
        samples += got
        confidence = vote_confidence(group(samples, same=ctx.same))
        if confidence >= p.threshold:
            stopped = "confident"
            break
        if len(got) < k:
            stopped = "budget"
            break
    groups = group(samples, same=ctx.same)
    top = leader(groups)
    trace = {"samples": len(samples), "confidence": confidence, "stopped": stopped}
    chosen = samples[top.members[0]] if top else None
    return ctx.finish(chosen, trace={**trace, "votes": votes(groups)})
