"""What a strategy is and what it is given: one problem, a metered generator and verifier.

A strategy is an async function `(ctx, params) -> Result` written for ONE problem, as the
paper's pseudo-code reads. It asks `ctx.sample` for candidates and `ctx.score` for verifier
scores; the context charges every call to one `Cost` ledger and grants only what fits
under the `Budget`, so no strategy can overspend. Batching across problems and samples is
the generator's job, never the strategy's.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from testtime.core.answers import extract as extract_answer
from testtime.core.answers import same_answer
from testtime.core.budget import Budget
from testtime.core.cost import Cost, flops
from testtime.core.errors import ConfigError, DeadlineError
from testtime.core.registry import Params, Registry, Spec
from testtime.core.steps import aggregate
from testtime.core.types import Candidate, Problem, Request, Result
from testtime.core.voting import Equivalence
from testtime.generators.base import Generator
from testtime.verifiers.base import ProcessVerifier, Verifier


class Context:
    """One problem's view of the world while a strategy runs on it."""

    def __init__(
        self,
        problem: Problem,
        generator: Generator,
        *,
        spec: Spec,
        verifier: Verifier | None = None,
        budget: Budget | None = None,
        extract: Callable[[str], str | None] | None = None,
        same: Equivalence = same_answer,  # the task's notion of one vote (Task.same)
        max_tokens: int = 256,
        seed: int = 0,
    ) -> None:
        self.problem = problem
        self.generator = generator
        self.verifier = verifier
        self.budget = budget or Budget()
        self.spec = spec
        self.extract = extract or extract_answer
        self.same = same
        self.max_tokens = max_tokens
        self.seed = seed
        self.cost = Cost()
        # a seconds budget is a deadline from now, which the generator respects too
        seconds = self.budget.seconds
        self.deadline = time.monotonic() + seconds if seconds is not None else None
        self.exhausted = False  # the budget refused something
        self.candidates: list[Candidate] = []
        self._calls = 0
        self._unscored = 0  # candidates whose verifier FLOPs are reserved but not yet spent
        self._pending: dict[object, Cost] = {}  # worst cases of requests still generating
        self._reuse: tuple[tuple[Candidate, ...], Request] | None = None  # see `reuse`

    # -- generation ---------------------------------------------------------------------
    async def sample(
        self,
        n: int,
        *,
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_tokens: int | None = None,
        stop: Sequence[str] = (),
        logprobs: bool = False,
        prefix: str = "",
        first_finish: bool = False,
        parent: int | None = None,
    ) -> list[Candidate]:
        """Up to `n` new candidates; fewer (maybe none) when the budget cannot fit them.

        Every sample is granted at its worst case (`max_tokens` generated, the prompt
        prefilled, and a verifier pass when one is attached), so the ceiling holds.
        """
        max_tokens = max_tokens or self.max_tokens
        out: list[Candidate] = []
        stream = self._reused(n, prefix, temperature, top_p, max_tokens, stop, first_finish)
        if stream is not None:
            out = list(stream[0])
        while len(out) < n:
            if self.out_of_time():
                break
            seed, first = (stream[1].seed, stream[1].n) if stream else (self._next_seed(), 0)
            request = Request(
                self.problem.messages,
                prefix=prefix,
                n=n - len(out),
                max_tokens=max_tokens,
                temperature=temperature,
                top_p=top_p,
                stop=tuple(stop),
                seed=seed,
                first_index=first,
                logprobs=logprobs or bool(self.verifier and self.verifier.needs_logprobs),
                first_finish=first_finish,
                deadline=self.deadline,
            )
            k, worst = self._fit(request)
            if k < request.n:
                self.exhausted = True  # the budget refused some (or all) of this request
            if k == 0:
                break
            request = replace(request, n=k)
            started = time.perf_counter()
            ticket = object()
            self._pending[ticket] = worst
            try:
                gen = await self.generator.generate(request)
            except DeadlineError:  # the time ran out before the generator started it
                self.exhausted = True
                break
            finally:
                del self._pending[ticket]
            self.cost += replace(gen.cost, seconds=time.perf_counter() - started)
            for comp in gen.completions:
                text = prefix + comp.text
                found = self.extract(text)
                out.append(self._add(Candidate(text, found, completion=comp, parent=parent)))
            if self.verifier is not None:
                self._unscored += len(gen.completions)
            if first_finish or stream is not None:
                break
        self.out_of_time()
        return out

    def out_of_time(self) -> bool:
        """Whether a seconds budget's deadline has passed (then the budget is exhausted)."""
        late = self.deadline is not None and time.monotonic() >= self.deadline
        if late:
            self.exhausted = True
        return late

    def reuse(self, candidates: Sequence[Candidate], request: Request) -> None:
        """Serve these samples, drawn by `request` (the first of this problem), to the next
        request that samples alike: they are its first samples, and the rest continue the
        same seeded stream. A pilot's samples are then paid for once (compute_optimal)."""
        self._reuse = (tuple(candidates), request)

    def _reused(
        self, n: int, prefix: str, temperature: float, top_p: float, max_tokens: int,
        stop: Sequence[str], first_finish: bool,
    ) -> tuple[tuple[Candidate, ...], Request] | None:  # fmt: skip
        """The samples to reuse for this request, and the request that drew them."""
        if self._reuse is None:
            return None
        kept, drawn = self._reuse
        self._reuse = None
        alike = (prefix, temperature, top_p, max_tokens, tuple(stop), first_finish) == (
            drawn.prefix, drawn.temperature, drawn.top_p, drawn.max_tokens, drawn.stop, False
        )  # fmt: skip
        return (kept[:n], replace(drawn, n=len(kept))) if alike else None

    def _fit(self, request: Request) -> tuple[int, Cost]:
        """How many of the request's samples fit, and the worst-case cost reserved for them
        while they generate (so concurrent requests of one strategy cannot overspend)."""
        verifier_flops = (
            self.verifier.flops_per_candidate(self.problem) if self.verifier is not None else 0.0
        )
        prompt = self.generator.count_prompt_tokens(request) if self.budget.flops else 0
        reserved = Cost(flops=verifier_flops * self._unscored)  # scoring still owed
        for pending in self._pending.values():
            reserved += pending
        n_params = self.generator.n_params
        k = self.budget.samples_that_fit(
            self.cost + reserved, request.n, request.max_tokens, prompt, n_params, verifier_flops
        )
        worst = Cost(
            samples=k,
            generated_tokens=k * request.max_tokens,
            flops=flops(n_params, prompt + k * request.max_tokens) + k * verifier_flops,
        )
        return k, worst

    def _next_seed(self) -> int:
        self._calls += 1
        return call_seed(self.seed, self.problem.id, self._calls)

    def _add(self, candidate: Candidate) -> Candidate:
        candidate = replace(candidate, id=len(self.candidates))
        self.candidates.append(candidate)
        return candidate

    # -- verification -------------------------------------------------------------------
    async def score(self, candidates: Sequence[Candidate]) -> list[Candidate]:
        """The candidates with the verifier's score added under its name."""
        verifier = self.need_verifier()
        if not candidates:
            return []
        started = time.perf_counter()
        scores = await verifier.score(self.problem, candidates)
        seconds = scores.cost.seconds + time.perf_counter() - started
        self.cost += replace(scores.cost, seconds=seconds)
        self._unscored = max(0, self._unscored - len(candidates))
        name = verifier.name
        scored = [c.with_score(name, v) for c, v in zip(candidates, scores.values, strict=True)]
        for c in scored:
            self.candidates[c.id] = c
        return scored

    async def score_steps(self, candidates: Sequence[Candidate]) -> list[tuple[float, ...]]:
        """Each candidate's step scores from the process verifier, charged like `score`;
        the outcome score (their aggregate) is recorded on the candidate as `score` does."""
        verifier = self.need_process_verifier()
        if not candidates:
            return []
        started = time.perf_counter()
        got = await verifier.score_steps(self.problem, candidates)
        seconds = got.cost.seconds + time.perf_counter() - started
        self.cost += replace(got.cost, seconds=seconds)
        self._unscored = max(0, self._unscored - len(candidates))
        for c, steps in zip(candidates, got.values, strict=True):
            self.candidates[c.id] = c.with_score(verifier.name, aggregate(steps, verifier.how))
        return list(got.values)

    def need_verifier(self) -> Verifier:
        """The attached verifier; a ConfigError naming the strategy when there is none.

        Strategies that score call it before sampling, so a missing verifier costs nothing.
        """
        if self.verifier is None:
            raise ConfigError(
                f"strategy {self.spec.name!r} needs a verifier; pass one (e.g. --verifier oracle)"
            )
        return self.verifier

    def need_process_verifier(self) -> ProcessVerifier:
        """The attached process verifier (a PRM); a ConfigError when there is none."""
        verifier = self.need_verifier()
        if not isinstance(verifier, ProcessVerifier):
            raise ConfigError(
                f"strategy {self.spec.name!r} searches step by step and needs a process "
                f"verifier, which scores every step; {verifier.name!r} scores only whole "
                f"answers. Use e.g. --verifier step_check"
            )
        return verifier

    def verifier_score(self, c: Candidate) -> float:
        """The attached verifier's score of a scored candidate."""
        return c.scores[self.need_verifier().name]

    def best(self, candidates: Sequence[Candidate]) -> Candidate | None:
        """The top-scored candidate (ties: the first); a NaN score never wins."""

        def rank(c: Candidate) -> float:
            score = self.verifier_score(c)
            return -math.inf if math.isnan(score) else score

        return max(candidates, key=rank, default=None)

    # -- result -------------------------------------------------------------------------
    def finish(
        self,
        chosen: Candidate | None = None,
        *,
        answer: str | None = None,
        trace: dict[str, Any] | None = None,
    ) -> Result:
        """The result: the chosen candidate (or a bare answer), every candidate, the cost."""
        if answer is None and chosen is not None:
            answer = chosen.answer
        return Result(
            problem_id=self.problem.id,
            answer=answer,
            candidates=tuple(self.candidates),
            cost=self.cost,
            strategy=self.spec.to_dict(),
            chosen=chosen.id if chosen is not None else None,
            budget_exhausted=self.exhausted,
            trace=trace,
        )


def call_seed(seed: int, problem_id: str, call: int) -> int:
    """The seed of a strategy's `call`-th request on a problem (1-based): the lab draws its
    stored pools with call 1's seed, so a pool's first k samples are what a one-request
    strategy at budget k would have drawn."""
    key = f"{seed}:{problem_id}:{call}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=4).digest(), "little")


StrategyFn = Callable[[Context, Any], Awaitable[Result]]
STRATEGIES: Registry[StrategyFn] = Registry("strategy")
Needs = Literal["", "outcome", "process"]


@dataclass(frozen=True)
class Traits:
    """What a strategy is to the lab, the CLI and the tests, declared where it is registered
    (`@strategy(name, Params, Traits(...))`); every list of strategies derives from these."""

    budget_param: str = ""  # the parameter a budget of k samples sets (n, max_samples); "": none
    budget_is_size: bool = False  # that budget sets its size (a width, N thinking chains, a
    # policy's budget) rather than capping the samples it draws: the lab gives it no Budget
    replay: str = ""  # the rule replaying it from a stored pool (lab/pools.py), for a strategy
    # drawing all its samples in its first request, a seeded stream as pools are drawn
    verifier: Needs = ""  # what it must be given: "" none, "outcome" a verifier, "process" a PRM
    too_small: Literal["exhausted", "error"] = "exhausted"  # a budget that fits no sample:
    # an empty result marked budget_exhausted, or a BudgetError before anything is spent
    examples: tuple[dict[str, Any], ...] = ({},)  # small parameters that run it in a blink;
    # the invariant suite (tests/unit/test_invariants.py) runs each one

    def __post_init__(self) -> None:
        if self.budget_is_size and not self.budget_param:
            raise ValueError("a strategy whose budget sets its size names that budget_param")

    @property
    def one_request(self) -> bool:
        """Whether it draws all its samples in its first request (so a pool replays it, and
        compute_optimal's pilot samples can be its first)."""
        return bool(self.replay)


def strategy(
    name: str, params: type[Params], traits: Traits | None = None
) -> Callable[[StrategyFn], StrategyFn]:
    """Register a strategy under `name` with its parameter dataclass and its traits."""
    return STRATEGIES.register(name, params, traits)


def traits_of(name: str) -> Traits:
    """A registered strategy's traits (an unknown name: a ConfigError listing the known ones);
    one registered without any declares nothing: no budget parameter, no replay."""
    declared = STRATEGIES.get(name).traits
    return declared if isinstance(declared, Traits) else UNDECLARED.get(name, Traits())


def named(has: Callable[[Traits], bool]) -> tuple[str, ...]:
    """Registered strategy names whose traits have `has`, sorted."""
    return tuple(n for n in STRATEGIES.names() if has(traits_of(n)))


# issue 14: refine.py and compute_optimal.py are being rewritten; when that lands these three
# declare their traits at registration and leave this table (test_invariants names them)
_CHAINS = ({"n": 4, "sequential": 2},)  # two chains of two attempts
UNDECLARED: dict[str, Traits] = {
    "revise": Traits("n", too_small="error", examples=_CHAINS),
    "refine": Traits("n", verifier="outcome", too_small="error", examples=_CHAINS),
    "compute_optimal": Traits("budget", budget_is_size=True, examples=({"budget": 8},)),
}
