"""The OpenAI-compatible app: `/v1/chat/completions`, `/v1/completions` (raw prompts, no
chat template), `/v1/models` and `/v1/models/{id}`, `/health`, and `/v1/testtime/stats`;
`serve` runs it under uvicorn.

Each request is checked (plan), admitted or refused (limits), and run as its own task
(work); the handler races that task against the client's disconnect, as vLLM's
`with_cancellation` does (polling `request.is_disconnected` misses disconnects), and a
stream cancels it when the response ends. On shutdown uvicorn stops accepting, lets
in-flight requests finish for `drain` seconds, then the lifespan cancels what is left and
closes the generator.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import Receive

from testtime.core.errors import TesttimeError
from testtime.core.types import Request as CoreRequest
from testtime.generators.base import Generator
from testtime.sandbox import probe
from testtime.server import errors
from testtime.server.errors import ApiError
from testtime.server.inflight import InFlight
from testtime.server.limits import BodyLimit, Charged, Key, Quota, SandboxCharged
from testtime.server.plan import (
    FILE_VERIFIERS,
    Completions,
    Plain,
    Strategic,
    forwardable,
    plan_completion,
    plan_off_loop,
    readable,
    strategy_in_model,
    worst_case,
)
from testtime.server.progress import Metered, Observed
from testtime.server.schemas import ChatRequest, CompletionRequest, StreamOptions
from testtime.server.settings import Settings
from testtime.server.stream import EventStream
from testtime.server.work import Job, Jobs, build_verifier
from testtime.strategies.base import STRATEGIES
from testtime.verifiers.base import ProcessVerifier, Verifier
from testtime.view.live import STATIC, requests_page

log = logging.getLogger("testtime.server")


def create_app(settings: Settings, generator: Generator) -> FastAPI:
    """The server's app around `generator`, which it owns and closes at shutdown. With
    `settings.run_tests` it first checks that the sandbox works, and raises
    `SandboxUnavailable` if not: request tests never run outside it."""
    if settings.run_tests:
        probe()  # fail closed, at start, with how to install bubblewrap
    metered = Metered(generator)
    jobs = Jobs(settings, metered)
    started = int(time.time())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        jobs.admission.closing = True
        await jobs.cancel_all()  # what the drain did not finish
        await metered.aclose()

    app = FastAPI(
        title="testtime",
        summary="Test-time scaling behind an OpenAI-compatible API",
        lifespan=lifespan,
    )
    app.state.jobs = jobs
    inflight = app.state.inflight = InFlight()
    app.mount("/static", StaticFiles(directory=STATIC), name="static")  # the live page's
    errors.install(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)

    def authorize(request: Request) -> Key | None:
        if settings.keys is None:
            return None
        return settings.keys.check(request.headers.get("authorization"))

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Liveness: the server answers; how many requests it holds."""
        return {
            "status": "closing" if jobs.admission.closing else "ok",
            "model": settings.model,
            "upstream": settings.upstream,
            "admitted": jobs.admission.admitted,
            "running": jobs.admission.running,
            "tasks": len(jobs.tasks),
        }

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        """The served model, and the model under every strategy (STRATEGY@MODEL)."""
        authorize(request)
        names = [settings.model, *(f"{n}@{settings.model}" for n in STRATEGIES.names())]
        data = [model_entry(name, settings.model, started) for name in names]
        return {"object": "list", "data": data}

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str, request: Request) -> dict[str, Any]:
        """One model: the served one, or it under a strategy (STRATEGY[:k=v,...]@MODEL,
        its parameters checked); 404 for any other name."""
        authorize(request)
        return model_entry(model_id, settings.model, started)

    @app.get("/v1/testtime/stats")
    async def stats(request: Request) -> dict[str, Any]:
        """Requests admitted, running and done; the generator's calls and total cost."""
        authorize(request)
        return jobs.stats()

    @app.get("/testtime/requests")
    async def requests(request: Request) -> dict[str, Any]:
        """The requests in flight and the last that ended (a key sees its own): state,
        samples so far, leader, cost."""
        return {"requests": inflight.listed(authorize(request))}

    @app.get("/testtime/requests/{request_id}")
    async def one_request(request_id: str, request: Request) -> dict[str, Any]:
        """One request's progress, and a search's tree so far; 404 once forgotten."""
        found = inflight.one(request_id, authorize(request))
        if found is None:
            raise ApiError(
                404,
                f"no request {request_id!r} in flight or among the last that ended; "
                "GET /testtime/requests lists them",
                code="request_not_found",
            )
        return found

    @app.get("/testtime/live", include_in_schema=False)
    async def live_page(id: str | None = None) -> HTMLResponse:
        """The live page of the requests (the view's; it reads /testtime/requests)."""
        return requests_page(id)

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(body: ChatRequest, request: Request) -> Response:
        """A chat completion; with a strategy (testtime.strategy or STRATEGY@MODEL), the
        strategy's answer, with its cost itemised in usage.testtime."""
        key = authorize(request)
        the_plan = await plan_off_loop(body, settings)  # it may read files: off the loop
        return await run(the_plan, body.model, key, body.stream_options, body.stream, request)

    @app.post("/v1/completions", response_model=None)
    async def completions(body: CompletionRequest, request: Request) -> Response:
        """A (legacy) text completion: raw prompts continued as they are, no chat template;
        with a strategy, its answer to one text prompt."""
        key = authorize(request)
        the_plan = await asyncio.to_thread(plan_completion, body, settings)
        return await run(the_plan, body.model, key, body.stream_options, body.stream, request)

    async def run(
        the_plan: Plain | Strategic | Completions,
        model: str,
        key: Key | None,
        options: StreamOptions | None,
        stream: bool,
        request: Request,
    ) -> Response:
        """Admit and run a planned request; stream it, or answer when it is done."""
        fits_context(the_plan, metered)
        readable(the_plan, metered)  # a 400 for images, audio or files to a text-only model
        forwardable(the_plan, metered)  # a 400 for engine fields the model cannot honour
        quota = Quota(key)  # the request's worst case held now: a 429 before any work
        quota.hold(lambda: worst_case(the_plan, metered))
        charged = Charged(metered, quota)  # every call (a judge's too) reserved, then settled
        try:
            verifier = await _verifier(the_plan, charged)
            if isinstance(the_plan, Strategic) and the_plan.code is not None:
                quota.may_run_code()  # a 429 before any work once the key's seconds are spent
                if quota.sandbox_capped and not isinstance(verifier, ProcessVerifier | None):
                    verifier = SandboxCharged(verifier, quota)  # each call's runs charged
            job = Job(the_plan, Observed(charged), model, key, verifier, quota=quota)
            if stream and isinstance(the_plan, Plain):  # relayed as it comes, if it can be
                job.pieces = asyncio.Queue()
            task = jobs.start(job)
            inflight.add(job)
        except BaseException:
            quota.close(0)
            raise
        if stream:
            return EventStream(job, bool(options and options.include_usage))
        try:
            finished = await _finished(task, request.receive)
        except asyncio.CancelledError:  # uvicorn's drain time at shutdown is over
            _uncancel()
            return ApiError(
                503, "the server shut down before this request finished; retry it", code="shutdown"
            ).response()
        if not finished:
            jobs.counts["disconnected"] += 1
            return Response(status_code=499)  # nobody is listening any more
        try:
            return JSONResponse(task.result())
        except Exception as exc:  # answered here: a bug must not reach uvicorn as a crash
            return errors.from_exception(exc).response()

    return app


def model_entry(model_id: str, served: str, created: int) -> dict[str, Any]:
    """The /v1/models entry of `model_id`: the served model, or it under a strategy with
    the strategy's summary and parameters (its defaults, overridden by those the name
    gives); an ApiError 404 for a name this server does not serve (an unknown strategy or
    parameter). Values are checked when a request runs, as files named in them are."""
    entry = {"id": model_id, "object": "model", "created": created, "owned_by": "testtime"}
    named = strategy_in_model(model_id, served)
    if named is None:
        return entry
    name, given = named
    known = name in STRATEGIES.entries
    params = STRATEGIES.defaults(name) if known else {}
    wrong = sorted(set(given) - set(params))
    if not known or wrong:
        why = f"no strategy {name!r}"
        if known:
            why = f"strategy {name!r} has no parameter {wrong[0]!r}"
        raise ApiError(
            404,
            f"unknown model {model_id!r} ({why}); GET /v1/models lists "
            f"{served!r} and it under each strategy with its parameters",
            param="model",
            code="model_not_found",
        )
    about = {"strategy": name, "summary": STRATEGIES.get(name).summary, "params": params}
    return {**entry, "testtime": {**about, "params": {**params, **given}}}


def fits_context(the_plan: Plain | Strategic | Completions, generator: Generator) -> None:
    """A 400 naming both numbers when a prompt alone fills the model's context (where the
    generator knows it), before any work; a strategy's later, longer prompts are the
    strategy's to fit."""
    most = generator.context_window
    if most is None:
        return
    if isinstance(the_plan, Plain):
        requests: tuple[CoreRequest, ...] = (the_plan.request,)
    elif isinstance(the_plan, Completions):
        requests = the_plan.requests
    else:
        requests = (CoreRequest(the_plan.problem.messages, max_tokens=the_plan.max_tokens),)
        if the_plan.raw:
            requests = (replace(requests[0], prompt=the_plan.problem.messages[0].content),)
    for i, one in enumerate(requests):
        have = generator.count_prompt_tokens(one)
        if have >= most:
            which = f"prompt {i} has" if len(requests) > 1 else "the prompt has"
            raise ApiError(
                400,
                f"{which} {have} tokens but this model's context holds {most} (prompt and "
                "completion together); shorten the prompt",
                param="prompt" if isinstance(the_plan, Completions) else "messages",
                code="context_length_exceeded",
            )


async def _verifier(
    the_plan: Plain | Strategic | Completions, generator: Generator
) -> Verifier | None:
    if not isinstance(the_plan, Strategic) or the_plan.verifier is None:
        return None
    try:
        if the_plan.verifier.name in FILE_VERIFIERS:  # loads a model: keep the loop free
            return await asyncio.to_thread(build_verifier, the_plan.verifier, generator)
        return build_verifier(the_plan.verifier, generator)
    except ApiError:
        raise
    except TesttimeError as e:
        raise ApiError(400, str(e), param="testtime.verifier") from None


async def _finished(task: asyncio.Task[Any], receive: Receive) -> bool:
    """Wait for the task; cancel it and return False if the client disconnects first."""
    gone = asyncio.create_task(_disconnect(receive))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not task.done():  # the client left, or this handler itself was cancelled
            task.cancel()
    # a task just cancelled is not done yet (it stops at its next await): not finished
    return task.done() and not task.cancelled()


def _uncancel() -> None:
    """Take back a cancellation this handler answers itself (with a 503, not a crash)."""
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()


async def _disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def serve(
    settings: Settings,
    generator: Generator,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    drain: int = 30,
    log_level: str = "info",
) -> None:
    """Serve until SIGINT/SIGTERM; then drain in-flight requests for up to `drain` s."""
    import uvicorn

    app = create_app(settings, generator)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        timeout_graceful_shutdown=max(0, drain),
        log_level=log_level,
        lifespan="on",
    )
    uvicorn.Server(config).run()
