"""A tool-calling app loop (issue 17) over loopback with the official openai client: the app
sends tools, gets calls, runs them, sends the results back and gets the final answer.

Once through `testtime serve` on a scripted fake that writes calls as `<tool_call>` tags,
voted by self_consistency (n=4), and once through a proxy chain (`testtime serve --upstream`
in front of that server), where the front's reported cost must equal what the upstream
spent, hop by hop. Then the embedded model renders the tools into its prompt (its template
knows none: the Hermes system message) and a forced tool_choice yields a parsed call."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from testtime.server.launch import Launched

pytestmark = pytest.mark.integration

ASK = "What is the weather in Paris?"
RESULT = "18C and clear"
FINAL = "It is 18C and clear in Paris."


def call(city: str, **extra: Any) -> str:
    args = {"city": city, **extra}
    return f"<tool_call>{json.dumps({'name': 'get_weather', 'arguments': args})}</tool_call>"


# 3 of 4 samples call; two of them the same call once request_id is ignored
SCRIPTS = {
    ASK: [call("Paris", request_id="a"), "Probably sunny.", call("Paris", request_id="b"),
          call("Rome", request_id="c")],
    RESULT: [FINAL],
}  # fmt: skip
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "request_id": {"type": "string"}},
            "required": ["city"],
        },
    },
}
SERVER = """
import json, sys
from testtime.generators.fake import FakeGenerator
from testtime.server import Settings, serve
port, scripts = sys.argv[1:3]
serve(Settings("fake"), FakeGenerator(json.loads(scripts)), port=int(port), log_level="warning")
"""
SAME = ("prompt_tokens", "cached_prompt_tokens", "generated_tokens", "samples", "flops")


@pytest.fixture(scope="module")
def chain() -> Iterator[tuple[Launched, Launched]]:
    with Launched.python(SERVER, json.dumps(SCRIPTS)) as inner:
        front = Launched.cli("--upstream", inner.base_url, "--upstream-model", "fake",
                             "--log-level", "warning")  # fmt: skip
        with front:
            yield inner, front


def spent(server: Launched) -> dict[str, Any]:
    stats = httpx.get(f"{server.base_url}/testtime/stats", timeout=30).json()
    return stats["generator"]["cost"]  # type: ignore[no-any-return]


def get_weather(city: str, **_: Any) -> str:
    return RESULT if city == "Paris" else "unknown city"


def app_loop(client: Any) -> tuple[Any, Any, list[dict[str, Any]]]:
    """The app: ask with tools, run the calls it gets, send the results, read the answer."""
    model = "self_consistency:n=4@fake"
    extra = {"testtime": {"ignore_tool_arguments": ["request_id"]}}
    messages: list[dict[str, Any]] = [{"role": "user", "content": ASK}]
    first = client.chat.completions.create(
        model=model,
        messages=messages,
        tools=[WEATHER],
        extra_body=extra,  # type: ignore[arg-type, list-item]
    )
    message = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls" and message.tool_calls
    messages.append(message.model_dump(exclude_none=True))
    for tc in message.tool_calls:
        fn = tc.function  # type: ignore[union-attr]
        out = get_weather(**json.loads(fn.arguments))
        messages.append({"role": "tool", "tool_call_id": tc.id, "content": out})
    final = client.chat.completions.create(
        model=model,
        messages=messages,
        tools=[WEATHER],
        extra_body=extra,  # type: ignore[arg-type, list-item]
    )
    return first, final, messages


def check_loop(first: Any, final: Any, messages: list[dict[str, Any]]) -> None:
    (tc,) = first.choices[0].message.tool_calls
    assert tc.function.name == "get_weather"
    assert json.loads(tc.function.arguments)["city"] == "Paris"  # the voted call
    assert messages[-1]["content"] == RESULT
    assert final.choices[0].message.content == FINAL
    assert final.choices[0].finish_reason == "stop" and not final.choices[0].message.tool_calls


def test_an_app_loop_through_serve_with_a_vote(
    chain: tuple[Launched, Launched], openai_client: Callable[..., Any]
) -> None:
    inner, _ = chain
    first, final, messages = app_loop(openai_client(inner.base_url, 60))
    check_loop(first, final, messages)
    assert first.model_extra["testtime"]["candidates"] == 4


def test_an_app_loop_through_a_proxy_chain_adds_up_the_costs(
    chain: tuple[Launched, Launched],
    openai_client: Callable[..., Any],
) -> None:
    inner, front = chain
    before = spent(inner)
    first, final, messages = app_loop(openai_client(front.base_url, 60))
    after = spent(inner)
    check_loop(first, final, messages)
    ledgers = [r.usage.model_extra["testtime"] for r in (first, final)]
    for field in SAME:  # the front adopted the upstream's ledger, call by call, both turns
        assert sum(lg[field] for lg in ledgers) == pytest.approx(after[field] - before[field])
    assert all(lg["samples"] == 4 for lg in ledgers)
    assert first.usage.completion_tokens == ledgers[0]["generated_tokens"] > 0


def test_a_streamed_vote_through_the_chain_keeps_the_tool_calls(
    chain: tuple[Launched, Launched],
    openai_client: Callable[..., Any],
) -> None:
    _, front = chain
    client = openai_client(front.base_url, 60)
    chunks = list(
        client.chat.completions.create(
            model="self_consistency:n=4@fake",
            messages=[{"role": "user", "content": ASK}],
            tools=[WEATHER],  # type: ignore[list-item]
            stream=True,
            extra_body={"testtime": {"ignore_tool_arguments": ["request_id"]}},
        )
    )
    calls = [t for c in chunks for ch in c.choices for t in ch.delta.tool_calls or []]
    assert len(calls) == 1 and calls[0].function is not None
    assert json.loads(calls[0].function.arguments or "")["city"] == "Paris"
    assert [ch.finish_reason for c in chunks for ch in c.choices if ch.finish_reason] == [
        "tool_calls"
    ]


def test_the_embedded_model_renders_tools_and_a_forced_choice_is_a_call() -> None:
    import asyncio

    from testtime import load_generator
    from testtime.core.tools import tools
    from testtime.core.types import Message, Request

    gen = load_generator("smollm2-135m")
    try:
        offered = tools([WEATHER], {"type": "function", "function": {"name": "get_weather"}})
        chat = (Message("user", ASK),)
        text = gen.prompt_text(chat, "", offered)  # type: ignore[attr-defined]
        assert "<tools>" in text and '"name": "get_weather"' in text
        assert "<tools>" not in gen.prompt_text(chat, "", tools([WEATHER], "none"))  # type: ignore[attr-defined]
        request = Request(chat, n=2, max_tokens=48, temperature=0.7, seed=1, tools=offered)
        got = asyncio.run(gen.generate(request))
        for comp in got.completions:
            assert comp.tool_calls is not None, comp.text
            (c,) = comp.tool_calls
            assert c.name == "get_weather" and isinstance(json.loads(c.arguments), dict)
    finally:
        asyncio.run(gen.aclose())
