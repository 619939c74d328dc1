"""Streaming relay (issue 17): a plain streamed request to a server whose model is an upstream
(the HTTP backend) streams from the upstream: text deltas, tool-call deltas as the upstream
sends them and the finish reason reach the client as they arrive, usage at the end as the
ledger counts it, the upstream's connection is closed when the client leaves, and a failure
mid-stream ends the client's stream with an error event, never a hang.

The upstream is a mock (httpx.MockTransport) whose SSE body the test releases step by step
and which records when it is closed; the app is driven over ASGI by hand, so each message
it sends is seen when it is sent (httpx's ASGI transport would buffer the whole body)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from testtime.core.types import Message, Request
from testtime.generators.base import Piece, streamed_to
from testtime.generators.http import HTTPGenerator, ServerError
from testtime.generators.http_wire import Assembly
from testtime.server import Settings, create_app

URL = "http://upstream.test/v1"
Step = str | asyncio.Event | BaseException
CALL = [  # a tool call as OpenAI streams it: the head, then argument fragments
    {"index": 0, "id": "call_1", "type": "function",
     "function": {"name": "get_weather", "arguments": ""}},
    {"index": 0, "function": {"arguments": '{"city": '}},
    {"index": 0, "function": {"arguments": '"Paris"}'}},
]  # fmt: skip
USAGE = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}


def chunk(index: int = 0, finish: str | None = None, **delta: Any) -> str:
    choice = {"index": index, "delta": delta, "finish_reason": finish}
    return "data: " + json.dumps({"object": "chat.completion.chunk", "choices": [choice]}) + "\n\n"


def usage_chunk() -> str:
    return "data: " + json.dumps({"choices": [], "usage": USAGE}) + "\n\n"


DONE = "data: [DONE]\n\n"


class Script(httpx.AsyncByteStream):
    """An SSE body sent step by step: a text is sent, an Event waited for, an exception
    raised (the connection broken); `closed` is set when the client closes it."""

    def __init__(self, steps: list[Step], closed: asyncio.Event) -> None:
        self.steps, self.closed = steps, closed

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for step in self.steps:
            if isinstance(step, asyncio.Event):
                await step.wait()
            elif isinstance(step, BaseException):
                raise step
            else:
                yield step.encode()

    async def aclose(self) -> None:
        self.closed.set()


class Upstream:
    """A mock upstream: records each request body, streams `steps` when asked to stream."""

    def __init__(self, steps: list[Step], status: int = 200) -> None:
        self.steps, self.status = steps, status
        self.bodies: list[dict[str, Any]] = []
        self.closed = asyncio.Event()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(json.loads(request.content))
        if self.status >= 400:
            return httpx.Response(self.status, json={"error": {"message": "no such model"}})
        if not self.bodies[-1].get("stream"):
            message = {"role": "assistant", "content": "whole"}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            return httpx.Response(200, json={"choices": [choice], "usage": USAGE})
        headers = {"content-type": "text/event-stream"}
        return httpx.Response(200, headers=headers, stream=Script(self.steps, self.closed))

    def backend(self, **kw: Any) -> HTTPGenerator:
        kw.setdefault("backoff", 0.001)
        return HTTPGenerator(URL, "m", transport=httpx.MockTransport(self), **kw)


class Driven:
    """The app driven over ASGI: `event()` reads the next SSE event as soon as it is sent;
    `leave()` is the client disconnecting."""

    def __init__(self, app: Any, body: dict[str, Any]) -> None:
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.out: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        raw = json.dumps({"model": "m", "stream": True, **body}).encode()
        self.inbox.put_nowait({"type": "http.request", "body": raw, "more_body": False})
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": "POST", "scheme": "http", "path": "/v1/chat/completions",
                 "raw_path": b"/v1/chat/completions", "query_string": b"", "root_path": "",
                 "headers": [(b"content-type", b"application/json"), (b"host", b"test")],
                 "server": ("test", 80), "client": ("127.0.0.1", 1)}  # fmt: skip
        self.task = asyncio.create_task(app(scope, self.inbox.get, self.out.put))
        self.buffer = ""

    async def event(self, timeout: float = 5.0) -> Any:
        """The next event's data (JSON, or '[DONE]'); ('error', data) for an error event."""
        while "\n\n" not in self.buffer:
            message = await asyncio.wait_for(self.out.get(), timeout)
            if message["type"] == "http.response.body":
                self.buffer += message.get("body", b"").decode()
        block, self.buffer = self.buffer.split("\n\n", 1)
        lines = block.splitlines()
        data = lines[-1].removeprefix("data: ")
        data = data if data == "[DONE]" else json.loads(data)
        return ("error", data) if lines[0] == "event: error" else data

    async def rest(self) -> list[Any]:
        got = [await self.event()]
        while got[-1] != "[DONE]":
            got.append(await self.event())
        return got

    async def leave(self) -> None:
        self.inbox.put_nowait({"type": "http.disconnect"})
        await asyncio.wait_for(self.task, 5)


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., tuple[Any, HTTPGenerator]]]:
    made: list[HTTPGenerator] = []

    def make(upstream: Upstream, **kw: Any) -> tuple[Any, HTTPGenerator]:
        backend = upstream.backend(**kw)
        made.append(backend)
        return create_app(Settings("m"), backend), backend

    yield make
    for b in made:
        await b.aclose()


def deltas(events: list[Any]) -> list[dict[str, Any]]:
    return [c for e in events if isinstance(e, dict) for c in e["choices"]]


async def test_text_arrives_as_the_upstream_sends_it(serve: Any) -> None:
    later = asyncio.Event()
    up = Upstream([chunk(role="assistant", content=""), chunk(content="Hel"), later,
                   chunk(content="lo"), chunk(finish="stop"), usage_chunk(), DONE])  # fmt: skip
    app, _ = serve(up)
    client = Driven(app, {"messages": [{"role": "user", "content": "hi"}]})
    role = await client.event()
    first = await client.event()  # sent while the upstream still holds the rest back
    assert role["choices"][0]["delta"]["role"] == "assistant"
    assert first["choices"] == [{"index": 0, "delta": {"content": "Hel"}, "finish_reason": None}]
    assert up.bodies[0]["stream"] is True
    assert up.bodies[0]["stream_options"] == {"include_usage": True}  # the ledger's count
    later.set()
    rest = await client.rest()
    assert [c["delta"].get("content") for c in deltas(rest)] == ["lo", None]
    assert [c["finish_reason"] for c in deltas(rest)] == [None, "stop"]
    assert rest[-1] == "[DONE]" and not any("usage" in e for e in rest[:-1])  # not asked
    await asyncio.wait_for(client.task, 5)


async def test_tool_call_deltas_and_the_finish_reason_are_relayed_as_sent(serve: Any) -> None:
    steps: list[Step] = [chunk(role="assistant", content=None)]
    steps += [chunk(tool_calls=[c]) for c in CALL]
    steps += [chunk(finish="tool_calls"), usage_chunk(), DONE]
    app, _ = serve(Upstream(steps))
    body = {"messages": [{"role": "user", "content": "Weather in Paris?"}],
            "tools": [{"type": "function", "function": {"name": "get_weather"}}],
            "stream_options": {"include_usage": True}}  # fmt: skip
    client = Driven(app, body)
    got = await client.rest()
    fragments = [t for c in deltas(got) for t in c["delta"].get("tool_calls", [])]
    assert fragments == CALL
    assert [c["finish_reason"] for c in deltas(got) if c["finish_reason"]] == ["tool_calls"]
    usage = got[-2]["usage"]  # counted in the ledger like a non-streamed call
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (11, 7)
    stats = app.state.jobs.generator.stats()
    assert stats["calls"] == 1 and stats["cost"]["generated_tokens"] == 7
    assert usage["testtime"]["generated_tokens"] == 7


async def test_the_upstream_is_closed_when_the_client_leaves(serve: Any) -> None:
    never = asyncio.Event()
    up = Upstream([chunk(content="Hel"), never, chunk(finish="stop"), DONE])
    app, _ = serve(up)
    client = Driven(app, {"messages": [{"role": "user", "content": "hi"}]})
    await client.event()  # role
    assert (await client.event())["choices"][0]["delta"] == {"content": "Hel"}
    assert not up.closed.is_set()
    await client.leave()
    await asyncio.wait_for(up.closed.wait(), 5)  # no connection left open upstream
    stats = app.state.jobs.generator.stats()
    assert stats["in_flight"] == 0 and stats["cancelled"] == 1
    await asyncio.sleep(0)
    assert not app.state.jobs.tasks


@pytest.mark.parametrize(
    "failure,said",
    [
        ('event: error\ndata: {"error": {"message": "engine died"}}\n\n', "engine died"),
        ('data: {"error": {"message": "out of memory"}}\n\n', "out of memory"),
        (httpx.ReadError("connection reset"), "broke after 1 pieces"),
        (DONE, "ended before its answer was finished"),
    ],
)
async def test_an_upstream_failure_mid_stream_is_an_error_event(
    serve: Any, failure: Step, said: str
) -> None:
    up = Upstream([chunk(content="Hel"), failure])
    app, _ = serve(up)
    client = Driven(app, {"messages": [{"role": "user", "content": "hi"}]})
    got = await client.rest()
    assert got[1]["choices"][0]["delta"] == {"content": "Hel"}
    kind, error = got[-2]
    assert kind == "error" and said in error["error"]["message"], error
    assert got[-1] == "[DONE]"
    await asyncio.wait_for(client.task, 5)
    assert up.closed.is_set()


async def test_a_silent_upstream_ends_the_stream_at_the_backends_timeout(serve: Any) -> None:
    up = Upstream([chunk(content="Hel"), asyncio.Event()])  # then nothing, ever
    app, _ = serve(up, read_timeout=0.3)
    client = Driven(app, {"messages": [{"role": "user", "content": "hi"}]})
    got = await client.rest()
    assert got[-2][0] == "error" and "did not finish within 0.3 s" in got[-2][1]["error"]["message"]
    assert up.closed.is_set()


async def test_n_choices_stream_by_index(serve: Any) -> None:
    steps: list[Step] = [chunk(0, content="a"), chunk(1, content="b"), chunk(1, content="B"),
                         chunk(0, "stop"), chunk(1, "length"), DONE]  # fmt: skip
    app, _ = serve(Upstream(steps))
    client = Driven(app, {"messages": [{"role": "user", "content": "hi"}], "n": 2})
    got = await client.rest()
    by = {i: [c for c in deltas(got) if c["index"] == i] for i in (0, 1)}
    assert all(by[i][0]["delta"]["role"] == "assistant" for i in (0, 1))
    assert [c["delta"].get("content") for c in by[1][1:]] == ["b", "B", None]
    assert by[0][-1]["finish_reason"] == "stop" and by[1][-1]["finish_reason"] == "length"


async def test_a_refusal_before_any_piece_is_an_error_event_with_the_upstreams_message(
    serve: Any,
) -> None:
    app, _ = serve(Upstream([], status=404))
    got = await Driven(app, {"messages": [{"role": "user", "content": "hi"}]}).rest()
    assert got[-2][0] == "error" and "no such model" in got[-2][1]["error"]["message"]


# -- the backend on its own ------------------------------------------------------------------
async def test_the_backend_streams_only_for_a_listener_and_returns_the_whole_reply() -> None:
    steps: list[Step] = [chunk(content="It is "), chunk(tool_calls=[CALL[0]]),
                         chunk(tool_calls=[CALL[1]]), chunk(tool_calls=[CALL[2]]),
                         chunk(finish="tool_calls"), usage_chunk(), DONE]  # fmt: skip
    up = Upstream(steps)
    backend = up.backend()
    request = Request((Message("user", "Weather?"),), max_tokens=20)
    try:
        pieces: list[Piece] = []
        with streamed_to(pieces.append):
            gen = await backend.generate(request)
        plain = await backend.generate(request)  # no listener: not streamed
    finally:
        await backend.aclose()
    assert [p.text for p in pieces] == ["It is ", "", "", "", ""]
    assert [t for p in pieces for t in p.tool_calls] == CALL
    (comp,) = gen.completions
    assert comp.text == "It is " and comp.tool_calls is not None
    assert [(c.id, c.name, c.arguments) for c in comp.tool_calls] == [
        ("call_1", "get_weather", '{"city": "Paris"}')
    ]
    assert (gen.cost.prompt_tokens, gen.cost.generated_tokens) == (11, 7)
    assert "stream" not in up.bodies[1] and plain.completions[0].text == "whole"


def test_an_unfinished_stream_cannot_be_read_as_a_whole() -> None:
    reader = Assembly("http://u/v1/chat/completions")
    assert reader.feed(chunk(content="x")) == [Piece(0, "x")]
    assert reader.feed(": keep-alive") == [] and reader.feed("data: [DONE]") == []
    with pytest.raises(ServerError, match="ended before its answer was finished"):
        reader.data()
