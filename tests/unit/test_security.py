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


# -- every size has a maximum -------------------------------------------------------------
def _size_fields() -> list[tuple[Any, str, str]]:
    import dataclasses
    import typing

    import testtime.tasks
    import testtime.verifiers  # noqa: F401
    from testtime.core.registry import NOT_SIZES
    from testtime.tasks.base import TASKS
    from testtime.verifiers.base import VERIFIERS

    out = []
    for registry in (STRATEGIES, VERIFIERS, TASKS):
        for name in registry.names():
            params = registry.get(name).params
            hints = typing.get_type_hints(params)
            for f in dataclasses.fields(params):
                is_int = int in (hints[f.name], *typing.get_args(hints[f.name]))
                if is_int and f.name not in NOT_SIZES:
                    out.append((registry, name, f.name))
    return out


@pytest.mark.parametrize(
    ("registry", "name", "field"),
    _size_fields(),
    ids=lambda x: x if isinstance(x, str) else x.kind,
)
def test_every_size_parameter_has_a_maximum(registry: Any, name: str, field: str) -> None:
    from testtime.core.registry import MAX_PARAM

    with pytest.raises(ConfigError, match=rf"'{field}' = {MAX_PARAM + 1} is above the max") as e:
        registry.spec(name, {field: MAX_PARAM + 1})
    assert "TESTTIME_MAX_PARAM" in str(e.value) and "\n" not in str(e.value)


def test_the_maximum_can_be_raised_for_the_library(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESTTIME_MAX_PARAM", "200000")
    assert STRATEGIES.spec("self_consistency", {"n": 100_000}).params.n == 100_000  # type: ignore[attr-defined]
    monkeypatch.setenv("TESTTIME_MAX_PARAM", "lots")
    with pytest.raises(ConfigError, match="TESTTIME_MAX_PARAM='lots' must be a positive"):
        STRATEGIES.spec("self_consistency", {"n": 8})


def test_a_huge_n_on_the_cli_is_a_quick_one_line_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    from testtime.cli import main

    argv = ["testtime", "run", "What is 3 + 4?", "--model", "fake", "-s", "self_consistency"]
    monkeypatch.setattr(sys, "argv", [*argv, "-p", "n=100000000"])
    started = time.perf_counter()
    with pytest.raises(SystemExit) as info:
        main()
    err = capsys.readouterr().err
    assert info.value.code == 2 and time.perf_counter() - started < 5
    assert "'n' = 100000000 is above the maximum of 65536" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "testtime",
    [
        {"strategy": "self_consistency", "params": {"n": 5000}},
        {"strategy": "budget_forcing", "params": {"thinking_tokens": 100_000}},
        {
            "strategy": "single",
            "verifier": {"name": "judge", "params": {"max_solution_tokens": 10**6}},
        },
    ],
)
async def test_the_server_caps_every_size_parameter(testtime: dict[str, Any]) -> None:
    async with client(max_param=4096) as c:
        r = await chat(c, testtime=testtime)
    assert r.status_code == 400
    message = r.json()["error"]["message"]
    assert "above the maximum of 4096" in message and "--max-param" in message
