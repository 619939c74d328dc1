"""Noise schedules: x_t = alpha(t) x0 + sigma(t) eps, with t from 1 (noise) to 0 (data).

One continuous-time form covers variance-preserving diffusion (DDPM / SD), discrete
schedules read from a trained scheduler's table, and flow matching's linear interpolant
(alpha = 1 - t, sigma = t), so every sampler and strategy is written once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from testtime.core.errors import ConfigError


class Schedule:
    """alpha(t), sigma(t) and their time derivatives; t in [0, 1]."""

    name = "schedule"

    def alpha(self, t: float) -> float:
        raise NotImplementedError

    def sigma(self, t: float) -> float:
        raise NotImplementedError

    def d_alpha(self, t: float, h: float = 1e-4) -> float:
        """d alpha / dt (central differences unless a subclass knows it in closed form)."""
        lo, hi = max(0.0, t - h), min(1.0, t + h)
        return (self.alpha(hi) - self.alpha(lo)) / (hi - lo)

    def d_sigma(self, t: float, h: float = 1e-4) -> float:
        lo, hi = max(0.0, t - h), min(1.0, t + h)
        return (self.sigma(hi) - self.sigma(lo)) / (hi - lo)

    def times(self, steps: int) -> list[float]:
        """`steps + 1` times from 1 down to 0, evenly spaced."""
        if steps <= 0:
            raise ConfigError(f"steps must be a positive number, got {steps}")
        return [1.0 - i / steps for i in range(steps + 1)]

    def noise_to(self, x: Tensor, t: float, s: float, z: Tensor) -> Tensor:
        """The exact forward transition from time t to a noisier time s > t (q(x_s | x_t))."""
        ratio = self.alpha(s) / self.alpha(t)
        var = max(0.0, self.sigma(s) ** 2 - ratio**2 * self.sigma(t) ** 2)
        return ratio * x + math.sqrt(var) * z


class VP(Schedule):
    """Variance preserving, Song et al. 2021's linear-beta VP-SDE (DDPM's schedule in
    continuous time): alpha^2 = exp(-(b0 t + (b1 - b0) t^2 / 2)), alpha^2 + sigma^2 = 1."""

    name = "vp"

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0) -> None:
        self.b0, self.b1 = beta_min, beta_max

    def _log_alpha(self, t: float) -> float:
        return -0.5 * (self.b0 * t + 0.5 * (self.b1 - self.b0) * t * t)

    def alpha(self, t: float) -> float:
        return math.exp(self._log_alpha(t))

    def sigma(self, t: float) -> float:
        return math.sqrt(-math.expm1(2.0 * self._log_alpha(t)))

    def d_alpha(self, t: float, h: float = 0.0) -> float:
        return -0.5 * (self.b0 + (self.b1 - self.b0) * t) * self.alpha(t)

    def d_sigma(self, t: float, h: float = 0.0) -> float:
        s = self.sigma(t)
        return -self.alpha(t) * self.d_alpha(t) / s if s > 0 else math.inf


class Flow(Schedule):
    """Flow matching / rectified flow: the linear interpolant x_t = (1 - t) x0 + t eps.

    `shift` > 1 spends more steps at high noise (SD3 / Flux's time shift):
    t -> shift t / (1 + (shift - 1) t) on the sampling grid.
    """

    name = "flow"

    def __init__(self, shift: float = 1.0) -> None:
        if not shift > 0:
            raise ConfigError(f"a flow schedule's shift must be > 0, got {shift}")
        self.shift = shift

    def times(self, steps: int) -> list[float]:
        s = self.shift
        return [s * t / (1 + (s - 1) * t) for t in super().times(steps)]

    def alpha(self, t: float) -> float:
        return 1.0 - t

    def sigma(self, t: float) -> float:
        return t

    def d_alpha(self, t: float, h: float = 0.0) -> float:
        return -1.0

    def d_sigma(self, t: float, h: float = 0.0) -> float:
        return 1.0


class Discrete(Schedule):
    """A trained scheduler's table of cumulative alphas (e.g. Stable Diffusion's 1000),
    with t = index / (len - 1) and log alpha-bar interpolated between entries."""

    name = "discrete"

    def __init__(self, alphas_cumprod: Sequence[float] | Tensor) -> None:
        table = torch.as_tensor(alphas_cumprod, dtype=torch.float64)
        if table.ndim != 1 or len(table) < 2 or bool((table <= 0).any()):
            raise ConfigError("a discrete schedule needs at least 2 positive alphas_cumprod")
        self.log_ab = table.log()

    def index(self, t: float) -> float:
        """The (fractional) training timestep of time t."""
        return t * (len(self.log_ab) - 1)

    def _log_ab(self, t: float) -> float:
        pos = self.index(min(max(t, 0.0), 1.0))
        i = min(int(pos), len(self.log_ab) - 2)
        frac = pos - i
        return float((1 - frac) * self.log_ab[i] + frac * self.log_ab[i + 1])

    def alpha(self, t: float) -> float:
        return math.exp(0.5 * self._log_ab(t))

    def sigma(self, t: float) -> float:
        return math.sqrt(-math.expm1(self._log_ab(t)))


SCHEDULES: dict[str, type[Schedule]] = {"vp": VP, "flow": Flow}
