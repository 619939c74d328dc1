"""The OpenAI contract in process (httpx's ASGI transport) on the fake generator:
`GET /v1/models/{id}`, `POST /v1/completions`, and the smaller differences from OpenAI's
protocol (issue 17). The real server process, the official client and the embedded model
are in tests/integration/test_openai_conformance.py."""

from __future__ import annotations

import json
from typing import Any

import httpx

from testtime.generators.base import Generator
from testtime.generators.fake import FakeGenerator, count_tokens
from testtime.server import Settings, create_app

Q = "What is 3 + 4?"
USER = [{"role": "user", "content": Q}]


def client(gen: Generator | None = None, **settings: Any) -> httpx.AsyncClient:
    app = create_app(Settings("fake", **settings), gen or FakeGenerator())
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def events(text: str) -> list[Any]:
    """The data of each SSE event ('[DONE]' kept as a string)."""
    out: list[Any] = []
    for line in text.splitlines():
        if line.startswith("data: "):
            out.append(line[6:] if line[6:] == "[DONE]" else json.loads(line[6:]))
    return out


# -- GET /v1/models/{id} ---------------------------------------------------------------------
async def test_one_model_is_found_by_its_id_plain_or_under_a_strategy() -> None:
    async with client() as c:
        plain = await c.get("/v1/models/fake")
        voted = await c.get("/v1/models/self_consistency:n=4@fake")
        listed = (await c.get("/v1/models")).json()["data"]
    assert plain.status_code == 200 and plain.json()["id"] == "fake"
    assert plain.json()["object"] == "model" and plain.json()["owned_by"] == "testtime"
    body = voted.json()
    assert body["id"] == "self_consistency:n=4@fake"
    assert body["testtime"]["strategy"] == "self_consistency"
    assert body["testtime"]["params"]["n"] == 4  # the name's parameters over the defaults
    assert {m["id"] for m in listed} >= {"fake", "self_consistency@fake"}


async def test_an_unknown_model_id_is_a_404_in_openai_shape() -> None:
    async with client() as c:
        for name in ("other", "nope@fake", "self_consistency:zz=1@fake", "org/model"):
            r = await c.get(f"/v1/models/{name}")
            assert r.status_code == 404, name
            error = r.json()["error"]
            assert error["code"] == "model_not_found" and "/v1/models" in error["message"]


# -- POST /v1/completions ------------------------------------------------------------------
PROMPT = "Once upon a time"
STORY = {PROMPT: {" there was a fox.": 0.6, " a cat sat down.": 0.4}}


async def complete(c: httpx.AsyncClient, **body: Any) -> httpx.Response:
    return await c.post("/v1/completions", json={"model": "fake", "prompt": PROMPT, **body})


async def test_a_text_prompt_is_continued_raw_with_usage() -> None:
    fake = FakeGenerator(STORY)
    async with client(fake) as c:
        r = await complete(c, max_tokens=64, temperature=0)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "text_completion" and body["id"].startswith("cmpl-")
    (choice,) = body["choices"]
    assert choice["text"] == " there was a fox." and choice["finish_reason"] == "stop"
    assert fake.requests[-1].prompt == PROMPT  # raw: no chat template
    assert body["usage"]["prompt_tokens"] == count_tokens(PROMPT)
    assert body["usage"]["completion_tokens"] == count_tokens(" there was a fox.")


async def test_texts_and_n_give_each_prompt_its_n_choices_in_order() -> None:
    fake = FakeGenerator({"A": [" a"], "B": [" b"]})
    async with client(fake) as c:
        r = await complete(c, prompt=["A", "B"], n=2)
    texts = [(ch["index"], ch["text"]) for ch in r.json()["choices"]]
    assert texts == [(0, " a"), (1, " a"), (2, " b"), (3, " b")]
    assert r.json()["usage"]["testtime"]["samples"] == 4


async def test_echo_puts_the_prompt_first_and_max_tokens_defaults_to_16() -> None:
    fake = FakeGenerator({PROMPT: [" one" * 40]})
    async with client(fake) as c:
        body = (await complete(c, echo=True)).json()
    (choice,) = body["choices"]
    assert choice["text"] == PROMPT + " one" * 16 and choice["finish_reason"] == "length"


async def test_logprobs_come_in_the_legacy_shape_with_exactly_n_alternatives() -> None:
    async with client(FakeGenerator(STORY)) as c:
        body = (await complete(c, logprobs=3, max_tokens=4, seed=3)).json()
    (choice,) = body["choices"]
    lp = choice["logprobs"]
    assert "".join(lp["tokens"]) == choice["text"]
    assert len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["top_logprobs"]) == 4
    assert all(len(top) == 3 for top in lp["top_logprobs"])
    starts = [sum(len(t) for t in lp["tokens"][:i]) for i in range(4)]
    assert lp["text_offset"] == starts
    assert all(x <= 0 for x in lp["token_logprobs"])


async def test_seeded_completions_repeat_and_stop_cuts() -> None:
    async with client(FakeGenerator(STORY)) as c:
        one = (await complete(c, n=4, seed=11, max_tokens=32)).json()["choices"]
        two = (await complete(c, n=4, seed=11, max_tokens=32)).json()["choices"]
        cut = (await complete(c, stop=[" fox"], temperature=0)).json()["choices"][0]
    assert [x["text"] for x in one] == [x["text"] for x in two]
    assert cut["text"] == " there was a" and cut["stop_reason"] == " fox"


async def test_a_completions_stream_sends_text_chunks_and_usage_when_asked() -> None:
    async with client(FakeGenerator(STORY)) as c:
        r = await complete(c, n=2, stream=True, stream_options={"include_usage": True})
        bare = await complete(c, stream=True)
    got = events(r.text)
    assert got[-1] == "[DONE]"
    assert all(ch["object"] == "text_completion" for ch in got[:-1])
    texts = [ch["choices"][0] for ch in got[:-2]]
    assert [t["index"] for t in texts] == [0, 1] and all(t["text"] for t in texts)
    assert got[-2]["choices"] == [] and got[-2]["usage"]["testtime"]["samples"] == 2
    assert not any("usage" in ch for ch in events(bare.text)[:-1])


async def test_a_strategy_answers_a_completion_continuing_the_raw_text() -> None:
    fake = FakeGenerator({"2 + 2 =": {" 4. Answer: 4": 0.7, " 5. Answer: 5": 0.3}})
    async with client(fake) as c:
        r = await c.post(
            "/v1/completions", json={"model": "self_consistency:n=5@fake", "prompt": "2 + 2 ="}
        )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "text_completion" and body["testtime"]["answer"] == "4"
    assert body["choices"][0]["text"].endswith("Answer: 4")
    assert fake.requests and all(q.prompt == "2 + 2 =" for q in fake.requests)


async def test_completions_requests_that_cannot_be_served_are_400s_saying_why() -> None:
    cases = [
        ({"prompt": [5, 6]}, "token ids"),  # the fake has no vocabulary
        ({"prompt": []}, "prompt is empty"),
        ({"prompt": [""]}, "prompt is empty"),
        ({"echo": True, "logprobs": 1}, "echo with logprobs"),
        ({"suffix": "end"}, "suffix"),
        ({"best_of": 3}, "best_of"),
        ({"stream_options": {"include_usage": True}}, "stream: true"),
        ({"model": "self_consistency@fake", "prompt": ["a", "b"]}, "one prompt"),
    ]
    async with client() as c:
        for body, says in cases:
            r = await complete(c, **body)
            assert r.status_code == 400, (body, r.text)
            assert says in r.json()["error"]["message"], (body, r.text)


# -- smaller differences -------------------------------------------------------------------
async def chat(c: httpx.AsyncClient, **body: Any) -> httpx.Response:
    return await c.post("/v1/chat/completions", json={"model": "fake", "messages": USER, **body})


async def test_stream_options_without_stream_is_a_400() -> None:
    async with client() as c:
        r = await chat(c, stream_options={"include_usage": True})
    assert r.status_code == 400 and r.json()["error"]["param"] == "stream_options"


async def test_a_stream_has_usage_only_with_include_usage_and_a_role_for_every_choice() -> None:
    async with client() as c:
        bare = events((await chat(c, n=3, stream=True, max_tokens=4)).text)
        usage = {"include_usage": True}
        asked = events((await chat(c, n=3, stream=True, max_tokens=4, stream_options=usage)).text)
    assert not any("usage" in ch for ch in bare[:-1])
    first: dict[int, dict[str, Any]] = {}
    for ch in bare[:-1]:
        for choice in ch["choices"]:
            first.setdefault(choice["index"], choice["delta"])
    assert sorted(first) == [0, 1, 2] and all(d.get("role") == "assistant" for d in first.values())
    assert all(ch["usage"] is None for ch in asked[:-2]) and asked[-2]["usage"]["total_tokens"] > 0


async def test_any_int64_seed_is_accepted() -> None:
    async with client() as c:
        for seed in (-1, -(1 << 63), (1 << 63) - 1):
            r = await chat(c, seed=seed, max_tokens=4)
            assert r.status_code == 200, (seed, r.text)
        again = [(await chat(c, seed=-7, n=3)).json()["choices"] for _ in range(2)]
        outside = await chat(c, seed=1 << 63)
    assert [x["message"] for x in again[0]] == [x["message"] for x in again[1]]
    assert outside.status_code == 400


class Small(FakeGenerator):
    """The fake with a context of 20 tokens."""

    context_window = 20


async def test_a_prompt_longer_than_the_context_is_a_400_naming_both_numbers() -> None:
    long = "word " * 30
    async with client(Small()) as c:
        r = await chat(c, messages=[{"role": "user", "content": long}])
        raw = await complete(c, prompt=["short", long])
        fine = await complete(c, prompt="short")
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
    message = r.json()["error"]["message"]
    assert "20" in message and str(Small().count_prompt_tokens(_chat_of(long))) in message
    assert raw.status_code == 400 and "prompt 1 has 30 tokens" in raw.json()["error"]["message"]
    assert fine.status_code == 200


def _chat_of(text: str) -> Any:
    from testtime.core.types import Message, Request

    return Request((Message("user", text),))


async def test_logprobs_name_every_token_and_give_exactly_top_logprobs_alternatives() -> None:
    async with client() as c:
        plain = (await chat(c, logprobs=True, max_tokens=4)).json()["choices"][0]
        five = (await chat(c, logprobs=True, top_logprobs=5, max_tokens=4)).json()["choices"][0]
    tokens = [t["token"] for t in plain["logprobs"]["content"]]
    assert all(tokens) and "".join(tokens) == plain["message"]["content"]
    assert all(len(t["top_logprobs"]) == 5 for t in five["logprobs"]["content"])


async def test_an_upstream_without_completions_is_a_502_that_says_so() -> None:
    from testtime.generators.http import HTTPGenerator

    def upstream(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"detail": "Not Found"})

    gen = HTTPGenerator("http://up/v1", "m", transport=httpx.MockTransport(upstream), retries=0)
    async with client(gen) as c:
        r = await complete(c, model="fake")
    assert r.status_code == 502, r.text
    assert "completions endpoint" in r.json()["error"]["message"]
