"""A proxy chain over loopback: `testtime serve` on the embedded model as the upstream, a
second `testtime serve --upstream` in front of it running the strategies, the openai
client talking to the front. The costs the front reports are exactly what the upstream
spent; a client leaving the front stops the upstream's work too."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from testtime.server.launch import Launched

pytestmark = pytest.mark.integration

MODEL = "smollm2-135m"
PROMPT = "What is 17 + 25? Think step by step, then end with 'Answer: N'."
SAME = ("prompt_tokens", "cached_prompt_tokens", "generated_tokens", "samples", "flops")


@pytest.fixture(scope="module")
def chain() -> Iterator[tuple[Launched, Launched]]:
    with Launched.cli("--model", MODEL, "--log-level", "warning", ready_s=300) as upstream:
        front = Launched.cli(
            "--upstream", upstream.base_url, "--upstream-model", MODEL, "--log-level", "warning"
        )
        with front:
            yield upstream, front


def spent(server: Launched) -> dict[str, Any]:
    stats = httpx.get(f"{server.base_url}/testtime/stats", timeout=30).json()
    return stats["generator"]  # type: ignore[no-any-return]


def test_a_strategy_in_front_of_a_model_server_adds_up_the_costs(
    chain: tuple[Launched, Launched],
    openai_client: Callable[..., Any],
) -> None:
    upstream, front = chain
    before = spent(upstream)["cost"]
    client = openai_client(front.base_url, 300)
    reply = client.chat.completions.create(
        model=f"self_consistency:n=4@{MODEL}",
        messages=[{"role": "user", "content": PROMPT}],
        max_tokens=128,
        extra_body={"testtime": {"budget": "8 samples"}},
    )
    after = spent(upstream)["cost"]
    assert reply.usage is not None and reply.model_extra is not None
    ledger = reply.usage.model_extra["testtime"]  # type: ignore[index]
    assert reply.model_extra["testtime"]["candidates"] == 4
    for field in SAME:  # the front adopted the upstream's own ledger, call by call
        assert ledger[field] == pytest.approx(after[field] - before[field]), field
    assert ledger["samples"] == 4 and ledger["flops"] > 0  # FLOPs counted by the upstream
    assert reply.usage.completion_tokens == ledger["generated_tokens"]
    assert reply.choices[0].message.content


def test_a_stream_through_the_chain_shows_progress_and_the_answer(
    chain: tuple[Launched, Launched],
    openai_client: Callable[..., Any],
) -> None:
    _, front = chain
    client = openai_client(front.base_url, 300)
    chunks = list(
        client.chat.completions.create(
            model=f"adaptive_consistency:max_samples=3,threshold=1.0@{MODEL}",
            messages=[{"role": "user", "content": PROMPT}],
            max_tokens=64,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    done = [
        (c.model_extra or {})["testtime"]["samples"]
        for c in chunks
        if "samples" in (c.model_extra or {}).get("testtime", {})
    ]
    assert done[-1] == 3 and chunks[-1].usage is not None
    assert chunks[-1].usage.model_extra["testtime"]["samples"] == 3  # type: ignore[index]


def test_a_client_leaving_the_front_stops_the_upstream(chain: tuple[Launched, Launched]) -> None:
    upstream, front = chain
    body = {  # about a minute of decoding on 2 cores, unless cancelled
        "model": f"self_consistency:n=32,temperature=1.0@{MODEL}",
        "messages": [{"role": "user", "content": "Write a long story about a lighthouse."}],
        "max_tokens": 512,
    }
    cancelled = spent(upstream)["cancelled"]
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{front.base_url}/chat/completions", json=body, timeout=3)
    end = time.monotonic() + 5
    while spent(upstream)["in_flight"] and time.monotonic() < end:
        time.sleep(0.1)
    assert spent(upstream)["in_flight"] == 0 and spent(front)["in_flight"] == 0
    assert spent(upstream)["cancelled"] > cancelled  # the upstream was decoding, and stopped
    fresh = httpx.post(
        f"{front.base_url}/chat/completions",
        timeout=120,
        json={"model": MODEL, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 16},
    )
    assert fresh.status_code == 200
