"""A Gaussian mixture whose noisy marginals are known exactly, to check steering against
an exact answer.

Under x_t = alpha x0 + sigma eps, a mixture sum_k pi_k N(mu_k, S_k) stays a mixture,
sum_k pi_k N(alpha mu_k, alpha^2 S_k + sigma^2 I), so E[x0 | x_t] (the ideal denoiser) is
closed-form. A linear reward r(x) = c.x tilts it into another mixture, p(x) exp(lam r(x))
/ Z = sum_k pi'_k N(mu_k + lam S_k c, S_k) with pi'_k ~ pi_k exp(lam c.mu_k + lam^2
c'S_k c / 2): the exact target FK steering should sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from testtime.core.cost import Cost
from testtime.core.errors import ConfigError
from testtime.core.types import Problem
from testtime.diffusion.denoisers import Prediction
from testtime.diffusion.schedule import VP, Schedule

DTYPE = torch.float64


@dataclass(frozen=True)
class Mixture:
    """sum_k weights[k] N(means[k], covs[k]) in D dimensions."""

    weights: Tensor  # (K,)
    means: Tensor  # (K, D)
    covs: Tensor  # (K, D, D)

    def moments(self) -> tuple[Tensor, Tensor]:
        """The exact mean (D,) and covariance (D, D)."""
        w = self.weights[:, None]
        mean = (w * self.means).sum(0)
        centred = self.means - mean
        outer = centred[:, :, None] * centred[:, None, :]
        return mean, (self.weights[:, None, None] * (self.covs + outer)).sum(0)

    def tilt(self, c: Tensor, lam: float) -> Mixture:
        """The mixture times exp(lam c.x), renormalised (exact)."""
        sc = self.covs @ c  # (K, D)
        log_w = self.weights.log() + lam * self.means @ c + 0.5 * lam**2 * (sc @ c)
        return Mixture(torch.softmax(log_w, 0), self.means + lam * sc, self.covs)

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn((n, self.means.shape[1]), generator=generator, dtype=DTYPE)
        chol = torch.linalg.cholesky(self.covs)
        out: Tensor = self.means[k] + (chol[k] @ z[:, :, None])[:, :, 0]
        return out

    def posterior_mean(self, x: Tensor, a: float, s: float) -> Tensor:
        """E[x0 | x_t = x] when x_t = a x0 + s eps (Tweedie, in closed form)."""
        d = self.means.shape[1]
        noisy = a * a * self.covs + s * s * torch.eye(d, dtype=DTYPE)  # (K, D, D)
        diff = x[:, None, :] - a * self.means[None]  # (B, K, D)
        solved = torch.einsum("kij,bkj->bki", torch.linalg.inv(noisy), diff)  # (B, K, D)
        log_det = torch.linalg.slogdet(noisy)[1]
        log_p = self.weights.log() - 0.5 * (log_det + (diff * solved).sum(-1))
        resp = torch.softmax(log_p, dim=1)  # (B, K)
        mean_k = self.means[None] + a * torch.einsum("kij,bkj->bki", self.covs, solved)
        out: Tensor = (resp[..., None] * mean_k).sum(1)
        return out


def default_mixture() -> Mixture:
    """Three 2-D components, unequal weights, one correlated."""
    return Mixture(
        torch.tensor([0.5, 0.3, 0.2], dtype=DTYPE),
        torch.tensor([[-2.0, 0.0], [2.0, 0.0], [0.0, 2.5]], dtype=DTYPE),
        torch.tensor(
            [[[0.5, 0.0], [0.0, 0.5]], [[0.3, 0.1], [0.1, 0.4]], [[0.4, -0.2], [-0.2, 0.6]]],
            dtype=DTYPE,
        ),
    )


class MixtureDenoiser:
    """The exact denoiser of a mixture: predicts x0 = E[x0 | x_t]."""

    name = "gmm"
    prediction: Prediction = "x0"
    evals_per_call = 1

    def __init__(self, mixture: Mixture | None = None, schedule: Schedule | None = None) -> None:
        self.mixture = mixture or default_mixture()
        self.schedule = schedule or VP()
        self.shape = (int(self.mixture.means.shape[1]),)
        self.image_shape = self.shape

    def prepare(self, problem: Problem) -> tuple[Any, Cost]:
        return None, Cost()

    def __call__(self, x: Tensor, t: float, condition: Any) -> Tensor:
        a, s = self.schedule.alpha(t), self.schedule.sigma(t)
        return self.mixture.posterior_mean(x.to(DTYPE), a, s)

    def flops_per_eval(self) -> float:
        k, d = self.mixture.means.shape
        return float(k * (2 * d**3 + 6 * d * d))  # per component: a D x D solve and products

    def decode(self, x0: Tensor) -> Tensor:
        return x0

    def decode_flops(self) -> float:
        return 0.0


class LinearReward:
    """r(x) = c.x, whose exponential tilt of a mixture is known in closed form."""

    name = "linear"

    def __init__(self, c: tuple[float, ...] = (1.0, 0.5)) -> None:
        self.c = torch.tensor(c, dtype=DTYPE)

    def check(self, image_shape: tuple[int, ...]) -> None:
        if image_shape != (len(self.c),):
            raise ConfigError(
                f"the linear reward scores points of {len(self.c)} coordinates; the model makes "
                f"samples of shape {image_shape}"
            )

    def __call__(self, images: Tensor, problem: Problem) -> Tensor:
        return images.to(DTYPE) @ self.c

    def labels(self, images: Tensor, problem: Problem) -> list[str | None]:
        return [None] * len(images)

    def flops_per_image(self) -> float:
        return 2.0 * len(self.c)


def main() -> None:
    """Print how far FK-steered samples (10k particles) land from the exact tilted target,
    for each potential: `python -m testtime.diffusion.gmm`."""
    from testtime.core.types import Problem
    from testtime.diffusion.run import solve, strategy_spec

    torch.set_num_threads(1)
    reward, lam, n = LinearReward(), 1.0, 10_000
    target_mean, target_cov = default_mixture().tilt(reward.c, lam).moments()
    print(f"target mean {target_mean.tolist()}, covariance {target_cov.tolist()}")
    for potential in ("diff", "max", "sum", "rt"):
        spec = strategy_spec("fk_steering", {
            "particles": n, "steps": 200, "lam": lam, "potential": potential, "interval": 10,
        })  # fmt: skip
        out = solve(Problem.from_prompt("gmm"), spec, MixtureDenoiser(), reward, max_batch=n)
        x = out.images[(out.result.trace or {})["final_ancestors"]].to(DTYPE)
        mean_err = float((x.mean(0) - target_mean).abs().max())
        cov_err = float(((torch.cov(x.T) - target_cov).abs() / target_cov.abs()).max())
        unique = len(set((out.result.trace or {})["final_ancestors"]))
        print(f"{potential:>4}: max |mean error| {mean_err:.3f}, max relative covariance "
              f"error {cov_err:.1%}, distinct particles {unique} of {n}")  # fmt: skip


if __name__ == "__main__":
    main()
