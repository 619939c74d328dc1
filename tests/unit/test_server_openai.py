"""The OpenAI contract in process (httpx's ASGI transport) on the fake generator:
`GET /v1/models/{id}`, `POST /v1/completions`, and the smaller differences from OpenAI's
protocol (issue 17). The real server process, the official client and the embedded model
are in tests/integration/test_openai_conformance.py."""

from __future__ import annotations

import json
from typing import Any

import httpx

from testtime.generators.base import Generator
from testtime.generators.fake import FakeGenerator
from testtime.server import Settings, create_app

Q = "What is 3 + 4?"
USER = [{"role": "user", "content": Q}]


def client(gen: Generator | None = None, **settings: Any) -> httpx.AsyncClient:
    app = create_app(Settings("fake", **settings), gen or FakeGenerator())
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def events(text: str) -> list[Any]:
    """The data of each SSE event ('[DONE]' kept as a string)."""
    out: list[Any] = []
    for line in text.splitlines():
        if line.startswith("data: "):
            out.append(line[6:] if line[6:] == "[DONE]" else json.loads(line[6:]))
    return out


# -- GET /v1/models/{id} ---------------------------------------------------------------------
async def test_one_model_is_found_by_its_id_plain_or_under_a_strategy() -> None:
    async with client() as c:
        plain = await c.get("/v1/models/fake")
        voted = await c.get("/v1/models/self_consistency:n=4@fake")
        listed = (await c.get("/v1/models")).json()["data"]
    assert plain.status_code == 200 and plain.json()["id"] == "fake"
    assert plain.json()["object"] == "model" and plain.json()["owned_by"] == "testtime"
    body = voted.json()
    assert body["id"] == "self_consistency:n=4@fake"
    assert body["testtime"]["strategy"] == "self_consistency"
    assert body["testtime"]["params"]["n"] == 4  # the name's parameters over the defaults
    assert {m["id"] for m in listed} >= {"fake", "self_consistency@fake"}


async def test_an_unknown_model_id_is_a_404_in_openai_shape() -> None:
    async with client() as c:
        for name in ("other", "nope@fake", "self_consistency:zz=1@fake", "org/model"):
            r = await c.get(f"/v1/models/{name}")
            assert r.status_code == 404, name
            error = r.json()["error"]
            assert error["code"] == "model_not_found" and "/v1/models" in error["message"]
