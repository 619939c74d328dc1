"""Any OpenAI-compatible server as the policy: vLLM, SGLang, llama.cpp, Ollama, a hosted
API, or another `testtime serve`.

One shared httpx client with connect and read timeouts, at most `max_concurrency` requests
in flight, and retries with exponential backoff and jitter on 429/5xx and broken
connections (a Retry-After header is honoured). `n` samples go in one request where the
server takes `n`, else as n concurrent requests whose seeds are seed + sample index, so a
seeded sample is the same however it is requested. The wire conventions (prefix
continuation, finish reasons, costs) are in `http_wire`.

What is not covered: per-token `certainty` (a server sends no full distributions), and
first-finish cutting (the n samples run to the end and are all charged; the shortest is
still the first to finish). A server without `usage` gets estimated token counts
(`count_prompt_tokens`; generated: logprob counts, else the same bytes-based estimate).
A call's `seconds` are its local wall time, except that an adopted upstream testtime ledger
keeps its own, so that the cost reported equals the sum of what the upstream reported.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from testtime.core.cost import Cost
from testtime.core.errors import ConfigError, DeadlineError
from testtime.core.types import Request
from testtime.generators import http_wire as wire
from testtime.generators.backends import Backend, backend
from testtime.generators.base import Generation, Generator, Listener, stream_listener
from testtime.generators.http_wire import Endpoint, ServerError

if TYPE_CHECKING:
    import httpx

__all__ = ["HTTPGenerator", "ServerError"]

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
MAX_WAIT = 60.0  # the longest pause between two tries, whatever the server asks
TEMPLATE_BYTES = 24  # per message, for the chat template's role markers in the estimate


class HTTPGenerator(Generator):
    """The policy behind an OpenAI-compatible server.

    Args:
        base_url: the API root, e.g. `http://127.0.0.1:8000/v1`.
        model: the model name the server knows.
        n_params: parameters of the served model, for FLOPs (0: FLOPs are not counted).
        api_key_env: the environment variable holding the API key (sent as a Bearer token).
        endpoint: "chat" (`/chat/completions`) or "completions" (a plain-text prompt).
        supports_n: whether the server takes n > 1 (None: try, and remember a refusal).
        transport: an httpx transport in place of the network (tests, an in-process app).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        n_params: int = 0,
        api_key_env: str = "OPENAI_API_KEY",
        endpoint: Endpoint = "chat",
        max_concurrency: int = 16,
        connect_timeout: float = 10.0,
        read_timeout: float = 300.0,
        retries: int = 4,
        backoff: float = 0.5,
        supports_n: bool | None = None,
        transport: Any = None,
    ) -> None:
        _check(base_url, model, endpoint, max_concurrency, connect_timeout, read_timeout)
        if retries < 0 or backoff < 0 or n_params < 0:
            raise ConfigError("retries, backoff and n_params must be >= 0")
        httpx = _httpx()
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.name = f"{model}@{self.base_url}"
        self.n_params = n_params
        self.endpoint: Endpoint = endpoint
        self.multimodal = endpoint == "chat"  # content parts go to the chat endpoint as sent
        self.forwards_extra = True  # reasoning_effort, thinking budgets: sent on as given
        self.supports_n = supports_n
        self.retries = retries
        self.backoff = backoff
        self.read_timeout = read_timeout
        self.api_key_env = api_key_env
        self._key = os.environ.get(api_key_env, "")  # never logged, shown or sent in a body
        self._client = httpx.AsyncClient(
            headers={"Authorization": f"Bearer {self._key}"} if self._key else {},
            timeout=httpx.Timeout(
                connect=connect_timeout, read=read_timeout, write=read_timeout, pool=read_timeout
            ),
            limits=httpx.Limits(max_connections=max_concurrency),
            transport=transport,
        )
        self._slots = asyncio.Semaphore(max_concurrency)
        self._seen_ratio = 0.0  # the most prompt tokens per byte the server reported
        self._tokens_per_byte = 1.0

    @classmethod
    def from_url(cls, url: str, **opts: Any) -> HTTPGenerator:
        """From `http://HOST:PORT/v1#MODEL` (how the CLI and the lab name a served model)."""
        base, sep, model = url.rpartition("#")
        if not sep or not base or not model:
            raise ConfigError(
                f"{url!r} names no model; write the server's API root, '#', and the model "
                "name, e.g. http://127.0.0.1:8000/v1#Qwen/Qwen2.5-0.5B-Instruct"
            )
        return cls(base, model, **opts)

    def __repr__(self) -> str:
        return f"HTTPGenerator(model={self.model!r}, base_url={self.base_url!r})"

    def count_prompt_tokens(self, request: Request) -> int:
        """An estimate that errs high, to reserve budget before a call (there is no tokenizer
        for a remote model): the prompt's UTF-8 bytes plus room for the chat template (a
        byte-level tokenizer makes at most one token per byte) until the server reports
        real counts, then 1.25 x the most tokens per byte it reported."""
        return max(1, math.ceil(_bytes(request) * self._tokens_per_byte))

    async def generate(self, request: Request) -> Generation:
        started = time.perf_counter()
        listener = stream_listener()
        if listener is not None and self._can_stream(request):
            replies = await self._streamed(request, listener)
        else:
            replies = await self._replies(request)
        comps = tuple(c for r in replies for c in r.completions)[: request.n]
        cost = sum((r.cost for r in replies), Cost())
        if not any(r.adopted for r in replies):  # an adopted ledger keeps upstream's seconds
            cost = replace(cost, seconds=time.perf_counter() - started)
        return Generation(comps, cost)

    async def aclose(self) -> None:
        await self._client.aclose()

    # -- n samples: one request, or one per sample -----------------------------------------
    async def _replies(self, request: Request) -> list[wire.Reply]:
        if request.n == 1 or self.supports_n is False:
            return await self._fan_out(request, 0, request.n)
        try:
            first = await self._call(request, request.n, 0)
        except ServerError as exc:
            if not wire.refuses_n(exc):
                raise
            self.supports_n = False
            return await self._fan_out(request, 0, request.n)
        got = len(first.completions)
        self.supports_n = got >= request.n
        if got >= request.n:
            return [first]
        return [first, *await self._fan_out(request, got, request.n - got)]

    async def _fan_out(self, request: Request, start: int, count: int) -> list[wire.Reply]:
        """Samples start.. start+count-1, one request each, concurrently."""
        tasks = [asyncio.ensure_future(self._call(request, 1, start + i)) for i in range(count)]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def _call(self, request: Request, n: int, offset: int) -> wire.Reply:
        """One request for samples offset.. of the request's seeded stream."""
        seed = None if request.seed is None else request.seed + request.first_index + offset
        endpoint = wire.endpoint_of(request, self.endpoint)  # a raw prompt: completions
        body = wire.body(request, self.model, endpoint, n, seed)
        data = await self._post(body, request.deadline, endpoint)
        return self._read(data, request, endpoint)

    def _read(self, data: Any, request: Request, endpoint: Endpoint) -> wire.Reply:
        """A decoded answer as a Reply; the server's prompt counts refine the estimate."""
        reply = wire.parse_reply(
            data,
            request,
            endpoint=endpoint,
            n_params=self.n_params,
            url=self._url(endpoint),
            estimate=lambda text: max(1, math.ceil(len(text.encode()) * self._tokens_per_byte)),
            prompt_estimate=self.count_prompt_tokens(request),
        )
        if reply.prompt_tokens and not reply.adopted:
            self._seen_ratio = max(self._seen_ratio, reply.prompt_tokens / _bytes(request))
            self._tokens_per_byte = min(1.0, 1.25 * self._seen_ratio)
        return reply

    # -- a streamed request: pieces relayed as they arrive ---------------------------------
    def _can_stream(self, request: Request) -> bool:
        """A chat request without a prefix to continue (an upstream may echo it), whose n
        the server takes in one request (or n = 1)."""
        chat = wire.endpoint_of(request, self.endpoint) == "chat"
        return chat and not request.prefix and (request.n == 1 or self.supports_n is not False)

    async def _streamed(self, request: Request, listener: Listener) -> list[wire.Reply]:
        """The request streamed from the upstream (`stream: true`, usage asked for at the
        end), each piece handed to `listener` as it arrives; then read as a whole reply. A
        refused n falls back to one request per sample, not streamed."""
        seed = None if request.seed is None else request.seed + request.first_index
        body = wire.body(request, self.model, "chat", request.n, seed)
        body.update(stream=True, stream_options={"include_usage": True})
        try:
            data = await self._post_stream(body, request.deadline, listener)
        except ServerError as exc:
            if request.n == 1 or not wire.refuses_n(exc):
                raise
            self.supports_n = False
            return await self._replies(request)
        reply = self._read(data, request, "chat")
        got = len(reply.completions)
        if request.n > 1:
            self.supports_n = got >= request.n
        if got >= request.n:
            return [reply]
        return [reply, *await self._fan_out(request, got, request.n - got)]  # not streamed

    async def _post_stream(
        self, body: dict[str, Any], deadline: float | None, listener: Listener
    ) -> dict[str, Any]:
        """POST a streamed request, with the retries of `_post` until its first piece (after
        one, a failure would repeat what was relayed: it is a ServerError). The whole stream
        is bounded by `read_timeout` and the deadline, as a non-streamed call is."""
        import httpx

        url = self._url("chat")
        failure: httpx.Response | httpx.TransportError | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(min(self._wait(attempt - 1, failure), _left(deadline)))
            reader = wire.Assembly(url)
            relayed = 0
            async with self._slots:
                bound = min(self.read_timeout, _left(deadline))
                try:
                    async with (
                        asyncio.timeout(bound),
                        self._client.stream("POST", url, json=body) as response,
                    ):
                        if response.status_code < 400:
                            async for line in response.aiter_lines():
                                for piece in reader.feed(line):
                                    relayed += 1
                                    listener(piece)
                                if reader.done:
                                    break
                            return reader.data()
                        await response.aread()
                except TimeoutError:
                    if deadline is not None and time.monotonic() >= deadline:
                        raise DeadlineError(
                            f"the seconds budget ran out while streaming from {url}"
                        ) from None
                    if relayed:
                        raise self._error(
                            f"the stream from {url} did not finish within {bound:g} s; raise "
                            "read_timeout or lower max_tokens"
                        ) from None
                    failure = httpx.ReadTimeout(f"no whole answer within {bound:g} s")
                    continue
                except httpx.TransportError as exc:  # refused, reset, cut mid-stream
                    if relayed:
                        raise self._error(
                            f"the stream from {url} broke after {relayed} pieces "
                            f"({type(exc).__name__}: {exc})"
                        ) from None
                    failure = exc
                    continue
            if response.status_code not in RETRY_STATUS:
                raise self._refused(response, url, body, "chat")
            failure = response
        raise self._gave_up(failure, url)

    # -- one HTTP request, with retries ----------------------------------------------------
    def _url(self, endpoint: Endpoint | None = None) -> str:
        return f"{self.base_url}/{wire.PATHS[endpoint or self.endpoint]}"

    async def _post(
        self, body: dict[str, Any], deadline: float | None = None, endpoint: Endpoint | None = None
    ) -> Any:
        """POST with retries. Each try is bounded as a whole by `read_timeout` (httpx's read
        timeout alone restarts at every byte, so a trickling server could hold a call
        forever) and by the request's deadline, which raises `DeadlineError`."""
        import httpx

        url = self._url(endpoint)
        failure: httpx.Response | httpx.TransportError | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(min(self._wait(attempt - 1, failure), _left(deadline)))
            async with self._slots:
                bound = min(self.read_timeout, _left(deadline))
                try:
                    async with asyncio.timeout(bound):
                        response = await self._client.post(url, json=body)
                except TimeoutError:
                    if deadline is not None and time.monotonic() >= deadline:
                        raise DeadlineError(
                            f"the seconds budget ran out while waiting for {url}"
                        ) from None
                    failure = httpx.ReadTimeout(f"no whole answer within {bound:g} s")
                    continue
                except httpx.TransportError as exc:  # refused, reset, timed out
                    failure = exc
                    continue
            if response.status_code < 400:
                return self._json(response, url)
            if response.status_code not in RETRY_STATUS:
                raise self._refused(response, url, body, endpoint or self.endpoint)
            failure = response
        raise self._gave_up(failure, url)

    def _wait(self, attempt: int, failure: object) -> float:
        """Retry-After when the server sent one, else exponential backoff with jitter."""
        headers = getattr(failure, "headers", None)
        asked = wire.retry_after(headers.get("retry-after")) if headers is not None else None
        if asked is not None:
            return min(asked, MAX_WAIT)
        return min(MAX_WAIT, self.backoff * 2.0**attempt * (0.5 + random.random()))

    def _json(self, response: httpx.Response, url: str) -> Any:
        try:
            return response.json()
        except ValueError:
            raise self._error(
                f"the server at {url} answered {response.status_code} with something that is "
                f"not JSON ({response.text[:200]!r}); is base_url its OpenAI API root "
                "(usually ending in /v1)?",
                response.status_code,
            ) from None

    def _refused(
        self, response: httpx.Response, url: str, body: dict[str, Any], endpoint: Endpoint
    ) -> ServerError:
        status, detail = response.status_code, wire.error_detail(response.text)
        said = f"({status}: {detail})"
        if status in (401, 403):
            sent = "" if self._key else f"; no key was sent: ${self.api_key_env} is not set"
            msg = (
                f"the server at {url} refused the API key {said}{sent}; set OPENAI_API_KEY "
                f"(or the variable named by api_key_env, here {self.api_key_env})"
            )
        elif status == 404:
            msg = (
                f"the server at {url} found no such thing {said}; check that base_url is its "
                f"OpenAI API root (usually ending in /v1), that it serves the model "
                f"{self.model!r}, and that it has the {endpoint} endpoint"
            )
        else:
            msg = f"the server at {url} rejected the request {said}"
            if body.get("continue_final_message"):
                msg += (
                    "; continuing a partial answer needs a server that honours "
                    "continue_final_message (vLLM, testtime serve)"
                )
        return self._error(msg, status, detail)

    def _gave_up(self, failure: object, url: str) -> ServerError:
        import httpx

        tries = f"{self.retries + 1} {'try' if not self.retries else 'tries'}"
        if isinstance(failure, httpx.ConnectError | httpx.ConnectTimeout):
            return self._error(
                f"could not reach the OpenAI-compatible server at {url} "
                f"({type(failure).__name__}: {failure}; {tries}); is it running? check the "
                "address (--model http://HOST:PORT/v1#MODEL, or the server's --upstream)"
            )
        if isinstance(failure, httpx.TimeoutException):
            return self._error(
                f"the server at {url} did not answer within {self.read_timeout:g} s ({tries}); "
                "it may be overloaded or the generation too long: raise read_timeout or "
                "lower max_tokens"
            )
        if isinstance(failure, httpx.Response):
            detail = wire.error_detail(failure.text)
            return self._error(
                f"the server at {url} failed {tries} (last: {failure.status_code}: {detail}); "
                "it may be overloaded or down: try again later or lower max_concurrency",
                failure.status_code,
                detail,
            )
        return self._error(f"the connection to {url} failed ({failure!r}; {tries})")

    def _error(self, message: str, status: int | None = None, detail: str = "") -> ServerError:
        """A ServerError with the API key cut out, even where the server echoed it."""
        if self._key:
            message, detail = message.replace(self._key, "***"), detail.replace(self._key, "***")
        return ServerError(message, status, detail)


def _bytes(request: Request) -> int:
    """The rendered prompt's UTF-8 bytes plus room for a chat template's special tokens."""
    template = TEMPLATE_BYTES * (len(request.messages) + 1)
    return len(wire.render_prompt(request).encode()) + template


def _check(
    base_url: str, model: str, endpoint: str, concurrency: int, connect: float, read: float
) -> None:
    if not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"base_url {base_url!r} must start with http:// or https://")
    if not model:
        raise ConfigError("model must name the model the server serves")
    if endpoint not in wire.PATHS:
        raise ConfigError(f"endpoint {endpoint!r} is not allowed; use chat or completions")
    if concurrency < 1:
        raise ConfigError(f"max_concurrency must be >= 1, got {concurrency}")
    if not (connect > 0 and read > 0):
        raise ConfigError("connect_timeout and read_timeout must be > 0 seconds")


def _httpx() -> Any:
    try:
        import httpx
    except ImportError:
        raise ConfigError(
            "the HTTP generator needs httpx; install it with `pip install 'testtime[http]'`"
        ) from None
    return httpx


def _left(deadline: float | None) -> float:
    """Seconds until `deadline` (a `time.monotonic()` value); `DeadlineError` once past."""
    if deadline is None:
        return math.inf
    left = deadline - time.monotonic()
    if left <= 0:
        raise DeadlineError("the seconds budget ran out before this request could be sent")
    return left


@backend
class Served(Backend):
    """`http(s)://HOST:PORT/v1#MODEL`: a model on an OpenAI-compatible server. Its weights
    are out of reach, so its URL and name stand in for them as its fingerprint."""

    name = "http"
    usage = "a served model http(s)://HOST:PORT/v1#MODEL"
    runs_on = "a served model runs on its server"

    def claims(self, model: str) -> bool:
        return model.startswith(("http://", "https://"))

    def open(self, model: str, **opts: Any) -> Generator:
        return HTTPGenerator.from_url(model, **opts)

    def n_params(self, model: str) -> int:
        raise ConfigError(f"{model} is served remotely; its parameter count is unknown here")
