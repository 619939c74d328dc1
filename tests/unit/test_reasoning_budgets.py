"""Reasoning budgets (issue 17): reasoning_effort and the engines' thinking-budget fields reach
an upstream as sent (plain, under a strategy, through a proxy chain), an upstream's reasoning
text and reasoning tokens come back and are counted apart (ledger and usage, summed over
samples and hops), and a model without an upstream (the scripted fake) answers
reasoning_effort by budget forcing, refusing what it cannot honour with a 400."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from testtime.core.cost import Cost
from testtime.core.errors import ConfigError
from testtime.core.reasoning import EFFORTS, PASS_THROUGH, Extra, extra, thinking_budget
from testtime.core.types import Message, Request
from testtime.generators import http_wire as wire
from testtime.generators.fake import FakeGenerator
from testtime.generators.http import HTTPGenerator
from testtime.server import Settings, create_app

URL = "http://upstream.test/v1"
ASK = "What is two and two?"
# sent as a client would (extra_body): OpenAI's effort and each engine's own budget field
FIELDS: dict[str, Any] = {
    "reasoning_effort": "high",
    "thinking_token_budget": 512,  # vLLM
    "custom_params": {"thinking_budget": 512},  # SGLang
    "thinking_budget_tokens": 512,  # llama.cpp
    "chat_template_kwargs": {"enable_thinking": True, "thinking_budget": 512},
}
THOUGHT = "Two and two make four."
REASONING = 7  # the mock upstream's reasoning tokens per sample


def mock(bodies: list[dict[str, Any]], answers: tuple[str, ...] = ("4",)) -> HTTPGenerator:
    """An HTTP backend on a mock upstream that records each body and answers with a
    reasoning_content and OpenAI's usage.completion_tokens_details (per sample)."""
    turn = iter(range(1 << 30))

    def reply(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        n = bodies[-1].get("n", 1)
        choices = [{"index": i, "finish_reason": "stop",
                    "message": {"role": "assistant", "reasoning_content": THOUGHT,
                                "content": answers[next(turn) % len(answers)]}}
                   for i in range(n)]  # fmt: skip
        usage = {"prompt_tokens": 20, "completion_tokens": 10 * n,
                 "completion_tokens_details": {"reasoning_tokens": REASONING * n}}  # fmt: skip
        return httpx.Response(200, json={"choices": choices, "usage": usage})

    return HTTPGenerator(URL, "fake", transport=httpx.MockTransport(reply))


def client(gen: Any) -> httpx.AsyncClient:
    app = create_app(Settings("fake"), gen)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def chat(c: httpx.AsyncClient, **body: Any) -> httpx.Response:
    return await c.post("/v1/chat/completions", json={
        "model": "fake", "messages": [{"role": "user", "content": ASK}], **body})  # fmt: skip


# -- core ------------------------------------------------------------------------------------
def test_extra_keeps_the_fields_as_sent_and_checks_their_types_and_the_effort() -> None:
    nested = {"effort": "high", "summary": "auto"}
    got = extra({**FIELDS, "reasoning": nested})
    assert got is not None and got.wire() == {**FIELDS, "reasoning": nested}
    assert got.effort == "high" and hash(got)  # hashable: a Request stays hashable
    assert Extra(json.dumps({"reasoning": {"effort": "low"}})).effort == "low"
    assert extra({}) is None and extra({"reasoning_effort": None}) is None
    for bad, words in (
        ({"reasoning_effort": "max"}, "'max' is not allowed"),
        ({"reasoning_effort": "low", "reasoning": {"effort": "high"}}, "disagree"),
        ({"thinking_token_budget": "512"}, "thinking_token_budget must be a JSON integer"),
        ({"thinking_token_budget": True}, "JSON integer"),
        ({"separate_reasoning": 1}, "JSON boolean"),
        ({"chat_template_kwargs": ["enable_thinking"]}, "JSON object"),
        ({"thinking_budget_tokens": -5}, ">= 0"),
    ):
        with pytest.raises(ConfigError, match=words):
            extra(bad)


def test_the_effort_map_is_clipped_to_half_of_max_tokens() -> None:
    assert [thinking_budget(e, 100_000) for e in EFFORTS] == [0, 0, 256, 1024, 4096, 16384]
    assert thinking_budget("high", 1000) == 500 and thinking_budget("low", 12) == 6
    assert thinking_budget("minimal", 4096) == 0


def test_reasoning_tokens_add_like_every_other_cost() -> None:
    total = Cost(generated_tokens=10, reasoning_tokens=4) + Cost(reasoning_tokens=3)
    assert total.reasoning_tokens == 7 and (total * 2).reasoning_tokens == 14
    assert wire.cost_from_dict(total.to_dict(), URL) == total  # a proxy adopts it whole
    assert wire.cost_from_dict({"generated_tokens": 3}, URL).reasoning_tokens == 0  # older


# -- the HTTP backend ------------------------------------------------------------------------
def test_the_body_carries_the_fields_as_sent_and_the_reply_keeps_the_reasoning() -> None:
    req = Request((Message("user", ASK),), extra=extra(FIELDS))
    body = wire.body(req, "m", "chat", 1, None)
    assert {k: body[k] for k in FIELDS} == FIELDS
    assert "reasoning_effort" not in wire.body(Request((Message("user", ASK),)), "m", "chat", 1,
                                               None)  # fmt: skip
    data = {"choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"content": "4", "reasoning": THOUGHT}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 9,
                      "completion_tokens_details": {"reasoning_tokens": 6}}}  # fmt: skip
    reply = wire.parse_reply(data, req, endpoint="chat", n_params=0, url=URL,
                             estimate=len, prompt_estimate=5)  # fmt: skip
    assert reply.completions[0].text == "4" and reply.completions[0].reasoning == THOUGHT
    assert reply.cost.reasoning_tokens == 6 and reply.cost.generated_tokens == 9


# -- through the server, to a mock upstream ----------------------------------------------------
async def test_a_plain_request_s_fields_reach_the_upstream_and_reasoning_comes_back() -> None:
    bodies: list[dict[str, Any]] = []
    async with client(mock(bodies)) as c:
        r = await chat(c, n=2, **FIELDS)
    assert r.status_code == 200, r.text
    assert {k: bodies[0][k] for k in FIELDS} == FIELDS
    out = r.json()
    assert [ch["message"]["reasoning_content"] for ch in out["choices"]] == [THOUGHT] * 2
    assert out["usage"]["completion_tokens_details"] == {"reasoning_tokens": 2 * REASONING}
    assert out["usage"]["testtime"]["reasoning_tokens"] == 2 * REASONING


async def test_a_strategy_sends_the_fields_with_every_sample_and_sums_reasoning() -> None:
    bodies: list[dict[str, Any]] = []
    async with client(mock(bodies)) as c:
        r = await chat(c, testtime={"strategy": "self_consistency", "params": {"n": 3}}, **FIELDS)
    assert r.status_code == 200, r.text
    sampled = sum(b.get("n", 1) for b in bodies)
    assert sampled == 3 and all({k: b[k] for k in FIELDS} == FIELDS for b in bodies)
    usage = r.json()["usage"]
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 3 * REASONING
    assert r.json()["choices"][0]["message"]["reasoning_content"] == THOUGHT


async def test_a_proxy_chain_passes_the_fields_on_and_adds_up_reasoning_tokens() -> None:
    """serve (front) -> serve (middle) -> mock upstream: the fields arrive at the upstream
    as the client sent them, and the front's usage is the upstream's whole reasoning."""
    bodies: list[dict[str, Any]] = []
    middle = create_app(Settings("fake"), mock(bodies, ("4", "5", "4")))
    front = HTTPGenerator(URL, "fake", transport=httpx.ASGITransport(app=middle))
    async with client(front) as c:
        plain = await chat(c, **FIELDS)
        voted = await chat(c, model="self_consistency:n=3@fake", **FIELDS)
    assert plain.status_code == 200 and voted.status_code == 200, (plain.text, voted.text)
    assert len(bodies) >= 2 and all({k: b[k] for k in FIELDS} == FIELDS for b in bodies)
    assert plain.json()["choices"][0]["message"]["reasoning_content"] == THOUGHT
    assert plain.json()["usage"]["completion_tokens_details"]["reasoning_tokens"] == REASONING
    usage = voted.json()["usage"]
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 3 * REASONING
    assert usage["testtime"]["reasoning_tokens"] == 3 * REASONING


async def test_a_streamed_reply_from_an_upstream_relays_its_reasoning() -> None:
    def reply(request: httpx.Request) -> httpx.Response:
        chunks = [{"choices": [{"index": 0, "delta": {"role": "assistant"}}]},
                  {"choices": [{"index": 0, "delta": {"reasoning_content": "Two and two"}}]},
                  {"choices": [{"index": 0, "delta": {"reasoning_content": " make four."}}]},
                  {"choices": [{"index": 0, "delta": {"content": "4"}, "finish_reason": "stop"}]},
                  {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 8,
                   "completion_tokens_details": {"reasoning_tokens": 6}}}]  # fmt: skip
        text = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
        return httpx.Response(200, text=text, headers={"content-type": "text/event-stream"})

    gen = HTTPGenerator(URL, "fake", transport=httpx.MockTransport(reply))
    async with client(gen) as c:
        r = await chat(c, stream=True, stream_options={"include_usage": True}, **FIELDS)
    events = [json.loads(x[6:]) for x in r.text.splitlines() if x.startswith("data: {")]
    deltas = [ch["delta"] for e in events for ch in e["choices"]]
    assert "".join(d.get("reasoning_content", "") for d in deltas) == THOUGHT
    assert "".join(d.get("content", "") for d in deltas) == "4"
    assert events[-1]["usage"]["completion_tokens_details"]["reasoning_tokens"] == 6


# -- a model without an upstream: budget forcing ---------------------------------------------
def thinker() -> FakeGenerator:
    """Thinks "Two and two make four." (6 fake tokens), then answers 4 after the forcing."""
    return FakeGenerator({ASK: [f"{THOUGHT}\n\nFinal answer: 4"]})


@pytest.mark.parametrize("form", [{"reasoning_effort": "low"}, {"reasoning": {"effort": "low"}}])
async def test_reasoning_effort_on_the_fake_is_budget_forcing(form: dict[str, Any]) -> None:
    gen = thinker()
    async with client(gen) as c:
        r = await chat(c, max_tokens=12, seed=3, **form)  # low: min(256, 12 // 2) = 6
    assert r.status_code == 200, r.text
    (choice,) = r.json()["choices"]
    assert choice["message"] == {"role": "assistant", "content": "4",
                                 "reasoning_content": THOUGHT}  # fmt: skip
    think, answer = gen.requests
    assert think.max_tokens == 6 and not think.prefix
    assert answer.prefix == f"{THOUGHT}\n\nFinal answer:" and answer.max_tokens == 6
    usage = r.json()["usage"]
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 6
    assert usage["completion_tokens"] == 7  # 6 thinking + " 4"
    assert r.json()["testtime"]["reasoning"]["thinking_budget"] == 6


async def test_each_choice_is_one_chain_and_a_stream_carries_its_reasoning() -> None:
    async with client(thinker()) as c:
        r = await chat(c, n=2, max_tokens=12, reasoning_effort="medium", stream=True,
                       stream_options={"include_usage": True})  # fmt: skip
    events = [json.loads(x[6:]) for x in r.text.splitlines() if x.startswith("data: {")]
    finals = [ch for e in events for ch in e["choices"] if ch["finish_reason"]]
    assert sorted(ch["index"] for ch in finals) == [0, 1]
    assert all(ch["delta"]["reasoning_content"] == THOUGHT for ch in finals)
    assert events[-1]["usage"]["completion_tokens_details"]["reasoning_tokens"] == 12


async def test_minimal_effort_buys_no_thinking_on_the_fake() -> None:
    gen = thinker()
    async with client(gen) as c:
        r = await chat(c, max_tokens=12, reasoning_effort="minimal")
    assert r.status_code == 200, r.text
    assert len(gen.requests) == 1 and "reasoning_content" not in r.json()["choices"][0]["message"]
    assert r.json()["usage"]["completion_tokens_details"]["reasoning_tokens"] == 0


async def test_budget_forcing_takes_its_thinking_budget_from_the_effort() -> None:
    gen = thinker()
    async with client(gen) as c:
        r = await chat(c, max_tokens=12, reasoning_effort="high",
                       testtime={"strategy": "budget_forcing"})  # fmt: skip
        given = await chat(c, max_tokens=12, reasoning_effort="high",
                           testtime={"strategy": "budget_forcing",
                                     "params": {"thinking_tokens": 3}})  # fmt: skip
        none = await chat(c, reasoning_effort="none", testtime={"strategy": "budget_forcing"})
    assert r.status_code == 200 and given.status_code == 200, (r.text, given.text)
    assert r.json()["testtime"]["strategy"]["params"]["thinking_tokens"] == 6
    assert given.json()["testtime"]["strategy"]["params"]["thinking_tokens"] == 3
    assert none.status_code == 400 and "means no thinking" in none.text


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        ({"thinking_token_budget": 64}, "thinking_token_budget", "upstream engine's field"),
        ({"reasoning": {"effort": "low", "max_tokens": 9}}, "reasoning.max_tokens", "upstream"),
        ({"reasoning_effort": "low", "testtime": {"strategy": "self_consistency"}},
         "reasoning_effort", "budget forcing"),
        ({"reasoning_effort": "low", "logprobs": True}, "logprobs", "does not take logprobs"),
        ({"reasoning_effort": "low", "stop": ["x"]}, "stop", "does not take stop"),
        ({"reasoning_effort": "extreme"}, "reasoning_effort", "is not allowed"),
        ({"thinking_token_budget": "a lot"}, "thinking_token_budget", "JSON integer"),
    ],
)  # fmt: skip
async def test_what_the_fake_cannot_honour_is_a_400_before_any_call(
    body: dict[str, Any], param: str, words: str
) -> None:
    gen = thinker()
    async with client(gen) as c:
        r = await chat(c, **body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param and words in r.json()["error"]["message"]
    assert gen.requests == []


def test_every_pass_through_field_has_a_json_type() -> None:
    assert set(PASS_THROUGH.values()) <= {str, int, bool, dict}
    assert {"reasoning_effort", "thinking_token_budget", "chat_template_kwargs",
            "custom_params", "thinking_budget_tokens"} <= set(PASS_THROUGH)  # fmt: skip
