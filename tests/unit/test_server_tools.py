"""tools / tool_choice through the server in process (httpx's ASGI transport) on the scripted
fake (issue 17): calls returned as `tool_calls` with finish_reason "tool_calls", streamed
(every choice index keeps its calls), voted over by a strategy, tool messages read, and the
malformed refused with a 400 naming the field."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from testtime.generators.fake import FakeGenerator
from testtime.server import Settings, create_app

ASK = "What is the weather in Paris?"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def call(city: str, **extra: Any) -> str:
    args = {"city": city, **extra}
    return f"<tool_call>{json.dumps({'name': 'get_weather', 'arguments': args})}</tool_call>"


SCRIPTS = {
    ASK: [call("Paris", rid="1"), "It is sunny, I guess.", call("Paris", rid="2"), call("Rome")],
    "18C and clear": ["It is 18C and clear in Paris."],
}


def client(gen: FakeGenerator | None = None) -> httpx.AsyncClient:
    app = create_app(Settings("fake"), gen or FakeGenerator(SCRIPTS))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def events(text: str) -> list[Any]:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]


def body(**extra: Any) -> dict[str, Any]:
    return {"model": "fake", "messages": [{"role": "user", "content": ASK}],
            "tools": [WEATHER], **extra}  # fmt: skip


async def test_a_plain_request_gets_its_calls_as_tool_calls() -> None:
    async with client() as c:
        r = await c.post("/v1/chat/completions", json=body(n=2))
    assert r.status_code == 200, r.text
    first, second = r.json()["choices"]
    assert first["finish_reason"] == "tool_calls" and first["message"]["content"] is None
    (tc,) = first["message"]["tool_calls"]
    assert tc["type"] == "function" and tc["id"].startswith("call_")
    assert tc["function"]["name"] == "get_weather"
    assert json.loads(tc["function"]["arguments"]) == {"city": "Paris", "rid": "1"}
    assert second["finish_reason"] == "stop" and "tool_calls" not in second["message"]


async def test_a_stream_keeps_every_choice_index_s_tool_calls() -> None:
    async with client() as c:
        r = await c.post("/v1/chat/completions", json=body(n=4, stream=True))
    chunks = events(r.text)
    calls: dict[int, list[Any]] = {}
    finish: dict[int, str] = {}
    for chunk in chunks:
        for ch in chunk["choices"]:
            calls.setdefault(ch["index"], []).extend(ch["delta"].get("tool_calls") or [])
            if ch["finish_reason"]:
                finish[ch["index"]] = ch["finish_reason"]
    assert finish == {0: "tool_calls", 1: "stop", 2: "tool_calls", 3: "tool_calls"}
    assert [len(calls[i]) for i in range(4)] == [1, 0, 1, 1]
    assert calls[3][0]["index"] == 0 and calls[3][0]["function"]["name"] == "get_weather"
    assert json.loads(calls[3][0]["function"]["arguments"]) == {"city": "Rome"}


@pytest.mark.parametrize("stream", [False, True])
async def test_a_strategy_votes_over_calls_ignoring_named_argument_keys(stream: bool) -> None:
    voted = body(model="self_consistency:n=4@fake", stream=stream,
                 testtime={"ignore_tool_arguments": ["rid"]})  # fmt: skip
    async with client() as c:
        r = await c.post("/v1/chat/completions", json=voted)
    assert r.status_code == 200, r.text
    if stream:
        chunks = events(r.text)
        deltas = [ch for chunk in chunks for ch in chunk["choices"]]
        (tc,) = [t for ch in deltas for t in ch["delta"].get("tool_calls") or []]
        info = next(chunk["testtime"] for chunk in chunks if "answer" in chunk.get("testtime", {}))
        assert [ch["finish_reason"] for ch in deltas if ch["finish_reason"]] == ["tool_calls"]
    else:
        (choice,) = r.json()["choices"]
        (tc,) = choice["message"]["tool_calls"]
        info = r.json()["testtime"]
        assert choice["finish_reason"] == "tool_calls"
    # three of four samples call (text loses the kind vote); two are Paris once rid is ignored
    assert json.loads(tc["function"]["arguments"])["city"] == "Paris"
    assert info["answer"].startswith("tool_calls:") and info["groups"] is None


async def test_tool_results_come_back_in_and_the_model_answers_them() -> None:
    turn = body(messages=[
        {"role": "user", "content": ASK},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C and clear"},
    ])  # fmt: skip
    gen = FakeGenerator(SCRIPTS)
    async with client(gen) as c:
        r = await c.post("/v1/chat/completions", json=turn)
    assert r.status_code == 200, r.text
    (choice,) = r.json()["choices"]
    assert choice["message"]["content"] == "It is 18C and clear in Paris."
    assert choice["finish_reason"] == "stop"
    chat = gen.requests[0].messages
    assert chat[1].tool_calls[0].name == "get_weather" and chat[2].tool_call_id == "call_1"


async def test_tool_choice_none_returns_the_text_as_written() -> None:
    async with client() as c:
        r = await c.post("/v1/chat/completions", json=body(tool_choice="none"))
    (choice,) = r.json()["choices"]
    assert choice["finish_reason"] == "stop" and "<tool_call>" in choice["message"]["content"]


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ({"tools": [{"type": "function", "function": {"name": "bad name"}}]}, "letters"),
        ({"tool_choice": {"type": "function", "function": {"name": "other"}}}, "not among"),
        ({"tools": None, "tool_choice": "required"}, "needs tools"),
        ({"messages": [{"role": "user", "content": ASK},
                       {"role": "tool", "content": "18C"}]}, "tool_call_id"),
        ({"messages": [{"role": "assistant", "content": None,
                        "tool_calls": [{"function": {}}]}]}, "tool_calls"),
    ],
)  # fmt: skip
async def test_malformed_tools_are_a_400_naming_what_is_wrong(
    extra: dict[str, Any], says: str
) -> None:
    async with client() as c:
        r = await c.post("/v1/chat/completions", json=body(**extra))
    assert r.status_code == 400, r.text
    assert says in r.json()["error"]["message"]


async def test_a_message_without_content_is_refused_unless_it_holds_calls() -> None:
    async with client() as c:
        r = await c.post("/v1/chat/completions", json=body(messages=[{"role": "user"}]))
    assert r.status_code == 400 and "no content" in r.json()["error"]["message"]


CALLED = {
    "role": "assistant",
    "content": None,
    "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "get_weather"}}],
}


@pytest.mark.parametrize(
    "more",
    [
        [],
        [{"role": "developer", "content": "Be brief."}],
        [{"role": "assistant", "content": [{"type": "text", "text": "Which city?"}]}],
        [CALLED, {"role": "tool", "tool_call_id": "c1", "content": "18C and clear"}],
        [{"role": "tool", "content": "18C"}],
        [{"role": "tool", "tool_call_id": "", "content": "18C"}],
        [{"role": "tool", "tool_call_id": "c1", "content": None}],
        [{"role": "user"}],
        [{"role": "assistant", "content": None}],
        [{"role": "assistant", "content": None, "tool_calls": []}],
        [{**CALLED, "tool_calls": [{"function": {"name": ""}}]}],
    ],
)
async def test_the_openapi_schema_admits_exactly_the_messages_the_server_accepts(
    more: list[dict[str, Any]],
) -> None:
    """A fuzzer fills messages from the schema: what it admits must be answered (200), what
    it refuses a 400 (else every generated request is one, as roles grew tool/tool_calls)."""
    jsonschema = pytest.importorskip("jsonschema")
    async with client() as c:
        api = (await c.get("/openapi.json")).json()
        messages = [{"role": "user", "content": ASK}, *more]
        r = await c.post("/v1/chat/completions", json=body(messages=messages, tools=None))
    one = {"$ref": "#/components/schemas/ChatMessage", "components": api["components"]}
    admitted = all(jsonschema.Draft202012Validator(one).is_valid(m) for m in messages)
    assert r.status_code == (200 if admitted else 400), (admitted, r.text)
