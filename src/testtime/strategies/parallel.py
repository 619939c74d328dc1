"""Parallel strategies: sample N independent solutions, then select one answer.

single sample, best-of-N, self-consistency, weighted majority, best-of-majority and
first-finish search. Each samples through the context (which keeps the budget) and selects
with the voting rules in core, so the same answer and ties are decided one way everywhere.
Scoring strategies ask the verifier once per distinct response.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from testtime.core.errors import ConfigError
from testtime.core.registry import Params
from testtime.core.types import Candidate, Result
from testtime.core.voting import FIRST, Group, frequent_groups, group, leader, singletons
from testtime.strategies.base import Context, Traits, strategy
from testtime.strategies.select import score_once, vote_weights

N4 = ({"n": 4},)  # the invariant suite's example: four samples


def check_sampling(temperature: float, top_p: float) -> None:
    """Range checks shared by every sampling strategy's parameters."""
    if not (temperature >= 0 and math.isfinite(temperature)):
        raise ConfigError(f"parameter 'temperature' must be >= 0 (0 = greedy), got {temperature}")
    if not 0 < top_p <= 1:
        raise ConfigError(f"parameter 'top_p' must be in (0, 1], got {top_p}")


@dataclass(frozen=True)
class SingleParams(Params):
    temperature: float = 0.0  # greedy by default
    top_p: float = 1.0

    def validate(self) -> None:
        check_sampling(self.temperature, self.top_p)


@dataclass(frozen=True)
class SampleParams(Params):
    n: int = 8  # N, the number of samples
    temperature: float = 0.8  # HF search-and-learn
    top_p: float = 1.0

    def validate(self) -> None:
        self.positive("n")
        check_sampling(self.temperature, self.top_p)


@dataclass(frozen=True)
class BestOfMajorityParams(SampleParams):
    alpha: float = 0.2  # keep answers with empirical frequency >= alpha (of order 1/C*)

    def validate(self) -> None:
        super().validate()
        if not 0 < self.alpha <= 1:
            raise ConfigError(f"parameter 'alpha' must be in (0, 1], got {self.alpha}")


def votes(groups: list[Group]) -> dict[str, float]:
    """A vote tally for the trace: answer -> total weight, in first-seen order."""
    return {g.answer: g.weight for g in groups}


@strategy("single", SingleParams, Traits(replay="single", examples=({}, {"temperature": 1.0})))
async def single(ctx: Context, p: SingleParams) -> Result:
    """One sample (greedy by default): the baseline every scaling method is measured against."""
    got = await ctx.sample(1, temperature=p.temperature, top_p=p.top_p)
    return ctx.finish(got[0] if got else None)


@strategy("best_of_n", SampleParams, Traits("n", replay="best", verifier="outcome", examples=N4))
async def best_of_n(ctx: Context, p: SampleParams) -> Result:
    """Best-of-N (Brown et al. 2024; Snell et al. 2024): N samples, keep the top-scored one."""
    ctx.need_verifier()
    scored = await score_once(ctx, await ctx.sample(p.n, temperature=p.temperature, top_p=p.top_p))
    best = ctx.best(scored)  # ties: the first sampled
    return ctx.finish(best, trace={"scores": [ctx.verifier_score(c) for c in scored]})


@strategy("self_consistency", SampleParams, Traits("n", replay="majority", examples=N4))
async def self_consistency(ctx: Context, p: SampleParams) -> Result:
    """Self-consistency (Wang et al. 2023): N samples, the most frequent answer wins."""
    samples = await ctx.sample(p.n, temperature=p.temperature, top_p=p.top_p)
    groups = group(samples, same=ctx.same)
    top = leader(groups)
    trace = {"votes": votes(groups), **singletons(groups)}  # singletons: the first stands
    return ctx.finish(samples[top.members[0]] if top else None, trace=trace)


@strategy(
    "weighted_majority",
    SampleParams,
    Traits("n", replay="weighted", verifier="outcome", examples=N4),
)
async def weighted_majority(ctx: Context, p: SampleParams) -> Result:
    """Weighted majority vote (Li et al. 2023; Wu et al. 2024): each sample votes for its
    answer with its verifier score, as a weight the verifier declares (never negative: a
    log-probability weighs exp of itself); the answer with the largest total wins, and its
    heaviest sample is chosen."""
    ctx.need_verifier()
    scored = await score_once(ctx, await ctx.sample(p.n, temperature=p.temperature, top_p=p.top_p))
    weights = vote_weights(ctx, scored)
    groups = group(scored, weights, ctx.same)
    top = leader(groups)
    best = scored[max(top.members, key=weights.__getitem__)] if top else None  # ties: first
    return ctx.finish(best, trace={"votes": votes(groups), **singletons(groups, "verifier")})


@strategy(
    "best_of_majority",
    BestOfMajorityParams,
    Traits("n", replay="best_of_majority", verifier="outcome", examples=({"n": 4, "alpha": 0.3},)),
)
async def best_of_majority(ctx: Context, p: BestOfMajorityParams) -> Result:
    """Best-of-majority (Di et al. 2025): keep answers sampled with frequency >= alpha, then
    submit the top-scored sample among them (k = 1). Only kept samples are scored; when no
    answer reaches alpha, the most frequent one stands in."""
    ctx.need_verifier()
    samples = await ctx.sample(p.n, temperature=p.temperature, top_p=p.top_p)
    groups = group(samples, same=ctx.same)
    kept = frequent_groups(samples, p.alpha, ctx.same)
    if not kept:
        top = leader(groups)
        kept = [top] if top else []
    # all singletons: the verifier picks among them if alpha kept them all, else the first stands
    note = singletons(groups, "verifier" if len(kept) > 1 else FIRST)
    pool = sorted((samples[i] for g in kept for i in g.members), key=lambda c: c.id)
    scored = await score_once(ctx, pool)
    best = ctx.best(scored)
    trace = {"kept": [g.answer for g in kept], "samples": len(samples), **note}
    return ctx.finish(best, trace=trace)


@strategy("first_finish", SampleParams, Traits("n", examples=N4))
async def first_finish(ctx: Context, p: SampleParams) -> Result:
    """First-finish search (Agarwal et al. 2025): start N decodes, return the first to finish
    (the shortest) and cancel the rest, which are charged only what they generated."""
    samples = await ctx.sample(p.n, temperature=p.temperature, top_p=p.top_p, first_finish=True)
    done = [c for c in samples if _finish(c) != "cancelled"]
    first = min(done, key=_length, default=None)  # ties: the first sampled
    return ctx.finish(first, trace={"finished": len(done), "lengths": [_length(c) for c in done]})


def _finish(c: Candidate) -> str | None:
    return c.completion.finish_reason if c.completion else None


def _length(c: Candidate) -> int:
    return c.completion.generated_tokens if c.completion else 0
