"""One denoising step from time t to an earlier time s, for every sampler.

- `ddim` (Song et al. 2021): x_s = alpha_s x0 + sqrt(sigma_s^2 - c^2) eps + c z with
  c = eta * (the DDPM posterior std); eta = 0 is deterministic (and, on the flow
  schedule, exactly the Euler step of the flow ODE).
- `ddpm` (Ho et al. 2020): the same with eta = 1, i.e. ancestral sampling from the exact
  Gaussian posterior q(x_s | x_t, x0). On the flow interpolant this is the SDE
  conversion of Kim et al. 2025: a stochastic sampler with the ODE's marginals, which
  particle methods need in order to branch.
- `euler`: the probability-flow ODE dx/dt = alpha'(t) x0 + sigma'(t) eps (the velocity a
  flow-matching model predicts), one explicit Euler step.

The last step (s = 0) returns the clean estimate x0 itself.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from testtime.diffusion.denoisers import Split
from testtime.diffusion.schedule import Schedule

SamplerName = Literal["ddim", "ddpm", "euler"]
SAMPLERS: tuple[SamplerName, ...] = ("ddim", "ddpm", "euler")


def stochastic(sampler: SamplerName, eta: float) -> bool:
    """Whether the sampler draws fresh noise at each step."""
    return sampler == "ddpm" or (sampler == "ddim" and eta > 0)


def posterior_std(schedule: Schedule, t: float, s: float) -> float:
    """The std of q(x_s | x_t, x0) for s < t (DDPM's ancestral noise)."""
    a_t, a_s, s_t, s_s = schedule.alpha(t), schedule.alpha(s), schedule.sigma(t), schedule.sigma(s)
    ratio = a_t / a_s
    var_ts = max(0.0, s_t**2 - ratio**2 * s_s**2)
    return math.sqrt(var_ts * s_s**2 / s_t**2) if s_t > 0 else 0.0


def step(
    sampler: SamplerName,
    schedule: Schedule,
    x: Tensor,
    pred: Split,
    t: float,
    s: float,
    *,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """x at time s < t, from x at t and the model's (x0, eps) there."""
    if s <= 0.0:
        return pred.x0
    if sampler == "euler":
        velocity = schedule.d_alpha(t) * pred.x0 + schedule.d_sigma(t) * pred.eps
        return x + (s - t) * velocity
    c = (1.0 if sampler == "ddpm" else eta) * posterior_std(schedule, t, s)
    keep = math.sqrt(max(0.0, schedule.sigma(s) ** 2 - c * c))  # of the predicted noise
    out = schedule.alpha(s) * pred.x0 + keep * pred.eps
    if c > 0:
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        out = out + c * noise
    return out
