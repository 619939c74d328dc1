"""Final selection for strategies that end with a set of finished attempts, and the checks
they share: by vote, by the verifier's best, by verifier-weighted vote, or the last ones.

Sequential strategies (budget forcing, revisions) produce several finished attempts; one of
these rules picks the answer, with core's voting so ties are decided one way everywhere.
Scoring asks the verifier once per distinct response (`score_once`), and a weighted vote
weighs each score as the verifier declares (`vote_weights`). Strategies that show a model
several responses at once (USC's selector, fusion's aggregator) fit them into its context
with `fitted`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

from testtime.core.errors import BudgetError, ConfigError
from testtime.core.types import Candidate, Message, Request
from testtime.core.voting import group, leader, vote_weight
from testtime.generators.base import Generator
from testtime.strategies.base import Context

Selection = Literal["vote", "best", "weighted"]
SCORED: frozenset[str] = frozenset({"best", "weighted"})


async def choose(
    ctx: Context, finals: Sequence[Candidate], how: Selection
) -> tuple[Candidate | None, dict[str, float]]:
    """The chosen attempt among `finals` and the vote tally (answer -> weight)."""
    if how in SCORED:  # score only what is not scored yet
        name = ctx.need_verifier().name
        fresh = {
            c.id: c for c in await score_once(ctx, [c for c in finals if name not in c.scores])
        }
        finals = [fresh.get(c.id, c) for c in finals]
        weights = vote_weights(ctx, finals)
    else:
        weights = [1.0] * len(finals)
    groups = group(finals, weights if how == "weighted" else None, ctx.same)
    tally = {g.answer: g.weight for g in groups}
    if how == "best":
        return ctx.best(finals), tally
    top = leader(groups)
    if top is None:
        return None, tally
    return finals[max(top.members, key=weights.__getitem__)], tally  # ties: the first


async def score_once(ctx: Context, candidates: Sequence[Candidate]) -> list[Candidate]:
    """`ctx.score`, asking the verifier once per distinct response (text, answer and steps):
    a duplicate gets its first copy's score. A verifier call is cost; its_hub's best-of-N
    deduplicates the same way. A verifier whose scores depend on the candidates scored
    together (`relative`: a cluster's size, a consensus set) gets every copy, since each
    copy is one more sample that agrees."""
    if ctx.need_verifier().traits.relative:
        return await ctx.score(candidates)
    first: dict[tuple[str, str | None, tuple[str, ...]], Candidate] = {}
    for c in candidates:
        first.setdefault(_response(c), c)
    scored = {_response(c): c for c in await ctx.score(list(first.values()))}
    name = ctx.need_verifier().name
    out = []
    for c in candidates:
        done = scored[_response(c)]
        if done.id != c.id:
            done = c.with_score(name, done.scores[name])
            ctx.update(done)
        out.append(done)
    return out


def _response(c: Candidate) -> tuple[str, str | None, tuple[str, ...]]:
    return c.text, c.answer, c.steps


def vote_weights(ctx: Context, candidates: Sequence[Candidate]) -> list[float]:
    """Each scored candidate's vote weight: its verifier score through the transform the
    verifier declares (core.voting.vote_weight: never negative, 0 when not finite)."""
    how = ctx.need_verifier().traits.weight
    return [vote_weight(ctx.verifier_score(c), how) for c in candidates]


def tokens_of(ctx: Context, text: str, what: str) -> int:
    """How many tokens `text` adds after the prompt; a ConfigError when it adds none (a
    forcing or revision string must give the model something to read)."""
    base = Request(ctx.problem.messages)
    added = ctx.generator.count_prompt_tokens(Request(ctx.problem.messages, prefix=text))
    n = added - ctx.generator.count_prompt_tokens(base)
    if n <= 0:
        raise ConfigError(
            f"strategy {ctx.spec.name!r}: {what} {text!r} tokenises to nothing for model "
            f"{ctx.generator.name!r}; give it some visible text, e.g. 'Wait'"
        )
    return n


def need_one(ctx: Context, max_tokens: int, what: str) -> None:
    """A BudgetError, before anything is spent, when the budget cannot fit one sample."""
    if ctx.fits(1, max_tokens=max_tokens) == 0:
        raise BudgetError(
            f"strategy {ctx.spec.name!r}: the budget ({ctx.budget}) is smaller than one "
            f"{what} of up to {max_tokens} tokens; raise the budget or lower the length"
        )


def vote_or_first(ctx: Context, candidates: Sequence[Candidate]) -> tuple[Candidate, str]:
    """The fallback of a strategy whose model-made choice failed (a judge's reply, an
    aggregate): the vote leader's first member when two candidates agree on an answer
    ("vote"), else the first candidate ("first"). `candidates` must not be empty."""
    top = leader(group(candidates, same=ctx.same))
    if top is not None and top.count > 1:
        return candidates[top.members[0]], "vote"
    return candidates[0], "first"


MIN_SHOWN = 32  # the fewest characters of a response worth showing a judge or an aggregator
CUT = "\n[...]\n"  # stands where a shown response's middle was cut


def prompt_limit(model: Generator, most: int, reply_tokens: int) -> int:
    """The most prompt tokens a request to `model` may have: `most`, lowered to the model's
    context window less the `reply_tokens` it must still generate, where the window is known."""
    window = model.context_window
    return most if window is None else min(most, window - reply_tokens)


def fitted(
    model: Generator,
    build: Callable[[Sequence[str]], Sequence[Message]],
    texts: Sequence[str],
    limit: int,
) -> tuple[tuple[Message, ...], int] | None:
    """The chat `build` makes of `texts` and how many of them were cut: each longer than
    the largest length that lets the prompt fit in `limit` tokens (by `model`'s own count)
    loses its middle, so its opening and its conclusion (a final answer) stay. None when
    even `MIN_SHOWN` characters of each do not fit: the caller then falls back."""

    def chat(cap: int) -> tuple[Message, ...]:
        return tuple(build([middle(t, cap) for t in texts]))

    def fits(cap: int) -> bool:
        return model.count_prompt_tokens(Request(chat(cap))) <= limit

    longest = max((len(t) for t in texts), default=0)
    if fits(longest):
        return chat(longest), 0
    if longest <= MIN_SHOWN or not fits(MIN_SHOWN):
        return None
    lo, hi = MIN_SHOWN, longest  # lo fits, hi does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return chat(lo), sum(len(t) > lo for t in texts)


def middle(text: str, cap: int) -> str:
    """`text` cut to `cap` characters (and the `CUT` mark) by dropping its middle."""
    if len(text) <= cap:
        return text
    head = cap // 2
    return text[:head] + CUT + text[len(text) - (cap - head) :]
