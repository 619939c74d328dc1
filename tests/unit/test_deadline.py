"""A seconds budget is a deadline: the strategy stops asking, the generator returns what it
has, and the result says the budget ran out. Seen before: "2 seconds" on the embedded model
spent 21.3 s and said budget_exhausted false; a server budget of 1e-9 s was not flagged."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

import testtime.strategies  # noqa: F401  (registers strategies)
from testtime.core.budget import Budget
from testtime.core.errors import DeadlineError
from testtime.core.types import Message, Problem, Request
from testtime.generators.fake import FakeGenerator
from testtime.generators.http import HTTPGenerator
from testtime.strategies.base import STRATEGIES
from testtime.strategies.run import solve

PROBLEM = Problem.from_prompt("What is 3 + 4?", answer="7")


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("adaptive_consistency", {"max_samples": 500, "threshold": 1.0}),  # only time stops it
        ("revise", {"n": 500, "sequential": 500}),
    ],
)
async def test_a_strategy_stops_at_its_seconds_deadline(name: str, params: dict[str, Any]) -> None:
    gen = FakeGenerator(latency=0.02)
    started = time.monotonic()
    result = await solve(
        PROBLEM, STRATEGIES.spec(name, params), gen, budget=Budget(seconds=0.3), max_tokens=8
    )
    took = time.monotonic() - started
    assert result.budget_exhausted
    assert 0.25 < took < 0.3 + 0.2, took  # at most one call past the deadline
    assert 3 <= len(result.candidates) < 500


async def test_a_budget_of_no_time_draws_nothing_and_says_so() -> None:
    gen = FakeGenerator()
    result = await solve(
        PROBLEM, STRATEGIES.spec("self_consistency", {"n": 8}), gen, budget=Budget(seconds=1e-9)
    )
    assert result.budget_exhausted and not result.candidates and result.answer is None
    assert not gen.requests


async def test_the_http_backend_gives_up_at_the_deadline() -> None:
    async def stalls(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        return httpx.Response(500)

    gen = HTTPGenerator(
        "http://upstream.test/v1", "m", transport=httpx.MockTransport(stalls), retries=3
    )
    started = time.monotonic()
    request = Request((Message("user", "hi"),), deadline=time.monotonic() + 0.2)
    with pytest.raises(DeadlineError):
        await gen.generate(request)
    assert time.monotonic() - started < 1.0
    await gen.aclose()


async def test_one_http_try_is_bounded_as_a_whole_by_the_read_timeout() -> None:
    """httpx's read timeout restarts at every byte; a server that never completes its answer
    must not hold the call forever."""

    async def never(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        return httpx.Response(200)

    gen = HTTPGenerator(
        "http://upstream.test/v1",
        "m",
        transport=httpx.MockTransport(never),
        retries=1,
        read_timeout=0.2,
        backoff=0.01,
    )
    started = time.monotonic()
    with pytest.raises(Exception, match="did not answer within"):
        await gen.generate(Request((Message("user", "hi"),)))
    assert time.monotonic() - started < 2.0
    await gen.aclose()


async def test_a_server_budget_of_no_time_is_flagged() -> None:
    from testtime.server import Settings, create_app

    app = create_app(Settings("fake"), FakeGenerator())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        r = await c.post(
            "/v1/chat/completions",
            json={
                "model": "fake",
                "messages": [{"role": "user", "content": "What is 3 + 4?"}],
                "testtime": {"strategy": "self_consistency", "budget": {"seconds": 1e-9}},
            },
        )
    assert r.status_code == 400 and "ran out of time" in r.json()["error"]["message"]
