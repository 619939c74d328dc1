"""Particle filtering over solution steps (Puri et al. 2025, "Rollout Roulette"), with the
entropic annealing of Giannone et al. 2025 against premature exploitation.

The model proposes each next step; the PRM's score of the partial solution is the
likelihood. Every step, unfinished particles are extended by one sampled step and
reweighted by logit(PRM score); when the effective sample size falls below a threshold,
the population is resampled (core's multinomial or systematic resampling). Finished
particles keep their last weight. The heaviest particle wins.
"""

from __future__ import annotations

import asyncio
import math
import random
from dataclasses import dataclass
from typing import Any, Literal

from testtime.core import resampling
from testtime.core.errors import ConfigError
from testtime.core.types import Candidate, Result
from testtime.strategies.base import Context, Traits, call_seed, strategy
from testtime.strategies.stepwise import ROOT, StepParams, extend, finished

EPS = 1e-4  # PRM scores are clipped to [EPS, 1 - EPS] before the logit
SMALL = {"particles": 4, "max_steps": 4}  # the invariant suite's examples
EVERY_OPTION = {**SMALL, "resample": "systematic", "ess_threshold": 0.5, "entropic": True,
                "lookahead": True}  # fmt: skip


@dataclass(frozen=True)
class ParticleParams(StepParams):
    particles: int = 8  # N
    max_steps: int = 8
    resample: Literal["multinomial", "systematic"] = "multinomial"  # its_hub: multinomial
    ess_threshold: float = 1.0  # resample when ESS < threshold x N (1.0: every step)
    entropic: bool = False  # anneal the resampling temperature when ESS collapses (ePF)
    lookahead: bool = False  # weight by the PRM score of one step further (ePF's LaM)

    def validate(self) -> None:
        super().validate()
        self.positive("particles", "max_steps")
        if not 0 <= self.ess_threshold <= 1:
            raise ConfigError(
                f"parameter 'ess_threshold' must be in [0, 1], got {self.ess_threshold}"
            )


@strategy(
    "particle_filtering",
    ParticleParams,
    Traits("particles", budget_is_size=True, verifier="process", examples=(SMALL, EVERY_OPTION)),
)
async def particle_filtering(ctx: Context, p: ParticleParams) -> Result:
    """Particle filtering (Puri et al. 2025): extend every live particle by one step, weight
    it by logit(PRM score) (with `lookahead`, the score one step further), resample when the
    ESS drops; with `entropic`, flatten the resampling distribution by (N / ESS)(1 - t / T)
    when it collapses (Giannone et al. 2025)."""
    ctx.need_process_verifier()
    rng = random.Random(call_seed(ctx.seed, ctx.problem.id, 0))
    particles: list[Candidate] = [ROOT] * p.particles
    log_w = [0.0] * p.particles
    history: list[dict[str, Any]] = []
    for t in range(p.max_steps):
        live = [i for i, c in enumerate(particles) if not finished(c)]
        if not live:
            break
        grown = await asyncio.gather(*(
            extend(ctx, particles[i], 1, p)
            for i in live
        ))  # fmt: skip
        if not all(grown):
            break  # the budget refused a step: stop and keep the best so far
        scored = await ctx.score([g[0] for g in grown])
        ahead = await _look_ahead(ctx, scored, p) if p.lookahead else scored
        for i, c, a in zip(live, scored, ahead, strict=True):
            particles[i], log_w[i] = c, _logit(ctx.verifier_score(a))
        weights = resampling.normalize(log_w)
        ess = resampling.ess(weights)
        record: dict[str, Any] = {"particles": [c.id for c in particles], "weights": weights,
                                  "ess": ess, "resampled": False}  # fmt: skip
        if p.ess_threshold >= 1.0 or ess < p.ess_threshold * p.particles:
            heat = max(1.0, p.particles / ess * (1 - t / p.max_steps)) if p.entropic else 1.0
            probs = resampling.normalize([w / heat for w in log_w])
            draw = resampling.systematic if p.resample == "systematic" else resampling.multinomial
            ancestors = draw(probs, p.particles, rng)
            particles = [particles[a] for a in ancestors]
            log_w = [log_w[a] for a in ancestors]
            record |= {"resampled": True, "ancestors": ancestors, "temperature": heat}
        history.append(record)
    alive = [
        (w, -i, c) for i, (w, c) in enumerate(zip(log_w, particles, strict=True)) if c.id != -1
    ]
    best = max(alive, key=lambda x: (x[0], x[1]))[2] if alive else None
    return ctx.finish(best, trace={"steps": history})


async def _look_ahead(
    ctx: Context, particles: list[Candidate], p: ParticleParams
) -> list[Candidate]:
    """Look-ahead modulation (Giannone et al. 2025): each particle is valued by the PRM's
    score of one sampled step beyond it (charged, then discarded); finished ones by their own."""

    async def one(c: Candidate) -> Candidate:
        if finished(c):
            return c
        got = await extend(ctx, c, 1, p)  # fmt: skip
        return (await ctx.score(got))[0] if got else c

    return list(await asyncio.gather(*(one(c) for c in particles)))


def _logit(score: float) -> float:
    r = min(1 - EPS, max(EPS, score))
    return math.log(r / (1 - r))
