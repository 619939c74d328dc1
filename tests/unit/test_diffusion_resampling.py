"""LLM particle filtering and diffusion FK steering resample through one function,
`testtime.core.resampling`: replacing core's multinomial and systematic draws is seen by
both, so there is no second copy of the numerics anywhere."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence

import pytest

from testtime.core import resampling
from testtime.core.types import Problem
from testtime.diffusion.gmm import LinearReward, MixtureDenoiser
from testtime.diffusion.run import solve as diffuse
from testtime.diffusion.run import strategy_spec
from testtime.generators.fake import FakeGenerator
from testtime.strategies.base import STRATEGIES
from testtime.strategies.run import build_verifier, solve

LLM = Problem.from_prompt("What is (3 + 4) * 2?", answer="14", id="p")
SCRIPT = {
    "3 + 4 = 7\n\n7 * 2 = 14\n\nAnswer: 14": 0.5,
    "3 + 4 = 8\n\n8 * 2 = 16\n\nAnswer: 16": 0.5,
}


def _spy(monkeypatch: pytest.MonkeyPatch, name: str) -> list[int]:
    """Replace core's draw `name` by one that records each call's size, then delegates."""
    calls: list[int] = []
    real: Callable[[Sequence[float], int, random.Random], list[int]] = getattr(resampling, name)

    def spy(weights: Sequence[float], n: int, rng: random.Random) -> list[int]:
        calls.append(n)
        return real(weights, n, rng)

    monkeypatch.setattr(resampling, name, spy)
    return calls


@pytest.mark.parametrize("draw", ["multinomial", "systematic"])
def test_llm_and_diffusion_particles_share_core_resampling(
    monkeypatch: pytest.MonkeyPatch, draw: str
) -> None:
    calls = _spy(monkeypatch, draw)
    gen = FakeGenerator({LLM.messages[-1].content: SCRIPT}, n_params=1000)
    llm = STRATEGIES.spec("particle_filtering", {"particles": 6, "resample": draw})
    asyncio.run(solve(LLM, llm, gen, verifier=build_verifier("step_check")))
    llm_calls = len(calls)
    assert llm_calls > 0 and set(calls) == {6}

    fk = strategy_spec("fk_steering", {"particles": 5, "steps": 6, "interval": 2, "resample": draw})
    out = diffuse(Problem.from_prompt("gmm"), fk, MixtureDenoiser(), LinearReward())
    assert len(calls) > llm_calls and set(calls[llm_calls:]) == {5}
    trace = out.result.trace
    assert trace is not None
    resampled = sum(c["resampled"] for c in trace["checkpoints"])
    assert len(calls) - llm_calls == resampled + 1  # every checkpoint before the last, + final
