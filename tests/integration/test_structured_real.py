"""response_format on the real embedded model (SmolLM2-135M): every sample under a
json_schema parses and follows it, on the engine directly and through `testtime serve` with
the official openai client (plain, with a strategy, and a schema xgrammar refuses: a 400).
Short outputs on purpose: the schema bounds every value, so each sample ends well inside
max_tokens."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from testtime.core.structured import response_format
from testtime.core.types import Message, Request
from testtime.server.launch import Launched

pytestmark = pytest.mark.integration

MODEL = "smollm2-135m"
PROMPT = "Describe a person as JSON with their name, age and city."
SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 12},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "city": {"enum": ["Paris", "London", "Tokyo", "Lima"]},
    },
    "required": ["name", "age", "city"],
}
FORMAT = {"type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA}}


def follows(value: Any) -> bool:
    """The checks a JSON-schema validator would make of SCHEMA."""
    return (
        isinstance(value, dict)
        and set(value) == {"name", "age", "city"}
        and isinstance(value["name"], str)
        and 1 <= len(value["name"]) <= 12
        and type(value["age"]) is int
        and 0 <= value["age"] <= 120
        and value["city"] in ("Paris", "London", "Tokyo", "Lima")
    )


def test_every_sample_follows_the_schema_on_the_engine(generator: Any) -> None:
    request = Request(
        (Message("user", PROMPT),), n=8, max_tokens=64, seed=1,
        response_format=response_format(FORMAT),
    )  # fmt: skip
    free = Request(request.messages, n=2, max_tokens=24, seed=1)
    out, alone = asyncio.run(_both(generator, request, free))
    texts = [c.text for c in out.completions]
    assert all(follows(json.loads(t)) for t in texts), texts
    assert all(c.finish_reason == "stop" for c in out.completions)
    assert len(set(texts)) > 1  # sampled, not one forced text
    assert not any(_parses(c.text) for c in alone.completions)  # unconstrained: prose


async def _both(generator: Any, *requests: Request) -> list[Any]:
    return list(await asyncio.gather(*(generator.generate(r) for r in requests)))


def _parses(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


@pytest.fixture(scope="module")
def server() -> Iterator[Launched]:
    with Launched.cli("--max-concurrent", "8", "--log-level", "warning", ready_s=300) as s:
        yield s


def test_through_the_server_with_the_openai_client(
    server: Launched, openai_client: Callable[..., Any]
) -> None:
    from openai import BadRequestError

    client = openai_client(server.base_url, 300)
    messages: Any = [{"role": "user", "content": PROMPT}]
    plain = client.chat.completions.create(
        model=MODEL, messages=messages, n=4, max_tokens=64, seed=2, response_format=FORMAT
    )  # type: ignore[call-overload]
    assert all(follows(json.loads(c.message.content or "")) for c in plain.choices)
    assert all(c.finish_reason == "stop" for c in plain.choices)
    voted = client.chat.completions.create(
        model=f"self_consistency:n=4@{MODEL}", messages=messages, max_tokens=64, seed=2,
        response_format=FORMAT,
    )  # type: ignore[call-overload]  # fmt: skip
    answer = voted.model_extra["testtime"]["answer"]  # type: ignore[index]
    assert follows(json.loads(answer)) and follows(json.loads(voted.choices[0].message.content))
    bad = {"type": "json_schema", "json_schema": {"name": "x", "schema": {
        "type": "integer", "minimum": 5, "maximum": 1}}}  # fmt: skip
    with pytest.raises(BadRequestError, match="minimum greater than maximum"):
        client.chat.completions.create(
            model=MODEL, messages=messages, max_tokens=8, response_format=bad
        )  # type: ignore[call-overload]
    with pytest.raises(BadRequestError, match="has no 'schema'"):
        client.chat.completions.create(
            model=MODEL, messages=messages, max_tokens=8,
            response_format={"type": "json_schema", "json_schema": {"name": "x"}},
        )  # type: ignore[call-overload]  # fmt: skip
