"""Adaptive self-consistency: sample until the leading answer is confidently ahead.

Easy problems (one answer over and over) stop after a few samples; split ones keep
sampling up to the cap. Two stopping rules: Aggarwal et al.'s Beta posterior, checked
after every `batch` samples, and its_hub's doubling (2, 4, 8, ... samples until a
supermajority agrees). Neither stops on a single sample. Many problems run at once, so
the generator still batches their requests together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from testtime.core.errors import ConfigError
from testtime.core.registry import Params
from testtime.core.types import Candidate, Result
from testtime.core.voting import Group, agreement, group, leader, singletons, vote_confidence
from testtime.strategies.base import Context, Traits, strategy
from testtime.strategies.parallel import check_sampling, votes

Rule = Literal["beta", "doubling"]


@dataclass(frozen=True)
class AdaptiveParams(Params):
    rule: Rule = "beta"  # beta: Aggarwal et al.'s posterior; doubling: its_hub's 2, 4, 8, ...
    threshold: float = 0.95  # beta: stop once P(leader is the mode) reaches it; 1 = never
    supermajority: float = 0.75  # doubling: stop once this share agrees (its_hub's default)
    max_samples: int = 40  # the cap, as in the paper
    batch: int = 1  # beta: samples drawn between two checks of the stopping rule
    temperature: float = 0.8
    top_p: float = 1.0

    def validate(self) -> None:
        self.positive("max_samples", "batch")
        for name in ("threshold", "supermajority"):
            value = getattr(self, name)
            if not 0.5 < value <= 1:
                raise ConfigError(
                    f"parameter {name!r} must be in (0.5, 1] (at 0.5 or below a tie would "
                    f"stop the vote), got {value}; 1 for threshold means the whole budget"
                )
        check_sampling(self.temperature, self.top_p)


@strategy(
    "adaptive_consistency",
    AdaptiveParams,
    Traits("max_samples", examples=({"max_samples": 6}, {"rule": "doubling", "max_samples": 6})),
)
async def adaptive_consistency(ctx: Context, p: AdaptiveParams) -> Result:
    """Adaptive-Consistency (Aggarwal et al. 2023): draw samples and stop, from two samples
    on, when the stopping rule is met or at `max_samples`; then take the majority answer.
    beta: P(p1 > p2 | votes) >= threshold for the two leading answers, checked every
    `batch` samples (threshold 1 never stops early). doubling: 2, then as many again each
    round (4, 8, ...), stopping when the leader's share reaches `supermajority`."""
    samples: list[Candidate] = []
    confidence, stopped = 0.0, "max_samples"
    while len(samples) < p.max_samples:
        k = p.batch if p.rule == "beta" else max(2 - len(samples), len(samples))
        k = min(k, p.max_samples - len(samples))
        got = await ctx.sample(k, temperature=p.temperature, top_p=p.top_p)
        samples += got
        if len(samples) >= 2:  # one sample proves nothing (its Beta posterior is already 3/4)
            confidence, met = _check(p, group(samples, same=ctx.same), len(samples))
            if met and len(samples) < p.max_samples:
                stopped = "confident"
                break
        if len(got) < k:
            stopped = "budget"
            break
    groups = group(samples, same=ctx.same)
    top = leader(groups)
    trace = {"samples": len(samples), "confidence": confidence, "stopped": stopped}
    chosen = samples[top.members[0]] if top else None
    return ctx.finish(chosen, trace={**trace, "votes": votes(groups), **singletons(groups)})


def _check(p: AdaptiveParams, groups: list[Group], samples: int) -> tuple[float, bool]:
    """The stopping rule's statistic, and whether it says stop."""
    if p.rule == "beta":
        confidence = vote_confidence(groups)
        return confidence, p.threshold < 1 and confidence >= p.threshold
    share = agreement(groups, samples)
    return share, share >= p.supermajority
