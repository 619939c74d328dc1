"""What keeps the server up under load: a bounded queue, a cap on concurrent runs, API keys
with spending caps, and a body-size limit that counts the bytes actually received.

Admission is decided before any work starts: beyond `max_queue` requests (running plus
waiting) the answer is 429 with Retry-After, so a burst never grows an unbounded backlog.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from testtime.core.errors import ConfigError
from testtime.server.errors import ApiError


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
    """One API key's name (what the log shows, never the key) and spending."""

    name: str
    cap_tokens: int | None = None
    spent_tokens: int = 0


@dataclass
class Keys:
    """Bearer-token keys read from a JSON file: {"KEY": {"name": "...", "cap_tokens": N}}."""

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
        example = '{"sk-...": {"name": "alice", "cap_tokens": 100000}}'
        if not isinstance(data, Mapping) or not data:
            raise ConfigError(f"{where} must be a non-empty JSON object like {example}")
        keys = {}
        for i, (key, entry) in enumerate(data.items()):
            entry = entry or {}
            cap = entry.get("cap_tokens") if isinstance(entry, Mapping) else None
            ok_cap = cap is None or (
                isinstance(cap, int) and not isinstance(cap, bool) and cap >= 0
            )
            if not key or not isinstance(entry, Mapping) or not ok_cap:
                raise ConfigError(
                    f"{where}: entry {i + 1} must map a non-empty key to an object with an "
                    f"optional 'name' and 'cap_tokens' (an integer >= 0), like {example}"
                )
            name = str(entry.get("name") or f"key-{_fingerprint(key)}")
            keys[key] = Key(name, int(cap) if cap is not None else None)
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
        if key.cap_tokens is not None and key.spent_tokens >= key.cap_tokens:
            raise ApiError(
                429,
                f"API key {key.name!r} has spent its cap of {key.cap_tokens} tokens "
                f"({key.spent_tokens} spent); ask the operator to raise it",
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
