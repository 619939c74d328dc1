"""Beam search under a process reward model (Snell et al. 2024; HF search-and-learn).

N partial solutions are kept alive. Each round, every beam is extended by one sampled step
(the root by N first steps); the PRM scores every new step; beams that finished are set
aside; the N/M best unfinished ones survive and each is extended M times next round.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from typing import Any

from testtime.core.errors import ConfigError
from testtime.core.registry import Params
from testtime.core.resampling import top_k
from testtime.core.steps import SplitMode, StepSplitter
from testtime.core.types import Candidate, Result
from testtime.strategies.base import Context, strategy
from testtime.strategies.parallel import check_sampling


@dataclass(frozen=True)
class BeamParams(Params):
    n: int = 16  # beams alive each round (N)
    width: int = 4  # children per surviving beam (M): N/M beams survive a round (HF default 4)
    max_steps: int = 8  # rounds before the search stops
    step_tokens: int = 96  # the most tokens one step may take
    temperature: float = 0.8  # HF search-and-learn
    top_p: float = 1.0
    split: SplitMode = "blank_line"  # steps end at a blank line, a 'Step k:' marker, or a stop
    pattern: str = ""  # the stop string for split=stop

    def validate(self) -> None:
        self.positive("n", "width", "max_steps", "step_tokens")
        check_sampling(self.temperature, self.top_p)
        if self.width > self.n:
            raise ConfigError(f"parameter 'width' ({self.width}) must be at most 'n' ({self.n})")
        if StepSplitter(self.split, self.pattern).stop is None:
            raise ConfigError(
                "beam search generates one step at a time and needs a step mode "
                "that ends a step with a stop string: blank_line, markers or stop"
            )


@strategy("beam_search", BeamParams)
async def beam_search(ctx: Context, p: BeamParams) -> Result:
    """Beam search under a PRM (Snell et al. 2024): keep the N/M best partial solutions by
    their PRM score, extend each by M sampled next steps, until all finish; best one wins."""
    ctx.need_process_verifier()
    stop = StepSplitter(p.split, p.pattern).stop or ""
    survivors = max(1, p.n // p.width)
    frontier: list[Candidate] = [Candidate("", id=-1)]  # the root: no steps yet
    finished: list[Candidate] = []
    rounds: list[dict[str, Any]] = []
    for _ in range(p.max_steps):
        per_beam = p.n if frontier[0].id == -1 else p.width

        async def extend(beam: Candidate, k: int = per_beam) -> list[Candidate]:
            prefix = beam.text + stop if beam.text else ""
            got = await ctx.sample(
                k, temperature=p.temperature, top_p=p.top_p, max_tokens=p.step_tokens,
                stop=[stop], prefix=prefix, parent=None if beam.id == -1 else beam.id,
            )  # fmt: skip
            return [_with_steps(c, beam, prefix) for c in got]

        asked = len(frontier) * per_beam
        children = [c for group in await asyncio.gather(*map(extend, frontier)) for c in group]
        if not children:
            break  # the budget refused every extension
        scored = await ctx.score(children)
        done = [c for c in scored if _done(c)]
        live = [c for c in scored if not _done(c)]
        finished += done
        frontier = [live[i] for i in top_k([ctx.verifier_score(c) for c in live], survivors)]
        rounds.append({"scored": [c.id for c in scored], "kept": [c.id for c in frontier],
                       "finished": [c.id for c in done]})  # fmt: skip
        if not frontier or len(children) < asked:  # nothing left, or the budget ran out
            break
    pool = [c for c in finished or frontier if c.id != -1]  # never the empty root
    best = max(pool, key=ctx.verifier_score, default=None)
    return ctx.finish(best, trace={"rounds": rounds, "finished": [c.id for c in finished]})


def _with_steps(child: Candidate, parent: Candidate, prefix: str) -> Candidate:
    """The child with its steps: the parent's, plus the one it just generated."""
    return replace(child, steps=(*parent.steps, child.text[len(prefix) :].strip()))


def _done(c: Candidate) -> bool:
    """A beam is finished when its last step ended the solution (not at a step boundary)."""
    return c.completion is None or c.completion.finish_reason != "stop"
