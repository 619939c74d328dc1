"""Budget forcing (s1, Muennighoff et al. 2025): a thinking budget in tokens for any chat model.

A chain thinks until it ends its thinking or reaches the cap T. At the cap its thinking is
ended for it: the end-of-thinking delimiter and an answer-forcing string ("Final answer:")
are appended and the answer is generated. Below a minimum, an end of thinking is refused up
to k times: the extension ("Wait") is appended to the partial text, which is continued with
`Request.prefix`. A model with a `</think>` delimiter ends its thinking with it (a stop
string here); a model without one ends with its end-of-turn token, which plays that role.

N chains of thinking length T run under one budget and vote (or a verifier picks), so one
lab sweep over (N, T) compares wider against longer thinking at equal compute.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from testtime.core.errors import ConfigError
from testtime.core.registry import Params
from testtime.core.types import Candidate, Result
from testtime.generators.base import Generator
from testtime.strategies.base import Context, Traits, strategy
from testtime.strategies.parallel import check_sampling
from testtime.strategies.select import SCORED, Selection, choose, need_one, tokens_of

THINK_END = "</think>"  # the delimiter of reasoning models (DeepSeek-R1, Qwen3, s1 variants)
WAITS = {"n": 2, "thinking_tokens": 20, "ignore": 3}  # the invariant suite's examples
PICKED = {"n": 2, "thinking_tokens": 8, "answer_tokens": 4, "select": "best"}


@dataclass(frozen=True)
class ForcingParams(Params):
    n: int = 1  # N parallel thinking chains (a lab budget sets it)
    thinking_tokens: int = 128  # T: the cap on each chain's thinking tokens
    min_thinking: int | None = None  # refuse an end of thinking below this (None: the cap)
    ignore: int = 0  # k: how many ends of thinking may be refused (s1's thinking_n_ignore)
    extension: str = "\nWait"  # appended instead of accepting an early end (s1: "Wait")
    answer_prompt: str = "\n\nFinal answer:"  # forces the answer once thinking ends
    answer_tokens: int = 16
    think_end: str = "auto"  # the end-of-thinking delimiter; "" = the end-of-turn token
    temperature: float = 0.8  # s1 thinks greedily (0); N > 1 chains need sampling
    top_p: float = 1.0
    select: Selection = "vote"

    def validate(self) -> None:
        self.positive("n", "thinking_tokens", "answer_tokens")
        if self.ignore < 0:
            raise ConfigError(f"parameter 'ignore' must be >= 0, got {self.ignore}")
        low = self.min_thinking
        if low is not None and not 0 <= low <= self.thinking_tokens:
            raise ConfigError(
                f"parameter 'min_thinking' must be in 0..thinking_tokens "
                f"({self.thinking_tokens}), got {low}"
            )
        for name in ("extension", "answer_prompt"):
            if not getattr(self, name):
                raise ConfigError(f"parameter {name!r} is empty; it must give the model text")
        check_sampling(self.temperature, self.top_p)


def delimiter(generator: Generator, think_end: str) -> str:
    """The end-of-thinking delimiter: as given, or for "auto" `</think>` when the model's
    tokenizer knows it, else "" (the end-of-turn token ends thinking)."""
    if think_end != "auto":
        return think_end
    vocab = getattr(getattr(generator, "tokenizer", None), "get_vocab", None)
    return THINK_END if callable(vocab) and THINK_END in vocab() else ""


@strategy(
    "budget_forcing",
    ForcingParams,
    Traits("n", budget_is_size=True, too_small="error", examples=(WAITS, PICKED)),
)
async def budget_forcing(ctx: Context, p: ForcingParams) -> Result:
    """Budget forcing (Muennighoff et al. 2025, s1): N chains think for at most T tokens;
    at the cap the answer is forced, below the minimum "Wait" replaces the end (k times)."""
    if p.select in SCORED:
        ctx.need_verifier()
    end = delimiter(ctx.generator, p.think_end)
    if p.ignore:
        tokens_of(ctx, p.extension, "the extension")
    tokens_of(ctx, end + p.answer_prompt, "the answer-forcing string")
    need_one(ctx, p.thinking_tokens + p.answer_tokens, "thinking chain")
    stop = (end,) if end else ()
    first = await ctx.sample(
        p.n, temperature=p.temperature, top_p=p.top_p, max_tokens=p.thinking_tokens, stop=stop
    )
    chains = await asyncio.gather(*(_chain(ctx, p, c, stop, end) for c in first))
    finals = [final for final, _ in chains]
    chosen, tally = await choose(ctx, finals, p.select)
    trace = {"chains": [info for _, info in chains], "votes": tally, "think_end": end or "eos"}
    return ctx.finish(chosen, trace=trace)


async def _chain(
    ctx: Context, p: ForcingParams, seg: Candidate, stop: tuple[str, ...], end: str
) -> tuple[Candidate, dict[str, Any]]:
    """Think on from the first segment until the cap or an accepted end, then answer."""
    floor = p.thinking_tokens if p.min_thinking is None else p.min_thinking
    used, waits = _generated(seg), 0
    while _ended(seg) and waits < p.ignore and used < floor:
        got = await ctx.sample(
            1, temperature=p.temperature, top_p=p.top_p, max_tokens=p.thinking_tokens - used,
            stop=stop, prefix=seg.text + p.extension, parent=seg.id,
        )  # fmt: skip
        if not got:
            break  # the budget refused
        seg, waits, used = got[0], waits + 1, used + _generated(got[0])
    ended = "model" if _ended(seg) else "cap"
    answer = await ctx.sample(  # read the answer out greedily, as s1 does
        1, temperature=0.0, max_tokens=p.answer_tokens, prefix=seg.text + end + p.answer_prompt,
        parent=seg.id,
    )  # fmt: skip
    final = answer[0] if answer else seg
    info = {
        "thinking_tokens": used, "waits": waits, "ended": ended, "answer": final.answer,
        "final": final.id,  # the chain's last candidate (chains end in any order)
    }  # fmt: skip
    return final, info


def _generated(c: Candidate) -> int:
    return c.completion.generated_tokens if c.completion else 0


def _ended(c: Candidate) -> bool:
    """Whether the model itself ended its thinking (end-of-turn, or the delimiter)."""
    return c.completion is not None and c.completion.finish_reason in ("eos", "stop")
