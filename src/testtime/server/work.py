"""Running admitted requests: each one an asyncio task that owns its whole strategy.

A request's task waits for a run slot, runs under the deadline, and is held in a set
until done, so it can be cancelled (client gone, shutdown) and nothing is left behind.
Cancelling it cancels every sub-generation, because the strategy awaits them all.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, replace
from typing import Any

from testtime.core.cost import Cost
from testtime.core.reasoning import Extra, thinking_budget
from testtime.core.registry import Spec
from testtime.core.types import Completion, Message, Problem, Request
from testtime.generators.base import Generation, Generator, Piece, streamed_to
from testtime.sandbox.problems import CodeSpec, extract_code
from testtime.server import responses
from testtime.server.errors import ApiError
from testtime.server.limits import Admission, Key, Quota, spent
from testtime.server.plan import Completions, Plain, Strategic, problem_id
from testtime.server.progress import Metered, Observed, Relay
from testtime.server.settings import Settings
from testtime.strategies.base import STRATEGIES
from testtime.strategies.run import RunSettings, solve
from testtime.strategies.run import build_verifier as make_verifier
from testtime.tasks.code import CodeTask
from testtime.verifiers.base import Verifier

log = logging.getLogger("testtime.server")


@dataclass
class Job:
    """One admitted request: its plan, the generator it sees, its key, its task."""

    plan: Plain | Strategic | Completions
    generator: Observed
    model: str
    key: Key | None
    verifier: Verifier | None = None
    cid: str = ""
    cost: Cost | None = None  # the whole cost, once it succeeded
    task: asyncio.Task[dict[str, Any]] | None = None
    quota: Quota | None = None  # its hold on the key's cap (limits.py)
    # a plain streamed request's pieces, as a generator that can stream relays them (None
    # ends them: the task is done); stream.py sends them on as they come
    pieces: asyncio.Queue[Piece | None] | None = None


class Jobs:
    """Admission, the running tasks, and counters for /v1/testtime/stats."""

    def __init__(self, settings: Settings, generator: Metered) -> None:
        self.settings = settings
        self.generator = generator
        self.admission = Admission(settings.max_queue, settings.max_concurrent)
        self.tasks: set[asyncio.Task[dict[str, Any]]] = set()
        self.counts: Counter[str] = Counter()

    def start(self, job: Job) -> asyncio.Task[dict[str, Any]]:
        """Admit `job` (or raise 429/503) and start its task."""
        self.admission.reserve()
        plan = job.plan
        raw = isinstance(plan, Completions) or (isinstance(plan, Strategic) and plan.raw)
        job.cid = responses.new_id("cmpl" if raw else "chatcmpl")
        task = asyncio.create_task(self._run(job), name=f"testtime {job.cid}")
        job.task = task
        self.tasks.add(task)
        task.add_done_callback(lambda t: self._done(t, job))
        return task

    def _done(self, task: asyncio.Task[dict[str, Any]], job: Job) -> None:
        # a done callback runs even for a task cancelled before it started, unlike `finally`
        self.tasks.discard(task)
        self.admission.release()
        outcome = "cancelled" if task.cancelled() else "failed" if task.exception() else "served"
        if outcome == "failed" and isinstance(task.exception(), ApiError):
            outcome = f"http_{task.exception().status}"  # type: ignore[union-attr]
        self.counts[outcome] += 1
        if job.quota is not None:  # calls were charged as they ended; release the hold
            sandbox = job.cost.sandbox_seconds if job.cost is not None else 0.0
            job.quota.close(spent(job.cost or job.generator.cost), sandbox)
        elif job.key is not None:  # a failed request is charged what it burnt before ending
            job.key.spent_tokens += spent(job.cost or job.generator.cost)

    async def _run(self, job: Job) -> dict[str, Any]:
        deadline = self.settings.deadline
        try:
            async with asyncio.timeout(deadline) as clock, self.admission.slot():
                return await self._execute(job)
        except TimeoutError:
            if clock.expired():
                raise ApiError(
                    504,
                    f"the request did not finish within this server's deadline of {deadline:g} "
                    "s (queueing included); ask for a smaller budget, e.g. a 'seconds' one",
                    code="deadline_exceeded",
                ) from None
            raise

    async def _execute(self, job: Job) -> dict[str, Any]:
        started = time.perf_counter()
        if isinstance(job.plan, Plain) and (effort := forced_effort(job.plan, job.generator)):
            return await self._think(job, job.plan, effort, started)
        if isinstance(job.plan, Plain):
            pieces = job.pieces
            relay = nullcontext() if pieces is None else streamed_to(pieces.put_nowait)
            with relay:  # an upstream's pieces go to the client as they arrive
                gen = await job.generator.generate(job.plan.request)
            body = responses.plain_body(
                job.cid, job.model, gen, job.plan.request, time.perf_counter() - started
            )
            job.cost = gen.cost
            return body
        if isinstance(job.plan, Completions):
            return await self._complete(job, job.plan, started)
        p = job.plan
        code = p.code
        settings = RunSettings(
            task=None if code is None else RequestCode(code),
            verifier=job.verifier,
            budget=p.budget,
            max_tokens=p.max_tokens,
            seed=p.seed,
            response_format=p.response_format,  # every sample follows it; votes on its JSON
            tools=p.tools,  # every sample may call them; votes on canonical calls
        )
        # the fallback `likelihood` ranks samples by their logprobs: every sample asks for them
        model: Generator = Logprobs(job.generator) if p.fallback == "likelihood" else job.generator
        if p.raw:  # /v1/completions: the samples continue the prompt's raw text
            model = Raw(model, p.problem.messages)
        if p.extra is not None:  # reasoning_effort, thinking budgets: on every sample
            model = Engine(model, p.extra)
        result = await solve(p.problem, p.spec, model, settings)
        if not result.candidates and result.budget_exhausted:
            why = (
                "ran out of time before even one sample"
                if p.budget.seconds is not None
                else f"is too small for even one sample of max_tokens={p.max_tokens}"
            )
            raise ApiError(
                400,
                f"the budget ({p.budget}) {why}; raise the budget or lower max_tokens",
                param="testtime.budget",
                code="budget_too_small",
            )
        job.cost = result.cost
        body = responses.strategy_body(
            job.cid, job.model, result, str(p.budget), p.verifier, p.fallback
        )
        return responses.as_completion(body, "") if p.raw else body

    async def _think(self, job: Job, plan: Plain, effort: str, started: float) -> dict[str, Any]:
        """reasoning_effort on a model that does not forward it (the embedded one): budget
        forcing (s1) with one chain per choice, each thinking for at most
        `thinking_budget(effort, max_tokens)` tokens and answering in the rest. A choice's
        thinking is its reasoning_content and counts as reasoning tokens."""
        r = plan.request
        think = thinking_budget(effort, r.max_tokens)
        params = {"n": r.n, "thinking_tokens": think, "answer_tokens": r.max_tokens - think,
                  "temperature": r.temperature, "top_p": r.top_p}  # fmt: skip
        spec = STRATEGIES.spec("budget_forcing", params)
        seed = r.seed if r.seed is not None else random.getrandbits(63)
        problem = Problem(r.messages, id=problem_id(r.messages))
        result = await solve(problem, spec, job.generator, RunSettings(seed=seed))
        by_id = {c.id: c for c in result.candidates}
        comps, reasoning = [], 0
        for chain in (result.trace or {}).get("chains", []):
            final = by_id[chain["final"]]
            answered = final.parent is not None and final.completion is not None
            thought = by_id[final.parent] if answered and final.parent is not None else final
            done = final.completion
            comps.append(
                Completion(
                    (done.text.lstrip() if answered and done else ""),
                    done.prompt_tokens if done else 0,
                    chain["thinking_tokens"] + (done.generated_tokens if answered and done else 0),
                    done.finish_reason if answered and done else "length",
                    reasoning=thought.text,
                )
            )
            reasoning += chain["thinking_tokens"]
        job.cost = result.cost + Cost(reasoning_tokens=reasoning)
        gen = Generation(tuple(comps), job.cost)
        body = responses.plain_body(job.cid, job.model, gen, r, time.perf_counter() - started)
        how = {"effort": effort, "thinking_budget": think, "strategy": spec.to_dict()}
        return {**body, "testtime": {"reasoning": how}}

    async def _complete(self, job: Job, plan: Completions, started: float) -> dict[str, Any]:
        """Each raw prompt's samples, one generator call per prompt, concurrently."""
        calls = [job.generator.generate(r) for r in plan.requests]
        gens = list(await asyncio.gather(*calls))
        job.cost = sum((g.cost for g in gens), Cost())
        seconds = time.perf_counter() - started
        return responses.completions_body(
            job.cid, job.model, gens, plan.requests, plan.echo, seconds
        )

    def stats(self) -> dict[str, Any]:
        a = self.admission
        return {
            "admitted": a.admitted,
            "running": a.running,
            "waiting": a.admitted - a.running,
            "tasks": len(self.tasks),
            "loop_tasks": len(asyncio.all_tasks()),
            "requests": dict(self.counts),
            "generator": self.generator.stats(),
        }

    async def cancel_all(self) -> None:
        """Cancel every running request and wait for them to end (at shutdown)."""
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


class RequestCode(CodeTask):
    """How a request that brought tests reads its samples: the answer is the code of the
    function its tests call (`extract_code` with the entry point), and votes group programs
    by syntax tree. It grades nothing: the tests run only as the request's verifier, whose
    sandbox seconds the request's key is charged."""

    def __init__(self, code: CodeSpec) -> None:
        super().__init__()
        self.entry = code.entry

    def problems(self) -> Sequence[Problem]:
        return ()

    def extract(self, text: str) -> str | None:
        return extract_code(text, self.entry)

    def graded(self, problem: Problem) -> bool:
        return False


class Logprobs(Relay):
    """A request's generator asked for token logprobs with every sample, so the fallback
    `likelihood` can rank them where a vote decides nothing (a tensor op beside each
    decoding step locally; a field of the reply upstream)."""

    async def generate(self, request: Request) -> Generation:
        return await self.inner.generate(replace(request, logprobs=True))


class Raw(Relay):
    """A strategy's generator on /v1/completions: its samples (requests on the problem's
    own chat) continue the prompt as raw text, with no chat template; a judge's or an
    aggregator's requests (`asked`, or another chat) stay chats."""

    def __init__(self, inner: Generator, messages: tuple[Message, ...]) -> None:
        super().__init__(inner)
        self.messages = messages

    def _raw(self, request: Request) -> Request:
        if request.asked or request.prompt is not None or request.messages != self.messages:
            return request
        return replace(request, prompt=self.messages[0].content)

    async def generate(self, request: Request) -> Generation:
        return await self.inner.generate(self._raw(request))

    def count_prompt_tokens(self, request: Request) -> int:
        return self.inner.count_prompt_tokens(self._raw(request))


class Engine(Relay):
    """A strategy's generator on a request that brought engine fields (reasoning_effort,
    thinking budgets): every sample sends them on to the upstream as sent; a judge's or an
    aggregator's requests (`asked`) go without them."""

    def __init__(self, inner: Generator, extra: Extra) -> None:
        super().__init__(inner)
        self.extra = extra

    async def generate(self, request: Request) -> Generation:
        if not request.asked and request.extra is None:
            request = replace(request, extra=self.extra)
        return await self.inner.generate(request)


def forced_effort(plan: Plain, generator: Generator) -> str | None:
    """The reasoning effort a plain request asks of a model that does not forward it, when
    it buys any thinking (none and minimal buy none: the request runs as it is)."""
    extra = plan.request.extra
    effort = extra.effort if extra is not None else None
    if generator.forwards_extra or effort is None:
        return None
    return effort if thinking_budget(effort, plan.request.max_tokens) > 0 else None


def build_verifier(spec: Spec | None, generator: Generator) -> Verifier | None:
    """The request's verifier, asking the served model when it needs one (a judge)."""
    return None if spec is None else make_verifier(spec, generator=generator)
