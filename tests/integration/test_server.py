"""`testtime serve` as a real process over loopback, on the fake generator: bad input and a
schema-driven fuzz (never a 5xx), the official openai client, 200 concurrent requests,
client disconnects, and graceful shutdown. Every wait is bounded."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from testtime.server.launch import Launched

pytestmark = pytest.mark.integration

Q = "What is 3 + 4?"
USER = [{"role": "user", "content": Q}]
TIMEOUT = 60  # no request of these tests may hang longer

# a server on the fake generator made slow (`latency` s per call), with given limits
SLOW = """
import sys
from testtime.generators.fake import FakeGenerator
from testtime.server import Settings, serve
port, latency, queue, concurrent, drain = sys.argv[1:6]
settings = Settings("fake", max_queue=int(queue), max_concurrent=int(concurrent))
serve(settings, FakeGenerator(latency=float(latency)), port=int(port), drain=int(drain),
      log_level="warning")
"""


def slow(latency: float, queue: int = 64, concurrent: int = 16, drain: int = 30) -> Launched:
    return Launched.python(SLOW, str(latency), str(queue), str(concurrent), str(drain))


@pytest.fixture(scope="module")
def server() -> Iterator[Launched]:
    with Launched.cli("--model", "fake", "--log-level", "warning") as s:
        yield s


def stats(s: Launched) -> dict[str, Any]:
    return httpx.get(f"{s.base_url}/testtime/stats", timeout=TIMEOUT).json()  # type: ignore[no-any-return]


def settle(s: Launched, within: float = 2.0) -> dict[str, Any]:
    """Stats once no request or generator call is left in flight (or after `within` s)."""
    end = time.monotonic() + within
    while True:
        got = stats(s)
        idle = got["tasks"] == 0 and got["generator"]["in_flight"] == 0
        if idle or time.monotonic() > end:
            return got
        time.sleep(0.05)


# -- bad input ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"this is not valid json{{{", "not valid JSON"),
        (b'["not", "an", "object"]', "must be a JSON object"),
        (b"42", "must be a JSON object"),
        (b"null", "must be a JSON object"),
        (b'{"model": "fake", "messages": "hi"}', "messages: Input should be a valid list"),
        (b'{"model": "fake", "messages": [], "n": 1}', "at least 1 item"),
        (b'{"model": "fake", "messages": [{"role": "user", "content": "hi"}], "n": "two"}', "n:"),
        (b'{"model": "fake", "messages": [{"role": "user", "content": "hi"}], "n": 100000}', "n:"),
        (b'{"model": "fake", "messages": [{"role": "user", "content": "hi"}], "n": 500}', "64"),
        (b'{"model": "nope@fake", "messages": [{"role": "user", "content": "hi"}]}', "available:"),
        (
            b'{"model": "fake", "messages": [{"role": "user", "content": "hi"}], '
            b'"testtime": {"strategy": "single", "budget": 0}}',
            "positive",
        ),
        (
            b'{"model": "fake", "messages": [{"role": "user", "content": "hi"}], '
            b'"testtime": {"strategy": "single", "budget": "1e40 flops, 1e9 samples"}}',
            "maximum",
        ),
    ],
)
def test_malformed_bodies_get_a_clear_400(server: Launched, content: bytes, says: str) -> None:
    r = httpx.post(
        f"{server.base_url}/chat/completions",
        content=content,
        timeout=TIMEOUT,
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400, r.text
    assert says in r.json()["error"]["message"]


def test_a_form_encoded_body_is_a_400_naming_the_content_type(server: Launched) -> None:
    r = httpx.post(f"{server.base_url}/chat/completions", data={"model": "fake"}, timeout=TIMEOUT)
    assert r.status_code == 400 and "application/json" in r.json()["error"]["message"]


def test_fuzzing_from_the_servers_own_schema_finds_no_5xx(server: Launched) -> None:
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from schemathesis import GenerationMode

    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    op = schema["/v1/chat/completions"]["POST"]
    models = st.sampled_from(
        [
            "fake",
            "self_consistency@fake",
            "adaptive_consistency:batch=2@fake",
            "best_of_n@fake",
            "gpt-4o",
        ]
    )
    seen: dict[int, int] = {}

    def check(case: Any, model: str) -> None:
        if isinstance(case.body, dict) and "model" in case.body:
            case.body["model"] = model  # reach past the model check as often as not
        response = case.call(base_url=server.url, timeout=TIMEOUT)
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        assert response.status_code < 500, (case.body, response.text)
        if response.status_code == 200 and "text/event-stream" in response.headers["content-type"]:
            assert response.text.rstrip().endswith("data: [DONE]")

    runs = settings(
        max_examples=120,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        runs(given(op.as_strategy(mode), models)(check))()
    assert seen.get(200, 0) > 0 and sum(n for code, n in seen.items() if code >= 400) > 0, seen
    assert settle(server)["tasks"] == 0


# -- the official client, as an app uses it -------------------------------------------------
def test_the_openai_client_gets_a_strategy_answer_with_itemised_usage(
    server: Launched, openai_client: Callable[..., Any]
) -> None:
    client = openai_client(server.base_url, TIMEOUT)
    reply = client.chat.completions.create(
        model="fake",
        messages=[{"role": "user", "content": Q}],
        extra_body={
            "testtime": {"strategy": "self_consistency", "params": {"n": 5}, "budget": "16 samples"}
        },
    )
    assert reply.choices[0].message.content is not None
    assert reply.choices[0].message.content.endswith("Answer: 7")
    assert reply.model_extra is not None and reply.model_extra["testtime"]["answer"] == "7"
    assert reply.usage is not None
    ledger = reply.usage.model_extra["testtime"]  # type: ignore[index]
    assert ledger["samples"] == 5 and reply.usage.completion_tokens == ledger["generated_tokens"]
    models = [m.id for m in client.models.list()]
    assert "fake" in models and "self_consistency@fake" in models


def test_a_tournament_per_request_itemises_the_judges_cost(
    server: Launched, openai_client: Callable[..., Any]
) -> None:
    from openai import BadRequestError

    client = openai_client(server.base_url, TIMEOUT)
    reply = client.chat.completions.create(
        model="fake",
        messages=[{"role": "user", "content": "What is 123 * 456 + 789?"}],
        extra_body={"testtime": {"strategy": "tournament", "params": {"n": 4}}},
    )
    assert reply.choices[0].message.content and reply.model_extra is not None
    info = reply.model_extra["testtime"]
    assert info["strategy"]["name"] == "tournament" and info["candidates"] == 4
    assert reply.usage is not None
    ledger = reply.usage.model_extra["testtime"]  # type: ignore[index]
    assert ledger["samples"] == 4 and reply.usage.completion_tokens == ledger["generated_tokens"]
    # the fake's samples differ here, so the policy judged them: two calls per comparison
    assert ledger["verifier_calls"] > 0 and ledger["verifier_calls"] % 2 == 0
    assert ledger["verifier_tokens"] > 0
    with pytest.raises(BadRequestError, match="names a model to open"):
        client.chat.completions.create(
            model="fake",
            messages=[{"role": "user", "content": Q}],
            extra_body={"testtime": {"strategy": "tournament", "params": {"judge": "fake"}}},
        )


def test_the_openai_client_streams_progress_then_the_answer(
    server: Launched, openai_client: Callable[..., Any]
) -> None:
    client = openai_client(server.base_url, TIMEOUT)
    stream = client.chat.completions.create(
        model="adaptive_consistency:max_samples=5,threshold=1.0@fake",
        messages=[{"role": "user", "content": Q}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    progress = [
        c.model_extra["testtime"]
        for c in chunks
        if "samples" in (c.model_extra or {}).get("testtime", {})
    ]
    assert progress and progress[-1]["leader"]["answer"] == "7"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.endswith("Answer: 7")
    assert chunks[-2].choices[0].finish_reason == "stop"  # then usage, in a chunk of its own
    assert chunks[-1].choices == [] and chunks[-1].usage is not None


def test_an_error_mid_stream_reaches_the_openai_client_as_an_error(
    server: Launched, openai_client: Callable[..., Any]
) -> None:
    from openai import APIError

    client = openai_client(server.base_url, TIMEOUT)
    stream = client.chat.completions.create(  # best-of-N finds it has no verifier as it runs
        model="best_of_n:n=2@fake",
        messages=[{"role": "user", "content": Q}],
        stream=True,
    )
    with pytest.raises(APIError, match="needs a verifier"):
        list(stream)


# -- load ------------------------------------------------------------------------------------
async def _burst(
    url: str, count: int, timeout: float = TIMEOUT, body: dict[str, Any] | None = None
) -> list[int | str]:
    """`count` requests at once (self-consistency on a different prompt each, by default)."""
    limits = httpx.Limits(max_connections=count + 10)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as c:

        async def one(i: int) -> int | str:
            content = f"What is {i} + 4?"
            try:
                r = await c.post(
                    f"{url}/v1/chat/completions",
                    json=body
                    or {
                        "model": "fake",
                        "messages": [{"role": "user", "content": content}],
                        "testtime": {"strategy": "self_consistency", "params": {"n": 4}},
                    },
                )
            except httpx.TimeoutException:
                return "timeout"
            return r.status_code

        return list(await asyncio.gather(*(one(i) for i in range(count))))


def test_200_concurrent_requests_are_answered_or_refused_and_nothing_is_left() -> None:
    import psutil

    with slow(1.0, queue=48, concurrent=16) as s:  # 16 answers a second: 200 cannot all fit
        assert s.process is not None
        proc = psutil.Process(s.process.pid)
        baseline = stats(s)["loop_tasks"]
        rss = []
        for _ in range(2):  # the first round warms up; the second must not grow
            started = time.monotonic()
            codes = asyncio.run(_burst(s.url, 200))
            assert time.monotonic() - started < TIMEOUT
            assert set(codes) <= {200, 429}, codes
            assert codes.count(200) >= 48 and codes.count(429) > 0
            after = settle(s)
            rss.append(proc.memory_info().rss)
        fresh = httpx.post(
            f"{s.base_url}/chat/completions",
            timeout=TIMEOUT,
            json={"model": "fake", "messages": USER},
        )
        after = settle(s)
    assert fresh.status_code == 200
    assert after["tasks"] == 0 and after["admitted"] == 0 and after["generator"]["in_flight"] == 0
    assert after["loop_tasks"] <= baseline + 1  # the stats request's own task, at most
    assert rss[1] - rss[0] < 20 * 2**20, rss


# -- disconnects -----------------------------------------------------------------------------
LONG = {  # 40 calls of 0.2 s each: 8 s, unless cancelled
    "model": "fake",
    "messages": USER,
    "testtime": {
        "strategy": "adaptive_consistency",
        "params": {"max_samples": 40, "batch": 1, "threshold": 1.0},
    },
}


def _stops_working(s: Launched) -> dict[str, Any]:
    """After a disconnect: nothing in flight within 1 s, and no new generator call after."""
    after = settle(s, within=1.0)
    assert after["tasks"] == 0 and after["generator"]["in_flight"] == 0, after
    time.sleep(0.6)  # three more calls' worth of time
    later = stats(s)
    assert later["generator"]["calls"] == after["generator"]["calls"], (after, later)
    return later


def test_a_client_that_disconnects_cancels_its_strategy() -> None:
    with slow(0.2) as s:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{s.base_url}/chat/completions", json=LONG, timeout=0.7)
        got = _stops_working(s)
        assert 1 <= got["generator"]["calls"] <= 6 and got["generator"]["cancelled"] == 1
        assert got["requests"].get("cancelled") == 1


def test_a_stream_that_is_closed_cancels_its_strategy() -> None:
    with slow(0.2) as s:
        with httpx.stream(
            "POST", f"{s.base_url}/chat/completions", timeout=TIMEOUT, json={**LONG, "stream": True}
        ) as r:
            lines = r.iter_lines()
            progress = next(line for line in lines if '"samples"' in line)
            assert json.loads(progress[6:])["testtime"]["samples"] == 1
        got = _stops_working(s)
        assert got["generator"]["calls"] <= 6


def test_many_impatient_clients_leave_the_server_idle_and_serving() -> None:
    with slow(0.2) as s:
        codes = asyncio.run(_burst(s.url, 200, timeout=0.5, body=LONG))
        assert set(codes) <= {"timeout", 429}
        assert settle(s, within=1.0)["generator"]["in_flight"] == 0
        fresh = httpx.post(
            f"{s.base_url}/chat/completions", timeout=5, json={"model": "fake", "messages": USER}
        )
        assert fresh.status_code == 200


# -- shutdown --------------------------------------------------------------------------------
def test_shutdown_drains_in_flight_requests_and_refuses_new_ones() -> None:
    s = slow(1.5, drain=20).start()
    assert s.process is not None
    done: list[httpx.Response] = []
    body = {"model": "fake", "messages": USER}
    worker = threading.Thread(
        target=lambda: done.append(
            httpx.post(f"{s.base_url}/chat/completions", json=body, timeout=TIMEOUT)
        )
    )
    worker.start()
    try:
        end = time.monotonic() + 5
        while stats(s)["running"] == 0 and time.monotonic() < end:
            time.sleep(0.05)
        s.process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        with pytest.raises(httpx.ConnectError):
            httpx.post(f"{s.base_url}/chat/completions", json=body, timeout=5)
        worker.join(TIMEOUT)
        code = s.process.wait(TIMEOUT)
    finally:
        s.stop()
    assert done and done[0].status_code == 200  # finished during the drain
    assert done[0].json()["choices"][0]["message"]["content"].endswith("Answer: 7")
    assert code in (0, -signal.SIGTERM)  # uvicorn re-raises SIGTERM once it has shut down
    assert "Traceback" not in s.log()


def test_shutdown_with_no_drain_time_aborts_in_flight_requests_at_once() -> None:
    s = slow(30.0, drain=0).start()
    assert s.process is not None
    failed: list[object] = []

    def call() -> None:
        try:
            r = httpx.post(
                f"{s.base_url}/chat/completions",
                timeout=TIMEOUT,
                json={"model": "fake", "messages": USER},
            )
            failed.append(r.status_code)
        except httpx.HTTPError as exc:
            failed.append(exc)

    worker = threading.Thread(target=call)
    worker.start()
    try:
        end = time.monotonic() + 5
        while stats(s)["running"] == 0 and time.monotonic() < end:
            time.sleep(0.05)
        started = time.monotonic()
        s.process.send_signal(signal.SIGTERM)
        s.process.wait(TIMEOUT)
        took = time.monotonic() - started
        worker.join(TIMEOUT)
    finally:
        s.stop()
    assert took < 4  # not the 30 s the call would take
    assert failed == [503] or isinstance(failed[0], httpx.HTTPError), failed
    assert "Traceback" not in s.log()
