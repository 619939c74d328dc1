"""Selection for open-ended text on the embedded model (SmolLM2-135M-Instruct): each rule
ends with a chosen text, and its cost adds up to what its calls spent. Kept small (three
samples of at most 48 tokens) for two CPU cores; `generator` (conftest.py) is the model,
loaded once per module."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from testtime.core.cost import flops
from testtime.core.types import Problem, Result
from testtime.generators.base import Generator
from testtime.strategies.base import STRATEGIES
from testtime.strategies.run import solve

pytestmark = pytest.mark.integration

P = Problem.from_prompt("Write one sentence about rain.", id="rain")
MAX_TOKENS = 48


def run(gen: Generator, name: str, **params: Any) -> Result:
    spec = STRATEGIES.spec(name, params)
    return asyncio.run(solve(P, spec, gen, max_tokens=MAX_TOKENS, seed=0))


def costs_add_up(r: Result, gen: Generator) -> None:
    """Samples are the candidates, generated tokens theirs, FLOPs 2 x params x every token."""
    assert r.cost.samples == len(r.candidates)
    generated = sum(c.completion.generated_tokens for c in r.candidates if c.completion)
    assert r.cost.generated_tokens == generated
    assert all(c.completion and c.completion.generated_tokens <= MAX_TOKENS for c in r.candidates)
    assert r.cost.flops == pytest.approx(flops(gen.n_params, r.cost.tokens))
    assert not r.budget_exhausted


def test_the_model_says_its_context_window(generator: Generator) -> None:
    assert generator.context_window == 8192  # SmolLM2's max_position_embeddings


def test_usc_chooses_one_of_its_samples(generator: Generator) -> None:
    r = run(generator, "usc", n=3)
    assert r.chosen is not None and r.text and r.text.strip()
    assert r.trace is not None and len(r.candidates) == 3
    assert r.trace["by"] in ("judge", "vote", "first", "identical")
    if r.trace["by"] != "identical":  # the selector was asked (and paid) unless all agreed
        assert r.cost.verifier_calls == 1 and r.cost.verifier_tokens > 0
        assert "reply" in r.trace
    costs_add_up(r, generator)


def test_fusion_returns_the_aggregate(generator: Generator) -> None:
    r = run(generator, "fusion", n=3)
    assert r.trace is not None and r.trace["by"] == "aggregate"
    assert len(r.candidates) == 4 and r.chosen == 3
    assert r.text and r.text.strip() and r.text == r.candidates[3].text
    assert r.cost.verifier_calls == 0  # the aggregate is a sample (generation)
    costs_add_up(r, generator)


def test_the_tournament_asks_each_comparison_in_both_orders(generator: Generator) -> None:
    r = run(generator, "tournament", n=3)
    assert r.chosen is not None and r.text and r.text.strip()
    assert r.trace is not None and len(r.candidates) == 3
    games = r.trace["comparisons"]
    assert len(games) == len(r.trace["entrants"]) - 1  # a knockout: one fewer than entrants
    for game in games:
        first, second = game["orders"]
        assert (first["a"], first["b"]) == (second["b"], second["a"]) == tuple(game["pair"])
        assert all(isinstance(o["reply"], str) for o in (first, second))
    assert r.cost.verifier_calls == 2 * len(games)
    assert r.trace["unparsed"] == sum(o["parsed"] is None for g in games for o in g["orders"])
    costs_add_up(r, generator)


def test_genrm_reads_p_yes_of_the_embedded_models_verdict(generator: Generator) -> None:
    """The verdict question as the next turn: the model's first reply token has Yes and No
    among its top logprobs (continuing its own turn, it ended it at once)."""
    from testtime.strategies.run import build_verifier

    verifier = build_verifier(
        "genrm", {"votes": 2, "max_tokens": 32, "logprobs": True}, generator=generator
    )
    spec = STRATEGIES.spec("best_of_n", {"n": 2})
    r = asyncio.run(solve(P, spec, generator, verifier=verifier, max_tokens=MAX_TOKENS, seed=0))
    scores = [c.scores["genrm"] for c in r.candidates]
    assert len(scores) == 2 and all(0 < s < 1 for s in scores)  # P(Yes), not a text verdict
    distinct = len({c.text for c in r.candidates})
    assert r.cost.verifier_calls == distinct * (1 + 2)  # a verification call, then 2 verdicts
    assert r.cost.flops == pytest.approx(flops(generator.n_params, r.cost.tokens))
