"""The engine's bookkeeping: one `Job` per request, one `Seq` per sample being decoded.

A sequence accepts one token at a time and decides when it ends: an end-of-sequence token
("eos", not part of the text), a stop string in the decoded text ("stop", the text is cut
before it, OpenAI style), or `max_tokens` ("length"). A sample under a response format
(`grammar.py`) feeds each token to its grammar matcher, and ends with "stop" at the
end-of-sequence token that completes the grammar. Every token a sequence generated is
charged, including the EOS and the tokens of sequences that were cancelled.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from testtime.core.cost import Cost
from testtime.core.errors import TesttimeError
from testtime.core.types import Completion, FinishReason, Request
from testtime.generators import grammar
from testtime.generators.base import Generation
from testtime.generators.sampling import RowParams, TokenInfo

Decode = Callable[[list[int]], str]


@dataclass(eq=False)
class Job:
    """One request in flight: its prompt tokens, its samples, and where the result goes."""

    request: Request
    prompt: list[int]
    future: Future[Generation]
    max_tokens: int  # request.max_tokens, clipped to the model's context
    started: float = field(default_factory=time.perf_counter)
    seqs: list[Seq] = field(default_factory=list)
    recomputed: int = 0  # prompt tokens this job's prefill computed
    cached: int = 0  # prompt tokens served from a cache (the n-1 shared copies included)
    error: BaseException | None = None  # set when this request failed; its rows are dropped
    grammar: Any = None  # the compiled response format its samples follow (grammar.py)
    eos: frozenset[int] = frozenset()  # where its grammar's samples may end

    @property
    def abandoned(self) -> bool:
        return self.future.done()  # the caller cancelled (or a result is already set)

    @property
    def extent(self) -> int:
        """The most cache columns one of its rows can need: prompt plus every new token."""
        return len(self.prompt) + self.max_tokens

    def fail(self, exc: BaseException) -> None:
        """This request failed: end its sequences; the engine hands `exc` to the caller."""
        self.error = self.error or exc
        for s in self.seqs:
            if s.finish is None:
                s.finish = "cancelled"

    def past(self, now: float) -> bool:
        """Whether the request's deadline has passed."""
        return self.request.deadline is not None and now >= self.request.deadline

    def done(self) -> bool:
        return all(s.finish is not None for s in self.seqs)

    def cancel_rest(self) -> None:
        """First-finish: stop every sequence still running; their tokens stay charged."""
        for s in self.seqs:
            if s.finish is None:
                s.finish = "cancelled"

    def result(self, n_params: int, decode: Decode) -> Generation:
        comps = tuple(s.completion(len(self.prompt), decode) for s in self.seqs)
        cost = Cost.of_generation(
            n_params,
            prompt_tokens=self.recomputed,
            cached_prompt_tokens=self.cached,
            generated_tokens=sum(c.generated_tokens for c in comps),
            samples=len(comps),
            seconds=time.perf_counter() - self.started,
        )
        return Generation(comps, cost)


@dataclass(eq=False)
class Seq:
    """One sample: the tokens it generated and how it ended."""

    job: Job
    rng: random.Random
    stop: tuple[str, ...]
    length: int  # tokens of this sequence in the KV cache
    tokens: list[int] = field(default_factory=list)  # generated, without a final EOS
    generated: int = 0  # tokens generated, EOS included
    infos: list[TokenInfo] = field(default_factory=list)
    finish: FinishReason | None = None
    cut: int | None = None  # where the first stop string starts in the decoded text
    checked: int = 0  # decoded characters already searched for stop strings
    matcher: Any = None  # its grammar's state (an xgrammar GrammarMatcher), if it has one

    @classmethod
    def start(cls, job: Job, index: int) -> Seq:
        """Sample `index` of a job, with its own random stream (seeded: seed and index, so
        sample i of a stream is the same whether it is drawn alone or among n)."""
        r = job.request
        seed = f"{r.seed}:{r.first_index + index}" if r.seed is not None else os.urandom(16)
        constrained = (
            None if job.grammar is None else grammar.matcher(job.grammar, job.eos, r.prefix)
        )
        return cls(job, random.Random(seed), r.stop, length=len(job.prompt), matcher=constrained)

    def params(self) -> RowParams:
        r = self.job.request
        return RowParams(r.temperature, r.top_p, self.rng.random() if r.temperature else 0.0)

    @property
    def wants_info(self) -> bool:
        r = self.job.request
        return r.logprobs or r.top_logprobs > 0

    def accept(
        self, token: int, info: TokenInfo | None, eos: frozenset[int], decode: Decode
    ) -> None:
        """Take the next token and decide whether the sequence has ended."""
        self.generated += 1
        if self.matcher is not None and not self.matcher.accept_token(token):
            raise TesttimeError(
                f"token {token} does not follow the response format's grammar; the mask "
                "should have excluded it (report this)"
            )
        if token in eos:
            self.finish = "stop" if self.matcher is not None else "eos"
            return
        self.tokens.append(token)
        if info is not None:
            self.infos.append(info)
        if self.stop and self._hit_stop(decode):
            self.finish = "stop"
        elif self.generated >= self.job.max_tokens:
            self.finish = "length"

    def _hit_stop(self, decode: Decode) -> bool:
        text = decode(self.tokens)
        start = max(0, self.checked - max(len(s) for s in self.stop) + 1)
        hits = [i for i in (text.find(s, start) for s in self.stop) if i >= 0]
        self.checked = len(text)
        if hits:
            self.cut = min(hits)
        return bool(hits)

    def completion(self, prompt_tokens: int, decode: Decode) -> Completion:
        text = decode(self.tokens)
        if self.cut is not None:
            text = text[: self.cut]
        r = self.job.request
        infos = self.infos if self.wants_info else None
        return Completion(
            text=text,
            prompt_tokens=prompt_tokens,
            generated_tokens=self.generated,
            finish_reason=self.finish or "cancelled",
            logprobs=tuple(i.logprob for i in infos) if infos is not None else None,
            certainty=tuple(i.certainty for i in infos) if infos is not None else None,
            top_logprobs=(
                tuple(_named(i.top, decode, r.top_logprobs) for i in infos)
                if infos is not None and r.top_logprobs
                else None
            ),
            tokens=tuple(decode([t]) for t in self.tokens) if infos is not None else None,
        )


def _named(top: dict[int, float], decode: Decode, k: int) -> dict[str, float]:
    """The `k` likeliest decoded texts: when two ids decode alike, the likelier one wins
    (the engine asks for spare ids, so k distinct texts remain)."""
    out: dict[str, float] = {}
    for tok, lp in sorted(top.items(), key=lambda kv: -kv[1]):
        text = decode([tok])
        if text not in out:
            out[text] = lp
    return dict(list(out.items())[:k])
