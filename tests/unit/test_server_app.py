"""The app in process (httpx's ASGI transport) on the fake generator: responses, usage,
streams, errors in OpenAI's shape, limits and keys. The real process is tested in
tests/integration/test_server.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx
import pytest

from testtime.core.budget import Budget
from testtime.core.errors import ConfigError
from testtime.core.registry import Spec
from testtime.core.types import Problem, Request
from testtime.generators.base import Generation, Generator
from testtime.generators.fake import FakeGenerator, render
from testtime.server import Settings, create_app
from testtime.server.limits import Keys
from testtime.server.plan import problem_id
from testtime.strategies.base import STRATEGIES
from testtime.strategies.run import solve

Q = "What is 3 + 4?"
USER = [{"role": "user", "content": Q}]


class Failing(Generator):
    """The fake, failing on call `after` + 1 (with a user error or a bug)."""

    def __init__(self, after: int, exc: Exception) -> None:
        self.inner = FakeGenerator()
        self.after, self.exc, self.calls = after, exc, 0

    async def generate(self, request: Request) -> Generation:
        self.calls += 1
        if self.calls > self.after:
            raise self.exc
        return await self.inner.generate(request)

    def count_prompt_tokens(self, request: Request) -> int:
        return self.inner.count_prompt_tokens(request)


def client(gen: Generator | None = None, **settings: Any) -> httpx.AsyncClient:
    app = create_app(Settings("fake", **settings), gen or FakeGenerator())
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def chat(c: httpx.AsyncClient, **body: Any) -> httpx.Response:
    return await c.post("/v1/chat/completions", json={"model": "fake", "messages": USER, **body})


def events(text: str) -> list[Any]:
    """The data of each SSE event ('[DONE]' kept as a string); `event:` lines as ('event', x)."""
    out: list[Any] = []
    for block in text.strip().split("\n\n"):
        for line in block.splitlines():
            if line.startswith("event: "):
                out.append(("event", line[7:]))
            elif line.startswith("data: "):
                data = line[6:]
                out.append(data if data == "[DONE]" else json.loads(data))
    return out


async def test_a_plain_request_returns_n_choices_with_usage() -> None:
    async with client() as c:
        r = await chat(c, n=3, max_tokens=64, seed=1)
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "chat.completion" and body["model"] == "fake"
    assert [ch["index"] for ch in body["choices"]] == [0, 1, 2]
    assert all(
        ch["finish_reason"] == "stop" and ch["stop_reason"] is None for ch in body["choices"]
    )
    u = body["usage"]
    assert u["completion_tokens"] == u["testtime"]["generated_tokens"] > 0
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]
    assert u["prompt_tokens_details"]["cached_tokens"] == u["testtime"]["cached_prompt_tokens"]
    assert u["testtime"]["samples"] == 3 and u["testtime"]["flops"] > 0


async def test_stop_strings_and_length_set_finish_and_stop_reasons() -> None:
    async with client() as c:
        stopped = (await chat(c, stop=["\n\n"], temperature=0)).json()["choices"][0]
        cut = (await chat(c, max_tokens=3, temperature=0)).json()["choices"][0]
    assert stopped["finish_reason"] == "stop" and stopped["stop_reason"] == "\n\n"
    assert stopped["message"]["content"] == "Let me think step by step."
    assert cut["finish_reason"] == "length" and cut["stop_reason"] is None


async def test_logprobs_come_in_openai_shape() -> None:
    async with client() as c:
        r = await chat(c, max_tokens=4, logprobs=True, top_logprobs=2, temperature=0)
    content = r.json()["choices"][0]["logprobs"]["content"]
    assert len(content) == 4
    assert content[0]["token"] == "Let" and content[0]["logprob"] <= 0
    assert 1 <= len(content[0]["top_logprobs"]) <= 2
    assert {"token", "logprob", "bytes"} <= set(content[0]["top_logprobs"][0])


async def test_continue_final_message_returns_the_continuation_only() -> None:
    text = render("7", "3 + 4")
    gen = FakeGenerator({Q: [text]})
    half = text[:20]
    msgs = [*USER, {"role": "assistant", "content": half}]
    async with client(gen) as c:
        r = await chat(c, messages=msgs, continue_final_message=True, add_generation_prompt=False)
    assert r.json()["choices"][0]["message"]["content"] == text[20:]
    assert gen.requests[-1].prefix == half


async def test_a_strategy_answers_like_the_library_on_the_same_seed() -> None:
    async with client() as c:
        r = await chat(c, testtime={"strategy": "self_consistency", "params": {"n": 6}}, seed=3)
    body = r.json()
    spec: Spec = STRATEGIES.spec("self_consistency", {"n": 6})
    problem = Problem.from_prompt(Q)
    problem = replace(problem, id=problem_id(problem.messages))
    direct = await solve(problem, spec, FakeGenerator(), seed=3, budget=Budget(samples=64))
    assert body["testtime"]["answer"] == direct.answer == "7"
    assert body["choices"][0]["message"]["content"] == direct.text
    assert body["testtime"]["candidates"] == 6 and body["testtime"]["chosen"] == direct.chosen
    assert body["testtime"]["strategy"]["params"]["n"] == 6
    got, want = body["usage"]["testtime"], direct.cost.to_dict()
    for field in ("prompt_tokens", "generated_tokens", "samples", "generator_calls", "flops"):
        assert got[field] == want[field], field


async def test_the_model_name_picks_the_strategy() -> None:
    async with client() as c:
        r = await c.post(
            "/v1/chat/completions",
            json={
                "model": "best_of_n:n=3@fake",
                "messages": USER,
                "testtime": {"verifier": "self_certainty"},
            },
        )
    body = r.json()
    assert r.status_code == 200, body
    assert body["testtime"]["strategy"]["name"] == "best_of_n"
    assert body["testtime"]["verifier"]["name"] == "self_certainty"
    assert body["usage"]["testtime"]["samples"] == 3


async def test_a_verifier_that_needs_gold_answers_is_a_400() -> None:
    async with client() as c:
        r = await chat(c, testtime={"strategy": "best_of_n", "verifier": "oracle"})
    assert r.status_code == 400 and "gold" in r.json()["error"]["message"]
    assert "self_certainty" in r.json()["error"]["message"]


async def test_a_budget_too_small_for_one_sample_is_a_400() -> None:
    async with client() as c:
        r = await chat(c, max_tokens=64, testtime={"strategy": "single", "budget": "10 tokens"})
    assert r.status_code == 400 and "too small" in r.json()["error"]["message"]


async def test_a_stream_shows_progress_then_the_answer_then_done() -> None:
    body = {"strategy": "adaptive_consistency", "params": {"max_samples": 4, "threshold": 1.0}}
    async with client(FakeGenerator(latency=0.01)) as c:
        r = await chat(c, stream=True, stream_options={"include_usage": True}, testtime=body)
    assert r.headers["content-type"].startswith("text/event-stream")
    got = events(r.text)
    assert got[-1] == "[DONE]"
    chunks = got[:-1]
    assert all(ch["object"] == "chat.completion.chunk" for ch in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    progress = [ch["testtime"] for ch in chunks if "samples" in ch.get("testtime", {})]
    assert [p["samples"] for p in progress] == [1, 2, 3, 4]  # one per call, in order
    assert progress[-1]["leader"]["answer"] == "7"
    assert progress[-1]["cost"]["generated_tokens"] > progress[0]["cost"]["generated_tokens"]
    answer, used = chunks[-2:]  # usage comes last, in a chunk of its own
    assert answer["choices"][0]["finish_reason"] == "stop"
    assert answer["choices"][0]["delta"]["content"].endswith("Answer: 7")
    assert answer["testtime"]["answer"] == "7" and answer["usage"] is None
    assert used["choices"] == [] and used["usage"]["testtime"]["samples"] == 4


async def test_a_plain_stream_with_include_usage_ends_with_a_usage_chunk() -> None:
    async with client() as c:
        r = await chat(c, n=2, stream=True, stream_options={"include_usage": True})
    got = events(r.text)
    assert got[-1] == "[DONE]"
    answers = [ch for ch in got[:-2] if ch["choices"][0]["finish_reason"]]
    assert [ch["choices"][0]["index"] for ch in answers] == [0, 1]
    assert got[-2]["choices"] == [] and got[-2]["usage"]["testtime"]["samples"] == 2


@pytest.mark.parametrize(
    ("exc", "message"),
    [(ConfigError("the prompt is too long"), "too long"), (RuntimeError("boom"), "internal")],
)
async def test_an_error_mid_stream_is_an_error_event_then_done(
    exc: Exception, message: str
) -> None:
    body = {"strategy": "adaptive_consistency", "params": {"max_samples": 6, "threshold": 1.0}}
    async with client(Failing(2, exc)) as c:
        r = await chat(c, stream=True, testtime=body)
    got = events(r.text)
    assert got[-1] == "[DONE]" and got[-3] == ("event", "error")
    assert message in got[-2]["error"]["message"] and "boom" not in got[-2]["error"]["message"]


async def test_a_bug_is_a_clean_500_and_a_user_error_a_400() -> None:
    async with client(Failing(0, RuntimeError("secret at 0x7f00"))) as c:
        bug = await chat(c)
    async with client(Failing(0, ConfigError("prompt too long; shorten it"))) as c:
        user = await chat(c)
    assert bug.status_code == 500 and "secret" not in bug.text
    assert bug.json()["error"]["type"] == "internal_error"
    assert (
        user.status_code == 400 and user.json()["error"]["message"] == "prompt too long; shorten it"
    )


@pytest.mark.parametrize(
    ("content", "ctype", "says"),
    [
        (b"not json{{{", "application/json", "not valid JSON"),
        (b'["not", "an", "object"]', "application/json", "JSON object, not list"),
        (b"42", "application/json", "not int"),
        (b"null", "application/json", "not null"),
        (b"", "application/json", "no body"),
        (b"model=fake", "application/x-www-form-urlencoded", "Content-Type: application/json"),
        (b'{"model": "fake"}', "application/json", "messages: Field required"),
        (b'{"model": "fake", "messages": []}', "application/json", "at least 1 item"),
        (b'{"model": 7, "messages": "hi"}', "application/json", "model: Input should be"),
    ],
)
async def test_malformed_bodies_are_400s_in_openai_shape(
    content: bytes, ctype: str, says: str
) -> None:
    async with client() as c:
        r = await c.post("/v1/chat/completions", content=content, headers={"content-type": ctype})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert says in err["message"] and err["type"] == "invalid_request_error"


async def test_union_errors_read_as_one_sentence() -> None:
    async with client() as c:
        r = await chat(c, messages=[{"role": "user", "content": 3}])
    err = r.json()["error"]
    assert err["param"] == "messages.0.content"
    assert (
        "messages.0.content: Input should be a valid string or Input should be a valid list"
        in (err["message"])
    )


async def test_a_body_over_the_limit_is_a_413() -> None:
    async with client(max_body_bytes=1000) as c:
        big = await chat(c, messages=[{"role": "user", "content": "x" * 5000}])

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
            yield b'{"model": "fake", "messages": [{"role": "user", "content": "'
            for _ in range(10):
                yield b"y" * 500
            yield b'"}]}'

        streamed = await c.post(
            "/v1/chat/completions", content=chunks(), headers={"content-type": "application/json"}
        )
    assert big.status_code == 413 and streamed.status_code == 413
    assert "1000 bytes" in streamed.json()["error"]["message"]


async def test_models_lists_the_model_under_every_strategy() -> None:
    async with client() as c:
        data = (await c.get("/v1/models")).json()["data"]
    ids = [m["id"] for m in data]
    assert ids[0] == "fake"
    assert {f"{s}@fake" for s in STRATEGIES.names()} <= set(ids)


async def test_a_full_queue_is_a_429_with_retry_after() -> None:
    async with client(FakeGenerator(latency=0.3), max_queue=2, max_concurrent=1) as c:
        first = asyncio.create_task(chat(c))
        second = asyncio.create_task(chat(c))
        for _ in range(200):  # until both are admitted (at most 2 s)
            if (await c.get("/health")).json()["admitted"] == 2:
                break
            await asyncio.sleep(0.01)
        third = await chat(c)
        stats = (await c.get("/v1/testtime/stats")).json()
        done = [await first, await second]
        after = await chat(c)
    assert third.status_code == 429 and int(third.headers["retry-after"]) >= 1
    assert third.json()["error"]["code"] == "queue_full"
    assert stats["admitted"] == 2 and stats["running"] == 1 and stats["waiting"] == 1
    assert [r.status_code for r in done] == [200, 200] and after.status_code == 200


async def test_the_deadline_cancels_and_answers_504() -> None:
    gen = FakeGenerator(latency=5)
    async with client(gen, deadline=0.2) as c:
        r = await chat(c)
        stats = (await c.get("/v1/testtime/stats")).json()
    assert r.status_code == 504 and "deadline of 0.2 s" in r.json()["error"]["message"]
    assert stats["generator"]["in_flight"] == 0 and stats["generator"]["cancelled"] == 1
    assert stats["tasks"] == 0


async def test_keys_authenticate_and_cap_spending() -> None:
    keys = Keys.parse({"sk-alice": {"name": "alice", "cap_tokens": 100}, "sk-bob": {}})
    async with client(keys=keys) as c:
        missing = await chat(c)
        wrong = await c.post(
            "/v1/chat/completions",
            headers={"authorization": "Bearer sk-eve"},
            json={"model": "fake", "messages": USER},
        )
        alice = {"authorization": "Bearer sk-alice"}
        spent = [
            await c.post(
                "/v1/chat/completions",
                headers=alice,
                json={"model": "fake", "messages": USER, "n": 4, "max_tokens": 5},
            )  # worst case 4 x (19 prompt + 5) = 96 tokens: one fits under the cap of 100
            for _ in range(3)
        ]
        bob = await c.post(
            "/v1/chat/completions",
            headers={"authorization": "Bearer sk-bob"},
            json={"model": "fake", "messages": USER, "n": 8},
        )
        models = await c.get("/v1/models")
    assert (
        missing.status_code == 401 and "Authorization: Bearer" in missing.json()["error"]["message"]
    )
    assert wrong.status_code == 401 and "sk-eve" not in wrong.text
    used = spent[0].json()["usage"]["total_tokens"]
    assert spent[0].status_code == 200 and used > 30  # one request of ~40 tokens, then...
    over = spent[-1]
    assert over.status_code == 429 and over.json()["error"]["code"] == "insufficient_quota"
    assert "alice" in over.json()["error"]["message"] and over.headers["x-should-retry"] == "false"
    assert bob.status_code == 200 and models.status_code == 401


async def test_key_files_with_bad_entries_are_refused_clearly() -> None:
    for data in ({}, [], {"k": {"cap_tokens": -1}}, {"k": {"cap_tokens": "lots"}}, {"": {}}):
        with pytest.raises(ConfigError, match=r"cap_tokens|non-empty"):
            Keys.parse(data)


async def test_health_and_unknown_routes() -> None:
    async with client() as c:
        health = (await c.get("/health")).json()
        missing = await c.get("/v2/nothing")
    assert health["status"] == "ok" and health["model"] == "fake" and health["tasks"] == 0
    assert (
        missing.status_code == 404 and "/v1/chat/completions" in missing.json()["error"]["message"]
    )
