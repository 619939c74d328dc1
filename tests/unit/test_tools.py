"""Tool calls (issue 17): OpenAI's tools / tool_choice checked, calls read out of the formats
models write, the canonical vote key, the kind-first rule when some samples call and others
answer in text, and a strategy voting over the fake's scripted calls."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from testtime.core.errors import ConfigError
from testtime.core.tools import (
    CALL,
    ToolCall,
    by_kind,
    call_key,
    calls_from_wire,
    forced_format,
    is_call,
    parse_calls,
    tools,
)
from testtime.core.types import Candidate, Message, Problem, Request
from testtime.core.voting import group, leader, majority
from testtime.generators.fake import FakeGenerator
from testtime.strategies.base import STRATEGIES
from testtime.strategies.run import solve

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
            "required": ["city"],
        },
    },
}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}
TOOLS = tools([WEATHER, TIME])


def tag(name: str, args: dict[str, Any]) -> str:
    return f"<tool_call>\n{json.dumps({'name': name, 'arguments': args})}\n</tool_call>"


# -- checking ------------------------------------------------------------------------------
def test_tools_and_tool_choice_are_read_in_openai_shapes_and_kept_as_sent() -> None:
    t = tools([WEATHER], {"type": "function", "function": {"name": "get_weather"}}, ["id"])
    assert t is not None and t.choice == "function" and t.function == "get_weather"
    assert t.names == {"get_weather"} and t.ignore == ("id",)
    assert t.wire() == {
        "tools": [WEATHER],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    }
    assert tools([WEATHER]).wire() == {"tools": [WEATHER]}  # type: ignore[union-attr]
    assert tools([WEATHER], "none").offered is False  # type: ignore[union-attr]
    assert tools(None) is None and tools([], "auto") is None


@pytest.mark.parametrize(
    ("raw", "choice", "says"),
    [
        ({"x": 1}, None, "must be a list"),
        ([{"type": "retrieval"}], None, "function tools"),
        ([{"type": "function", "function": {"name": "a b"}}], None, "letters, digits"),
        ([WEATHER, WEATHER], None, "twice"),
        ([{"type": "function", "function": {"name": "f", "parameters": []}}], None, "schema"),
        ([{"type": "function", "function": {"name": "f", "parameters": {"type": "obj"}}}], None,
         "not a JSON schema type"),
        ([WEATHER], "sometimes", "not allowed"),
        ([WEATHER], {"type": "function", "function": {"name": "nope"}}, "not among the tools"),
        (None, "required", "needs tools"),
    ],
)  # fmt: skip
def test_malformed_tools_are_refused_naming_what_is_wrong(raw: Any, choice: Any, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        tools(raw, choice)


# -- parsing ---------------------------------------------------------------------------------
def test_hermes_tags_are_read_with_the_text_around_them_as_content() -> None:
    text = "Let me look.\n" + tag("get_weather", {"city": "Paris"}) + tag("get_time", {})
    calls, rest = parse_calls(text)
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [
        ("get_weather", {"city": "Paris"}),
        ("get_time", {}),
    ]
    assert rest == "Let me look." and all(c.id.startswith("call_") for c in calls)
    assert len({c.id for c in calls}) == 2


def test_a_list_in_one_tag_an_open_tag_and_parameters_are_read() -> None:
    listed = '<tool_call>[{"name": "a", "arguments": {"x": 1}}, {"name": "b", "arguments": "{}"}]'
    calls, _ = parse_calls(listed + "</tool_call>")
    assert [c.name for c in calls] == ["a", "b"] and calls[1].arguments == "{}"
    calls, _ = parse_calls('<tool_call>{"name": "a", "parameters": {"x": 2}}')  # cut at the end
    assert calls[0].name == "a" and json.loads(calls[0].arguments) == {"x": 2}


def test_llama3_python_tag_calls_split_at_semicolons_outside_strings() -> None:
    text = (
        '<|python_tag|>{"name": "a", "parameters": {"q": "x;y"}}; {"name": "b", "parameters": {}}'
    )
    calls, rest = parse_calls(text)
    assert [c.name for c in calls] == ["a", "b"] and json.loads(calls[0].arguments) == {"q": "x;y"}
    assert rest == ""


def test_bare_json_is_a_call_only_when_it_names_an_offered_tool() -> None:
    bare = '```json\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n```'
    calls, rest = parse_calls(bare, {"get_weather"})
    assert calls[0].name == "get_weather" and rest == ""
    person = '{"name": "Bob", "arguments": {"age": 3}}'
    assert parse_calls(person, {"get_weather"}) == ((), person)  # JSON that is an answer
    assert parse_calls("The answer is 4.") == ((), "The answer is 4.")
    broken = "<tool_call>{not json}</tool_call>"
    assert parse_calls(broken) == ((), broken)  # an unreadable tag stays in the text


def test_calls_from_the_wire_keep_ids_and_take_object_arguments() -> None:
    raw = [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": {"a": 1}}}]
    (call,) = calls_from_wire(raw, "tool_calls")
    assert call == ToolCall("c1", "f", '{"a": 1}')
    assert call.wire()["function"] == {"name": "f", "arguments": '{"a": 1}'}
    with pytest.raises(ConfigError, match="tool_calls\\[0\\]"):
        calls_from_wire([{"function": {}}], "tool_calls")


# -- the vote key -----------------------------------------------------------------------------
def test_the_vote_key_canonicalises_arguments_and_ignores_named_keys_and_order() -> None:
    a = [ToolCall("1", "get_weather", '{"unit": "c", "city": "Paris", "n": 1.0}')]
    b = [ToolCall("2", "get_weather", '{ "city":"Paris","n":1,"unit":"c" }')]
    assert call_key(a) == call_key(b) and is_call(call_key(a))
    assert (
        call_key(a)
        == CALL + '[{"arguments":{"city":"Paris","n":1,"unit":"c"},"name":"get_weather"}]'
    )
    c = [ToolCall("3", "get_weather", '{"city": "Paris", "n": 1, "unit": "c", "trace": "x9"}')]
    assert call_key(a) != call_key(c)
    assert call_key(a, ["trace"]) == call_key(c, ["trace"])  # the ignored key does not split
    two = [ToolCall("1", "f", "{}"), ToolCall("2", "g", "{}")]
    assert call_key(two) == call_key(two[::-1])  # parallel calls have no order
    assert call_key([ToolCall("1", "f", "not json")]) != call_key([ToolCall("1", "f", "{}")])


def cands(*answers: str) -> list[Candidate]:
    return [Candidate(a, a) for a in answers]


def test_the_kind_is_voted_first_then_the_answer_within_it() -> None:
    p = call_key([ToolCall("1", "f", '{"x": 1}')])
    q = call_key([ToolCall("1", "f", '{"x": 2}')])
    r = call_key([ToolCall("1", "f", '{"x": 3}')])
    # texts: "4" twice, the largest single group; but three of five samples call a tool
    top = majority(cands(p, "4", q, "4", r))
    assert top is not None and top.answer == p  # calls win the kind vote; then a tie: first
    top = majority(cands("4", p, "4", p, "5"))
    assert top is not None and top.answer == "4"  # texts 3 vs calls 2
    top = majority(cands(p, "4"))
    assert top is not None and top.answer == p  # a 1-1 kind tie: the kind seen first
    assert by_kind(["4", "5"], [1, 1]) is None and by_kind([p, q], [1, 1]) is None
    weighted = leader(group(cands(p, "4", "4"), [3.0, 1.0, 1.0]))
    assert weighted is not None and weighted.answer == p  # kinds weigh their summed weights


# -- forced calls -------------------------------------------------------------------------------
def test_a_forced_tool_choice_becomes_a_schema_for_the_call() -> None:
    assert TOOLS is not None and forced_format(TOOLS) is None
    one = forced_format(
        tools([WEATHER, TIME], {"type": "function", "function": {"name": "get_time"}})
    )  # type: ignore[arg-type]
    assert one is not None and json.loads(one.schema or "")["properties"]["name"]["enum"] == [
        "get_time"
    ]
    both = forced_format(tools([WEATHER, TIME], "required"))  # type: ignore[arg-type]
    assert both is not None and len(json.loads(both.schema or "")["anyOf"]) == 2


# -- messages and the fake ----------------------------------------------------------------------
def test_messages_carry_tool_calls_and_tool_results() -> None:
    call = ToolCall("c1", "get_time", "{}")
    chat = (
        Message("user", "time?"),
        Message("assistant", "", (call,)),
        Message("tool", "12:00", tool_call_id="c1"),
    )
    assert Problem(chat).messages[1].tool_calls == (call,)
    with pytest.raises(ConfigError, match="only assistant"):
        Message("user", "x", (call,))
    assert Message("user", "plain").tool_calls == ()  # every older construction holds


def test_the_fake_reads_scripted_calls_only_when_tools_are_offered() -> None:
    fake = FakeGenerator({"weather?": [tag("get_weather", {"city": "Paris"})], "18C": ["Mild."]})
    chat = (Message("user", "weather?"),)
    gen = asyncio.run(fake.generate(Request(chat, tools=TOOLS)))
    (comp,) = gen.completions
    assert comp.tool_calls is not None and comp.tool_calls[0].name == "get_weather"
    assert comp.text == ""
    plain = asyncio.run(fake.generate(Request(chat)))
    assert plain.completions[0].tool_calls is None and "<tool_call>" in plain.completions[0].text
    none = asyncio.run(fake.generate(Request(chat, tools=tools([WEATHER], "none"))))
    assert none.completions[0].tool_calls is None
    result = (
        *chat,
        Message("assistant", "", comp.tool_calls),
        Message("tool", "18C", tool_call_id="x"),
    )
    answer = asyncio.run(fake.generate(Request(result, tools=TOOLS)))
    assert answer.completions[0].text == "Mild."  # the script of the tool's result


def test_self_consistency_votes_over_canonical_calls_ignoring_named_keys() -> None:
    texts = [
        tag("get_weather", {"city": "Paris", "request_id": "a1"}),
        tag("get_weather", {"city": "Rome", "request_id": "b2"}),
        tag("get_weather", {"request_id": "c3", "city": "Paris"}),
        "I think it is sunny.",
    ]
    fake = FakeGenerator({"weather?": texts})
    problem = Problem((Message("user", "weather?"),))
    spec = STRATEGIES.spec("self_consistency", {"n": 4})
    offered = tools([WEATHER], ignore=["request_id"])
    result = asyncio.run(solve(problem, spec, fake, tools=offered))
    assert result.answer == call_key([ToolCall("", "get_weather", '{"city": "Paris"}')])
    chosen = next(c for c in result.candidates if c.id == result.chosen)
    assert chosen.completion is not None and chosen.completion.tool_calls is not None
    assert all(r.tools == offered for r in fake.requests)  # every sample was offered them
    # without ignoring request_id, every call is its own group: the vote decides nothing
    fake = FakeGenerator({"weather?": texts})
    plain = asyncio.run(solve(problem, spec, fake, tools=tools([WEATHER])))
    assert (plain.trace or {}).get("groups") == "all singletons"


def test_an_upstream_gets_tools_and_tool_messages_as_sent_and_its_calls_come_back() -> None:
    import httpx

    from testtime.generators.http import HTTPGenerator

    bodies: list[dict[str, Any]] = []
    call = {"id": "call_9", "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}  # fmt: skip

    async def upstream(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        message = {"role": "assistant", "content": None, "tool_calls": [call]}
        choice = {"index": 0, "message": message, "finish_reason": "tool_calls"}
        usage = {"prompt_tokens": 20, "completion_tokens": 9}
        return httpx.Response(200, json={"choices": [choice], "usage": usage})

    offered = tools([WEATHER], "required")
    chat = (
        Message("user", "weather?"),
        Message("assistant", "", (ToolCall("call_1", "get_weather", '{"city": "Oslo"}'),)),
        Message("tool", "18C", tool_call_id="call_1"),
    )

    async def run() -> Any:
        gen = HTTPGenerator("http://up.test/v1", "m", transport=httpx.MockTransport(upstream))
        try:
            return await gen.generate(Request(chat, max_tokens=8, tools=offered))
        finally:
            await gen.aclose()

    got = asyncio.run(run())
    sent = bodies[0]
    assert sent["tools"] == [WEATHER] and sent["tool_choice"] == "required"
    assert sent["messages"][1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "call_1", "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}],
    }  # fmt: skip
    assert sent["messages"][2] == {"role": "tool", "content": "18C", "tool_call_id": "call_1"}
    (comp,) = got.completions
    assert comp.tool_calls == (ToolCall("call_9", "get_weather", '{"city": "Paris"}'),)
    assert comp.generated_tokens == 9 and comp.text == ""


class _Template:
    """A stand-in tokenizer: records what apply_chat_template was given."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[dict[str, Any]], dict[str, Any]]] = []

    def apply_chat_template(self, chat: list[dict[str, Any]], **kw: Any) -> str:
        self.calls.append((chat, kw))
        return json.dumps(chat)


def _render(template_tools: bool, offered: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from types import SimpleNamespace

    from testtime.generators.transformers import TransformersGenerator

    tok = _Template()
    me = SimpleNamespace(chat=True, template_tools=template_tools, tokenizer=tok)
    chat = (
        Message("system", "Be brief."),
        Message("user", "weather?"),
        Message("assistant", "", (ToolCall("c1", "get_weather", '{"city": "Paris"}'),)),
        Message("tool", "18C", tool_call_id="c1"),
    )
    TransformersGenerator.prompt_text(me, chat, "", offered)  # type: ignore[arg-type]
    return tok.calls[0]


def test_a_template_without_tools_gets_them_in_the_hermes_format() -> None:
    chat, kw = _render(False, TOOLS)
    assert "tools" not in kw
    assert chat[0]["role"] == "system" and chat[0]["content"].startswith("Be brief.\n\n")
    assert "<tools>" in chat[0]["content"] and '"name": "get_weather"' in chat[0]["content"]
    tagged = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    assert chat[2] == {"role": "assistant", "content": tagged}
    assert chat[3] == {"role": "user", "content": "<tool_response>\n18C\n</tool_response>"}
    chat, _ = _render(False, tools([WEATHER], "none"))
    assert chat[0] == {"role": "system", "content": "Be brief."}  # none: no tools rendered


def test_a_template_that_reads_tools_is_given_them() -> None:
    chat, kw = _render(True, TOOLS)
    assert kw["tools"] == [WEATHER, TIME] and chat[0] == {"role": "system", "content": "Be brief."}
    assert chat[2]["tool_calls"] == [{"id": "c1", "type": "function",
                                      "function": {"name": "get_weather",
                                                   "arguments": {"city": "Paris"}}}]  # fmt: skip
    assert chat[3] == {"role": "tool", "content": "18C", "tool_call_id": "c1"}
    _, kw = _render(True, tools([WEATHER], "none"))
    assert "tools" not in kw
