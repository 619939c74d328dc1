"""Exactness on a 2-D Gaussian mixture whose noisy marginals are known in closed form:
the samplers reproduce the data distribution, and FK steering samples the exactly known
reward-tilted target p(x) exp(lam r(x)) / Z."""

from __future__ import annotations

import pytest
import torch

from testtime.core.types import Problem
from testtime.diffusion.gmm import LinearReward, MixtureDenoiser, default_mixture
from testtime.diffusion.run import solve, strategy_spec
from testtime.diffusion.schedule import VP, Flow

P = Problem.from_prompt("a point of the mixture", id="gmm")
N = 10_000


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def _moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.to(torch.float64)
    return x.mean(0), torch.cov(x.T)


def test_the_closed_form_tilt_matches_importance_weighting() -> None:
    mix, c, lam = default_mixture(), torch.tensor([1.0, 0.5], dtype=torch.float64), 1.0
    x = mix.sample(400_000, torch.Generator().manual_seed(0))
    w = torch.softmax(lam * x @ c, 0)
    mean, _ = mix.tilt(c, lam).moments()
    assert torch.allclose((w[:, None] * x).sum(0), mean, atol=0.03)


@pytest.mark.parametrize("schedule", [VP(), Flow()], ids=["vp", "flow"])
@pytest.mark.parametrize("sampler", ["ddim", "ddpm", "euler"])
def test_samplers_with_the_exact_denoiser_reproduce_the_mixture(schedule, sampler) -> None:  # type: ignore[no-untyped-def]
    spec = strategy_spec("best_of_n", {"n": N // 2, "steps": 100, "sampler": sampler})
    out = solve(P, spec, MixtureDenoiser(schedule=schedule), LinearReward(), max_batch=N)
    mean, cov = _moments(out.images)
    true_mean, true_cov = default_mixture().moments()
    assert torch.allclose(mean, true_mean, atol=0.06)
    assert torch.allclose(cov, true_cov, rtol=0.06, atol=0.06)


@pytest.mark.parametrize(("ess_threshold", "resample"), [(1.0, "multinomial"), (0.5, "systematic")])
def test_fk_steering_samples_the_exact_tilted_target(ess_threshold, resample) -> None:  # type: ignore[no-untyped-def]
    """10k particles, the `diff` potential (whose product telescopes to exp(lam r(x0)));
    mean within 0.06 and covariance within 8% of the closed-form tilted mixture."""
    lam = 1.0
    spec = strategy_spec("fk_steering", {
        "particles": N, "steps": 200, "lam": lam, "potential": "diff", "interval": 10,
        "ess_threshold": ess_threshold, "resample": resample,
    })  # fmt: skip
    reward = LinearReward()
    out = solve(P, spec, MixtureDenoiser(), reward, max_batch=N, seed=1)
    assert out.result.trace is not None
    sample = out.images[out.result.trace["final_ancestors"]]
    mean, cov = _moments(sample)
    target_mean, target_cov = default_mixture().tilt(reward.c, lam).moments()
    base_mean, _ = default_mixture().moments()
    assert torch.allclose(mean, target_mean, atol=0.06)
    assert torch.allclose(cov, target_cov, rtol=0.08, atol=0.08)
    assert (target_mean - base_mean).norm() > 1.5  # the tilt moved the target far away
    assert out.result.cost.nfe == N * 200
