"""Thin generators around the served one: `Metered` counts every call the server makes
(what /v1/testtime/stats reports), `Observed` watches one request's calls finish, so a
stream can show samples done, the current leader and the cost so far.

Strategies are never changed for this: they call `generate` on the wrapper as on any
generator. The leader is core's majority vote over the answers seen so far. A call a strategy
makes through `Context.ask` (a judge's comparison, an aggregator's prompt: `Request.asked`)
is no sample: its replies are not counted or voted on, and its cost is verifier cost, as the
strategy's own ledger counts it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from testtime.core.answers import extract
from testtime.core.cost import Cost
from testtime.core.types import Candidate, Request
from testtime.core.voting import group, leader
from testtime.generators.base import Generation, Generator

SEPARATOR = 16  # the longest step separator a continued sample's prefix may add


class Relay(Generator):
    """A generator that hands every call to `inner`, and reports its size and context."""

    def __init__(self, inner: Generator) -> None:
        self.inner = inner
        self.name = inner.name
        self.n_params = inner.n_params
        self.context_window = inner.context_window  # strategies fit their prompts to it
        self.multimodal = inner.multimodal  # the server refuses images to a text-only model
        self.forwards_extra = inner.forwards_extra  # else reasoning_effort is budget forcing

    async def generate(self, request: Request) -> Generation:
        return await self.inner.generate(request)

    def count_prompt_tokens(self, request: Request) -> int:
        return self.inner.count_prompt_tokens(request)

    async def features(self, requests: Sequence[Request]) -> list[list[float]]:
        return await self.inner.features(requests)


class Metered(Relay):
    """The served generator, counted: calls made, running, cancelled, and what they cost.

    The server owns it, so closing it closes the model.
    """

    def __init__(self, inner: Generator) -> None:
        super().__init__(inner)
        self.calls = 0
        self.in_flight = 0
        self.cancelled = 0
        self.cost = Cost()

    async def generate(self, request: Request) -> Generation:
        self.calls += 1
        self.in_flight += 1
        try:
            gen = await self.inner.generate(request)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.in_flight -= 1
        self.cost += gen.cost
        return gen

    def clear_cache(self) -> None:
        self.inner.clear_cache()

    async def aclose(self) -> None:
        await self.inner.aclose()

    def stats(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "in_flight": self.in_flight,
            "cancelled": self.cancelled,
            "cost": self.cost.to_dict(),
        }


class Observed(Relay):
    """One request's view of the generator; `changed` is set whenever a call finishes.

    Closing it does nothing: the model belongs to the server.
    """

    def __init__(self, inner: Generator) -> None:
        super().__init__(inner)
        self.changed = asyncio.Event()
        self.cost = Cost()
        self.calls = 0
        self.candidates: list[Candidate] = []
        self.texts: dict[str, int] = {}  # a sample's text -> its id, to find a parent
        self.started = time.perf_counter()

    async def generate(self, request: Request) -> Generation:
        gen = await self.inner.generate(request)
        if request.asked:  # a judge's or aggregator's reply: verifier cost, no sample
            self.cost += gen.cost.asked(self.n_params)
            self.changed.set()
            return gen
        self.calls += 1
        self.cost += gen.cost
        parent = self._parent(request.prefix)
        for comp in gen.completions:  # a sample continuing an earlier one is its child
            text = request.prefix + comp.text
            # one cut at its call's stop string (a search's step, a thinking phase) is part
            # of a longer solution: drawn in the tree, but no answer to vote on yet
            step = comp.finish_reason == "stop" and bool(request.stop)
            answer = None if step else extract(text)
            one = Candidate(text, answer, parent=parent, id=len(self.candidates))
            self.candidates.append(one)
            self.texts.setdefault(text, one.id)
        self.changed.set()
        return gen

    def _parent(self, prefix: str) -> int | None:
        """The sample a call continues: the one whose text its prefix is, or extends by a
        step separator (a search's prefix is a node's text and the step's stop string)."""
        for cut in range(min(len(prefix), SEPARATOR) + 1):
            found = self.texts.get(prefix[: len(prefix) - cut]) if cut < len(prefix) else None
            if found is not None:
                return found
        return None

    def snapshot(self) -> dict[str, Any]:
        """Samples done, the leading answer by majority vote over the finished ones, and the
        generation cost so far."""
        groups = group(self.candidates)
        top = leader(groups)
        return {
            "samples": len(self.candidates),
            "generator_calls": self.calls,
            "leader": None
            if top is None
            else {
                "answer": top.answer,
                "votes": top.count,
                "answered": sum(g.count for g in groups),
            },
            "cost": self.cost.to_dict(),
            "elapsed_s": round(time.perf_counter() - self.started, 3),
        }
