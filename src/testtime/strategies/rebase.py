"""REBASE, reward-balanced search (Wu et al. 2024), and DVTS, diverse verifier tree search
(HF search-and-learn).

REBASE spreads a fixed width over the frontier in proportion to softmax(PRM score / T_b):
promising nodes get many children, weak ones few or none; each finished solution uses up
one unit of width. DVTS splits the budget into independent subtrees that each follow their
PRM-best step, trading beam search's exploitation for diversity.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Literal

from testtime.core.errors import ConfigError
from testtime.core.resampling import rebase_allocate, top_k
from testtime.core.types import Candidate, Result
from testtime.core.voting import group, leader
from testtime.strategies.base import Context, Traits, strategy
from testtime.strategies.select import vote_weights
from testtime.strategies.stepwise import ROOT, StepParams, extend, finished

SMALL = {"n": 4, "max_steps": 4}  # the invariant suite's example: a width of 4


@dataclass(frozen=True)
class TreeParams(StepParams):
    n: int = 16  # width: finished solutions the search produces (REBASE's N)
    max_steps: int = 8

    def validate(self) -> None:
        super().validate()
        self.positive("n", "max_steps")


@dataclass(frozen=True)
class RebaseParams(TreeParams):
    balance: float = 0.2  # T_b, the softmax temperature over node scores (paper: 0.2)
    select: Literal["weighted", "best"] = "weighted"  # over leaves: weighted vote or best

    def validate(self) -> None:
        super().validate()
        self.positive("balance")


@dataclass(frozen=True)
class DvtsParams(TreeParams):
    width: int = 4  # M: steps sampled per subtree per round; n / M subtrees

    def validate(self) -> None:
        super().validate()
        self.positive("width")
        if self.width > self.n:
            raise ConfigError(f"parameter 'width' ({self.width}) must be at most 'n' ({self.n})")


@strategy(
    "rebase",
    RebaseParams,
    Traits(
        "n", budget_is_size=True, verifier="process", examples=(SMALL, {**SMALL, "select": "best"})
    ),
)
async def rebase(ctx: Context, p: RebaseParams) -> Result:
    """REBASE (Wu et al. 2024): each round, the unspent width B is shared over frontier nodes
    by softmax(score / T_b); finished children are leaves and spend one unit each."""
    ctx.need_process_verifier()
    frontier, scores, leaves, width = [ROOT], [0.0], [], p.n
    rounds: list[dict[str, Any]] = []
    for _ in range(p.max_steps):
        counts = rebase_allocate(scores, width, p.balance)
        grown = await asyncio.gather(*(
            extend(ctx, node, k, p)
            for node, k in zip(frontier, counts, strict=True) if k > 0
        ))  # fmt: skip
        children = [c for g in grown for c in g]
        if not children:
            break
        scored = await ctx.score(children)
        done = [c for c in scored if finished(c)]
        leaves += done
        width -= len(done)
        frontier = [c for c in scored if not finished(c)]
        scores = [ctx.verifier_score(c) for c in frontier]
        rounds.append({"allocation": counts, "leaves": [c.id for c in done]})
        if width <= 0 or not frontier or len(children) < sum(counts):
            break
    pool = leaves or frontier
    return ctx.finish(_select(ctx, [c for c in pool if c is not ROOT], p.select),
                      trace={"rounds": rounds, "leaves": [c.id for c in leaves]})  # fmt: skip


@strategy(
    "dvts",
    DvtsParams,
    Traits("n", budget_is_size=True, verifier="process", examples=({**SMALL, "width": 2},)),
)
async def dvts(ctx: Context, p: DvtsParams) -> Result:
    """DVTS (HF search-and-learn): n / M independent subtrees; each round every subtree
    samples M next steps and follows its PRM-best one; the best final step wins."""
    ctx.need_process_verifier()

    async def subtree() -> list[Candidate]:
        node, last = ROOT, []
        for _ in range(p.max_steps):
            last = await ctx.score(await extend(ctx, node, p.width, p))  # fmt: skip
            if not last:
                break
            node = last[top_k([ctx.verifier_score(c) for c in last], 1)[0]]
            if finished(node) or len(last) < p.width:
                break
        return last

    outputs = [c for tree in await asyncio.gather(*(subtree() for _ in range(p.n // p.width)))
               for c in tree]  # fmt: skip
    return ctx.finish(_select(ctx, outputs, "best"), trace={"outputs": [c.id for c in outputs]})


def _select(ctx: Context, pool: list[Candidate], how: str) -> Candidate | None:
    """The best candidate, or the best of the answer with the largest summed vote weight."""
    if not pool:
        return None
    if how == "weighted":
        top = leader(group(pool, vote_weights(ctx, pool), ctx.same))
        if top is not None:
            pool = [pool[i] for i in top.members]
    return pool[top_k([ctx.verifier_score(c) for c in pool], 1)[0]]
