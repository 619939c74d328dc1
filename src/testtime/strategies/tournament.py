"""Pairwise tournament: sample N responses, then a judge compares them two at a time.

The judge (the policy, or `judge`: a model of its own) reads the request and two responses
and says which is better. Every comparison is asked in both orders, A vs B and B vs A,
because LLM judges favour a position: a response wins only when both orders pick it, and a
split is a tie (the swap rule of Zheng et al. 2023, "Judging LLM-as-a-Judge with MT-Bench
and Chatbot Arena", which PairS, Liu et al. 2024, "Aligning with Human Judgement: The Role
of Pairwise Preference in Large Language Model Evaluators", also uses to cancel position
bias). Two formats:

- `knockout`, the pairwise knockout of PairJudge RM (Liu et al. 2025, "PairJudge RM: Perform
  Best-of-N Sampling with Knockout Tournament"): entrants meet in sampling order (1st vs
  2nd, 3rd vs 4th, ...) and winners move on. Short of a power of two, the latest entrants
  get a bye in the first round only (5 entrants: 1st vs 2nd while 3rd-5th sit out, then
  two semifinals); N - 1 comparisons in all.
- `round_robin`: every pair meets once (rounds by the circle method, so each entrant plays
  once per round); a win is 1 point, a tie 1/2 to each (a Copeland score); most points wins.

The rules, each recorded in the trace (`comparisons`, `unparsed`, `unfit`, `ties`, `stopped`):
- A reply is a vote when it reads as a letter: "A", "B", "(A)", "Response A ...", "[[A]]"
  (the last [[X]] when it reasons first). Any other reply is no vote for that order. One
  vote against no vote decides; two votes that disagree, or none, make a tie.
- Responses too long for the judge's context (or `max_prompt_tokens`) lose their middle
  (`strategies/select.py: fitted`); an order that cannot fit even so gets no vote (`unfit`).
- A tie in a knockout sends the earlier-sampled entrant on; equal points in a round robin
  go to the earlier one. Samples are i.i.d., so the earlier is as fair a draw as a coin, and
  the rule replays from stored comparisons without a seed. A judge that always answers "A"
  thus decides nothing: every comparison ties and the first sample wins, as with one sample.
- The judge answers greedily (`judge_temperature` 0), so its verdict on a pair depends on the
  request and the two texts alone, and the lab replays a tournament of any k of its stored
  samples from verdicts stored once per pair (`knockout`, `schedule`, `standings` and
  `settle` below are that bracket logic, which this strategy and the lab's replay share). A
  sampled judge (`judge_temperature` > 0) draws each call's seed by call order, as every
  `ctx.ask` does: its verdict on a pair depends on when it was asked, so the lab runs such a
  tournament at each budget instead (`order_dependent`).
- Identical responses are one entrant (the first sample of that text): a text compared with
  itself says nothing. One entrant (one sample, or all identical): no comparison at all.
- Every judge call is a `ctx.ask` (verifier cost). When the budget refuses one, nothing more
  is asked and the leader so far is returned (`budget_exhausted`): in a knockout the
  earliest of those that won a comparison in the last round played (else the earliest still
  in), in a round robin the most points so far.

`judge` opens a model by name (once per process, `generators/models.py: opened`, shared with
any other component naming it): a server refuses it, as a request may not load models; the
lab and the CLI take any name `load_generator` takes.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Callable, Sequence
from collections.abc import Generator as PyGenerator
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from testtime.core.errors import ConfigError
from testtime.core.registry import Params
from testtime.core.templates import fill, short
from testtime.core.types import Candidate, Message, Problem, Result
from testtime.generators.base import Generator
from testtime.generators.models import opened
from testtime.strategies.base import Context, Traits, strategy
from testtime.strategies.parallel import check_sampling
from testtime.strategies.select import fitted, prompt_limit

TEMPLATE = (
    "Which response answers the request better?\n\n"
    "Request:\n{problem}\n\n"
    "[Response A]\n{a}\n[End of Response A]\n\n"
    "[Response B]\n{b}\n[End of Response B]\n\n"
    "Reply with one letter: A or B."
)
POLICY = "policy"  # how the trace names the policy as judge ("" in the parameters)
Letter = Literal["A", "B"]
Format = Literal["knockout", "round_robin"]


@dataclass(frozen=True)
class TournamentParams(Params):
    # a judge is a model opened by name: a server refuses it (a request may not load models)
    _models: ClassVar[frozenset[str]] = frozenset({"judge"})
    n: int = 8  # N, the responses sampled
    temperature: float = 0.8
    top_p: float = 1.0
    format: Format = "knockout"
    judge: str = ""  # the judge model (any name load_generator takes); "": the policy
    judge_tokens: int = 16  # one judge reply, at most (raise it for a judge that reasons)
    judge_temperature: float = 0.0  # 0: greedy, a verdict the texts alone decide (replayable)
    prompt: str = TEMPLATE  # the comparison: {problem}, {a} and {b}, each once
    max_prompt_tokens: int = 4096  # a comparison's prompt, at most (the context lowers it)

    def validate(self) -> None:
        self.positive("n", "judge_tokens", "max_prompt_tokens")
        check_sampling(self.temperature, self.top_p)
        if not (self.judge_temperature >= 0 and math.isfinite(self.judge_temperature)):
            raise ConfigError(
                f"parameter 'judge_temperature' must be >= 0 (0 = a greedy judge), got "
                f"{self.judge_temperature}"
            )
        short("prompt", self.prompt)  # it may arrive in a server request: bounded, fields only
        fill(self.prompt, {"problem": "", "a": "", "b": ""}, "prompt")
        missing = [k for k in ("{problem}", "{a}", "{b}") if k not in self.prompt]
        if missing:
            raise ConfigError(
                f"parameter 'prompt' lacks {', '.join(missing)}; write a text with all three "
                "placeholders, e.g. the default: " + repr(TEMPLATE)
            )


EXAMPLES = ({"n": 3}, {"n": 5}, {"n": 4, "format": "round_robin"})
# the parameters a verdict depends on, besides the request and the two texts (and the
# policy, when it judges): tournaments alike in these share the lab's stored verdicts
JUDGING = ("judge", "judge_tokens", "judge_temperature", "prompt", "max_prompt_tokens")


@strategy("tournament", TournamentParams, Traits("n", replay="tournament", examples=EXAMPLES))
async def tournament(ctx: Context, p: TournamentParams) -> Result:
    """Sample N responses; a judge compares them in pairs, both orders each (knockout or
    round robin); the winner is chosen."""
    judge = await asyncio.to_thread(opened, p.judge) if p.judge else ctx.generator
    samples = await ctx.sample(p.n, temperature=p.temperature, top_p=p.top_p)
    entrants = [samples[i] for i in distinct([c.text for c in samples])]
    bout = Bout(ctx, p, judge)
    if p.format == "knockout":
        winner = await bout.knockout(entrants)
    else:
        winner = await bout.round_robin(entrants)
    trace: dict[str, Any] = {
        "format": p.format,
        "judge": p.judge or POLICY,
        "samples": len(samples),
        "entrants": [c.id for c in entrants],
        **bout.record(),
    }
    return ctx.finish(winner, trace=trace)


def order_dependent(p: TournamentParams) -> str:
    """Why the judge's verdict on a pair depends on more than the request and the two texts
    ('' when it does not, and stored verdicts stand for it in any tournament)."""
    if p.judge_temperature > 0:
        return (
            f"its judge samples (judge_temperature={p.judge_temperature:g}) with a seed drawn "
            "by call order, so a verdict depends on when it was asked"
        )
    return ""


def asking(p: TournamentParams) -> dict[str, Any]:
    """How a comparison is asked (besides its chat): what `ctx.ask` and the lab both send."""
    return {"temperature": p.judge_temperature, "max_tokens": p.judge_tokens}


def comparison(
    judge: Generator, p: TournamentParams, problem: Problem, a: str, b: str
) -> tuple[tuple[Message, ...], int] | None:
    """The chat that shows `a` as Response A and `b` as B, and how many of them lost their
    middle to fit the judge's context (`strategies/select.py: fitted`); None when even a
    few characters of each do not fit."""

    def build(texts: Sequence[str]) -> list[Message]:
        fields = {"problem": problem.prompt, "a": texts[0], "b": texts[1]}
        return [Message("user", fill(p.prompt, fields, "prompt"))]

    limit = prompt_limit(judge, p.max_prompt_tokens, p.judge_tokens)
    return fitted(judge, build, [a, b], limit)


class Bout:
    """The comparisons of one tournament, asked through the context, and their record."""

    def __init__(self, ctx: Context, p: TournamentParams, judge: Generator) -> None:
        self.ctx, self.p, self.judge = ctx, p, judge
        self.comparisons: list[dict[str, Any]] = []  # in bracket (or schedule) order
        self.byes: list[list[int]] = []  # [round, entrant id]
        self.points: dict[int, float] = {}
        self.stopped = False  # the budget refused a judge call

    def record(self) -> dict[str, Any]:
        """What the trace keeps: every comparison, and the counts of what was unusual."""
        orders = [o for c in self.comparisons for o in c["orders"]]
        return {
            "comparisons": self.comparisons,
            "byes": self.byes,
            "points": [[i, v] for i, v in self.points.items()],
            "unparsed": sum(1 for o in orders if o["reply"] is not None and o["parsed"] is None),
            "unfit": sum(1 for o in orders if o["refused"] == "context"),
            "ties": sum(1 for c in self.comparisons if c["complete"] and c["winner"] is None),
            "stopped": self.stopped,
        }

    async def knockout(self, entrants: list[Candidate]) -> Candidate | None:
        """The bracket of `knockout`, each round's comparisons asked at once."""
        by_id = {c.id: c for c in entrants}
        bracket, rnd = knockout([c.id for c in entrants]), 0
        try:
            games, sitting = next(bracket)
            while True:
                done = await asyncio.gather(
                    *(self.compare(by_id[a], by_id[b], rnd) for a, b in games)
                )
                self.comparisons.extend(done)
                outcomes = [Outcome(c["complete"], c["winner"]) for c in done]
                if all(o.complete for o in outcomes):
                    self.byes.extend([rnd, e] for e in sitting)
                else:  # the budget refused a judge call: the leader so far
                    self.stopped = True
                games, sitting = bracket.send(outcomes)
                rnd += 1
        except StopIteration as end:
            return None if end.value is None else by_id[end.value]

    async def round_robin(self, entrants: list[Candidate]) -> Candidate | None:
        """Every pair once (`schedule`), all asked at once (in rounds' order, so a budget that
        runs out leaves each entrant about as many games); `standings` ranks them."""
        by_id = {c.id: c for c in entrants}
        games = schedule([c.id for c in entrants])
        done = await asyncio.gather(*(self.compare(by_id[a], by_id[b], r) for r, (a, b) in games))
        self.comparisons.extend(done)
        outcomes = [Outcome(c["complete"], c["winner"]) for c in done]
        self.stopped = not all(o.complete for o in outcomes)
        self.points, winner = standings([c.id for c in entrants], [g for _, g in games], outcomes)
        return None if winner is None else by_id[winner]

    async def compare(self, a: Candidate, b: Candidate, rnd: int) -> dict[str, Any]:
        """One comparison of `a` (the earlier) and `b`, asked A-vs-B and B-vs-A together,
        settled by `decide`; a tie sends `a` on."""
        first, second = await asyncio.gather(self.ask(a, b), self.ask(b, a))
        complete = "budget" not in (first["refused"], second["refused"])
        outcome = decide((first["vote"], second["vote"]), complete)
        return {
            "round": rnd,
            "pair": [a.id, b.id],
            "orders": [first, second],
            "complete": complete,
            "winner": outcome.winner,  # None: a tie (or an incomplete comparison)
            "advances": outcome.advances(a.id),
        }

    async def ask(self, a: Candidate, b: Candidate) -> dict[str, Any]:
        """The judge's reply with `a` shown as Response A and `b` as B, and whom it votes
        for. Refused ("budget") when the budget cannot fit the call, ("context") when the
        prompt cannot fit the judge's context even with both responses cut to a few
        characters; responses too long lose their middle (`cut` counts them)."""
        order: dict[str, Any] = {"a": a.id, "b": b.id, "reply": None, "parsed": None,
                                 "vote": None, "cut": 0, "refused": None}  # fmt: skip
        fit = comparison(self.judge, self.p, self.ctx.problem, a.text, b.text)
        if fit is None:
            return {**order, "refused": "context"}
        chat, order["cut"] = fit
        got = await self.ctx.ask(chat, generator=self.judge, **asking(self.p))
        if not got:
            return {**order, "refused": "budget"}
        letter = verdict(got[0].text)
        vote = None if letter is None else a.id if letter == "A" else b.id
        return {**order, "reply": got[0].text, "parsed": letter, "vote": vote}


# -- the bracket logic: pure, shared by this strategy and the lab's replay --------------------
# Entrants are numbered in sampling order (a smaller number was sampled earlier); a game is
# (earlier, later).

Game = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Outcome:
    """One comparison: complete unless the budget refused one of its orders; `winner` the
    entrant its votes named (None: a tie, or incomplete)."""

    complete: bool
    winner: int | None = None

    def advances(self, earlier: int) -> int | None:
        """Who moves on: the winner, the earlier entrant on a tie, none when incomplete."""
        if not self.complete:
            return None
        return self.winner if self.winner is not None else earlier


def decide(votes: Sequence[int | None], complete: bool = True) -> Outcome:
    """A comparison from the entrant each order voted for (None: no vote): won when the
    votes agree, or one order votes and the other names neither; else a tie (Zheng et al.'s
    swap rule)."""
    cast = [v for v in votes if v is not None]
    won = complete and bool(cast) and len(set(cast)) == 1
    return Outcome(complete, cast[0] if won else None)


def distinct(texts: Sequence[str]) -> list[int]:
    """The entrants among samples: the first of each distinct (stripped) text, in order; a
    text compared with itself says nothing."""
    first: dict[str, int] = {}
    for i, t in enumerate(texts):
        first.setdefault(t.strip(), i)
    return list(first.values())


def knockout(
    entrants: Sequence[int],
) -> PyGenerator[tuple[list[Game], list[int]], Sequence[Outcome], int | None]:
    """The knockout bracket: yields each round's games and the entrants sitting it out, is
    sent their outcomes, and returns the winner. The bracket is the next power of two: the
    first round's byes (the latest entrants) sit it out, so no entrant has two byes and
    every later round is full; winners move on in order. A round with an incomplete game
    ends it: the earliest of those that won a game that round (else the earliest still in)."""
    alive = list(entrants)
    while len(alive) > 1:
        byes = (1 << (len(alive) - 1).bit_length()) - len(alive)
        playing, sitting = alive[: len(alive) - byes], alive[len(alive) - byes :]
        games = list(zip(playing[::2], playing[1::2], strict=True))
        outcomes = yield games, sitting
        on = [o.advances(a) for (a, _), o in zip(games, outcomes, strict=True)]
        won = [e for e in on if e is not None]
        if len(won) < len(games):
            return min(won or alive)
        alive = won + sitting
    return alive[0] if alive else None


def schedule(entrants: Sequence[int]) -> list[tuple[int, Game]]:
    """A round robin's games, (round, game), in rounds' order (`circle`)."""
    return [(r, (entrants[i], entrants[j])) for r, pairs in enumerate(circle(len(entrants)))
            for i, j in pairs]  # fmt: skip


def standings(
    entrants: Sequence[int], games: Sequence[Game], outcomes: Sequence[Outcome]
) -> tuple[dict[int, float], int | None]:
    """A round robin's points (a win 1, a tie 1/2 each, an incomplete game nothing: Copeland)
    and its winner: most points, the earlier entrant on equal points."""
    points = dict.fromkeys(entrants, 0.0)
    for (a, b), o in zip(games, outcomes, strict=True):
        if not o.complete:
            continue
        if o.winner is None:
            points[a] += 0.5
            points[b] += 0.5
        else:
            points[o.winner] += 1.0
    return points, min(entrants, key=lambda e: (-points[e], e), default=None)


def settle(fmt: Format, entrants: Sequence[int], play: Callable[[int, int], Outcome]) -> int | None:
    """The winner of a tournament whose every game's outcome is known at once (`play`, the
    earlier entrant first): the lab replays stored verdicts through it."""
    if fmt == "round_robin":
        games = [g for _, g in schedule(entrants)]
        return standings(entrants, games, [play(a, b) for a, b in games])[1]
    bracket = knockout(entrants)
    try:
        games, _ = next(bracket)
        while True:
            games, _ = bracket.send([play(a, b) for a, b in games])
    except StopIteration as end:
        return end.value  # type: ignore[no-any-return]


def circle(n: int) -> list[list[tuple[int, int]]]:
    """Round-robin rounds for entrants 0..n-1 by the circle method (one sits out each round
    when n is odd): every pair exactly once, as (earlier, later)."""
    seats: list[int | None] = [*range(n), *([None] if n % 2 else [])]
    rounds = []
    for _ in range(len(seats) - 1):
        half = len(seats) // 2
        met = zip(seats[:half], reversed(seats[half:]), strict=True)
        rounds.append([(min(x, y), max(x, y)) for x, y in met if x is not None and y is not None])
        seats = [seats[0], seats[-1], *seats[1:-1]]
    return rounds


_BRACKETS = re.compile(r"\[\[\s*([AB])\s*\]\]")
_NAMED = re.compile(r"\b(?i:response|output|assistant|answer|verdict)\b\W{0,3}\(?([AB])\b")
_LEAD = re.compile(r"^\W*([AB])(?:$|[^\w\s]|[^\S\n]*\n)")


def verdict(reply: str) -> Letter | None:
    """The letter a judge's reply names: its last "[[X]]"; else a reply that opens with the
    letter alone ("A", "(B).", "**A**") or with "Response X"; else "Response X" when every
    mention names the same X. None when it names neither (or both)."""
    text = reply.strip()
    found = _BRACKETS.findall(text)[-1:]
    if not found:
        lead = _LEAD.match(text) or _NAMED.match(re.sub(r"^\W*", "", text))
        found = [lead.group(1)] if lead else list(set(_NAMED.findall(text)))
    if len(found) != 1:
        return None
    return "A" if found[0] == "A" else "B"
