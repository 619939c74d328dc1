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
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from testtime.core.errors import ConfigError
from testtime.core.registry import Params
from testtime.core.templates import fill, short
from testtime.core.types import Candidate, Message, Result
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
    prompt: str = TEMPLATE  # the comparison: {problem}, {a} and {b}, each once
    max_prompt_tokens: int = 4096  # a comparison's prompt, at most (the context lowers it)

    def validate(self) -> None:
        self.positive("n", "judge_tokens", "max_prompt_tokens")
        check_sampling(self.temperature, self.top_p)
        short("prompt", self.prompt)  # it may arrive in a server request: bounded, fields only
        fill(self.prompt, {"problem": "", "a": "", "b": ""}, "prompt")
        missing = [k for k in ("{problem}", "{a}", "{b}") if k not in self.prompt]
        if missing:
            raise ConfigError(
                f"parameter 'prompt' lacks {', '.join(missing)}; write a text with all three "
                "placeholders, e.g. the default: " + repr(TEMPLATE)
            )


EXAMPLES = ({"n": 3}, {"n": 5}, {"n": 4, "format": "round_robin"})


@strategy("tournament", TournamentParams, Traits("n", examples=EXAMPLES))
async def tournament(ctx: Context, p: TournamentParams) -> Result:
    """Sample N responses; a judge compares them in pairs, both orders each (knockout or
    round robin); the winner is chosen."""
    judge = await asyncio.to_thread(opened, p.judge) if p.judge else ctx.generator
    samples = await ctx.sample(p.n, temperature=p.temperature, top_p=p.top_p)
    first: dict[str, Candidate] = {}
    for c in samples:
        first.setdefault(c.text.strip(), c)  # identical responses are one entrant
    entrants = list(first.values())
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


class Bout:
    """The comparisons of one tournament, asked through the context, and their record."""

    def __init__(self, ctx: Context, p: TournamentParams, judge: Generator) -> None:
        self.ctx, self.p, self.judge = ctx, p, judge
        self.limit = prompt_limit(judge, p.max_prompt_tokens, p.judge_tokens)
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
        """Winners move on, round by round. The bracket is the next power of two: the first
        round's byes (the latest entrants) sit it out, so no entrant has two byes and every
        later round is full."""
        alive, rnd = list(entrants), 0
        while len(alive) > 1:
            byes = (1 << (len(alive) - 1).bit_length()) - len(alive)
            playing, sitting = alive[: len(alive) - byes], alive[len(alive) - byes :]
            pairs = list(zip(playing[::2], playing[1::2], strict=True))
            done = await asyncio.gather(*(self.compare(a, b, rnd) for a, b in pairs))
            self.comparisons.extend(done)
            on = [a if c["advances"] == a.id else b
                  for (a, b), c in zip(pairs, done, strict=True) if c["complete"]]  # fmt: skip
            if len(on) < len(pairs):  # the budget refused a judge call: the leader so far
                self.stopped = True
                return min(on or alive, key=lambda c: c.id)
            self.byes.extend([rnd, c.id] for c in sitting)
            alive, rnd = on + sitting, rnd + 1
        return alive[0] if alive else None

    async def round_robin(self, entrants: list[Candidate]) -> Candidate | None:
        """Every pair once, all asked at once (in rounds' order, so a budget that runs out
        leaves each entrant about as many games); most points wins, the earlier on a tie."""
        self.points = {c.id: 0.0 for c in entrants}
        games = [(r, entrants[i], entrants[j]) for r, pairs in enumerate(circle(len(entrants)))
                 for i, j in pairs]  # fmt: skip
        done = await asyncio.gather(*(self.compare(a, b, r) for r, a, b in games))
        self.comparisons.extend(done)
        for (_, a, b), c in zip(games, done, strict=True):
            if not c["complete"]:
                self.stopped = True
            elif c["winner"] is None:
                self.points[a.id] += 0.5
                self.points[b.id] += 0.5
            else:
                self.points[c["winner"]] += 1.0
        return min(entrants, key=lambda c: (-self.points[c.id], c.id), default=None)

    async def compare(self, a: Candidate, b: Candidate, rnd: int) -> dict[str, Any]:
        """One comparison of `a` (the earlier) and `b`, asked A-vs-B and B-vs-A together:
        complete unless the budget refused an order; won when the votes agree (or one order
        votes and the other names neither); else a tie, and `a` advances."""
        first, second = await asyncio.gather(self.ask(a, b), self.ask(b, a))
        votes = [v for v in (first["vote"], second["vote"]) if v is not None]
        complete = "budget" not in (first["refused"], second["refused"])
        winner = votes[0] if complete and votes and len(set(votes)) == 1 else None
        return {
            "round": rnd,
            "pair": [a.id, b.id],
            "orders": [first, second],
            "complete": complete,
            "winner": winner,  # None: a tie (or an incomplete comparison)
            "advances": (winner if winner is not None else a.id) if complete else None,
        }

    async def ask(self, a: Candidate, b: Candidate) -> dict[str, Any]:
        """The judge's reply with `a` shown as Response A and `b` as B, and whom it votes
        for. Refused ("budget") when the budget cannot fit the call, ("context") when the
        prompt cannot fit the judge's context even with both responses cut to a few
        characters; responses too long lose their middle (`cut` counts them)."""

        def build(texts: Sequence[str]) -> list[Message]:
            fields = {"problem": self.ctx.problem.prompt, "a": texts[0], "b": texts[1]}
            return [Message("user", fill(self.p.prompt, fields, "prompt"))]

        order: dict[str, Any] = {"a": a.id, "b": b.id, "reply": None, "parsed": None,
                                 "vote": None, "cut": 0, "refused": None}  # fmt: skip
        fit = fitted(self.judge, build, [a.text, b.text], self.limit)
        if fit is None:
            return {**order, "refused": "context"}
        chat, order["cut"] = fit
        got = await self.ctx.ask(
            chat, temperature=0.0, max_tokens=self.p.judge_tokens, generator=self.judge
        )
        if not got:
            return {**order, "refused": "budget"}
        letter = verdict(got[0].text)
        vote = None if letter is None else a.id if letter == "A" else b.id
        return {**order, "reply": got[0].text, "parsed": letter, "vote": vote}


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
