"""Sequential revisions (Snell et al. 2024, section 6) and verifier-guided refinement.

An attempt is revised by showing the model its chain's earlier attempts (the last
`context` of them, as Snell keeps 4) and asking it to solve the problem again: the earlier
attempts are the start of its own reply (`Request.prefix`), so any chat model can revise.
`refine` adds the verifier's feedback after each attempt: its score and, for a process
verifier, the first step it rejects. Snell's mix: N attempts run as N / `sequential`
parallel chains of `sequential` revisions (the sequential:parallel ratio), and the answer
is chosen over every attempt by vote or verifier, or by vote over each chain's last.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Literal

from testtime.core.errors import ConfigError
from testtime.core.registry import Params
from testtime.core.templates import fill, short
from testtime.core.types import Candidate, Result
from testtime.strategies.base import Context, Traits, strategy
from testtime.strategies.parallel import check_sampling
from testtime.strategies.select import SCORED, choose, need_one, tokens_of
from testtime.verifiers.base import ProcessVerifier

Pick = Literal["vote", "best", "weighted", "last"]
Note = Callable[[Candidate], Awaitable[str]]  # what follows an attempt in the next prompt
LEGACY = {"score:.2f": "score"}  # the old default's spelling, kept in stored runs: same text
CHAINS = ({"n": 4, "sequential": 2},)  # two chains of two attempts: a small example


@dataclass(frozen=True)
class ReviseParams(Params):
    n: int = 4  # N: attempts in all (a lab budget sets it)
    sequential: int = 4  # attempts per chain; ceil(n / sequential) chains run in parallel
    context: int = 4  # earlier attempts of its chain each revision sees (Snell: 4)
    retry: str = "\n\nLet me check that and solve the problem again.\n\n"
    select: Pick = "vote"  # over all attempts; "last": vote over each chain's last attempt
    temperature: float = 0.8
    top_p: float = 1.0

    def validate(self) -> None:
        self.positive("n", "sequential")
        if self.context < 0:
            raise ConfigError(f"parameter 'context' must be >= 0, got {self.context}")
        if not self.retry:
            raise ConfigError("parameter 'retry' is empty; it must give the model text")
        short("retry", self.retry)
        check_sampling(self.temperature, self.top_p)


@dataclass(frozen=True)
class RefineParams(ReviseParams):
    # templates: {score} (two decimals), {rejected} and {step} are filled in; {{ and }} are
    # literal braces. Nothing else: no format specs, no attributes (see `fill`).
    retry: str = "\n\nA checker scored that answer {score}{rejected}. Let me solve it again.\n\n"
    rejected: str = ', rejecting the step "{step}"'  # a process verifier's first rejection
    threshold: float = 0.5  # a step scored below this is rejected
    select: Pick = "best"

    def validate(self) -> None:
        super().validate()
        short("rejected", self.rejected)
        fill(self.retry, {"score": "", "rejected": ""}, "retry", LEGACY)
        fill(self.rejected, {"step": ""}, "rejected")


@strategy("revise", ReviseParams, Traits("n", too_small="error", examples=CHAINS))
async def revise(ctx: Context, p: ReviseParams) -> Result:
    """Sequential revisions (Snell et al. 2024): chains of attempts, each seeing its chain's
    earlier ones; N / sequential chains in parallel; the answer by vote or verifier."""
    tokens_of(ctx, p.retry, "the revision prompt")

    async def note(_: Candidate) -> str:
        return p.retry

    return await _chains(ctx, p, note)


@strategy(
    "refine",
    RefineParams,
    Traits("n", verifier="outcome", too_small="error", examples=CHAINS),
)
async def refine(ctx: Context, p: RefineParams) -> Result:
    """Verifier-guided refinement (Snell et al. 2024 sec. 6; IAD): each attempt is scored and
    the next sees the score and, under a process verifier, the first step it rejected."""
    verifier = ctx.need_verifier()
    tokens_of(
        ctx,
        fill(p.retry, {"score": "0.00", "rejected": ""}, "retry", LEGACY),
        "the feedback prompt",
    )

    async def note(c: Candidate) -> str:
        rejected = ""
        if isinstance(verifier, ProcessVerifier):
            (steps,) = await ctx.score_steps([c])
            bad = next((i for i, s in enumerate(steps) if s < p.threshold), None)
            if bad is not None:
                rejected = fill(p.rejected, {"step": verifier.steps(c)[bad]})
        else:
            await ctx.score([c])
        score = ctx.verifier_score(ctx.candidates[c.id])
        return fill(p.retry, {"score": f"{score:.2f}", "rejected": rejected}, "retry", LEGACY)

    return await _chains(ctx, p, note)


async def _chains(ctx: Context, p: ReviseParams, note: Note) -> Result:
    if p.select in SCORED:
        ctx.need_verifier()
    need_one(ctx, ctx.max_tokens, "attempt")
    count = math.ceil(p.n / p.sequential)
    lengths = [min(p.sequential, p.n - i * p.sequential) for i in range(count)]
    firsts = await ctx.sample(count, temperature=p.temperature, top_p=p.top_p)
    chains = await asyncio.gather(*(
        _chain(ctx, p, first, length, note) for first, length in zip(firsts, lengths, strict=False)
    ))  # fmt: skip
    attempts = [ctx.candidates[c.id] for chain in chains for c in chain]
    pool = [ctx.candidates[chain[-1].id] for chain in chains] if p.select == "last" else attempts
    chosen, tally = await choose(ctx, pool, "vote" if p.select == "last" else p.select)
    trace = {"chains": [[c.id for c in chain] for chain in chains], "votes": tally}
    return ctx.finish(chosen, trace=trace)


async def _chain(
    ctx: Context, p: ReviseParams, first: Candidate, length: int, note: Note
) -> list[Candidate]:
    """One chain: the first attempt, then revisions each seeing the last `context` ones."""
    chain, notes = [first], {}
    while len(chain) < length:
        notes[chain[-1].id] = await note(chain[-1])
        shown = chain[max(0, len(chain) - p.context) :] if p.context else []
        prefix = "".join(c.text + notes[c.id] for c in shown)
        got = await ctx.sample(
            1, temperature=p.temperature, top_p=p.top_p, prefix=prefix, parent=chain[-1].id
        )
        if not got:
            break  # the budget refused
        chain.append(_own(ctx, got[0], prefix))
    return chain


def _own(ctx: Context, c: Candidate, prefix: str) -> Candidate:
    """The attempt alone: its own text and the answer read from it (not from the earlier
    attempts it was shown)."""
    text = c.text[len(prefix) :]
    mine = replace(c, text=text, answer=ctx.extract(text))
    ctx.update(mine)
    return mine
