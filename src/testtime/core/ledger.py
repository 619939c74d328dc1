"""The ledger of one strategy on one problem, for LLM and diffusion search alike.

It holds what may be spent (the `Budget`), what was spent (the `Cost`), the worst cost of
work still running, whether the budget refused something, the deadline of a seconds
budget, the seeds of the run's random streams, the candidates made, and it builds the
`Result`. Work is granted in units at the most one may cost (`UnitCost`): an LLM sample at
its full `max_tokens` (a worst case), a denoising pass at its NFE x FLOPs (exact); one rule,
`Budget.fits`, says how many fit. Both strategy contexts keep their account here.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from testtime.core.budget import Budget, used
from testtime.core.cost import Cost, UnitCost
from testtime.core.registry import Spec
from testtime.core.types import Candidate, Result


class Ledger:
    """What one strategy may spend and has spent on one problem, and what it made."""

    def __init__(
        self,
        budget: Budget | None = None,
        *,
        problem_id: str = "",
        seed: int = 0,
        exact: bool = False,
    ) -> None:
        """`exact`: costs are known before the work runs (diffusion), so spending past a
        ceiling (seconds aside) is a bug and `charge` raises."""
        self.budget = budget or Budget()
        self.problem_id = problem_id
        self.seed = seed
        self.exact = exact
        self.spent = Cost()
        self.exhausted = False  # the budget refused something
        # a seconds budget is a deadline from now, which generators are given too
        seconds = self.budget.seconds
        self.deadline = time.monotonic() + seconds if seconds is not None else None
        self.candidates: list[Candidate] = []
        self.calls = 0  # generator requests made: each draws the next call seed
        self._held: dict[object, Cost] = {}  # the worst cost of work still running

    # -- budget ----------------------------------------------------------------------------
    def fits(
        self, n: int, unit: UnitCost, owed: Cost | None = None, *, under: Budget | None = None
    ) -> int:
        """How many of `n` units fit now, counting what was spent, what running work holds
        and `owed` (work promised but not yet begun, e.g. scoring); asks, marks nothing.

        `under`: a ceiling other than the ledger's on the same account (a strategy's own
        sub-budget)."""
        if self._late():
            return 0
        spent = self.spent + (owed or Cost())
        for held in self._held.values():
            spent += held
        return (under or self.budget).fits(spent, unit, n)

    def grant(self, n: int, unit: UnitCost, owed: Cost | None = None) -> int:
        """`fits`, and the budget marked exhausted when it refuses any of the `n`."""
        k = self.fits(n, unit, owed)
        if k < n:
            self.exhausted = True
        return k

    @contextmanager
    def hold(self, cost: Cost) -> Iterator[None]:
        """Reserve `cost` while the work inside runs, so concurrent work of one strategy
        cannot overspend; released when it ends, however it ends."""
        ticket = object()
        self._held[ticket] = cost
        try:
            yield
        finally:
            del self._held[ticket]

    def charge(self, cost: Cost) -> None:
        """Add what a call spent."""
        self.spent += cost
        if self.exact:
            over = [
                unit for unit, ceiling in self.budget.ceilings()
                if unit != "seconds" and ceiling is not None
                and used(self.spent, unit) > ceiling * (1 + 1e-9)
            ]  # fmt: skip
            if over:
                raise AssertionError(f"spent {self.spent} past the budget {self.budget}")

    def out_of_time(self) -> bool:
        """Whether a seconds budget's deadline has passed (then the budget is exhausted)."""
        late = self._late()
        if late:
            self.exhausted = True
        return late

    def _late(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    # -- seeds -----------------------------------------------------------------------------
    def next_call_seed(self) -> int:
        """The seed of this problem's next generator request (the first is call 1)."""
        self.calls += 1
        return call_seed(self.seed, self.problem_id, self.calls)

    def stream_seed(self, stream: str, bits: int = 63) -> int:
        """The seed of one named random stream of this problem (noise, resampling)."""
        return stream_seed(self.seed, self.problem_id, stream, bits)

    # -- candidates and result -------------------------------------------------------------
    def add(self, candidate: Candidate) -> Candidate:
        """Record a new candidate; it gets the next id."""
        candidate = replace(candidate, id=len(self.candidates))
        self.candidates.append(candidate)
        return candidate

    def update(self, candidate: Candidate) -> None:
        """Record a changed candidate (a score added, its text cut) in place of its id's."""
        self.candidates[candidate.id] = candidate

    def result(
        self,
        spec: Spec,
        chosen: Candidate | None = None,
        *,
        answer: str | None = None,
        trace: Mapping[str, Any] | None = None,
        correct: bool | None = None,
    ) -> Result:
        """The result: the chosen candidate (or a bare answer), every candidate, the cost,
        the strategy's record and whether the budget stopped it."""
        if answer is None and chosen is not None:
            answer = chosen.answer
        return Result(
            problem_id=self.problem_id,
            answer=answer,
            candidates=tuple(self.candidates),
            cost=self.spent,
            strategy=spec.to_dict(),
            chosen=chosen.id if chosen is not None else None,
            budget_exhausted=self.exhausted,
            correct=correct,
            trace=trace,
        )


def stream_seed(seed: int, problem_id: str, stream: int | str, bits: int) -> int:
    """A seed of `bits` bits per (run seed, problem, random stream), so streams draw apart.

    The stream is a request's call number (32 bits: `call_seed`) or a name such as
    "noise" (63 bits, what torch generators take); the values never change, since stored
    pools were drawn with them.
    """
    size = (bits + 7) // 8
    key = f"{seed}:{problem_id}:{stream}".encode()
    value = int.from_bytes(hashlib.blake2b(key, digest_size=size).digest(), "little")
    return value >> (8 * size - bits)


def call_seed(seed: int, problem_id: str, call: int) -> int:
    """The seed of a strategy's `call`-th request on a problem (1-based): the lab draws its
    stored pools with call 1's seed, so a pool's first k samples are what a one-request
    strategy at budget k would have drawn."""
    return stream_seed(seed, problem_id, call, 32)
