"""Raw prompts (`Request.raw`: text or token ids continued without a chat template, what
OpenAI's /v1/completions asks for) through the fake and the HTTP generator, and the text
of each generated token (`Completion.tokens`) that logprobs come with."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from testtime.core.errors import ConfigError
from testtime.core.types import Request
from testtime.generators.fake import FakeGenerator, count_tokens
from testtime.generators.http import HTTPGenerator, ServerError

URL = "http://upstream/v1"


def test_a_raw_request_holds_its_prompt_and_shows_chat_readers_one_user_message() -> None:
    text = Request.raw("Once upon a time", max_tokens=3)
    ids = Request.raw([1, 2, 3])
    assert text.prompt == "Once upon a time" and text.messages[0].content == "Once upon a time"
    assert ids.prompt == (1, 2, 3) and ids.messages[0].content == ""


async def test_the_fake_counts_a_raw_prompt_without_chat_markers_and_refuses_token_ids() -> None:
    fake = FakeGenerator({"2 + 2 =": [" 4"]})
    raw = Request.raw("2 + 2 =")
    chat = Request(raw.messages)
    assert fake.count_prompt_tokens(raw) == count_tokens("2 + 2 =") < fake.count_prompt_tokens(chat)
    gen = await fake.generate(Request.raw("2 + 2 =", logprobs=True))
    assert gen.completions[0].text == " 4" and gen.completions[0].tokens == (" 4",)
    with pytest.raises(ConfigError, match="token ids"):
        await fake.generate(Request.raw([5, 6]))


def _upstream(seen: list[Any], status: int = 200) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.path, json.loads(request.content)))
        if status != 200:
            return httpx.Response(status, json={"error": {"message": "Not Found"}})
        logprobs = {"tokens": [" a", " b"], "token_logprobs": [-0.5, -1.0], "top_logprobs": None}
        choice = {"index": 0, "text": " a b", "finish_reason": "length", "logprobs": logprobs}
        usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
        return httpx.Response(200, json={"choices": [choice], "usage": usage})

    return httpx.MockTransport(handle)


async def test_the_http_generator_sends_a_raw_prompt_to_the_completions_endpoint() -> None:
    seen: list[Any] = []
    async with HTTPGenerator(URL, "m", transport=_upstream(seen)) as gen:  # a chat endpoint
        got = await gen.generate(Request.raw("Once", max_tokens=2, logprobs=True))
        await gen.generate(Request.raw([7, 8, 9], max_tokens=2))
    assert seen[0][0] == "/v1/completions" and seen[0][1]["prompt"] == "Once"
    assert "messages" not in seen[0][1]
    assert seen[1][1]["prompt"] == [7, 8, 9]  # token ids as they are
    comp = got.completions[0]
    assert comp.text == " a b" and comp.logprobs == (-0.5, -1.0) and comp.tokens == (" a", " b")


async def test_an_upstream_without_the_completions_endpoint_says_so() -> None:
    async with HTTPGenerator(URL, "m", transport=_upstream([], status=404)) as gen:
        with pytest.raises(ServerError, match="completions endpoint") as info:
            await gen.generate(Request.raw("Once"))
    assert info.value.status == 404


def test_top_logprobs_keep_k_distinct_texts_where_ids_decode_alike() -> None:
    from testtime.generators.engine import _asked_top
    from testtime.generators.sequence import _named

    texts = {1: "a", 2: "a", 3: "b", 4: "\ufffd", 5: "\ufffd", 6: "c"}
    top = {1: -0.1, 2: -0.5, 3: -0.7, 4: -1.0, 5: -2.0, 6: -3.0}  # the engine's k + spare
    assert _named(top, lambda ids: texts[ids[0]], 3) == {"a": -0.1, "b": -0.7, "\ufffd": -1.0}
    assert _named(top, lambda ids: texts[ids[0]], 4)["c"] == -3.0
    assert _asked_top(3) > 3 and _asked_top(0) == 0
