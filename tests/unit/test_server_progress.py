"""The server's progress wrappers: a judge's or aggregator's replies (`Context.ask`) are not
samples in the streamed progress, and every relay reports the served model's context."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from testtime.core.types import Message, Request
from testtime.generators.base import Generator
from testtime.generators.fake import FakeGenerator
from testtime.server import Settings, create_app
from testtime.server.limits import Charged, Key, Quota
from testtime.server.progress import Metered, Observed
from testtime.server.work import Logprobs

Q = "Write a haiku about rain."
HAIKUS = [
    "Rain on the tin roof\nsoft drums for a sleeping town\npuddles hold the sky",
    "Grey clouds fold the hills\nrain writes on the window pane\nthe kettle answers",
    "Rain on the old roof\nsoft drums for a quiet town\npuddles keep the sky",
]
USC_PROMPT = "Evaluate these responses"  # in USC's selection prompt only
COMPARISON = "[Response A]"  # in the tournament's comparison prompt only


def client(gen: Generator) -> httpx.AsyncClient:
    app = create_app(Settings("fake"), gen)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def post(gen: Generator, testtime: dict[str, Any], stream: bool) -> httpx.Response:
    body: dict[str, Any] = {"model": "fake", "messages": [{"role": "user", "content": Q}]}
    if stream:  # usage comes in a stream only when asked for
        body.update(stream=True, stream_options={"include_usage": True})
    async with client(gen) as c:
        return await c.post("/v1/chat/completions", json={**body, "testtime": testtime})


def chunks(text: str) -> list[dict[str, Any]]:
    """The JSON data of each SSE event, [DONE] left out."""
    lines = [line[6:] for line in text.splitlines() if line.startswith("data: ")]
    return [json.loads(data) for data in lines if data != "[DONE]"]


@pytest.mark.parametrize(
    ("strategy", "judge_key", "reply", "asks"),
    [
        ("usc", USC_PROMPT, "1", 1),  # one selection, "1": Response 1
        ("tournament", COMPARISON, "A", 4),  # 3 entrants: two comparisons, both orders each
    ],
)
async def test_a_judges_replies_are_not_samples_in_the_stream(
    strategy: str, judge_key: str, reply: str, asks: int
) -> None:
    gen = FakeGenerator({judge_key: [reply], Q: HAIKUS}, latency=0.01)
    r = await post(gen, {"strategy": strategy, "params": {"n": 3}}, stream=True)
    assert r.status_code == 200, r.text
    got = chunks(r.text)
    progress = [ch["testtime"] for ch in got if "samples" in ch.get("testtime", {})]
    usage = got[-1]["usage"]["testtime"]
    assert usage["samples"] == 3 and usage["verifier_calls"] == asks
    counts = [p["samples"] for p in progress]
    assert counts == sorted(counts) and max(counts) <= 3 and counts[-1] == 3
    assert all(p["cost"]["samples"] <= 3 for p in progress)
    leaders = [p["leader"]["answer"] for p in progress if p["leader"] is not None]
    assert leaders and reply not in leaders  # never the judge's "1" or "A"
    last = progress[-1]["cost"]  # the judge's calls itemised as the ledger counts them
    for field in ("samples", "generated_tokens", "verifier_calls", "verifier_tokens", "flops"):
        assert last[field] == usage[field], field
    assert progress[-1]["generator_calls"] == usage["generator_calls"]


def test_every_relay_reports_the_served_models_context_window() -> None:
    gen = FakeGenerator()
    gen.context_window = 2048
    metered = Metered(gen)
    observed = Observed(Charged(metered, Quota(Key("k"))))
    assert metered.context_window == observed.context_window == 2048
    assert Logprobs(observed).context_window == 2048


async def test_a_strategy_behind_the_server_fits_the_served_models_context() -> None:
    """USC's selection prompt cannot fit a context of 100 tokens, so it falls back without
    asking; not knowing the context (None), it asked the model anyway."""
    gen = FakeGenerator({USC_PROMPT: ["1"], Q: HAIKUS})
    gen.context_window = 100
    r = await post(gen, {"strategy": "usc", "params": {"n": 3}}, stream=False)
    assert r.status_code == 200, r.text
    assert not any(USC_PROMPT in x.messages[-1].content for x in gen.requests)
    assert r.json()["usage"]["testtime"]["verifier_calls"] == 0


async def test_a_search_step_is_drawn_but_not_voted_until_its_solution_ends() -> None:
    """A call cut at its stop string (a search's step) is a node with no answer yet: the
    leader of a live search is never a step's half-written number, only finished ones."""
    solution = "3 + 4 = 7.\n\n7 * 5 = 35.\n\nThe answer is 35."
    observed = Observed(FakeGenerator({"What is (3 + 4) * 5?": [solution]}))
    chat = (Message("user", "What is (3 + 4) * 5?"),)
    first = await observed.generate(Request(chat, stop=("\n\n",)))
    assert first.completions[0].text == "3 + 4 = 7."
    assert observed.snapshot()["leader"] is None and observed.snapshot()["samples"] == 1
    second = await observed.generate(Request(chat, prefix="3 + 4 = 7.\n\n", stop=("\n\n",)))
    assert second.completions[0].text == "7 * 5 = 35."
    assert observed.snapshot()["leader"] is None
    await observed.generate(Request(chat, prefix="3 + 4 = 7.\n\n7 * 5 = 35.\n\n", stop=("\n\n",)))
    snap = observed.snapshot()
    assert snap["samples"] == 3 and snap["leader"] == {"answer": "35", "votes": 1, "answered": 1}
    assert [c.parent for c in observed.candidates] == [None, 0, 1]  # the tree is still drawn
