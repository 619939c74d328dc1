"""Attacks on the server and the CLI (issue 13, section 3), each refused: request text used as
a format string, files named in requests, concurrent requests on a capped key, sizes that
grow without bound. reasoning-gym scorers: tests/unit/test_reasoning_gym_safety.py."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from testtime.core.errors import ConfigError
from testtime.generators.fake import FakeGenerator
from testtime.server import Settings, create_app
from testtime.strategies.base import STRATEGIES

USER = [{"role": "user", "content": "What is 3 + 4?"}]


def client(gen: FakeGenerator | None = None, **settings: Any) -> httpx.AsyncClient:
    app = create_app(Settings("fake", **settings), gen or FakeGenerator())
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def chat(c: httpx.AsyncClient, headers: dict[str, str] | None = None, **body: Any) -> Any:
    return await c.post(
        "/v1/chat/completions",
        headers=headers or {},
        json={"model": "fake", "messages": USER, **body},
    )


# -- request text is never a format string --------------------------------------------------
FORMAT_ATTACKS = [
    ("retry", "{score:>30000000}"),  # a 30 MB pad (the 300 MB took 52 s and 2 GB)
    ("retry", "{score.__class__.__mro__}"),
    ("retry", "{rejected[0]}"),
    ("retry", "{score!r}"),
    ("retry", "{0}"),
    ("rejected", "{step:>30000000}"),
    ("rejected", "{step.__class__}"),
    ("retry", "{rejected}{rejected}"),  # each field once: output stays linear
]


@pytest.mark.parametrize(("param", "template"), FORMAT_ATTACKS)
def test_refine_templates_take_named_fields_only(param: str, template: str) -> None:
    started = time.perf_counter()
    with pytest.raises(ConfigError, match=f"parameter '{param}' may use") as refused:
        STRATEGIES.spec("refine", {param: template})
    assert time.perf_counter() - started < 0.5  # refused, not padded first
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize("template", ["{score.__class__}", "{score:>30000000}"])
async def test_a_format_string_in_a_request_is_a_quick_400(template: str) -> None:
    started = time.perf_counter()
    async with client() as c:
        r = await chat(
            c,
            testtime={
                "strategy": "refine",
                "params": {"n": 2, "sequential": 2, "retry": template},
                "verifier": "self_certainty",
            },
        )
    assert r.status_code == 400, r.text[:300]
    assert "may use {score}, {rejected}" in r.json()["error"]["message"]
    assert time.perf_counter() - started < 2


def test_fill_substitutes_fields_once_and_keeps_values_literal() -> None:
    from testtime.strategies.refine import fill

    values = {"score": "0.25", "rejected": "{score} {{"}
    assert fill("a {score}{rejected} {{x}}", values) == "a 0.25{score} {{ {x}"
    assert fill("{score:.2f}", {"score": "0.50"}) == "0.50"  # the old default's spelling
    for bad in ("{", "}", "{x}", "{score}}"):
        with pytest.raises(ConfigError):
            fill(bad, values)


def test_refine_templates_are_bounded_in_length() -> None:
    with pytest.raises(ConfigError, match="at most 4000"):
        STRATEGIES.spec("refine", {"rejected": "x" * 4001})
    with pytest.raises(ConfigError, match="at most 4000"):
        STRATEGIES.spec("revise", {"retry": "x" * 4001})
