"""response_format through the app in process on the fake generator: malformed formats are
400s naming the field, a plain request's generator is asked for the format, a strategy's
every sample is, and its vote is taken on parsed JSON. The embedded model's constrained
decoding through the real server is tested in tests/integration/test_structured_real.py."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from testtime.core.errors import ConfigError
from testtime.core.types import Request
from testtime.generators.base import Generation, Generator
from testtime.generators.fake import FakeGenerator
from testtime.server import Settings, create_app

Q = "Give the answer as JSON."
SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
FORMAT = {"type": "json_schema", "json_schema": {"name": "a", "schema": SCHEMA, "strict": True}}


def client(gen: Generator) -> httpx.AsyncClient:
    app = create_app(Settings("fake"), gen)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def chat(gen: Generator, **body: Any) -> httpx.Response:
    async with client(gen) as c:
        return await c.post(
            "/v1/chat/completions",
            json={"model": "fake", "messages": [{"role": "user", "content": Q}], **body},
        )


@pytest.mark.parametrize(
    ("fmt", "says"),
    [
        ({"type": "json_schema"}, "needs a 'json_schema' object"),
        ({"type": "json_schema", "json_schema": {"name": "x"}}, "has no 'schema'"),
        ({"type": "json_schema", "json_schema": {"schema": [1]}}, "not list"),
        ({"type": "json_schema", "json_schema": {"schema": {"type": "obj"}}}, "'obj' is not"),
        ({"type": "yaml"}, "'yaml' is not allowed"),
        ("json_object", "response_format"),
    ],
)
@pytest.mark.parametrize("strategy", [None, "self_consistency"])
async def test_a_malformed_format_is_a_400_naming_it(
    fmt: Any, says: str, strategy: str | None
) -> None:
    fake = FakeGenerator({Q: ['{"a": 1}']})
    extra = {"testtime": {"strategy": strategy, "params": {"n": 2}}} if strategy else {}
    r = await chat(fake, response_format=fmt, **extra)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert says in error["message"] and "response_format" in (error.get("param") or says)
    assert not fake.requests  # refused before any work


async def test_a_plain_request_asks_its_generator_for_the_format() -> None:
    fake = FakeGenerator({Q: ['{"a": 1}']})
    r = await chat(fake, response_format=FORMAT, n=2)
    assert r.status_code == 200, r.text
    (request,) = fake.requests
    assert request.response_format is not None and request.response_format.wire() == FORMAT
    assert [json.loads(c["message"]["content"]) for c in r.json()["choices"]] == [{"a": 1}] * 2


async def test_a_strategy_constrains_every_sample_and_votes_on_parsed_json() -> None:
    texts = ['{"a": 2}', '{"a": 1}', '{ "a" : 1.0 }', '{"a":1}', '{"a": 2}']
    fake = FakeGenerator({Q: texts})
    r = await chat(fake, response_format=FORMAT, testtime={"strategy": "self_consistency",
                                                           "params": {"n": 5}})  # fmt: skip
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["testtime"]["answer"] == '{"a":1}'  # three spellings of 1 beat two of 2
    assert json.loads(body["choices"][0]["message"]["content"]) == {"a": 1}
    assert fake.requests and all(
        q.response_format is not None and q.response_format.wire() == FORMAT for q in fake.requests
    )


class Refusing(FakeGenerator):
    """A model that cannot follow the schema it is given (as xgrammar refuses some)."""

    async def generate(self, request: Request) -> Generation:
        if request.response_format is not None:
            raise ConfigError("response_format.json_schema.schema cannot be used (why)")
        return await super().generate(request)


async def test_a_schema_the_model_cannot_follow_is_a_400() -> None:
    r = await chat(Refusing({Q: ['{"a": 1}']}), response_format=FORMAT)
    assert r.status_code == 400 and "cannot be used" in r.json()["error"]["message"]
