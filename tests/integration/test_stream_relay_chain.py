"""Streaming relay through a real proxy chain (issue 17): `testtime serve --model
http://INNER/v1#fake` in front of a `testtime serve` on a scripted fake that writes tool calls
as `<tool_call>` tags. A plain streamed request (no strategy) to the front is streamed from
the inner server and relayed chunk by chunk: the tool calls survive the hop as deltas with
their finish reason, the text of a text answer arrives whole, and the usage the front sends
at the end (include_usage) is what the inner server spent."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from testtime.server.launch import Launched

pytestmark = pytest.mark.integration

ASK = "What is the weather in Paris?"
HELLO = "Say hello."
CALL = {"name": "get_weather", "arguments": {"city": "Paris"}}
SCRIPTS = {ASK: [f"<tool_call>{json.dumps(CALL)}</tool_call>"], HELLO: ["Hello there, friend."]}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
# the inner server, wrapped to note whether each chat request asked to stream (GET /streamed)
SERVER = """
import json, sys
import uvicorn
from testtime.generators.fake import FakeGenerator
from testtime.server import Settings, create_app
port, scripts = sys.argv[1:3]
app = create_app(Settings("fake"), FakeGenerator(json.loads(scripts)))
streamed = []

async def noted(scope, receive, send):
    if scope["type"] == "http" and scope["path"] == "/streamed":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": json.dumps(streamed).encode()})
        return
    if scope["type"] != "http" or not scope["path"].endswith("/chat/completions"):
        return await app(scope, receive, send)
    first = await receive()
    streamed.append(bool(json.loads(first.get("body") or b"{}").get("stream")))
    sent = [first]

    async def replay():
        return sent.pop() if sent else await receive()

    await app(scope, replay, send)

uvicorn.run(noted, host="127.0.0.1", port=int(port), log_level="warning")
"""


@pytest.fixture(scope="module")
def chain() -> Iterator[tuple[Launched, Launched]]:
    with Launched.python(SERVER, json.dumps(SCRIPTS)) as inner:
        front = Launched.cli("--model", f"{inner.base_url}#fake", "--name", "fake",
                             "--log-level", "warning")  # fmt: skip
        with front:
            yield inner, front


def spent(server: Launched) -> dict[str, Any]:
    stats = httpx.get(f"{server.base_url}/testtime/stats", timeout=30).json()
    return stats["generator"]["cost"]  # type: ignore[no-any-return]


def test_a_plain_stream_keeps_its_tool_calls_across_the_hop(
    chain: tuple[Launched, Launched],
    openai_client: Callable[..., Any],
) -> None:
    inner, front = chain
    before = spent(inner)
    client = openai_client(front.base_url, 60)
    chunks = list(
        client.chat.completions.create(
            model="fake",
            messages=[{"role": "user", "content": ASK}],
            tools=[WEATHER],  # type: ignore[list-item]
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    after = spent(inner)
    assert httpx.get(f"{inner.url}/streamed", timeout=30).json()[-1] is True  # relayed
    calls = [t for c in chunks for ch in c.choices for t in ch.delta.tool_calls or []]
    assert len(calls) == 1 and calls[0].function is not None and calls[0].id
    assert calls[0].function.name == "get_weather"
    assert json.loads(calls[0].function.arguments or "") == {"city": "Paris"}
    finishes = [ch.finish_reason for c in chunks for ch in c.choices if ch.finish_reason]
    assert finishes == ["tool_calls"]
    assert chunks[0].choices[0].delta.role == "assistant"
    usage = chunks[-1].usage
    assert usage is not None and chunks[-1].choices == []
    ledger = usage.model_extra["testtime"]  # type: ignore[index]
    assert ledger["generated_tokens"] == after["generated_tokens"] - before["generated_tokens"] > 0
    assert usage.completion_tokens == ledger["generated_tokens"]


def test_a_plain_text_stream_arrives_whole_through_the_chain(
    chain: tuple[Launched, Launched],
) -> None:
    _, front = chain
    body = {"model": "fake", "messages": [{"role": "user", "content": HELLO}], "stream": True}
    with httpx.stream("POST", f"{front.base_url}/chat/completions", json=body, timeout=60) as r:
        lines = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    chunks = [json.loads(x) for x in lines[:-1]]
    text = "".join(ch["delta"].get("content") or "" for c in chunks for ch in c["choices"])
    assert text == "Hello there, friend."
    assert [ch["finish_reason"] for c in chunks for ch in c["choices"] if ch["finish_reason"]] == [
        "stop"
    ]
    assert not any("usage" in c for c in chunks)  # not asked for
