"""DeepConf on the embedded model (SmolLM2-135M-Instruct): the engine's top-20 logprobs give
every trace a confidence, the filter and the weighted vote run on them, and free text says
it is all singletons. Small (four samples of at most 24 tokens) for two CPU cores."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from testtime.core.types import Problem, Result
from testtime.core.voting import SINGLETONS
from testtime.generators.base import Generator
from testtime.strategies.base import STRATEGIES
from testtime.strategies.run import solve

pytestmark = pytest.mark.integration


def run(gen: Generator, prompt: str, **params: Any) -> Result:
    spec = STRATEGIES.spec("deepconf", params)
    return asyncio.run(solve(Problem.from_prompt(prompt), spec, gen, max_tokens=24, seed=0))


def test_offline_confidences_filter_and_weigh_the_vote(generator: Generator) -> None:
    r = run(generator, "What is 12 + 7? Answer with the number.", mode="offline", n=4, eta=0.5)
    t = r.trace or {}
    conf = t["confidences"]
    assert len(conf) == 4 and all(c is not None and c > 0 for c in conf)
    kept = [i for i in range(4) if i not in t["filtered"]]
    assert kept and min(conf[i] for i in kept) >= t["threshold"]
    assert all(conf[i] < t["threshold"] for i in t["filtered"])
    assert r.chosen in kept


def test_free_text_is_all_singletons_and_the_most_confident_is_chosen(
    generator: Generator,
) -> None:
    r = run(generator, "Write a haiku about rain.", mode="offline", n=3, eta=1.0)
    t = r.trace or {}
    assert (t["groups"], t["selection"]) == (SINGLETONS, "confidence")
    assert r.chosen == t["confidences"].index(max(t["confidences"]))
