"""What a strategy is and what it is given: one problem, a metered generator and verifier.

A strategy is an async function `(ctx, params) -> Result` written for ONE problem, as the
paper's pseudo-code reads. It asks `ctx.sample` for candidates and `ctx.score` for verifier
scores; the context keeps its account in a core `Ledger` (the same one diffusion search
uses), which charges every call and grants only what fits under the `Budget`, so no
strategy can overspend. A strategy only asks its context: it never assigns to it.
Batching across problems and samples is the generator's job, never the strategy's.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, TypeVar

from testtime.core.answers import extract as extract_answer
from testtime.core.answers import same_answer
from testtime.core.budget import Budget
from testtime.core.cost import Cost, UnitCost, flops
from testtime.core.errors import ConfigError, DeadlineError
from testtime.core.ledger import Ledger
from testtime.core.ledger import call_seed as call_seed
from testtime.core.registry import Params, Registry, Spec
from testtime.core.steps import aggregate
from testtime.core.structured import ResponseFormat
from testtime.core.tools import Tools, answer, same_or_call
from testtime.core.types import Candidate, Completion, Message, Problem, Request, Result
from testtime.core.voting import Equivalence
from testtime.generators.base import Generator
from testtime.verifiers.base import ProcessVerifier, Scores, StepScores, Verifier

S = TypeVar("S", Scores, StepScores)  # what a verifier's scoring returns


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
        response_format: ResponseFormat | None = None,  # every sample's (JSON output)
        tools: Tools | None = None,  # every sample's; a call's answer is its canonical key
    ) -> None:
        self.problem = problem
        self.response_format = response_format
        self.tools = tools
        self.generator = generator
        self.extract = extract or extract_answer
        self.same = same_or_call(same) if tools is not None else same
        self.max_tokens = max_tokens
        self._spec = spec
        self._verifier = verifier
        self._ledger = Ledger(budget, problem_id=problem.id, seed=seed)
        self._unscored = 0  # candidates whose verifier FLOPs are owed but not yet spent
        self._reuse: tuple[tuple[Candidate, ...], Request] | None = None  # see `reuse`

    # -- what a strategy reads --------------------------------------------------------------
    @property
    def spec(self) -> Spec:
        """The strategy's record (stored with the result)."""
        return self._spec

    @property
    def verifier(self) -> Verifier | None:
        return self._verifier

    @property
    def budget(self) -> Budget:
        return self._ledger.budget

    @property
    def cost(self) -> Cost:
        """Everything spent on this problem so far."""
        return self._ledger.spent

    @property
    def exhausted(self) -> bool:
        """Whether the budget refused something."""
        return self._ledger.exhausted

    @property
    def deadline(self) -> float | None:
        """A seconds budget's deadline (time.monotonic), passed on with every request."""
        return self._ledger.deadline

    @property
    def seed(self) -> int:
        return self._ledger.seed

    @property
    def candidates(self) -> Sequence[Candidate]:
        """Every candidate so far, by id."""
        return self._ledger.candidates

    def using(self, verifier: Verifier | None) -> Context:
        """This context with another verifier attached: the same problem, budget, ledger and
        candidates, so what either spends is one account (compute_optimal's pilot and the
        strategy it chooses, each with its own verifier)."""
        other = copy.copy(self)
        other._verifier, other._unscored, other._reuse = verifier, 0, None
        return other

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
        top_logprobs: int = 0,
        prefix: str = "",
        first_finish: bool = False,
        parent: int | None = None,
        messages: Sequence[Message] | None = None,
        generator: Generator | None = None,
    ) -> list[Candidate]:
        """Up to `n` new candidates; fewer (maybe none) when the budget cannot fit them.

        Every sample is granted at its worst case (`max_tokens` generated, the prompt
        prefilled, and a verifier pass when one is attached), so the ceiling holds.
        `messages` and `generator` draw them from another chat or model than the problem's
        and the policy (a proposer shown earlier proposals, fusion's aggregator, one model
        of an ensemble): still answers to this problem, so samples, at that model's FLOPs.
        """
        max_tokens = max_tokens or self.max_tokens
        model = generator or self.generator
        chat = self.problem.messages if messages is None else tuple(messages)
        out: list[Candidate] = []
        stream = (
            self._reused(n, prefix, temperature, top_p, max_tokens, stop, first_finish)
            if messages is None and generator is None
            else None
        )
        if stream is not None:
            out = list(stream[0])
        ledger = self._ledger
        while len(out) < n:
            if self.out_of_time():
                break
            seed, first = (stream[1].seed, stream[1].n) if stream else (ledger.next_call_seed(), 0)
            request = Request(
                chat,
                prefix=prefix,
                n=n - len(out),
                max_tokens=max_tokens,
                temperature=temperature,
                top_p=top_p,
                stop=tuple(stop),
                seed=seed,
                first_index=first,
                logprobs=logprobs or bool(self.verifier and self.verifier.needs_logprobs),
                top_logprobs=top_logprobs,  # the k likeliest tokens at each position too
                first_finish=first_finish,
                deadline=self.deadline,
                response_format=self.response_format,
                tools=self.tools,
            )
            unit, owed = self._unit(request, self.budget, model)
            k = ledger.grant(request.n, unit, owed)
            if k == 0:
                break
            request = replace(request, n=k)
            started = time.perf_counter()
            try:
                with ledger.hold(unit.of(k)):  # concurrent requests cannot overspend
                    gen = await model.generate(request)
            except DeadlineError:  # the time ran out before the generator started it
                ledger.exhausted = True
                break
            ledger.charge(replace(gen.cost, seconds=time.perf_counter() - started))
            for comp in gen.completions:
                text = prefix + comp.text
                found = (
                    answer(comp.tool_calls, text, self.extract, self.tools.ignore)
                    if self.tools is not None
                    else self.extract(text)
                )
                out.append(ledger.add(Candidate(text, found, completion=comp, parent=parent)))
            if self.verifier is not None:
                self._unscored += len(gen.completions)
            if first_finish or stream is not None:
                break
        self.out_of_time()
        return out

    async def ask(
        self,
        messages: Sequence[Message],
        *,
        n: int = 1,
        temperature: float = 0.0,
        top_p: float = 1.0,
        max_tokens: int | None = None,
        stop: Sequence[str] = (),
        logprobs: bool = False,
        top_logprobs: int = 0,
        generator: Generator | None = None,
    ) -> list[Completion]:
        """Up to `n` replies to `messages` that are not candidates: a judge's comparison, an
        aggregator's prompt (USC, a tournament, fusion). They are charged as verifier cost
        (their tokens are verifier tokens, their FLOPs the asked model's: `generator`, the
        policy by default), each granted at its worst case under the budget like a sample,
        but never counted as a sample or against a generated-tokens ceiling. Fewer (maybe
        none) when the budget cannot fit them; the budget is then marked exhausted."""
        model = generator or self.generator
        max_tokens = max_tokens or self.max_tokens
        if self.out_of_time():
            return []
        request = Request(
            tuple(messages),
            n=n,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            stop=tuple(stop),
            seed=self._ledger.next_call_seed(),
            logprobs=logprobs,
            top_logprobs=top_logprobs,
            deadline=self.deadline,
            asked=True,
        )
        prompt = model.count_prompt_tokens(request) if self.budget.flops else 0
        unit = UnitCost(
            each=Cost(verifier_tokens=max_tokens, flops=flops(model.n_params, max_tokens)),
            once=Cost(flops=flops(model.n_params, prompt)),
        )
        k = self._ledger.grant(n, unit)
        if k == 0:
            return []
        request = replace(request, n=k)
        started = time.perf_counter()
        try:
            with self._ledger.hold(unit.of(k)):
                gen = await model.generate(request)
        except DeadlineError:
            self._ledger.exhausted = True
            return []
        seconds = time.perf_counter() - started
        self._ledger.charge(replace(gen.cost.asked(model.n_params), seconds=seconds))
        return list(gen.completions)

    def fits(self, n: int, *, max_tokens: int | None = None, under: Budget | None = None) -> int:
        """How many samples of up to `max_tokens` would fit now, at their worst case, under
        the context's budget or, when given, `under` (a ceiling on the same account); asks
        only: nothing is spent or marked."""
        request = Request(self.problem.messages, max_tokens=max_tokens or self.max_tokens)
        unit, owed = self._unit(request, under or self.budget)
        return self._ledger.fits(n, unit, owed, under=under)

    def out_of_time(self) -> bool:
        """Whether a seconds budget's deadline has passed (then the budget is exhausted)."""
        return self._ledger.out_of_time()

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

    def _unit(
        self, request: Request, budget: Budget, model: Generator | None = None
    ) -> tuple[UnitCost, Cost]:
        """The worst cost of one of the request's samples from `model` (the policy by
        default; the prompt counted only when a FLOPs ceiling needs it), and the verifier
        FLOPs owed for samples not yet scored."""
        model = model or self.generator
        verifier_flops = (
            self.verifier.flops_per_candidate(self.problem) if self.verifier is not None else 0.0
        )
        prompt = model.count_prompt_tokens(request) if budget.flops else 0
        unit = UnitCost.sample(model.n_params, prompt, request.max_tokens, verifier_flops)
        return unit, Cost(flops=verifier_flops * self._unscored)

    def update(self, candidate: Candidate) -> None:
        """Record a changed candidate (a copied score, its own text) in place of its id's."""
        self._ledger.update(candidate)

    # -- verification -------------------------------------------------------------------
    async def score(self, candidates: Sequence[Candidate]) -> list[Candidate]:
        """The candidates with the verifier's score added under its name."""
        verifier = self.need_verifier()
        if not candidates:
            return []
        scores = await self._charged(verifier.score(self.problem, candidates), len(candidates))
        name = verifier.name
        scored = [c.with_score(name, v) for c, v in zip(candidates, scores.values, strict=True)]
        for c in scored:
            self.update(c)
        return scored

    async def score_steps(self, candidates: Sequence[Candidate]) -> list[tuple[float, ...]]:
        """Each candidate's step scores from the process verifier, charged like `score`;
        the outcome score (their aggregate) is recorded on the candidate as `score` does."""
        verifier = self.need_process_verifier()
        if not candidates:
            return []
        got = await self._charged(verifier.score_steps(self.problem, candidates), len(candidates))
        for c, steps in zip(candidates, got.values, strict=True):
            self.update(c.with_score(verifier.name, aggregate(steps, verifier.how)))
        return list(got.values)

    async def _charged(self, scoring: Awaitable[S], n: int) -> S:
        """The verifier's scores of `n` candidates, their cost charged with the wall time
        they took (the verifier's own seconds too), and `n` fewer candidates unscored."""
        started = time.perf_counter()
        got = await scoring
        seconds = got.cost.seconds + time.perf_counter() - started
        self._ledger.charge(replace(got.cost, seconds=seconds))
        self._unscored = max(0, self._unscored - n)
        return got

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
        return self._ledger.result(self.spec, chosen, answer=answer, trace=trace)


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
    replay: str = ""  # the rule replaying it from a stored pool (lab/analysis/pools.py), for
    # a strategy drawing all its samples in its first request, a seeded stream as pools are drawn
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


def strategy(name: str, params: type[Params], traits: Traits) -> Callable[[StrategyFn], StrategyFn]:
    """Register a strategy under `name` with its parameter dataclass and its traits."""
    if not isinstance(traits, Traits):
        raise TypeError(f"strategy {name!r} declares its traits as a strategies.base.Traits")
    return STRATEGIES.register(name, params, traits)


def traits_of(name: str) -> Traits:
    """A registered strategy's traits (an unknown name: a ConfigError listing the known ones)."""
    traits = STRATEGIES.get(name).traits
    assert isinstance(traits, Traits)  # `strategy` requires them
    return traits


def named(has: Callable[[Traits], bool]) -> tuple[str, ...]:
    """Registered strategy names whose traits have `has`, sorted."""
    return tuple(n for n in STRATEGIES.names() if has(traits_of(n)))
