"""The server never returns the first sample silently when a vote decided nothing (every
sample its own answer group): its fallback rule (a setting, or testtime.fallback per request)
chooses, and the response names it (testtime.groups, testtime.selection)."""

from __future__ import annotations

import json
from typing import Any

import httpx

from testtime.core.voting import SINGLETONS
from testtime.generators.fake import FakeGenerator
from testtime.server import Settings, create_app

Q = "Write a haiku about rain."
HAIKUS = [  # the first is the least likely (the other two share a start): sample order != rule
    "Grey clouds drift away\nand the puddles shine",
    "Rain on the roof taps\nsoftly through the night",
    "Rain on the roof drums\nloud until the dawn",
]


def client(gen: FakeGenerator, **settings: Any) -> httpx.AsyncClient:
    app = create_app(Settings("fake", **settings), gen)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def ask(gen: FakeGenerator, testtime: dict[str, Any], **settings: Any) -> httpx.Response:
    async with client(gen, **settings) as c:
        return await c.post(
            "/v1/chat/completions",
            json={
                "model": "fake",
                "messages": [{"role": "user", "content": Q}],
                "testtime": testtime,
            },
        )


SC = {"strategy": "self_consistency", "params": {"n": 3}}


async def test_singletons_fall_back_to_the_likeliest_sample_and_say_so() -> None:
    gen = FakeGenerator({Q: HAIKUS})
    r = await ask(gen, SC)
    assert r.status_code == 200, r.text
    body = r.json()
    t = body["testtime"]
    assert (t["groups"], t["selection"]) == (SINGLETONS, "likelihood")
    assert body["choices"][0]["message"]["content"] == HAIKUS[1]  # not the first sample
    assert t["chosen"] == 1 and t["answer"] == "softly through the night"
    assert all(q.logprobs for q in gen.requests)  # it asked for what the rule ranks by


async def test_a_request_or_the_server_may_choose_first_and_it_is_named() -> None:
    by_request = await ask(FakeGenerator({Q: HAIKUS}), {**SC, "fallback": "first"})
    by_server = await ask(FakeGenerator({Q: HAIKUS}), SC, fallback="first")
    for r in (by_request, by_server):
        body = r.json()
        assert (body["testtime"]["groups"], body["testtime"]["selection"]) == (SINGLETONS, "first")
        assert body["choices"][0]["message"]["content"] == HAIKUS[0]
    gen = FakeGenerator({Q: HAIKUS})
    await ask(gen, SC, fallback="first")
    assert not any(q.logprobs for q in gen.requests)  # first ranks nothing


async def test_a_strategy_that_chose_by_its_own_rule_keeps_its_choice() -> None:
    r = await ask(
        FakeGenerator({Q: HAIKUS}),
        {"strategy": "weighted_majority", "params": {"n": 3}, "verifier": "self_certainty"},
    )
    t = r.json()["testtime"]
    assert (t["groups"], t["selection"]) == (SINGLETONS, "verifier")


async def test_a_vote_that_decided_says_the_strategy_chose() -> None:
    texts = ["Rain.\nAnswer: 7", "Sun.\nAnswer: 8", "Rain!\nAnswer: 7"]
    body = (await ask(FakeGenerator({Q: texts}), SC)).json()
    assert (body["testtime"]["groups"], body["testtime"]["selection"]) == (None, "strategy")
    assert body["choices"][0]["message"]["content"] == texts[0]


async def test_the_stream_names_the_fallback_too() -> None:
    async with client(FakeGenerator({Q: HAIKUS})) as c:
        r = await c.post(
            "/v1/chat/completions",
            json={"model": "fake", "messages": [{"role": "user", "content": Q}],
                  "testtime": SC, "stream": True},
        )  # fmt: skip
    chunks = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]
    answer = next(ch for ch in chunks if ch["choices"] and ch["choices"][0]["delta"].get("content"))
    assert answer["choices"][0]["delta"]["content"] == HAIKUS[1]
    assert answer["testtime"]["selection"] == "likelihood"


async def test_an_unknown_fallback_or_one_without_a_strategy_is_a_400() -> None:
    unknown = await ask(FakeGenerator({Q: HAIKUS}), {**SC, "fallback": "usc"})
    assert unknown.status_code == 400 and "likelihood" in unknown.text
    alone = await ask(FakeGenerator({Q: HAIKUS}), {"fallback": "first"})
    assert alone.status_code == 400 and "need a strategy" in alone.json()["error"]["message"]
