"""What keeps the server up under load: a bounded queue, a cap on concurrent runs, API keys
with spending caps, and a body-size limit that counts the bytes actually received.

Admission is decided before any work starts: beyond `max_queue` requests (running plus
waiting) the answer is 429 with Retry-After, so a burst never grows an unbounded backlog.

A key's cap holds under concurrency: each request holds (reserves) its first call's worst
case when admitted, and every generator call it makes (the policy's, an LLM judge's)
reserves its own worst case (n x (prompt + max_tokens)) before it runs and is settled to
what it used after, so concurrent requests cannot together spend past the cap.
What is not covered: tokens counted outside generator calls (a PRM verifier's own model)
are charged when the request ends, unreserved; a remote backend's prompt count is its own
estimate (it errs high).

A key may also cap the sandbox seconds that requests bringing tests spend running them
(`cap_sandbox_seconds`). These are not reserved at a worst case, which for best-of-16 would
be 16 runs to their 10 s wall-clock limit (160 s) where the runs usually take 16 x 0.05 s:
a request is refused (429) when the key's seconds are spent, at admission and before each
verifier call, and each call is charged what its runs took as it ends. So concurrent
requests of one key may pass the cap by what their calls in flight run (each run at most its
wall-clock limit). Runs still in flight when a request is cancelled finish uncharged.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from testtime.core.cost import Cost
from testtime.core.errors import ConfigError
from testtime.core.types import Candidate, Problem, Request
from testtime.generators.base import Generation, Generator
from testtime.server.errors import ApiError
from testtime.server.progress import Relay
from testtime.verifiers.base import Scores, Verifier


class Admission:
    """At most `max_queue` requests admitted, of which `max_concurrent` run at once."""

    def __init__(self, max_queue: int, max_concurrent: int) -> None:
        if max_concurrent < 1 or max_queue < max_concurrent:
            raise ConfigError(
                f"--max-queue ({max_queue}) must be at least --max-concurrent "
                f"({max_concurrent}), which must be at least 1"
            )
        self.max_queue = max_queue
        self.max_concurrent = max_concurrent
        self.admitted = 0  # running + waiting
        self.running = 0
        self.closing = False
        self._slots = asyncio.Semaphore(max_concurrent)
        self._mean_s = 1.0  # moving average of a run's seconds, for Retry-After

    def reserve(self) -> None:
        """Take a place in the queue, or refuse now (503 closing, 429 full)."""
        if self.closing:
            raise ApiError(503, "the server is shutting down; retry on another replica")
        if self.admitted >= self.max_queue:
            raise ApiError(
                429,
                f"the server is busy ({self.admitted} requests queued or running, the most it "
                f"admits); retry after {self.retry_after()} s",
                code="queue_full",
                headers={"Retry-After": str(self.retry_after())},
            )
        self.admitted += 1

    def release(self) -> None:
        """Give back a place taken by `reserve` (exactly once per reservation)."""
        self.admitted -= 1

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Wait for a run slot; time the run for Retry-After estimates."""
        async with self._slots:
            self.running += 1
            loop = asyncio.get_running_loop()
            started = loop.time()
            try:
                yield
            finally:
                self.running -= 1
                self._mean_s = 0.9 * self._mean_s + 0.1 * (loop.time() - started)

    def retry_after(self) -> int:
        """Seconds until a place is likely free: the queue's turnover at the mean run time."""
        waves = self.admitted / self.max_concurrent
        return max(1, min(3600, math.ceil(waves * self._mean_s)))


@dataclass
class Key:
    """One API key's name (what the log shows, never the key), spending, and the tokens its
    requests in flight hold against its cap."""

    name: str
    cap_tokens: int | None = None
    spent_tokens: int = 0
    reserved_tokens: int = 0
    cap_sandbox_seconds: float | None = None  # running the tests that requests bring
    spent_sandbox_seconds: float = 0.0

    def reserve(self, tokens: int) -> None:
        """Hold `tokens` against the cap, or refuse (429) if spent + held + tokens exceed it."""
        cap = self.cap_tokens
        if cap is not None and self.spent_tokens + self.reserved_tokens + tokens > cap:
            raise ApiError(
                429,
                f"API key {self.name!r} cannot cover the {tokens} tokens this request may "
                f"spend next (its worst case): the cap is {cap}, {self.spent_tokens} are spent and "
                f"{self.reserved_tokens} held by requests in flight; ask for fewer tokens "
                "(n, max_tokens), wait for those requests, or ask the operator to raise the cap",
                code="insufficient_quota",
                headers={"x-should-retry": "false"},
            )
        self.reserved_tokens += tokens

    def may_run_code(self) -> None:
        """Refuse (429) a request's tests, or its next verifier call running them, once this
        key has spent its sandbox seconds."""
        cap = self.cap_sandbox_seconds
        if cap is not None and self.spent_sandbox_seconds >= cap:
            raise ApiError(
                429,
                f"API key {self.name!r} has spent its cap of {cap:g} sandbox seconds on running "
                f"tests ({self.spent_sandbox_seconds:.2f} s spent); send requests without "
                "testtime.tests, or ask the operator to raise its cap_sandbox_seconds",
                code="insufficient_quota",
                headers={"x-should-retry": "false"},
            )


def spent(cost: Cost) -> int:
    """Tokens charged to an API key: every prompt, generated and verifier token."""
    prompt = cost.prompt_tokens + cost.cached_prompt_tokens
    return prompt + cost.generated_tokens + cost.verifier_tokens


class Quota:
    """One request's hold on its key: calls take their worst case from the hold (reserving
    more from the key when it is short) and give it back settled to what they used."""

    def __init__(self, key: Key | None) -> None:
        self.key = key
        self.held = 0  # reserved from the key for this request
        self.in_use = 0  # of which calls now running are backed by
        self.charged = 0  # what this request's calls used, added to the key's spending
        self.sandbox_charged = 0.0  # sandbox seconds its verifier calls used, added likewise
        self.closed = False
        self.capped = key is not None and key.cap_tokens is not None
        self.sandbox_capped = key is not None and key.cap_sandbox_seconds is not None

    def hold(self, worst: Callable[[], tuple[int, int | None]]) -> None:
        """At admission, reserve the request's worst case (`worst()`: its first call's, and
        its whole, None if unknown) or as much of it as the key has left, refusing (429) if
        not even the first call's fits. Nothing is counted for a key without a cap."""
        key = self.key
        if key is None or key.cap_tokens is None:
            return  # no cap to hold against (calls are still charged)
        least, most = worst()
        left = key.cap_tokens - key.spent_tokens - key.reserved_tokens
        tokens = max(least, left if most is None else min(most, left))
        key.reserve(tokens)  # refuses when not even `least` is left
        self.held += tokens

    def take(self, worst: int) -> None:
        """Back a call's worst case, or refuse (429 insufficient_quota) if the key cannot."""
        if self.key is None or not self.capped:
            return
        short = worst - (self.held - self.in_use)
        if short > 0:
            self.key.reserve(short)
            self.held += short
        self.in_use += worst

    def give(self, worst: int, used: int) -> None:
        """Settle a call: charge what it used; what it held backs later calls (or, once the
        request has ended, goes back to the key)."""
        if self.key is None or not self.capped:
            return
        self.in_use -= worst
        freed = worst if self.closed else min(used, worst)
        self.held -= freed
        self.key.reserved_tokens -= freed
        self.key.spent_tokens += used
        self.charged += used

    def may_run_code(self) -> None:
        """Before running the request's tests: refuse (429) if its key's sandbox seconds are
        spent."""
        if self.key is not None:
            self.key.may_run_code()

    def charge_sandbox(self, seconds: float) -> None:
        """Charge the key the sandbox seconds a call's runs took."""
        if self.key is not None:
            self.key.spent_sandbox_seconds += seconds
            self.sandbox_charged += seconds

    def close(self, total: int, sandbox_seconds: float = 0.0) -> None:
        """The request ended: charge what its calls did not (`total` is its whole cost, a
        PRM's tokens included; `sandbox_seconds` the whole time its tests ran) and release
        what no running call holds."""
        if self.key is None or self.closed:
            return
        self.closed = True
        self.key.spent_tokens += max(0, total - self.charged)
        self.key.spent_sandbox_seconds += max(0.0, sandbox_seconds - self.sandbox_charged)
        idle = self.held - self.in_use
        self.held -= idle
        self.key.reserved_tokens -= idle


class Charged(Relay):
    """The generator as one request sees it: each call reserves its worst case against the
    request's quota before it runs, and is settled to its real cost after (even if it fails
    or is cancelled: then to nothing, as no cost came back)."""

    def __init__(self, inner: Generator, quota: Quota) -> None:
        super().__init__(inner)
        self.quota = quota

    async def generate(self, request: Request) -> Generation:
        if not self.quota.capped:  # nothing to reserve: the request is charged at its end
            return await self.inner.generate(request)
        worst = worst_tokens(self.inner, request)
        self.quota.take(worst)
        used = 0
        try:
            gen = await self.inner.generate(request)
            used = spent(gen.cost)
        finally:
            self.quota.give(worst, used)
        return gen


class SandboxCharged(Verifier):
    """The verifier as a request with tests sees it: each call is refused (429) once the
    key's sandbox seconds are spent, and charged the sandbox seconds its runs took."""

    def __init__(self, inner: Verifier, quota: Quota) -> None:
        self.inner = inner
        self.quota = quota
        self.name = inner.name
        self.traits = inner.traits

    async def score(self, problem: Problem, candidates: Sequence[Candidate]) -> Scores:
        self.quota.may_run_code()
        got = await self.inner.score(problem, candidates)
        self.quota.charge_sandbox(got.cost.sandbox_seconds)
        return got

    def flops_per_candidate(self, problem: Problem) -> float:
        return self.inner.flops_per_candidate(problem)


def worst_tokens(generator: Generator, request: Request) -> int:
    """The most a call may charge: every sample its prompt (prefix included) and
    max_tokens."""
    return request.n * (generator.count_prompt_tokens(request) + request.max_tokens)


@dataclass
class Keys:
    """Bearer-token keys read from a JSON file:
    {"KEY": {"name": "...", "cap_tokens": N, "cap_sandbox_seconds": S}}."""

    keys: dict[str, Key] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Keys:
        try:
            data = json.loads(path.read_text())
        except OSError as e:
            raise ConfigError(f"cannot read --keys {path}: {e.strerror}") from None
        except json.JSONDecodeError as e:
            raise ConfigError(f"--keys {path} is not valid JSON: {e.msg}") from None
        return cls.parse(data, str(path))

    @classmethod
    def parse(cls, data: Any, where: str = "keys") -> Keys:
        example = '{"sk-...": {"name": "alice", "cap_tokens": 100000, "cap_sandbox_seconds": 60}}'
        if not isinstance(data, Mapping) or not data:
            raise ConfigError(f"{where} must be a non-empty JSON object like {example}")
        keys = {}
        for i, (key, entry) in enumerate(data.items()):
            entry = entry or {}
            cap = entry.get("cap_tokens") if isinstance(entry, Mapping) else None
            seconds = entry.get("cap_sandbox_seconds") if isinstance(entry, Mapping) else None
            ok_cap = cap is None or (
                isinstance(cap, int) and not isinstance(cap, bool) and cap >= 0
            )
            ok_seconds = seconds is None or (
                isinstance(seconds, int | float)
                and not isinstance(seconds, bool)
                and math.isfinite(seconds)
                and seconds >= 0
            )
            if not key or not isinstance(entry, Mapping) or not ok_cap or not ok_seconds:
                raise ConfigError(
                    f"{where}: entry {i + 1} must map a non-empty key to an object with an "
                    "optional 'name', 'cap_tokens' (an integer >= 0) and 'cap_sandbox_seconds' "
                    f"(a number >= 0), like {example}"
                )
            name = str(entry.get("name") or f"key-{_fingerprint(key)}")
            keys[key] = Key(
                name,
                int(cap) if cap is not None else None,
                cap_sandbox_seconds=float(seconds) if seconds is not None else None,
            )
        return cls(keys)

    def check(self, authorization: str | None) -> Key:
        """The key of a request's Authorization header (401 if missing or unknown, 429 if
        its cap is spent)."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(
                401,
                "this server needs an API key: send the header 'Authorization: Bearer KEY'",
                code="missing_api_key",
            )
        key = self.keys.get(token.strip())
        if key is None:
            raise ApiError(
                401, "invalid API key; ask the server's operator for one", code="invalid_api_key"
            )
        if key.cap_tokens is not None and key.spent_tokens + key.reserved_tokens >= key.cap_tokens:
            raise ApiError(
                429,
                f"API key {key.name!r} has spent or holds its cap of {key.cap_tokens} tokens "
                f"({key.spent_tokens} spent, {key.reserved_tokens} held by requests in flight); "
                "wait for those, or ask the operator to raise it",
                code="insufficient_quota",
                headers={"x-should-retry": "false"},
            )
        return key


def _fingerprint(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:8]


class BodyLimit:
    """ASGI middleware: refuse bodies over `max_bytes` (413), counting the bytes received,
    not trusting Content-Length."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise TooLarge(self.max_bytes)
            return message

        await self.app(scope, counted, send)

    async def _refuse(self, send: Send) -> None:
        error = ApiError(413, too_large(self.max_bytes))
        body = json.dumps(error.body()).encode()
        headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class TooLarge(HTTPException):
    """A body over the limit, raised while it is read (FastAPI passes HTTPExceptions on)."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, too_large(max_bytes))


def too_large(max_bytes: int) -> str:
    return f"the body is larger than this server accepts ({max_bytes} bytes); send less"
