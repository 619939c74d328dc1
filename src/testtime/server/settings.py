"""The server's limits and what it serves, set once at start (by `testtime serve`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from testtime.core.budget import Budget
from testtime.core.voting import Fallback
from testtime.server.limits import Keys

DEFAULT_MAX_TOKENS = 256  # per sample, when a request names none (the library's default)


@dataclass(frozen=True)
class Settings:
    """Limits of one server. `max_budget` caps every request's budget (and is the budget
    of requests that name none); `deadline` bounds a request's wall time, queueing included."""

    model: str  # the served model name, as /v1/models lists it
    max_queue: int = 64  # requests admitted (running + waiting); beyond: 429
    max_concurrent: int = 16  # requests running at once
    deadline: float = 300.0  # seconds
    max_budget: Budget = field(default_factory=lambda: Budget(samples=64))
    max_tokens: int = 4096  # per sample
    max_messages: int = 256
    max_body_bytes: int = 1 << 20
    max_param: int = 4096  # the largest size parameter (n, iterations, tokens, ...) of a request
    allow_file_verifiers: bool = False  # verifiers that load local files named in requests
    # run the tests a request brings (testtime.tests) on its samples' code, in the sandbox;
    # the server refuses to start with it where bubblewrap cannot run (fail closed)
    run_tests: bool = False
    policy_dirs: tuple[Path, ...] = ()  # a request's file parameters (policy=) must lie inside
    keys: Keys | None = None
    # how to choose when a strategy's vote decided nothing (every sample its own answer group,
    # e.g. free text): core.voting.fallback's rules; a request may name another (testtime.fallback)
    fallback: Fallback = "likelihood"
    upstream: str | None = None  # the URL proxied to, for /health
