"""Reasoning budgets through `testtime serve` as real processes over loopback (issue 17),
driven by the official `openai` client: reasoning_effort and the engines' thinking-budget
fields (sent as extra_body) reach a reasoning upstream exactly as sent through a proxy chain
(serve -> serve -> a mock engine), the upstream's reasoning text comes back as
`reasoning_content`, and its reasoning tokens land in `usage.completion_tokens_details`,
summed over samples and hops. A served model without an upstream answers reasoning_effort
by budget forcing: on the fake, and on the embedded model (SmolLM2-135M, which has no
thinking mode of its own: its thinking is s1's forced phase). Requests are short."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from testtime.server.launch import Launched

pytestmark = pytest.mark.integration

TIMEOUT = 180
Q = [{"role": "user", "content": "What is 3 + 4?"}]
ENGINE = {  # each engine's own budget field, as a client sends it in extra_body
    "thinking_token_budget": 128,  # vLLM
    "custom_params": {"thinking_budget": 128},  # SGLang
    "thinking_budget_tokens": 128,  # llama.cpp
    "chat_template_kwargs": {"enable_thinking": True},
}
THOUGHT = "Three and four make seven."
PER_SAMPLE = 9  # the mock engine's reasoning tokens per sample

# a reasoning engine as an OpenAI-compatible server: it records every body it gets
# (GET /bodies) and answers with reasoning_content and completion_tokens_details
ENGINE_SERVER = """
import sys
import uvicorn
from fastapi import FastAPI

app, bodies = FastAPI(), []

@app.get("/health")
def health():
    return {"status": "ok"}

@app.get("/bodies")
def seen():
    return bodies

@app.post("/v1/chat/completions")
def chat(body: dict):
    bodies.append(body)
    n = body.get("n", 1)
    choices = [{"index": i, "finish_reason": "stop", "message": {"role": "assistant",
                "reasoning_content": sys.argv[2], "content": "Answer: 7"}} for i in range(n)]
    usage = {"prompt_tokens": 12, "completion_tokens": 20 * n,
             "completion_tokens_details": {"reasoning_tokens": int(sys.argv[3]) * n}}
    return {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": choices, "usage": usage}

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


@pytest.fixture(scope="module")
def chain() -> Iterator[tuple[Launched, Launched]]:
    """(the mock engine, the front of serve -> serve -> engine)."""
    with Launched.python(ENGINE_SERVER, THOUGHT, str(PER_SAMPLE)) as engine:
        middle = Launched.cli("--upstream", engine.base_url, "--upstream-model", "m",
                              "--log-level", "warning")  # fmt: skip
        with middle:
            front = Launched.cli("--upstream", middle.base_url, "--upstream-model", "m",
                                 "--log-level", "warning")  # fmt: skip
            with front:
                yield engine, front


@pytest.fixture(scope="module")
def fake() -> Iterator[Launched]:
    with Launched.cli("--model", "fake", "--log-level", "warning") as s:
        yield s


def bodies(engine: Launched) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = httpx.get(f"{engine.url}/bodies", timeout=30).json()
    return got


def test_the_fields_cross_the_chain_as_sent_and_reasoning_comes_back(
    chain: tuple[Launched, Launched],
    openai_client: Callable[..., Any],
) -> None:
    engine, front = chain
    before = len(bodies(engine))
    got = openai_client(front.base_url, TIMEOUT).chat.completions.create(
        model="m", messages=Q, max_tokens=64, n=2, reasoning_effort="high", extra_body=ENGINE
    )
    sent = bodies(engine)[before:]
    assert sent and all(b["reasoning_effort"] == "high" for b in sent)
    assert all({k: b[k] for k in ENGINE} == ENGINE for b in sent)
    assert [c.message.model_extra["reasoning_content"] for c in got.choices] == [THOUGHT] * 2
    assert got.usage is not None and got.usage.completion_tokens_details is not None
    assert got.usage.completion_tokens_details.reasoning_tokens == 2 * PER_SAMPLE


def test_a_strategy_through_the_chain_sums_every_sample_s_reasoning(
    chain: tuple[Launched, Launched],
    openai_client: Callable[..., Any],
) -> None:
    engine, front = chain
    before = len(bodies(engine))
    got = openai_client(front.base_url, TIMEOUT).chat.completions.create(
        model="self_consistency:n=3@m", messages=Q, max_tokens=64, reasoning_effort="low",
        extra_body={"reasoning": {"effort": "low"}},
    )  # fmt: skip
    sent = bodies(engine)[before:]
    assert sum(b.get("n", 1) for b in sent) == 3
    assert all(b["reasoning_effort"] == "low" and b["reasoning"] == {"effort": "low"}
               for b in sent)  # fmt: skip
    assert got.usage is not None and got.usage.completion_tokens_details is not None
    assert got.usage.completion_tokens_details.reasoning_tokens == 3 * PER_SAMPLE
    ledger = got.usage.model_extra["testtime"]  # type: ignore[index]
    assert ledger["reasoning_tokens"] == 3 * PER_SAMPLE and ledger["samples"] == 3


def test_the_fake_answers_the_effort_by_budget_forcing_and_refuses_engine_fields(
    fake: Launched,
    openai_client: Callable[..., Any],
) -> None:
    import openai as oa

    client = openai_client(fake.base_url, TIMEOUT)
    got = client.chat.completions.create(
        model="fake", messages=Q, max_tokens=32, reasoning_effort="medium", seed=1
    )
    details = got.usage.completion_tokens_details if got.usage else None
    assert details is not None and 0 < (details.reasoning_tokens or 0) <= 16  # half of 32
    assert got.choices[0].message.model_extra["reasoning_content"]
    assert got.model_extra["testtime"]["reasoning"]["thinking_budget"] == 16  # type: ignore[index]
    with pytest.raises(oa.BadRequestError, match="thinking_token_budget"):
        client.chat.completions.create(
            model="fake", messages=Q, extra_body={"thinking_token_budget": 64}
        )
    with pytest.raises(oa.BadRequestError, match="reasoning_effort"):
        client.chat.completions.create(
            model="fake", messages=Q, extra_body={"reasoning_effort": "extreme"}
        )


def test_the_embedded_model_thinks_within_the_effort_s_budget(
    openai_client: Callable[..., Any],
) -> None:
    """SmolLM2-135M has no thinking mode: reasoning_effort low is s1's forced thinking phase
    of at most min(256, max_tokens // 2) tokens, then the answer in the rest; minimal is a
    plain answer with no reasoning."""
    with Launched.cli("--model", "smollm2-135m", "--log-level", "warning", ready_s=300) as real:
        client = openai_client(real.base_url, TIMEOUT)
        got = client.chat.completions.create(
            model="smollm2-135m", messages=Q, max_tokens=16, reasoning_effort="low", seed=0
        )
        plain = client.chat.completions.create(
            model="smollm2-135m", messages=Q, max_tokens=8, reasoning_effort="minimal", seed=0
        )
    assert got.usage is not None and got.usage.completion_tokens_details is not None
    thought = got.usage.completion_tokens_details.reasoning_tokens or 0
    assert 0 < thought <= 8 and got.usage.completion_tokens <= 16
    assert got.choices[0].message.model_extra["reasoning_content"]
    assert got.model_extra["testtime"]["reasoning"]["strategy"]["name"] == "budget_forcing"  # type: ignore[index]
    assert plain.usage is not None and plain.usage.completion_tokens_details is not None
    assert plain.usage.completion_tokens_details.reasoning_tokens == 0
    assert "reasoning_content" not in (plain.choices[0].message.model_extra or {})


def test_usage_details_parse_as_json_for_raw_clients(chain: tuple[Launched, Launched]) -> None:
    _, front = chain
    r = httpx.post(f"{front.base_url}/chat/completions", timeout=TIMEOUT, json={
        "model": "m", "messages": Q, "max_tokens": 16, "reasoning_effort": "minimal"})  # fmt: skip
    assert r.status_code == 200, r.text
    usage = json.loads(r.text)["usage"]
    assert usage["completion_tokens_details"] == {"reasoning_tokens": PER_SAMPLE}
