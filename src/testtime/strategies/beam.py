"""Beam search under a process reward model (Snell et al. 2024; HF search-and-learn).

N partial solutions are kept alive. Each round, every beam is extended by one sampled step
(the root by N first steps); the PRM scores every new step; beams that finished are set
aside; the N/M best unfinished ones survive and each is extended M times next round.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from testtime.core.errors import ConfigError
from testtime.core.resampling import top_k
from testtime.core.types import Candidate, Result
from testtime.strategies.base import Context, Traits, strategy
from testtime.strategies.stepwise import ROOT, StepParams, extend, finished

SMALL = {"n": 4, "width": 2, "max_steps": 4}  # the invariant suite's example


@dataclass(frozen=True)
class BeamParams(StepParams):
    n: int = 16  # beams alive each round (N)
    width: int = 4  # children per surviving beam (M): N/M beams survive a round (HF default 4)
    max_steps: int = 8  # rounds before the search stops

    def validate(self) -> None:
        super().validate()
        self.positive("n", "width", "max_steps")
        if self.width > self.n:
            raise ConfigError(f"parameter 'width' ({self.width}) must be at most 'n' ({self.n})")


@strategy(
    "beam_search",
    BeamParams,
    Traits("n", budget_is_size=True, verifier="process", examples=(SMALL,)),
)
async def beam_search(ctx: Context, p: BeamParams) -> Result:
    """Beam search under a PRM (Snell et al. 2024): keep the N/M best partial solutions by
    their PRM score, extend each by M sampled next steps, until all finish; best one wins."""
    ctx.need_process_verifier()
    survivors = max(1, p.n // p.width)
    frontier: list[Candidate] = [ROOT]
    complete: list[Candidate] = []
    rounds: list[dict[str, Any]] = []
    for _ in range(p.max_steps):
        per_beam = p.n if frontier == [ROOT] else p.width

        asked = len(frontier) * per_beam
        grown = await asyncio.gather(*(
            extend(ctx, beam, per_beam, p)
            for beam in frontier
        ))  # fmt: skip
        children = [c for group in grown for c in group]
        if not children:
            break  # the budget refused every extension
        scored = await ctx.score(children)
        done = [c for c in scored if finished(c)]
        live = [c for c in scored if not finished(c)]
        complete += done
        frontier = [live[i] for i in top_k([ctx.verifier_score(c) for c in live], survivors)]
        rounds.append({"scored": [c.id for c in scored], "kept": [c.id for c in frontier],
                       "finished": [c.id for c in done]})  # fmt: skip
        if not frontier or len(children) < asked:  # nothing left, or the budget ran out
            break
    pool = [c for c in complete or frontier if c is not ROOT]
    best = ctx.best(pool)
    return ctx.finish(best, trace={"rounds": rounds, "finished": [c.id for c in complete]})
