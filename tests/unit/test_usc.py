"""Universal self-consistency on the scripted fake: the selector's choice, its fallbacks
(unparsed reply, budget, context), the reply formats it reads, and a server request."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import httpx
import pytest

from testtime.core.budget import Budget
from testtime.core.cost import flops
from testtime.core.types import Problem, Request, Result
from testtime.generators.fake import FakeGenerator, Texts, count_tokens
from testtime.server import Settings, create_app
from testtime.strategies.base import STRATEGIES
from testtime.strategies.run import solve
from testtime.strategies.select import CUT
from testtime.strategies.usc import picked

Q = "Write a haiku about rain."
P = Problem.from_prompt(Q)
HAIKUS = [
    "Rain on the tin roof\nsoft drums for a sleeping town\npuddles hold the sky",
    "Grey clouds fold the hills\nrain writes on the window pane\nthe kettle answers",
    "Rain on the old roof\nsoft drums for a quiet town\npuddles keep the sky",
]
SELECT = "Evaluate these responses"  # in the selection prompt, not in the problem's


def fake(replies: Texts, samples: Texts = HAIKUS, **kw: Any) -> FakeGenerator:
    """Samples for the problem and `replies` for the selector (its key first: its prompt
    holds the problem's text too)."""
    scripts: Mapping[str, Texts] = {SELECT: replies, Q: samples}
    return FakeGenerator(scripts, **kw)


def run(
    gen: FakeGenerator, budget: Budget | None = None, max_tokens: int = 32, **params: Any
) -> Result:
    spec = STRATEGIES.spec("usc", {"n": 3, **params})
    return asyncio.run(solve(P, spec, gen, budget=budget, max_tokens=max_tokens))


def selections(gen: FakeGenerator) -> list[Request]:
    return [r for r in gen.requests if SELECT in r.messages[-1].content]


def test_the_selectors_choice_is_returned_and_charged_as_verifier_cost() -> None:
    gen = fake(["The most consistent response is Response 3."])
    r = run(gen)
    assert r.text == HAIKUS[2] and r.chosen == 2
    assert r.trace is not None and r.trace["by"] == "judge" and r.trace["selected"] == 3
    assert "fallback" not in r.trace
    (asked,) = selections(gen)
    shown = asked.messages[-1].content
    assert all(f"Response {i}: {t}" in shown for i, t in enumerate(HAIKUS, 1)) and Q in shown
    assert asked.temperature == 0.0 and asked.max_tokens == 32
    assert r.cost.samples == len(r.candidates) == 3 and r.cost.verifier_calls == 1
    reply = count_tokens("The most consistent response is Response 3.")
    assert r.cost.verifier_tokens == gen.count_prompt_tokens(asked) + reply
    policy = r.cost.prompt_tokens + r.cost.generated_tokens
    assert r.cost.flops == flops(gen.n_params, policy + r.cost.verifier_tokens)


@pytest.mark.parametrize(
    ("reply", "index"),
    [
        ("Response 3", 2),
        ("3", 2),
        ("The most consistent response is Response 3.", 2),
        ("**Response #2**", 1),
        ("the most consistent response is: 1", 0),
        ("Response 1 and Response 3 agree, so the most consistent response is Response 3", 2),
        ("Responses 1 and 2 differ. Response 2 is closest to the others.", 1),
        ("I pick (2).", 1),
        ("Response 0", None),  # numbered from 1
        ("The most consistent response is Response 4", None),  # out of range
        ("1 or 2", None),  # two numbers, no response named
        ("They are all lovely.", None),
        ("Response " + "9" * 5000, None),  # a huge number is no crash
        ("", None),
    ],
)
def test_the_reply_formats_it_reads(reply: str, index: int | None) -> None:
    assert picked(reply, 3) == index


def test_an_unparsed_reply_falls_back_to_the_first_sample_and_says_so() -> None:
    gen = fake(["They are all lovely haiku."])
    r = run(gen)
    assert r.chosen == 0 and r.trace is not None
    assert (r.trace["by"], r.trace["fallback"]) == ("first", "unparsed")
    assert r.trace["reply"] == "They are all lovely haiku."
    assert r.cost.verifier_calls == 1  # the useless reply is still paid for


def test_an_unparsed_reply_falls_back_to_a_vote_when_answers_agree() -> None:
    samples = ["So it is 7.\n\nAnswer: 7", "Hence 8.\n\nAnswer: 8", "Thus 8.\n\nAnswer: 8"]
    r = run(fake(["Response zero"], samples))
    assert r.chosen == 1 and r.trace is not None
    assert (r.trace["by"], r.trace["fallback"]) == ("vote", "unparsed")


def test_a_judge_that_always_says_the_first_gets_the_first() -> None:
    gen = fake(["The most consistent response is Response 1."], HAIKUS[::-1])
    r = run(gen)
    assert r.text == HAIKUS[2] and r.trace is not None and r.trace["by"] == "judge"


def test_one_sample_is_returned_without_asking() -> None:
    gen = fake(["Response 1"])
    r = run(gen, n=1)
    assert r.chosen == 0 and r.trace is not None and r.trace["by"] == "only"
    assert selections(gen) == [] and r.cost.verifier_calls == 0


def test_identical_samples_need_no_judge() -> None:
    gen = fake(["Response 2"], [HAIKUS[0], HAIKUS[0] + "\n"])
    r = run(gen, n=4)
    assert r.chosen == 0 and r.trace is not None and r.trace["by"] == "identical"
    assert selections(gen) == [] and r.cost.verifier_calls == 0


def test_a_samples_budget_stops_sampling_and_still_selects() -> None:
    gen = fake(["Response 2"])
    r = run(gen, Budget(samples=2), n=4)
    assert len(r.candidates) == 2 and r.budget_exhausted
    assert r.chosen == 1 and r.trace is not None and r.trace["by"] == "judge"


def test_a_budget_that_refuses_the_selector_returns_the_best_so_far() -> None:
    gen = fake(["Response 2"])
    prompt = gen.count_prompt_tokens(Request(P.messages))
    budget = Budget(flops=flops(gen.n_params, prompt + 3 * 32))  # the 3 samples, no more
    r = run(gen, budget)
    assert len(r.candidates) == 3 and r.budget_exhausted
    assert r.chosen == 0 and r.trace is not None
    assert (r.trace["by"], r.trace["fallback"]) == ("first", "budget")
    assert selections(gen) == [] and r.cost.flops <= budget.flops  # type: ignore[operator]


def test_long_responses_lose_their_middle_to_fit_the_context() -> None:
    long = [f"{h}\n" + "more rain " * 60 + f"end {i}" for i, h in enumerate(HAIKUS)]
    gen = fake(["Response 2"], long)
    gen.context_window = 300
    r = run(gen, max_tokens=200)
    (asked,) = selections(gen)
    assert gen.count_prompt_tokens(asked) <= 300 - 32
    shown = asked.messages[-1].content
    assert shown.count(CUT) == 3 and all(f"end {i}" in shown for i in range(3))
    assert r.trace is not None and r.trace["cut"] == 3 and r.chosen == 1


def test_a_context_too_small_for_the_selection_prompt_falls_back() -> None:
    gen = fake(["Response 2"])
    gen.context_window = 60
    r = run(gen)
    assert selections(gen) == [] and r.chosen == 0 and r.trace is not None
    assert (r.trace["by"], r.trace["fallback"]) == ("first", "context")


def test_max_prompt_tokens_bounds_the_prompt_without_a_known_context() -> None:
    long = [h + " and the rain goes on" * 40 for h in HAIKUS]
    gen = fake(["Response 3"], long)
    r = run(gen, max_tokens=200, max_prompt_tokens=250)
    (asked,) = selections(gen)
    assert gen.count_prompt_tokens(asked) <= 250 and CUT in asked.messages[-1].content
    assert r.chosen == 2


def test_a_prompt_without_responses_is_refused() -> None:
    from testtime.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"\{responses\}"):
        STRATEGIES.spec("usc", {"prompt": "Which of these about {problem} is best?"})
    with pytest.raises(ConfigError, match="may use"):
        STRATEGIES.spec("usc", {"prompt": "{responses} {responses:>9}"})


def test_a_custom_prompt_is_used() -> None:
    gen = FakeGenerator({"Pick one": ["2"], Q: HAIKUS})
    r = run(gen, prompt="Pick one for {problem}:\n{responses}")
    assert r.chosen == 1
    assert any(x.messages[-1].content.startswith("Pick one for") for x in gen.requests)


async def test_it_runs_per_request_through_the_server() -> None:
    gen = fake(["The most consistent response is Response 2."])
    app = create_app(Settings("fake"), gen)
    body = {
        "model": "fake",
        "messages": [{"role": "user", "content": Q}],
        "testtime": {"strategy": "usc", "params": {"n": 3}},
    }
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        r = await c.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["choices"][0]["message"]["content"] == HAIKUS[1]
    assert got["testtime"]["chosen"] == 1 and got["testtime"]["candidates"] == 3
    usage = got["usage"]["testtime"]
    assert usage["samples"] == 3 and usage["verifier_calls"] == 1 and usage["verifier_tokens"] > 0
