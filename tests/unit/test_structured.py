"""response_format: OpenAI's shapes checked in core, JSON answers in one canonical form, and
a strategy's samples all asking for the format with the vote taken on parsed JSON."""

from __future__ import annotations

import json
from typing import Any

import pytest

from testtime.core.errors import ConfigError
from testtime.core.structured import canonical_json, response_format
from testtime.core.types import Message, Problem, Request
from testtime.generators.fake import FakeGenerator
from testtime.strategies.base import STRATEGIES
from testtime.strategies.run import RunSettings, solve

SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}


def schema_format(schema: Any = SCHEMA, **extra: Any) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, **extra}}


def test_the_openai_shapes_are_read() -> None:
    assert response_format(None) is None
    text = response_format({"type": "text"})
    obj = response_format({"type": "json_object"})
    sch = response_format(schema_format(strict=True))
    assert text is not None and not text.json
    assert obj is not None and obj.json and obj.schema is None
    assert sch is not None and sch.kind == "json_schema" and sch.strict and sch.name == "answer"
    assert sch.schema_object() == SCHEMA
    assert sch.wire() == schema_format(strict=True)  # passed on as it was sent
    assert hash(Request((Message("user", "x"),), response_format=sch))  # requests stay hashable


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ({"type": "json_schema"}, "needs a 'json_schema' object"),
        ({"type": "json_schema", "json_schema": {"name": "x"}}, "has no 'schema'"),
        ({"type": "json_schema", "json_schema": {"schema": None}}, "has no 'schema'"),
        (schema_format([1, 2]), "must be a JSON schema object, not list"),
        (schema_format("{}"), "must be a JSON schema object, not str"),
        (schema_format({"type": "obj"}), "'obj' is not a JSON schema type"),
        (schema_format({"properties": []}), "properties must be an object"),
        (schema_format({"properties": {"a": 3}}), "properties.a must be a schema object"),
        (schema_format({"required": "a"}), "required must be a list"),
        (schema_format({"items": [1]}), "items must be a schema object"),
        (schema_format({"anyOf": []}), "anyOf must be a non-empty list"),
        (schema_format(SCHEMA, strict="yes"), "strict must be true or false"),
        ({"type": "json_schema", "json_schema": {"name": "a b", "schema": {}}}, "name must be"),
        ({"type": "xml"}, "'xml' is not allowed; use one of: text, json_object, json_schema"),
        ({}, "None is not allowed"),
        ("json_object", "must be an object"),
    ],
)
def test_malformed_formats_are_config_errors(raw: Any, says: str) -> None:
    with pytest.raises(ConfigError, match=".*".join(map(_escape, says.split()))):
        response_format(raw)


def _escape(word: str) -> str:
    import re

    return re.escape(word)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ('{"b": 1, "a": [1, 2]}', '{ "a":[1,2],\n"b":1 }'),  # key order and whitespace
        ('{"x": 1}', '{"x": 1.0}'),  # one number, three spellings
        ('{"x": 1}', '{"x": 1e0}'),
        ('{"x": 0.5}', '{"x": 0.50}'),
        ('{"x": 150}', '{"x": 1.5E2}'),
        ('{"x": 0}', '{"x": -0.0}'),
        ('{"x": 1}', '```json\n{"x": 1}\n```'),  # a fenced answer from an unconstrained model
        ('"caf\\u00e9"', '"café"'),
    ],
)
def test_spellings_of_one_value_are_one_canonical_form(a: str, b: str) -> None:
    assert canonical_json(a) is not None and canonical_json(a) == canonical_json(b)


def test_different_values_stay_apart_and_non_json_is_none() -> None:
    assert canonical_json('{"x": 1}') != canonical_json('{"x": "1"}')
    assert canonical_json("[1, 2]") != canonical_json("[2, 1]")  # arrays keep their order
    assert canonical_json('{"x": 0.1}') != canonical_json('{"x": 0.10000000000000001}')
    assert canonical_json('{"x": 1, "y": 2}') == '{"x":1,"y":2}'
    for bad in ("", "Answer: 4", '{"x": 1', "NaN", '{"x": Infinity}', "{'x': 1}"):
        assert canonical_json(bad) is None, bad


async def test_a_strategy_constrains_every_sample_and_votes_on_parsed_json() -> None:
    texts = [
        '{"a": 1, "b": [1, 2]}',
        '{"b": [1,2], "a": 1.0}',  # the same value spelt otherwise
        '{"a": 2, "b": []}',
        '{"a": 2, "b": []}',
        "not json at all",
        '{"b":[1, 2],"a":1}',
    ]
    fake = FakeGenerator({"give json": texts})
    fmt = response_format(schema_format())
    problem = Problem.from_prompt("give json")
    settings = RunSettings(response_format=fmt, max_tokens=32)
    result = await solve(problem, STRATEGIES.spec("self_consistency", {"n": 6}), fake, settings)
    assert result.answer == '{"a":1,"b":[1,2]}'  # three spellings outvote two equal texts
    assert json.loads(result.answer) == {"a": 1, "b": [1, 2]}
    assert [c.answer for c in result.candidates][4] is None  # no JSON: no vote
    assert fake.requests and all(r.response_format == fmt for r in fake.requests)


async def test_without_a_format_answers_are_read_as_before() -> None:
    fake = FakeGenerator({"q": ["Answer: 4", "Answer: 4", "Answer: 5"]})
    spec = STRATEGIES.spec("self_consistency", {"n": 3})
    result = await solve(Problem.from_prompt("q"), spec, fake, RunSettings(max_tokens=8))
    assert result.answer == "4" and all(r.response_format is None for r in fake.requests)


async def test_an_upstream_is_sent_the_format_as_it_came() -> None:
    import httpx

    from testtime.generators.http import HTTPGenerator

    bodies: list[dict[str, Any]] = []

    async def upstream(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        choice = {"index": 0, "message": {"role": "assistant", "content": '{"a": 1}'}}
        usage = {"prompt_tokens": 5, "completion_tokens": 4}
        return httpx.Response(200, json={"choices": [choice | {"finish_reason": "stop"}],
                                         "usage": usage})  # fmt: skip

    raw = schema_format(strict=True)
    for endpoint in ("chat", "completions"):
        gen = HTTPGenerator(
            "http://upstream.test/v1", "m", transport=httpx.MockTransport(upstream),
            endpoint=endpoint,
        )  # fmt: skip
        try:
            plain = Request((Message("user", "q"),), max_tokens=8)
            await gen.generate(plain)
            await gen.generate(Request(plain.messages, max_tokens=8,
                                       response_format=response_format(raw)))  # fmt: skip
        finally:
            await gen.aclose()
    assert "response_format" not in bodies[0] and "response_format" not in bodies[2]
    assert bodies[1]["response_format"] == raw and bodies[3]["response_format"] == raw


def test_the_cli_constrains_samples_and_prints_the_voted_json(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    import sys

    import testtime.cli.run as cli_run
    from testtime.cli import main

    fake = FakeGenerator({"q": ['{"a": 2}', '{"a": 1.0}', '{ "a": 1 }']})
    monkeypatch.setattr(cli_run, "load_model", lambda *a, **k: fake)
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps(SCHEMA))
    for option in (f"@{schema}", json.dumps(SCHEMA), json.dumps(schema_format())):
        fake.requests.clear()
        argv = ["testtime", "run", "q", "-m", "fake", "-p", "n=3", "--json"]
        monkeypatch.setattr(sys, "argv", [*argv, "--response-format", option])
        with pytest.raises(SystemExit) as done:
            main()
        assert done.value.code in (0, None)
        result = json.loads(capsys.readouterr().out)
        assert result["answer"] == '{"a":1}', result
        assert all(r.response_format == response_format(schema_format(name="cli"))
                   or r.response_format == response_format(schema_format())
                   for r in fake.requests)  # fmt: skip
        assert fake.requests
    with pytest.raises(ConfigError, match="is not JSON"):
        cli_run.format_option("{nope")
    assert cli_run.format_option("json_object") == response_format({"type": "json_object"})
