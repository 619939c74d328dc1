"""Multimodal content parts (issue 17): a message's image_url / input_audio / file parts are
kept as sent, go to an upstream (the HTTP backend) exactly as sent, and a text-only model
(the fake here; the embedded model alike) refuses them with a 400 before any work."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from testtime.core.types import Message, Problem
from testtime.generators.fake import FakeGenerator
from testtime.generators.http import HTTPGenerator
from testtime.server import Settings, create_app
from testtime.server.schemas import ChatMessage

URL = "http://upstream.test/v1"
IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=",
                                            "detail": "low"}}  # fmt: skip
AUDIO = {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}
PARTS = [{"type": "text", "text": "What is in "}, IMAGE, {"type": "text", "text": "this?"}, AUDIO]


def upstream(bodies: list[dict[str, Any]]) -> HTTPGenerator:
    """An HTTP backend on a mock upstream that records each body and answers 'a cat'."""

    def reply(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        n = bodies[-1].get("n", 1)
        choices = [{"index": i, "message": {"role": "assistant", "content": "a cat"},
                    "finish_reason": "stop"} for i in range(n)]  # fmt: skip
        usage = {"prompt_tokens": 90, "completion_tokens": 2}
        return httpx.Response(200, json={"choices": choices, "usage": usage})

    return HTTPGenerator(URL, "m", transport=httpx.MockTransport(reply))


def client(gen: Any) -> httpx.AsyncClient:
    app = create_app(Settings("fake"), gen)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def chat(c: httpx.AsyncClient, content: Any, **body: Any) -> httpx.Response:
    messages = [{"role": "user", "content": content}]
    return await c.post("/v1/chat/completions", json={"model": "fake", "messages": messages,
                                                      **body})  # fmt: skip


def test_a_message_keeps_its_parts_as_sent_and_its_text_joined() -> None:
    m = ChatMessage.model_validate({"role": "user", "content": PARTS})
    assert m.parts() == tuple(PARTS) and m.text() == "What is in this?"
    assert ChatMessage(role="user", content=[{"type": "text", "text": "hi"}]).parts() == ()  # type: ignore[list-item]
    msg = Message("user", "", parts=(IMAGE,))
    assert msg.media == ("image_url",)
    Problem((msg,))  # an image alone is a prompt, for a model that reads it


async def test_a_text_only_model_refuses_a_non_text_part_naming_it_before_any_work() -> None:
    fake = FakeGenerator()
    async with client(fake) as c:
        r = await chat(c, PARTS)
        s = await chat(c, [IMAGE], model="self_consistency:n=2@fake")  # a strategy too
        stats = (await c.get("/v1/testtime/stats")).json()
    for got, j in ((r, 1), (s, 0)):
        assert got.status_code == 400
        err = got.json()["error"]
        assert f"messages[0].content[{j}] is a 'image_url' part" in err["message"]
        assert "reads text only" in err["message"] and "--model http://" in err["message"]
        assert err["param"] == "messages[0].content"
    assert stats["generator"]["calls"] == 0


async def test_text_parts_alone_still_reach_a_text_only_model() -> None:
    async with client(FakeGenerator()) as c:
        r = await chat(c, [{"type": "text", "text": "What is 3 + 4?"}])
        bad = await chat(c, [{"type": "text"}])
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"]
    assert bad.status_code == 400 and "needs a string 'text'" in bad.text


async def test_an_upstream_gets_the_parts_exactly_as_sent_plain_and_under_a_strategy() -> None:
    bodies: list[dict[str, Any]] = []
    async with client(upstream(bodies)) as c:
        r = await chat(c, PARTS)
        only = await chat(c, [IMAGE])  # no text at all: the upstream reads the image
        s = await chat(c, PARTS, model="self_consistency:n=2@fake")
    assert r.status_code == only.status_code == s.status_code == 200, (r.text, s.text)
    assert r.json()["choices"][0]["message"]["content"] == "a cat"
    assert bodies[0]["messages"] == [{"role": "user", "content": PARTS}]
    assert bodies[1]["messages"] == [{"role": "user", "content": [IMAGE]}]
    assert len(bodies) >= 3 and all(b["messages"][0]["content"] == PARTS for b in bodies[2:])


def test_the_wire_sends_a_text_message_as_text() -> None:
    from testtime.generators.http_wire import wire_message

    assert wire_message(Message("user", "hi")) == {"role": "user", "content": "hi"}
    assert wire_message(Message("user", "x", parts=(IMAGE,)))["content"] == [IMAGE]


@pytest.mark.parametrize("endpoint,reads", [("chat", True), ("completions", False)])
async def test_only_the_chat_endpoint_takes_parts(endpoint: str, reads: bool) -> None:
    gen = HTTPGenerator(URL, "m", endpoint=endpoint)  # type: ignore[arg-type]
    try:
        assert gen.multimodal is reads
    finally:
        await gen.aclose()
    assert FakeGenerator().multimodal is False
