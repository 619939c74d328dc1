"""Fusion (mixture-of-agents) on the scripted fake: the aggregate is the answer and a sample,
proposers from several models charged at their own size, layers, budget and context
fallbacks, models opened once, and a server request."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

import testtime.strategies.fusion as fz
from testtime.core.budget import Budget
from testtime.core.cost import flops
from testtime.core.errors import ConfigError
from testtime.core.templates import fill
from testtime.core.types import Message, Problem, Result
from testtime.generators import models as models_module
from testtime.generators.base import Generator
from testtime.generators.fake import FakeGenerator, count_tokens
from testtime.server import Settings, create_app
from testtime.strategies.base import STRATEGIES
from testtime.strategies.run import build_verifier, solve
from testtime.strategies.select import CUT

Q = "Write a haiku about rain."
P = Problem.from_prompt(Q)
A, B, C = "Rain taps the roof.", "Grey clouds weep softly.", "Puddles hold the sky."
FUSED = "Rain taps the roof,\ngrey clouds weep softly,\npuddles hold the sky."


def run(
    gen: Generator, budget: Budget | None = None, problem: Problem = P, **params: Any
) -> Result:
    spec = STRATEGIES.spec("fusion", {"n": 3, **params})
    return asyncio.run(solve(problem, spec, gen, budget=budget, max_tokens=32))


@pytest.fixture
def models(monkeypatch: pytest.MonkeyPatch) -> dict[str, Generator]:
    """The process's opened models, empty for this test (tests put fakes in it by name)."""
    opened: dict[str, Generator] = {}
    monkeypatch.setattr(models_module, "OPENED", opened)
    return opened


def system(gen: FakeGenerator, i: int) -> str:
    first = gen.requests[i].messages[0]
    assert first.role == "system"
    return first.content


def test_the_aggregate_is_the_answer_and_a_sample() -> None:
    gen = FakeGenerator({Q: [A, B, C, FUSED]})  # in turn: 3 proposals, then the aggregate
    r = run(gen)
    assert r.text == FUSED and r.chosen == 3 and r.candidates[3].text == FUSED
    assert r.trace is not None and r.trace["by"] == "aggregate" and "fallback" not in r.trace
    assert r.trace["layers"] == [[0, 1, 2]] and r.trace["aggregator"] == "policy"
    aggregate = gen.requests[1]
    assert aggregate.messages == (
        Message("system", fill(fz.TEMPLATE, {"responses": f"1. {A}\n2. {B}\n3. {C}"})),
        Message("user", Q),
    )
    assert gen.requests[0].messages == P.messages  # layer 1 answers the problem itself
    assert r.cost.samples == len(r.candidates) == 4 and r.cost.verifier_calls == 0
    tokens = r.cost.prompt_tokens + r.cost.generated_tokens
    assert r.cost.flops == flops(gen.n_params, tokens)
    assert r.cost.generated_tokens == sum(
        c.completion.generated_tokens for c in r.candidates if c.completion
    )


def test_proposers_of_several_models_are_charged_at_their_own_size(
    models: dict[str, Generator],
) -> None:
    small = FakeGenerator({Q: ["small says rain"]}, n_params=10)
    big = FakeGenerator({Q: ["big says rain", FUSED]}, n_params=1000)
    models.update(small=small, big=big)
    policy = FakeGenerator({Q: ["never asked"]})
    r = run(policy, proposers=["small", "big"], aggregator="big")
    assert policy.requests == []
    texts = [c.text for c in r.candidates]
    assert texts == ["small says rain", "small says rain", "big says rain", FUSED]
    assert r.text == FUSED and r.trace is not None
    assert r.trace["layers"] == [[0, 2, 1]]  # in turn: small, big, small
    assert r.trace["proposers"] == ["small", "big"] and r.trace["aggregator"] == "big"
    assert [q.n for q in small.requests] == [2] and [q.n for q in big.requests] == [1, 1]
    shown = system(big, 1)
    assert "1. small says rain\n2. big says rain\n3. small says rain" in shown
    words = count_tokens("small says rain")
    want = (
        flops(10, small.count_prompt_tokens(small.requests[0]) + 2 * words)
        + flops(1000, big.count_prompt_tokens(big.requests[0]) + count_tokens("big says rain"))
        + flops(1000, big.count_prompt_tokens(big.requests[1]) + count_tokens(FUSED))
    )
    assert r.cost.flops == pytest.approx(want)
    assert r.cost.flops < flops(1000, r.cost.prompt_tokens + r.cost.generated_tokens)


def test_two_layers_show_each_layer_the_last() -> None:
    gen = FakeGenerator({Q: ["a1", "a2", "b1", "b2", FUSED]})
    r = run(gen, n=2, layers=2)
    assert r.trace is not None and r.trace["layers"] == [[0, 1], [2, 3]]
    assert gen.requests[0].messages == P.messages
    assert "1. a1\n2. a2" in system(gen, 1)  # layer 2 saw layer 1
    assert "1. b1\n2. b2" in system(gen, 2) and "a1" not in system(gen, 2)  # the aggregator
    assert r.text == FUSED and r.cost.samples == 5


def test_a_problem_with_a_system_message_keeps_it_first() -> None:
    gen = FakeGenerator({Q: [A, B, C, FUSED]})
    problem = Problem.from_prompt(Q, system="You are a poet.")
    run(gen, problem=problem)
    assert system(gen, 1).startswith("You are a poet.\n\nYou have been provided")
    assert [m.role for m in gen.requests[1].messages] == ["system", "user"]


def test_one_proposal_is_still_aggregated() -> None:
    gen = FakeGenerator({Q: [A, FUSED]})
    r = run(gen, n=1)
    assert r.text == FUSED and len(r.candidates) == 2
    assert system(gen, 1).endswith(f"Responses from models:\n1. {A}")


def test_identical_proposals_are_still_aggregated() -> None:
    gen = FakeGenerator({Q: [A, A, A, FUSED]})
    r = run(gen)
    assert r.text == FUSED and f"1. {A}\n2. {A}\n3. {A}" in system(gen, 1)


def test_a_budget_that_refuses_the_aggregate_returns_the_best_so_far() -> None:
    gen = FakeGenerator({Q: [A, B, C, FUSED]})
    r = run(gen, Budget(samples=3))
    assert r.budget_exhausted and len(r.candidates) == 3 and r.chosen == 0
    assert r.trace is not None and (r.trace["by"], r.trace["fallback"]) == ("first", "budget")
    agree = FakeGenerator({Q: ["Answer: 7", "Answer: 8", "So, 8.\n\nAnswer: 8"]})
    voted = run(agree, Budget(samples=3))
    assert voted.chosen == 1 and voted.trace is not None and voted.trace["by"] == "vote"


def test_a_budget_exhausted_mid_layer_stops_there() -> None:
    gen = FakeGenerator({Q: ["a1", "a2", "a3", "b1", FUSED]})
    r = run(gen, Budget(samples=4), layers=2)
    assert r.budget_exhausted and [c.text for c in r.candidates] == ["a1", "a2", "a3", "b1"]
    assert r.trace is not None and r.trace["layers"] == [[0, 1, 2], [3]]
    assert (r.trace["fallback"], r.chosen) == ("budget", 3)
    assert r.cost.samples == 4


def test_a_budget_too_small_for_any_proposal_is_an_empty_result() -> None:
    gen = FakeGenerator({Q: [A]})
    r = run(gen, Budget(tokens=1))
    assert (r.chosen, r.candidates, r.budget_exhausted) == (None, (), True)
    assert gen.requests == []


def test_long_proposals_lose_their_middle_to_fit_the_aggregators_context() -> None:
    long = [f"start {i} " + "rain " * 150 + f"end {i}" for i in range(3)]
    gen = FakeGenerator({Q: [*long, FUSED]})
    gen.context_window = 400
    spec = STRATEGIES.spec("fusion", {"n": 3})
    r = asyncio.run(solve(P, spec, gen, max_tokens=200))
    aggregate = gen.requests[1]
    assert gen.count_prompt_tokens(aggregate) <= 400 - 200
    assert system(gen, 1).count(CUT) == 3
    assert all(f"start {i}" in system(gen, 1) and f"end {i}" in system(gen, 1) for i in range(3))
    assert r.text == FUSED and r.trace is not None and r.trace["cut"] == 3


def test_an_aggregator_context_too_small_falls_back_without_calling_it() -> None:
    gen = FakeGenerator({Q: [A, B, C, FUSED]})
    gen.context_window = 100  # the template alone is longer than 100 - 32 tokens
    r = run(gen)
    assert len(gen.requests) == 1 and r.chosen == 0
    assert r.trace is not None and (r.trace["by"], r.trace["fallback"]) == ("first", "context")


def test_a_named_model_is_opened_once_through_the_registry(models: dict[str, Generator]) -> None:
    problem = Problem.from_prompt("What is 3 + 4?")
    first = run(FakeGenerator(), problem=problem, aggregator="fake", proposers=["fake"])
    assert list(models) == ["fake"] and isinstance(models["fake"], FakeGenerator)
    opened = models["fake"]
    run(FakeGenerator(), problem=problem, aggregator="fake")
    assert models["fake"] is opened and first.answer is not None


def test_a_model_named_in_several_places_loads_once(
    models: dict[str, Generator], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fusion's aggregator, a tournament's judge and GenRM's judge, all "the-model": one load,
    one generator that all three ask."""
    shared = FakeGenerator({"[Response A]": ["A"], Q: [FUSED]})  # a comparison, else Q
    loaded: list[str] = []

    def load(name: str) -> Generator:
        loaded.append(name)
        return shared

    monkeypatch.setattr(models_module, "load_generator", load)
    fused = run(FakeGenerator({Q: [A, B, C]}), aggregator="the-model")
    spec = STRATEGIES.spec("tournament", {"n": 2, "judge": "the-model"})
    judged = asyncio.run(solve(P, spec, FakeGenerator({Q: [A, B]}), max_tokens=32))
    verifier = build_verifier("genrm_model", {"judge": "the-model", "votes": 1})
    assert loaded == ["the-model"] and models == {"the-model": shared}
    assert verifier.generator is shared  # type: ignore[attr-defined]
    assert fused.text == FUSED and judged.trace is not None
    assert len(shared.requests) == 1 + 2  # the aggregate, then one comparison in both orders


def test_concurrent_first_uses_load_a_model_once(
    models: dict[str, Generator], monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded: list[str] = []

    def load(name: str) -> Generator:
        loaded.append(name)
        time.sleep(0.05)  # a slow load: the other threads arrive while it runs
        return FakeGenerator()

    monkeypatch.setattr(models_module, "load_generator", load)
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(models_module.opened, ["a"] * 6 + ["b"] * 2))
    assert sorted(loaded) == ["a", "b"] and len({id(g) for g in got}) == 2


def test_an_unknown_model_fails_before_anything_is_spent(models: dict[str, Generator]) -> None:
    gen = FakeGenerator({Q: [A]})
    with pytest.raises(ConfigError, match="unknown model 'no-such-model'"):
        run(gen, proposers=["no-such-model"])
    assert gen.requests == []


def test_a_prompt_without_responses_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"\{responses\}"):
        STRATEGIES.spec("fusion", {"prompt": "Write one answer."})
    with pytest.raises(ConfigError, match="'layers' must be > 0"):
        STRATEGIES.spec("fusion", {"layers": 0})


def server(gen: Generator) -> httpx.AsyncClient:
    app = create_app(Settings("fake"), gen)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def body(params: dict[str, Any]) -> dict[str, Any]:
    return {
        "model": "fake",
        "messages": [{"role": "user", "content": Q}],
        "testtime": {"strategy": "fusion", "params": params},
    }


async def test_it_runs_per_request_through_the_server() -> None:
    gen = FakeGenerator({Q: [A, B, C, FUSED]})
    async with server(gen) as c:
        r = await c.post("/v1/chat/completions", json=body({"n": 3}))
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["choices"][0]["message"]["content"] == FUSED
    assert got["testtime"]["chosen"] == 3 and got["testtime"]["candidates"] == 4
    assert got["usage"]["testtime"]["samples"] == 4


@pytest.mark.parametrize("params", [{"aggregator": "fake"}, {"proposers": ["", "http://x/v1#m"]}])
async def test_a_server_refuses_to_open_a_model_a_request_names(
    params: dict[str, Any], models: dict[str, Generator]
) -> None:
    gen = FakeGenerator({Q: [A]})
    async with server(gen) as c:
        r = await c.post("/v1/chat/completions", json=body(params))
    assert r.status_code == 400
    message = r.json()["error"]["message"]
    assert "names a model to open" in message and "'fake'" in message
    assert gen.requests == [] and models == {}


async def test_a_server_lets_the_spec_refuse_a_proposer_that_is_no_name() -> None:
    async with server(FakeGenerator({Q: [A]})) as c:
        r = await c.post("/v1/chat/completions", json=body({"proposers": [5]}))
    assert r.status_code == 400
    assert "parameter 'proposers' must be a list" in r.json()["error"]["message"]


async def test_a_server_takes_the_policy_spelled_empty() -> None:
    gen = FakeGenerator({Q: [A, B, FUSED]})
    async with server(gen) as c:
        r = await c.post(
            "/v1/chat/completions", json=body({"n": 2, "aggregator": "", "proposers": [""]})
        )
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == FUSED


def test_the_spec_is_json_with_a_list_of_proposers() -> None:
    spec = STRATEGIES.spec("fusion", {"proposers": ["a", "b"]})
    assert spec.params.proposers == ("a", "b")  # type: ignore[attr-defined]
    assert spec.to_dict()["params"]["proposers"] == ["a", "b"]
